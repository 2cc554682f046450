package cluster

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

const dialTimeout = 3 * time.Second

// A Link forwards TCP connections from one host to a service on another: it listens
// where the client host sees the service's address and dials the service where it runs.
// It is the wire between two hosts that a fault can cut:
//
//   - Cut closes the listener (new connections are refused, as by a host that is gone)
//     and resets every open connection;
//   - Heal listens again on the same address;
//   - SetDelay holds each chunk of data for a while in both directions.
//
// Its methods are safe for concurrent use. Close ends it and waits for its goroutines.
type Link struct {
	Client, Service string // host and service names, for messages

	listen func() (net.Listener, error)
	dial   func() (net.Conn, error)

	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
	cut    bool
	closed bool
	delay  time.Duration
	pairs  int // connections forwarded now

	wg sync.WaitGroup
}

// NewLink starts forwarding: listen opens the client side's listener (called again by
// Heal), dial reaches the service for each accepted connection.
func NewLink(client, service string, listen func() (net.Listener, error), dial func() (net.Conn, error)) (*Link, error) {
	l := &Link{Client: client, Service: service, listen: listen, dial: dial, conns: map[net.Conn]struct{}{}}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

// TCPLink is a Link in this network namespace: it listens on listenAddr and forwards
// to upstream. Give listenAddr a fixed port: Heal listens on it again.
func TCPLink(listenAddr, upstream string) (*Link, error) {
	return NewLink("local", upstream,
		func() (net.Listener, error) { return net.Listen("tcp", listenAddr) },
		func() (net.Conn, error) { return net.DialTimeout("tcp", upstream, dialTimeout) })
}

func (l *Link) open() error {
	ln, err := l.listen()
	if err != nil {
		return fmt.Errorf("cluster: link %s→%s: %w", l.Client, l.Service, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		ln.Close()
		return errors.New("cluster: link closed")
	}
	l.ln, l.cut = ln, false
	l.wg.Add(1)
	go l.accept(ln)
	return nil
}

// Addr is where clients connect (valid while not cut).
func (l *Link) Addr() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln == nil {
		return ""
	}
	return l.ln.Addr().String()
}

func (l *Link) accept(ln net.Listener) {
	defer l.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return // closed by Cut or Close
		}
		l.mu.Lock()
		if l.cut || l.closed {
			l.mu.Unlock()
			c.Close()
			continue
		}
		l.conns[c] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go l.forward(c)
	}
}

func (l *Link) forward(c net.Conn) {
	defer l.wg.Done()
	up, err := l.dial()
	if err != nil {
		l.drop(c)
		c.Close()
		return
	}
	l.mu.Lock()
	if l.cut || l.closed {
		l.mu.Unlock()
		l.drop(c)
		c.Close()
		up.Close()
		return
	}
	l.conns[up] = struct{}{}
	l.pairs++
	l.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); l.pipe(up, c) }()
	go func() { defer wg.Done(); l.pipe(c, up) }()
	wg.Wait()
	l.mu.Lock()
	l.pairs--
	l.mu.Unlock()
	l.drop(c)
	l.drop(up)
	c.Close()
	up.Close()
}

// pipe copies src to dst. At src's end it passes the half-close on (the other
// direction may still carry an answer); on any other failure it closes both, so that
// the other direction ends too.
func (l *Link) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			l.mu.Lock()
			d := l.delay
			l.mu.Unlock()
			if d > 0 {
				time.Sleep(d)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				dst.Close()
				src.Close()
				return
			}
		}
		if err == io.EOF {
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
				return
			}
		}
		if err != nil {
			dst.Close()
			src.Close()
			return
		}
	}
}

func (l *Link) drop(c net.Conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// Cut refuses new connections and resets the open ones. Cutting a cut link does nothing.
func (l *Link) Cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cut || l.closed {
		return
	}
	l.cut = true
	if l.ln != nil {
		l.ln.Close()
		l.ln = nil
	}
	for c := range l.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST, as a vanished host's peer eventually sees
		}
		c.Close()
	}
}

// Heal listens again after a Cut; healing a link that is not cut does nothing.
func (l *Link) Heal() error {
	l.mu.Lock()
	cut := l.cut
	l.mu.Unlock()
	if !cut {
		return nil
	}
	return l.open()
}

// IsCut reports whether the link is cut.
func (l *Link) IsCut() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cut
}

// SetDelay holds every chunk forwarded from now on for d (0: none).
func (l *Link) SetDelay(d time.Duration) {
	l.mu.Lock()
	l.delay = d
	l.mu.Unlock()
}

// Open is the number of client connections being forwarded to the service now.
func (l *Link) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pairs
}

// Close stops the link for good and waits for its goroutines.
func (l *Link) Close() {
	l.Cut()
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.wg.Wait()
}
