package redirect

import (
	"io"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/google/nftables/expr"

	"github.com/kubectl-mesh/kubectl-mesh/internal/fixture"
)

func TestValidate(t *testing.T) {
	good := []Rules{
		{AppPorts: []uint16{8080}, ProxyPort: 15006},
		{AppPorts: []uint16{80, 8080}, ProxyPort: 15006, ExcludePorts: []uint16{15000}},
		{AllPorts: true, ProxyPort: 15006, ExcludePorts: []uint16{15000, 15021}},
	}
	for _, r := range good {
		if err := r.Validate(); err != nil {
			t.Errorf("%+v: %v", r, err)
		}
	}
	bad := map[string]Rules{
		"no proxy port":                {AppPorts: []uint16{8080}},
		"no application port":          {ProxyPort: 15006},
		"both all ports and a port":    {AllPorts: true, AppPorts: []uint16{8080}, ProxyPort: 15006},
		"port 0":                       {AppPorts: []uint16{0}, ProxyPort: 15006},
		"is the proxy port":            {AppPorts: []uint16{15006}, ProxyPort: 15006},
		"both redirected and excluded": {AppPorts: []uint16{8080}, ProxyPort: 15006, ExcludePorts: []uint16{8080}},
	}
	for want, r := range bad {
		if err := r.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: error %v, want one containing %q", r, err, want)
		}
	}
}

// TestRuleOrder checks the shape of the rule list: loopback first, exclusions before the
// catch-all in all-ports mode, one redirect per port otherwise.
func TestRuleOrder(t *testing.T) {
	kinds := func(r Rules) []string {
		var out []string
		for _, rule := range r.exprs() {
			switch last := rule[len(rule)-1].(type) {
			case *expr.Redir:
				out = append(out, "redirect")
			case *expr.Verdict:
				if m, ok := rule[0].(*expr.Meta); ok && m.Key == expr.MetaKeyIIFNAME {
					out = append(out, "lo")
				} else {
					out = append(out, "return")
				}
			default:
				t.Fatalf("unexpected last expression %T", last)
			}
		}
		return out
	}
	if got := strings.Join(kinds(Rules{AppPorts: []uint16{9090, 8080, 9090}, ProxyPort: 15006}), " "); got != "lo redirect redirect" {
		t.Errorf("port list: %s", got)
	}
	// 15000, 15021 and the proxy's own port return; everything else is redirected.
	if got := strings.Join(kinds(Rules{AllPorts: true, ProxyPort: 15006, ExcludePorts: []uint16{15021, 15000}}), " "); got != "lo return return return redirect" {
		t.Errorf("all ports: %s", got)
	}
}

// TestAllPortsInNamespace installs the all-ports variant in a pod namespace and checks, from a
// client namespace, that an arbitrary port reaches the proxy's listener while an excluded one
// reaches its own; then that Install replaces rather than adds, and Uninstall removes.
func TestAllPortsInNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test creates network namespaces and installs nftables rules in them")
	}
	pod, err := fixture.NewPod()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pod.Close() })

	// Two listeners that say who they are.
	for port, name := range map[string]string{"15006": "proxy", "15000": "admin"} {
		ln, err := pod.Pod.Listen(":" + port)
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
				_, _ = io.WriteString(c, name)
				c.Close()
			}
		}()
	}
	whoAnswers := func(port string) string {
		t.Helper()
		c, err := pod.Client.Dial(net.JoinHostPort(fixture.PodAddr, port))
		if err != nil {
			return "refused"
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		return string(b)
	}
	if got := whoAnswers("9090"); got != "refused" {
		t.Fatalf("before install port 9090 answered %q", got)
	}

	r := Rules{AllPorts: true, ProxyPort: 15006, ExcludePorts: []uint16{15000}}
	for range 2 {
		if err := pod.Pod.Do(func() error { return Install(r) }); err != nil {
			t.Fatal(err)
		}
	}
	var exists bool
	var rules int
	if err := pod.Pod.Do(func() (err error) { exists, rules, err = Installed(); return err }); err != nil {
		t.Fatal(err)
	}
	if !exists || rules != 4 {
		t.Fatalf("after two installs: exists %t with %d rules, want 4 (lo, 15000, 15006, catch-all)", exists, rules)
	}
	for port, want := range map[string]string{"9090": "proxy", "8080": "proxy", "15006": "proxy", "15000": "admin"} {
		if got := whoAnswers(port); got != want {
			t.Errorf("port %s answered by %q, want %q", port, got, want)
		}
	}

	if err := pod.Pod.Do(Uninstall); err != nil {
		t.Fatal(err)
	}
	if err := pod.Pod.Do(func() (err error) { exists, _, err = Installed(); return err }); err != nil || exists {
		t.Fatalf("after uninstall: exists %t, err %v", exists, err)
	}
	if got := whoAnswers("9090"); got != "refused" {
		t.Errorf("after uninstall port 9090 answered %q", got)
	}
	if err := pod.Pod.Do(Uninstall); err != nil {
		t.Errorf("uninstalling twice: %v", err)
	}
}
