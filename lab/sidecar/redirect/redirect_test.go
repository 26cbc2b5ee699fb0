package redirect

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables/expr"

	"github.com/kubectl-mesh/kubectl-mesh/internal/fixture"
)

func TestValidate(t *testing.T) {
	good := []Rules{
		{AppPorts: []uint16{8080}, ProxyPort: 15006},
		{AppPorts: []uint16{80, 8080}, ProxyPort: 15006, ExcludePorts: []uint16{15000}},
		{AllPorts: true, ProxyPort: 15006, ExcludePorts: []uint16{15000, 15021}},
		{AppPorts: []uint16{8080}, ProxyPort: 15006, Outbound: &Outbound{ProxyPort: 15001, DestPorts: []uint16{80}, ProxyUID: 1337}},
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
		"outbound proxy port 15006 is the inbound one": {AppPorts: []uint16{8080}, ProxyPort: 15006,
			Outbound: &Outbound{ProxyPort: 15006, DestPorts: []uint16{80}, ProxyUID: 1337}},
		"no outbound destination port": {AppPorts: []uint16{8080}, ProxyPort: 15006,
			Outbound: &Outbound{ProxyPort: 15001, ProxyUID: 1337}},
		"non-root UID": {AppPorts: []uint16{8080}, ProxyPort: 15006,
			Outbound: &Outbound{ProxyPort: 15001, DestPorts: []uint16{80}}},
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
	pod := fixture.NewTestPod(t)

	// Two listeners that say who they are.
	for port, name := range map[string]string{"15006": "proxy", "15000": "admin"} {
		ln, err := pod.Pod.Listen(":" + port)
		if err != nil {
			t.Fatal(err)
		}
		say(t, ln, name)
	}
	whoAnswers := func(port string) string {
		return answer(pod.Client.Dial(net.JoinHostPort(fixture.PodAddr, port)))
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
	exists, rules := installed(t, pod.Pod)
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

// dialAsEnv asks the test binary, run as a child, to dial an address as the
// proxy's user and print who answered (TestMain).
const dialAsEnv = "KMESH_REDIRECT_TEST_DIAL_AS_1337"

func TestMain(m *testing.M) {
	if addr := os.Getenv(dialAsEnv); addr != "" {
		// A process of its own: changing the user changes every thread's.
		if err := syscall.Setresuid(1337, 1337, 1337); err != nil {
			fmt.Println("setresuid:", err)
			os.Exit(1)
		}
		fmt.Print(answer(net.DialTimeout("tcp", addr, 2*time.Second)))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// installed is Installed in ns.
func installed(t *testing.T, ns *fixture.Netns) (exists bool, rules int) {
	t.Helper()
	if err := ns.Do(func() (err error) { exists, rules, err = Installed(); return err }); err != nil {
		t.Fatal(err)
	}
	return exists, rules
}

// answer reads what a listener of the tests says, or "refused".
func answer(c net.Conn, err error) string {
	if err != nil {
		return "refused"
	}
	defer c.Close()
	b, _ := io.ReadAll(c)
	return string(b)
}

// say serves name to every connection on ln.
func say(t *testing.T, ln net.Listener, name string) {
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

// TestOutboundInNamespace installs the outbound capture in a pod namespace: the pod's
// connections to a captured port reach the proxy's outbound listener, the proxy's own user's
// reach the real destination, and other ports are left alone.
func TestOutboundInNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test creates network namespaces and installs nftables rules in them")
	}
	pod := fixture.NewTestPod(t)
	proxy, err := pod.Pod.Listen("127.0.0.1:15001")
	if err != nil {
		t.Fatal(err)
	}
	say(t, proxy, "proxy")
	upstream, err := pod.Client.Listen(":80")
	if err != nil {
		t.Fatal(err)
	}
	say(t, upstream, "upstream")
	dest := net.JoinHostPort(fixture.ClientAddr, "80")

	r := Rules{AppPorts: []uint16{8080}, ProxyPort: 15006,
		Outbound: &Outbound{ProxyPort: 15001, DestPorts: []uint16{80}, ProxyUID: 1337}}
	if err := pod.Pod.Do(func() error { return Install(r) }); err != nil {
		t.Fatal(err)
	}
	exists, rules := installed(t, pod.Pod)
	if !exists || rules != 5 {
		t.Fatalf("exists %t with %d rules, want 5 (inbound: lo, 8080; outbound: proxy's user, lo, 80)", exists, rules)
	}
	if got := answer(pod.Pod.Dial(dest)); got != "proxy" {
		t.Errorf("the application's connection to %s reached %q, want the proxy", dest, got)
	}
	if got := answer(pod.Pod.Dial(net.JoinHostPort(fixture.ClientAddr, "81"))); got != "refused" {
		t.Errorf("an uncaptured port answered %q", got)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := pod.Pod.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), dialAsEnv+"="+dest)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v: %s", err, out)
	}
	if string(out) != "upstream" {
		t.Errorf("the proxy user's connection to %s reached %q, want the upstream", dest, out)
	}
}
