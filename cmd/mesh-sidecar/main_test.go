package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubectl-mesh/kubectl-mesh/lab/sidecar/redirect"
)

// childEnv makes the test binary behave as mesh-sidecar itself: the root test runs init and
// proxy as separate processes inside the pod's network namespace, as the pod's containers do.
const childEnv = "MESH_SIDECAR_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

func TestParseInit(t *testing.T) {
	ok := []struct {
		args []string
		want initOptions
	}{
		{[]string{"--app-port", "8080", "--proxy-port", "15006"},
			initOptions{rules: redirect.Rules{AppPorts: []uint16{8080}, ProxyPort: 15006}}},
		{[]string{"--app-port=9090, 8080,9090"},
			initOptions{rules: redirect.Rules{AppPorts: []uint16{8080, 9090}, ProxyPort: 15006}}},
		{[]string{"--app-port", "*", "--exclude-ports", "15000,15021"},
			initOptions{rules: redirect.Rules{AllPorts: true, ProxyPort: 15006, ExcludePorts: []uint16{15000, 15021}}}},
		{[]string{"--uninstall"}, initOptions{uninstall: true}},
		{[]string{"--app-port", "8080", "--outbound-port", "15001", "--outbound-dest-ports", "80,8080"},
			initOptions{rules: redirect.Rules{AppPorts: []uint16{8080}, ProxyPort: 15006,
				Outbound: &redirect.Outbound{ProxyPort: 15001, DestPorts: []uint16{80, 8080}, ProxyUID: 1337}}}},
	}
	for _, c := range ok {
		got, err := parseInit(c.args, io.Discard)
		if err != nil {
			t.Errorf("%q: %v", c.args, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q:\n got %+v\nwant %+v", c.args, got, c.want)
		}
	}
	bad := map[string][]string{
		"--app-port is required":          {"--proxy-port", "15006"},
		`"0" is not a port`:               {"--app-port", "0"},
		`"70000" is not a port`:           {"--app-port", "8080,70000"},
		`"x" is not a port`:               {"--app-port", "8080", "--exclude-ports", "x"},
		"--proxy-port 0":                  {"--app-port", "8080", "--proxy-port", "0"},
		"--proxy-port 70000":              {"--app-port", "8080", "--proxy-port", "70000"},
		"is the proxy port":               {"--app-port", "15006"},
		"both redirected and excluded":    {"--app-port", "8080", "--exclude-ports", "8080"},
		"--uninstall takes no other flag": {"--uninstall", "--app-port", "8080"},
		"unexpected arguments":            {"--app-port", "8080", "extra"},
		"flag provided but not defined":   {"--to-ports", "15006"},
		"needs --outbound-port":           {"--app-port", "8080", "--outbound-dest-ports", "80"},
		"no outbound destination port":    {"--app-port", "8080", "--outbound-port", "15001"},
		"needs the proxy's own non-root":  {"--app-port", "8080", "--outbound-port", "15001", "--outbound-dest-ports", "80", "--proxy-uid", "0"},
		"is the inbound one":              {"--app-port", "8080", "--outbound-port", "15006", "--outbound-dest-ports", "80"},
	}
	for want, args := range bad {
		_, err := parseInit(args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one containing %q", args, err, want)
		}
	}
}

func TestParseProxy(t *testing.T) {
	got, err := parseProxy(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := proxyOptions{listen: ":15006", upstream: "127.0.0.1:8080", admin: ":15000", keep: 100_000}
	if got != want {
		t.Errorf("defaults:\n got %+v\nwant %+v", got, want)
	}
	got, err = parseProxy([]string{"--listen", "0.0.0.0:15006", "--upstream", "localhost:9090", "--delay", "1ms",
		"--response-delay", "500us", "--cpu-per-request", "200us", "--admin", "127.0.0.1:15000", "--keep", "10"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want = proxyOptions{listen: "0.0.0.0:15006", upstream: "localhost:9090", admin: "127.0.0.1:15000",
		delay: time.Millisecond, respDelay: 500 * time.Microsecond, cpu: 200 * time.Microsecond, keep: 10}
	if got != want {
		t.Errorf("all flags:\n got %+v\nwant %+v", got, want)
	}

	bad := map[string][]string{
		"--upstream: \":8080\" has no host":                  {"--upstream", ":8080"},
		"host must be an IP address":                         {"--upstream", "app.default:8080"},
		"missing port in address":                            {"--listen", "15006"},
		`"0" is not a port`:                                  {"--admin", ":0"},
		"both use port 15006":                                {"--admin", ":15006"},
		"--delay -1ms":                                       {"--delay", "-1ms"},
		"--cpu-per-request 1m0s":                             {"--cpu-per-request", "1m"},
		"--response-delay 11s":                               {"--response-delay", "11s"},
		"--keep 0":                                           {"--keep", "0"},
		"invalid value":                                      {"--delay", "1"},
		"unexpected arguments":                               {"extra"},
		"--outbound-listen uses port 15000":                  {"--outbound-listen", "127.0.0.1:15000"},
		"--outbound-listen: address 127.0.0.1: missing port": {"--outbound-listen", "127.0.0.1"},
	}
	for want, args := range bad {
		_, err := parseProxy(args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one containing %q", args, err, want)
		}
	}
}

func TestRunModes(t *testing.T) {
	var out, errOut strings.Builder
	if code := run(context.Background(), []string{"version"}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "mesh-sidecar ") {
		t.Errorf("version: code %d, output %q", code, out.String())
	}
	for _, args := range [][]string{nil, {"serve"}, {"init"}, {"proxy", "--delay", "x"}} {
		errOut.Reset()
		if code := run(context.Background(), args, io.Discard, &errOut); code != 2 {
			t.Errorf("%q: exit code %d, want 2 (usage); stderr %s", args, code, errOut.String())
		}
	}
}
