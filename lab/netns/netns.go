// Package netns creates the lab's network namespace and runs code inside it.
//
// The whole lab node (etcd, kube-apiserver, containerd, kubelet, kube-proxy and the pods) lives
// in one network namespace of its own. kubelet, kube-proxy and the CNI plugins write iptables
// chains, bridges and routes; inside a namespace they touch nothing of the machine's own network,
// and deleting the namespace removes all of it at once.
package netns

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	inetns "github.com/kubectl-mesh/kubectl-mesh/internal/netns"
)

// Dir is where iproute2 keeps named network namespaces.
const Dir = "/run/netns"

// Path returns the bind-mount path of a named namespace.
func Path(name string) string { return filepath.Join(Dir, name) }

// Exists reports whether a named namespace is present.
func Exists(name string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(Path(name), &st); err != nil {
		return false
	}
	return st.Type == unix.NSFS_MAGIC
}

// Node describes the lab node's address inside the namespace.
type Node struct {
	Name   string // namespace name
	Bridge string // interface carrying the node IP (a bridge: this kernel has no dummy driver)
	CIDR   string // node IP with prefix, e.g. 10.88.0.2/24
	// Gateway is the default route's next hop. Nothing answers there: the route only gives
	// components an interface to pick for "the node's address", and traffic to any address
	// outside the lab goes nowhere.
	Gateway string
}

// Create makes the namespace and its node interface. It fails if the namespace exists.
func Create(n Node) error {
	if Exists(n.Name) {
		return fmt.Errorf("netns: %s already exists", n.Name)
	}
	steps := [][]string{
		{"ip", "netns", "add", n.Name},
		{"ip", "-n", n.Name, "link", "set", "lo", "up"},
		{"ip", "-n", n.Name, "link", "add", n.Bridge, "type", "bridge"},
		{"ip", "-n", n.Name, "addr", "add", n.CIDR, "dev", n.Bridge},
		{"ip", "-n", n.Name, "link", "set", n.Bridge, "up"},
		{"ip", "-n", n.Name, "route", "add", "default", "via", n.Gateway, "dev", n.Bridge, "onlink"},
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			_ = Delete(n.Name)
			return err
		}
	}
	return nil
}

// Sysctl sets net.* sysctls inside the namespace (they are per network namespace).
func Sysctl(name string, kv map[string]string) error {
	return Do(Path(name), func() error {
		for k, v := range kv {
			// /proc/sys/net resolves to the network namespace of the thread that opens it,
			// which is why this runs inside Do.
			path := "/proc/sys/" + strings.ReplaceAll(k, ".", "/")
			if err := os.WriteFile(path, []byte(v), 0o644); err != nil {
				return fmt.Errorf("netns: sysctl %s=%s: %w", k, v, err)
			}
		}
		return nil
	})
}

// Delete removes a named namespace (and with it every interface, route and iptables rule that
// was made inside it). Deleting a missing namespace is not an error.
func Delete(name string) error {
	if !Exists(name) {
		_ = os.Remove(Path(name))
		return nil
	}
	return run("ip", "netns", "delete", name)
}

// Do runs fn inside the network namespace at path (see internal/netns).
func Do(path string, fn func() error) error { return inetns.Do(path, fn) }

// Dialer returns a DialContext function whose sockets are created inside the namespace at
// path. It lets host-side clients reach lab addresses without any route from the host.
func Dialer(path string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := Do(path, func() error {
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

func run(argv ...string) error {
	var out bytes.Buffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("netns: %s: %v: %s", strings.Join(argv, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}
