package cluster

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// A NetNS is a Linux network namespace with only its loopback up: a host of the cluster.
// Processes started in it (through `ip netns exec`, which execs, so their PID is the one
// started) see 127.0.0.1 as their own; they reach the rest of the cluster only through
// the links the cluster listens with inside it.
//
// Named namespaces live under /run/netns (ip-netns(8)); the name carries this process's
// PID so that RemoveStaleNetNS can tell a crashed run's namespaces from a live one's.
type NetNS struct {
	Name string
}

const netnsPrefix = "diplip-t"

// NewNetNS creates a namespace named after this process and host, with lo up. It needs
// root (CAP_SYS_ADMIN), as CI has.
func NewNetNS(host string) (*NetNS, error) {
	name := fmt.Sprintf("%s%d-%s", netnsPrefix, os.Getpid(), host)
	if len(name) > 64 {
		return nil, fmt.Errorf("cluster: namespace name %q is too long", name)
	}
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("cluster: creating network namespace %s (needs root and iproute2): %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	ns := &NetNS{Name: name}
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		ns.Delete()
		return nil, fmt.Errorf("cluster: bringing lo up in %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	return ns, nil
}

// Path is the namespace's bind mount.
func (n *NetNS) Path() string { return filepath.Join("/run/netns", n.Name) }

// Command returns a command that runs name with args inside the namespace.
func (n *NetNS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Delete removes the namespace; sockets still open in it keep it alive until closed.
func (n *NetNS) Delete() {
	_ = exec.Command("ip", "netns", "delete", n.Name).Run()
}

// Listen opens a TCP listener inside the namespace. A socket belongs to the namespace
// of the thread that created it, for its whole life, so only the socket call needs to
// run there.
func (n *NetNS) Listen(addr string) (net.Listener, error) {
	var ln net.Listener
	err := n.do(func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	})
	return ln, err
}

// Dial connects from inside the namespace.
func (n *NetNS) Dial(addr string) (net.Conn, error) {
	var c net.Conn
	err := n.do(func() (err error) {
		c, err = net.DialTimeout("tcp", addr, dialTimeout)
		return err
	})
	return c, err
}

// do runs f on an OS thread switched into the namespace, then switches the thread back.
// If the way back fails, the thread stays locked and dies with its goroutine, so no
// other goroutine ever runs in the wrong namespace.
func (n *NetNS) do(f func() error) error {
	target, err := os.Open(n.Path())
	if err != nil {
		return fmt.Errorf("cluster: namespace %s: %w", n.Name, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer self.Close()
		if err := setns(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("cluster: entering namespace %s: %w", n.Name, err)
			return
		}
		ferr := f()
		if err := setns(self); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("cluster: leaving namespace %s: %w", n.Name, err))
			return // still locked: the thread exits with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

func setns(f *os.File) error { return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET) }

// RemoveStaleNetNS deletes the namespaces of earlier runs whose process is gone (a run
// killed before it could clean up).
func RemoveStaleNetNS() {
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), netnsPrefix)
		if !ok {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(filepath.Join("/proc", pidText)); err == nil {
			continue
		}
		(&NetNS{Name: e.Name()}).Delete()
	}
}
