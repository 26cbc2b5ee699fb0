package config

import (
	"flag"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestDefaultsPerMesh(t *testing.T) {
	cases := []struct {
		env  map[string]string
		want Config
	}{
		{map[string]string{"MESH_PROBE_MESH": "istio", "MESH_PROBE_APP_PORTS": "8080, 9090,8080,15090"},
			Config{Mesh: MeshIstio, ProxyContainer: "istio-proxy", ProxyInboundPort: 15006, ProxyOutboundPort: 15001,
				AppPorts: []uint16{8080, 9090}, ProxySources: []netip.Addr{netip.MustParseAddr("127.0.0.6")},
				LogLevel: slog.LevelInfo, Listen: ":9464", SampleAboveRPS: DefaultSampleAboveRPS, Follow: FollowProcess,
				Warnings: []string{"port 15090 belongs to the istio proxy: not an application port"}}},
		{map[string]string{"MESH_PROBE_MESH": "Linkerd", "MESH_PROBE_APP_PORTS": "80", "MESH_PROBE_LOG_LEVEL": "debug"},
			Config{Mesh: MeshLinkerd, ProxyContainer: "linkerd-proxy", ProxyInboundPort: 4143, ProxyOutboundPort: 4140,
				AppPorts: []uint16{80}, LogLevel: slog.LevelDebug, Listen: ":9464", SampleAboveRPS: DefaultSampleAboveRPS, Follow: FollowProcess}},
		// A custom sidecar: no defaults, no outbound port, its own port is not the app's.
		{map[string]string{"MESH_PROBE_MESH": "custom", "MESH_PROBE_PROXY_CONTAINER": "mesh-sidecar",
			"MESH_PROBE_PROXY_INBOUND_PORT": "15006", "MESH_PROBE_APP_PORTS": "8080,15006"},
			Config{Mesh: MeshCustom, ProxyContainer: "mesh-sidecar", ProxyInboundPort: 15006,
				AppPorts: []uint16{8080}, LogLevel: slog.LevelInfo, Listen: ":9464", SampleAboveRPS: DefaultSampleAboveRPS, Follow: FollowProcess,
				Warnings: []string{"port 15006 belongs to the custom proxy: not an application port"}}},
		{map[string]string{"MESH_PROBE_APP_PORTS": "80,81", "MESH_PROBE_EXCLUDED_INBOUND_PORTS": "81"},
			Config{Mesh: MeshNone, AppPorts: []uint16{80}, ExcludedInboundPorts: []uint16{81}, LogLevel: slog.LevelInfo,
				Listen: ":9464", SampleAboveRPS: DefaultSampleAboveRPS, Follow: FollowProcess, Warnings: []string{"port 81 is excluded from the proxy: not measured"}}},
		{map[string]string{"MESH_PROBE_MESH": "istio", "MESH_PROBE_APP_PORTS": "80", "MESH_PROBE_PROXY_INBOUND_PORT": "16006",
			"MESH_PROBE_PROXY_CONTAINER": "my-proxy", "MESH_PROBE_LISTEN": "127.0.0.1:9000"},
			Config{Mesh: MeshIstio, ProxyContainer: "my-proxy", ProxyInboundPort: 16006, ProxyOutboundPort: 15001,
				AppPorts: []uint16{80}, ProxySources: []netip.Addr{netip.MustParseAddr("127.0.0.6")},
				LogLevel: slog.LevelInfo, Listen: "127.0.0.1:9000", SampleAboveRPS: DefaultSampleAboveRPS, Follow: FollowProcess}},
	}
	for _, c := range cases {
		got, err := Load(nil, nil, env(c.env))
		if err != nil {
			t.Errorf("%v: %v", c.env, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%v:\n got %+v\nwant %+v", c.env, got, c.want)
		}
	}
}

func TestFlagsOverrideEnv(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	extra := fs.Bool("version", false, "")
	got, err := Load(fs, []string{"--mesh=linkerd", "--app-ports=7000", "--version"},
		env(map[string]string{"MESH_PROBE_MESH": "istio", "MESH_PROBE_APP_PORTS": "8080", "MESH_PROBE_LOG_LEVEL": "warn"}))
	if err != nil {
		t.Fatal(err)
	}
	if got.Mesh != MeshLinkerd || !reflect.DeepEqual(got.AppPorts, []uint16{7000}) || got.LogLevel != slog.LevelWarn || !*extra {
		t.Errorf("got %+v", got)
	}
	if got.SampleAboveRPS != DefaultSampleAboveRPS {
		t.Errorf("sampling threshold %v, want the default %v", got.SampleAboveRPS, DefaultSampleAboveRPS)
	}
	got, err = Load(nil, nil, env(map[string]string{"MESH_PROBE_APP_PORTS": "80", "MESH_PROBE_SAMPLE_ABOVE_RPS": "0"}))
	if err != nil || got.SampleAboveRPS != 0 {
		t.Errorf("MESH_PROBE_SAMPLE_ABOVE_RPS=0: %v, %v", got.SampleAboveRPS, err)
	}
	got, err = Load(nil, []string{"--follow", "kernel"}, env(map[string]string{"MESH_PROBE_APP_PORTS": "80", "MESH_PROBE_FOLLOW": "process"}))
	if err != nil || got.Follow != FollowKernel {
		t.Errorf("--follow kernel over MESH_PROBE_FOLLOW=process: %q, %v", got.Follow, err)
	}
}

func TestErrorsNameTheVariable(t *testing.T) {
	cases := map[string]struct {
		env  map[string]string
		want []string
	}{
		"bad mesh": {map[string]string{"MESH_PROBE_MESH": "consul", "MESH_PROBE_APP_PORTS": "80"}, []string{"MESH_PROBE_MESH", "none, istio, linkerd or custom"}},
		"custom without container": {map[string]string{"MESH_PROBE_MESH": "custom", "MESH_PROBE_APP_PORTS": "80",
			"MESH_PROBE_PROXY_INBOUND_PORT": "15006"}, []string{"MESH_PROBE_PROXY_CONTAINER is required with MESH_PROBE_MESH=custom"}},
		"custom without inbound port": {map[string]string{"MESH_PROBE_MESH": "custom", "MESH_PROBE_APP_PORTS": "80",
			"MESH_PROBE_PROXY_CONTAINER": "mesh-sidecar"}, []string{"MESH_PROBE_PROXY_INBOUND_PORT is required with MESH_PROBE_MESH=custom"}},
		"no ports":        {map[string]string{"MESH_PROBE_MESH": "istio"}, []string{"MESH_PROBE_APP_PORTS is empty"}},
		"port zero":       {map[string]string{"MESH_PROBE_APP_PORTS": "0"}, []string{"MESH_PROBE_APP_PORTS", "1-65535"}},
		"port too big":    {map[string]string{"MESH_PROBE_APP_PORTS": "80,70000"}, []string{"\"70000\" is not a port"}},
		"empty element":   {map[string]string{"MESH_PROBE_APP_PORTS": "80,,81"}, []string{"MESH_PROBE_APP_PORTS"}},
		"only proxy port": {map[string]string{"MESH_PROBE_MESH": "istio", "MESH_PROBE_APP_PORTS": "15006"}, []string{"leaves no port"}},
		"same proxy ports": {map[string]string{"MESH_PROBE_MESH": "istio", "MESH_PROBE_APP_PORTS": "80",
			"MESH_PROBE_PROXY_INBOUND_PORT": "15001"}, []string{"both 15001"}},
		"proxy without mesh": {map[string]string{"MESH_PROBE_APP_PORTS": "80", "MESH_PROBE_PROXY_INBOUND_PORT": "15006"}, []string{"MESH_PROBE_MESH=none"}},
		"log level":          {map[string]string{"MESH_PROBE_APP_PORTS": "80", "MESH_PROBE_LOG_LEVEL": "loud"}, []string{"MESH_PROBE_LOG_LEVEL"}},
		"listen":             {map[string]string{"MESH_PROBE_APP_PORTS": "80", "MESH_PROBE_LISTEN": "9464"}, []string{"MESH_PROBE_LISTEN"}},
		"listen clash":       {map[string]string{"MESH_PROBE_APP_PORTS": "9464"}, []string{"listen port"}},
		"container":          {map[string]string{"MESH_PROBE_APP_PORTS": "80", "MESH_PROBE_PROXY_CONTAINER": "Istio_Proxy"}, []string{"MESH_PROBE_PROXY_CONTAINER"}},
		"follow where":       {map[string]string{"MESH_PROBE_APP_PORTS": "80", "MESH_PROBE_FOLLOW": "userspace"}, []string{"MESH_PROBE_FOLLOW", "process or kernel"}},
		"sampling negative":  {map[string]string{"MESH_PROBE_APP_PORTS": "80", "MESH_PROBE_SAMPLE_ABOVE_RPS": "-1"}, []string{"MESH_PROBE_SAMPLE_ABOVE_RPS", "0 or more"}},
		"sampling word":      {map[string]string{"MESH_PROBE_APP_PORTS": "80", "MESH_PROBE_SAMPLE_ABOVE_RPS": "lots"}, []string{"MESH_PROBE_SAMPLE_ABOVE_RPS"}},
		"sampling infinite":  {map[string]string{"MESH_PROBE_APP_PORTS": "80", "MESH_PROBE_SAMPLE_ABOVE_RPS": "+Inf"}, []string{"MESH_PROBE_SAMPLE_ABOVE_RPS"}},
		"two at once": {map[string]string{"MESH_PROBE_MESH": "x", "MESH_PROBE_APP_PORTS": "a"},
			[]string{"MESH_PROBE_MESH", "MESH_PROBE_APP_PORTS"}},
	}
	for name, c := range cases {
		_, err := Load(nil, nil, env(c.env))
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not mention %q", name, err, w)
			}
		}
	}
	if _, err := Load(nil, []string{"stray"}, env(map[string]string{"MESH_PROBE_APP_PORTS": "80"})); err == nil {
		t.Error("stray argument accepted")
	}
}

// The environment is written by the webhook from pod specs users control:
// never panic, and whatever is accepted satisfies the invariants.
func FuzzLoadEnv(f *testing.F) {
	f.Add("istio", "8080,9090", "", "", "", "info", "", "")
	f.Add("linkerd", "80", "4143", "4140", "81", "debug", ":9000", "0")
	f.Add("none", "", "", "", "", "", "", "2500.5")
	f.Add("x", "1,2,,3", "0", "99999", "a", "?", "[::1]:1", "NaN")
	f.Fuzz(func(t *testing.T, mesh, ports, in, out, excluded, level, listen, sample string) {
		c, err := Load(nil, nil, env(map[string]string{
			"MESH_PROBE_MESH": mesh, "MESH_PROBE_APP_PORTS": ports, "MESH_PROBE_PROXY_INBOUND_PORT": in,
			"MESH_PROBE_PROXY_OUTBOUND_PORT": out, "MESH_PROBE_EXCLUDED_INBOUND_PORTS": excluded,
			"MESH_PROBE_LOG_LEVEL": level, "MESH_PROBE_LISTEN": listen, "MESH_PROBE_SAMPLE_ABOVE_RPS": sample,
		}))
		if err != nil {
			if len(err.Error()) > 2000 {
				t.Fatalf("error of %d bytes", len(err.Error()))
			}
			return
		}
		if len(c.AppPorts) == 0 || c.Listen == "" {
			t.Fatalf("accepted without ports or listen address: %+v", c)
		}
		for _, p := range c.AppPorts {
			if p == 0 || p == c.ProxyInboundPort || p == c.ProxyOutboundPort {
				t.Fatalf("bad app port %d in %+v", p, c)
			}
		}
		if (c.Mesh == MeshNone) != (c.ProxyInboundPort == 0) {
			t.Fatalf("mesh %s with inbound port %d", c.Mesh, c.ProxyInboundPort)
		}
		if !(c.SampleAboveRPS >= 0) || math.IsInf(c.SampleAboveRPS, 0) {
			t.Fatalf("accepted sampling threshold %v", c.SampleAboveRPS)
		}
	})
}
