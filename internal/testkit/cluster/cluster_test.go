package cluster_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/diplip/diplip/internal/testkit"
	"github.com/diplip/diplip/internal/testkit/cluster"
)

// echoServer answers every line with the same line, upper-cased, until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(strings.ToUpper(line))); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(c net.Conn, msg string) error {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "%s\n", msg); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if want := strings.ToUpper(msg) + "\n"; got != want {
		return fmt.Errorf("echo %q, want %q", got, want)
	}
	return nil
}

// A cut link resets the connections it carries and refuses new ones; healed, it
// forwards again on the same address. A delay holds the data.
func TestLinkCutAndHeal(t *testing.T) {
	up := echoServer(t)
	l, err := cluster.TCPLink(fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t)), up)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := l.Addr()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTrip(c, "before"); err != nil {
		t.Fatal(err)
	}
	if n := l.Open(); n != 1 {
		t.Fatalf("Open() = %d with one client, want 1", n)
	}

	l.Cut()
	if err := roundTrip(c, "during"); err == nil {
		t.Fatal("a connection through a cut link still works")
	}
	if c2, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c2.Close()
		t.Fatal("a cut link accepted a new connection; want it refused")
	}
	testkit.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if n := l.Open(); n != 0 {
			return fmt.Errorf("Open() = %d after the cut", n)
		}
		return nil
	})

	if err := l.Heal(); err != nil {
		t.Fatal(err)
	}
	c3, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("after Heal: %v", err)
	}
	defer c3.Close()
	if err := roundTrip(c3, "after"); err != nil {
		t.Fatal(err)
	}

	l.SetDelay(150 * time.Millisecond)
	t0 := time.Now()
	if err := roundTrip(c3, "slow"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(t0); took < 300*time.Millisecond {
		t.Fatalf("a round trip through a 150 ms link took %v, want ≥ 300 ms", took)
	}
}

// A host in its own network namespace reaches a service of this namespace only through
// a link that listens inside it, on the service's own address.
func TestNetNSHostReachesServiceOnlyThroughItsLink(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("network namespaces need root (CI runs the tests as root); run as root")
	}
	up := echoServer(t)
	other := echoServer(t)
	ns, err := cluster.NewNetNS("linktest")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Delete()
	if c, err := ns.Dial(up); err == nil {
		c.Close()
		t.Fatal("the namespace reached the service without a link")
	}
	l, err := cluster.NewLink("linktest", "echo",
		func() (net.Listener, error) { return ns.Listen(up) },
		func() (net.Conn, error) { return net.Dial("tcp", up) })
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := ns.Dial(up)
	if err != nil {
		t.Fatalf("through the link: %v", err)
	}
	defer c.Close()
	if err := roundTrip(c, "inside"); err != nil {
		t.Fatal(err)
	}
	if c, err := ns.Dial(other); err == nil {
		c.Close()
		t.Fatal("the namespace reached a service it has no link to")
	}
	// The test's own goroutines stay in this namespace.
	if c, err := net.Dial("tcp", other); err != nil {
		t.Fatalf("this namespace lost its own loopback: %v", err)
	} else {
		c.Close()
	}
	out, err := ns.Command("ip", "-o", "link").CombinedOutput()
	if err != nil || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 || !strings.Contains(string(out), "lo:") {
		t.Fatalf("the namespace should hold only lo: %v\n%s", err, out)
	}
}
