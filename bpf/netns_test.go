package bpf

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	inetns "github.com/kubectl-mesh/kubectl-mesh/internal/netns"
)

// Network namespaces made by the tests with `ip netns add`, named after the
// test and the process so that concurrent runs never share one, and deleted
// with t.Cleanup.

var netnsSeq atomic.Int64

type netns struct {
	name string
	path string
}

func newNetns(t *testing.T, role string) *netns {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2)")
	}
	name := fmt.Sprintf("kmesh-%s-%d-%d", role, os.Getpid(), netnsSeq.Add(1))
	ipCmd(t, "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	ns := &netns{name: name, path: filepath.Join("/run/netns", name)}
	ns.ip(t, "link", "set", "lo", "up")
	return ns
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// ip runs an ip command inside the namespace.
func (ns *netns) ip(t *testing.T, args ...string) {
	t.Helper()
	ipCmd(t, append([]string{"-n", ns.name}, args...)...)
}

// do runs fn on an OS thread switched into the namespace. Sockets created
// by fn stay in the namespace after fn returns, whichever goroutine uses
// them; netlink and TC attach calls act on the namespace's interfaces.
func (ns *netns) do(fn func() error) error { return inetns.Do(ns.path, fn) }

func (ns *netns) listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	if err := ns.do(func() (err error) {
		l, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func (ns *netns) dial(addr string) (net.Conn, error) {
	var c net.Conn
	err := ns.do(func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 2*time.Second)
		return err
	})
	return c, err
}

func (ns *netns) ifindex(t *testing.T, name string) int {
	t.Helper()
	var idx int
	if err := ns.do(func() error {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return err
		}
		idx = ifi.Index
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return idx
}
