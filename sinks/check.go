package sinks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Kinds of error the Manager returns, for callers that branch (the gateway maps them to
// statuses through package node).
var (
	ErrInvalid  = errors.New("invalid")
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	ErrUpstream = errors.New("upstream")
)

type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string        { return e.msg }
func (e *kindError) Is(target error) bool { return target == e.kind }

func errorf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

func isLinkLocal(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast()
}

// checkTimeout bounds the name look-up and the connection that check a target at add.
const checkTimeout = 3 * time.Second

// CheckURL checks a target's URL before a sink is added: a scheme of schemes, a host,
// no link-local or cloud metadata address (169.254.0.0/16, fe80::/10: the rule of camera
// sources) unless allowLinkLocal, and a host that accepts a TCP connection. what names
// the flag in errors ("webhook url").
func CheckURL(ctx context.Context, what, raw string, schemes map[string]string, allowLinkLocal bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errorf(ErrInvalid, "%s %q is malformed: %v", what, raw, err)
	}
	defPort, ok := schemes[strings.ToLower(u.Scheme)]
	if !ok {
		var want []string
		for s := range schemes {
			want = append(want, s+"://")
		}
		return errorf(ErrInvalid, "%s %q: scheme %q: want %s", what, raw, u.Scheme, strings.Join(want, " or "))
	}
	host := u.Hostname()
	if host == "" {
		return errorf(ErrInvalid, "%s %q: the host is missing", what, raw)
	}
	port := u.Port()
	if port == "" {
		port = defPort
	}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return errorf(ErrInvalid, "%s %q is unreachable: %v", what, raw, err)
		}
		addrs = ips
	}
	for _, a := range addrs {
		if a = a.Unmap(); !allowLinkLocal && isLinkLocal(a) {
			kind := "a link-local address"
			if a == netip.AddrFrom4([4]byte{169, 254, 169, 254}) {
				kind = "the cloud metadata service's address"
			}
			return errorf(ErrInvalid, "%s %q: host %s is %s (169.254.0.0/16, fe80::/10); add the sink with --allow-link-local to send there", what, raw, a, kind)
		}
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, port))
	if err != nil {
		return errorf(ErrInvalid, "%s %q is unreachable: %v", what, raw, err)
	}
	c.Close()
	return nil
}
