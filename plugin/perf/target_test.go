package perf

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/kubectl-mesh/kubectl-mesh/loadgen"
)

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		in, service, port, path, url, err string
	}{
		{in: "svc/echo:8080", service: "echo", port: "8080", path: "/"},
		{in: "service/echo:http/api/v1?x", service: "echo", port: "http", path: "/api/v1?x"},
		{in: "http://echo.demo.svc:8080/x", url: "http://echo.demo.svc:8080/x"},
		{in: "grpc://echo:9090", url: "grpc://echo:9090"},
		{in: "", err: "no target"},
		{in: "svc/echo", err: "no port"},
		{in: "svc/echo:", err: "no port"},
		{in: "svc/Echo:80", err: "not a Service name"},
		{in: "svc/echo:0", err: "outside 1-65535"},
		{in: "svc/echo:99999", err: "outside 1-65535"},
		{in: "svc/echo:-http", err: "neither a port number nor a port name"},
		{in: "echo:8080", err: "scheme"},
		{in: "ftp://echo/", err: "not supported"},
		{in: "http:///x", err: "no host"},
		{in: "echo", err: "neither svc/NAME:PORT[/path] nor a URL"},
	} {
		got, err := ParseTarget(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseTarget(%q) error = %v, want one containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseTarget(%q): %v", tc.in, err)
			continue
		}
		gotURL := ""
		if got.URL != nil {
			gotURL = got.URL.String()
		}
		if got.Service != tc.service || got.Port != tc.port || (tc.path != "" && got.Path != tc.path) || gotURL != tc.url {
			t.Errorf("ParseTarget(%q) = %+v (url %q)", tc.in, got, gotURL)
		}
	}
}

func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"svc/echo:8080/x", "http://a.b.svc:1/", "grpc://x:1", "service/a:http", "svc/:", "%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := ParseTarget(s)
		if err != nil {
			return
		}
		if (tg.Service == "") == (tg.URL == nil) {
			t.Fatalf("ParseTarget(%q) = %+v: exactly one of Service and URL must be set", s, tg)
		}
	})
}

// cluster is a namespace with a Service "echo" whose slice lists one ready and one unready pod.
func cluster() *fake.Clientset {
	pod := func(name string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "demo"}}
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "demo"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}},
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "echo-x", Namespace: "demo", Labels: map[string]string{discoveryv1.LabelServiceName: "echo"}},
		Endpoints: []discoveryv1.Endpoint{
			{Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "echo-1"}},
			{Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "echo-2"}},
		},
	}
	empty := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "idle", Namespace: "demo"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
	}
	return fake.NewClientset(pod("echo-1"), pod("echo-2"), svc, slice, empty)
}

func TestResolve(t *testing.T) {
	ctx := context.Background()
	cs := cluster()
	for _, tc := range []struct {
		target, url, err, note string
		pods                   int
		protocol               loadgen.Protocol
	}{
		{target: "svc/echo:http/x", url: "http://echo.demo.svc:8080/x", pods: 1},
		{target: "svc/echo:8080", protocol: loadgen.GRPC, url: "grpc://echo.demo.svc:8080", pods: 1},
		{target: "http://echo:8080/y", url: "http://echo:8080/y", pods: 1},
		{target: "http://echo.demo.svc.cluster.local:8080/", url: "http://echo.demo.svc.cluster.local:8080/", pods: 1},
		{target: "http://10.0.0.1:8080/", url: "http://10.0.0.1:8080/", note: "only the client's view"},
		{target: "http://nothere:8080/", url: "http://nothere:8080/", note: "no Service demo/nothere"},
		{target: "svc/echo:9090", err: "has no port 9090; its ports: 8080 (http)"},
		{target: "svc/nothere:80", err: "service nothere not found in namespace demo"},
		{target: "svc/idle:80", err: "has no ready endpoints"},
	} {
		tg, err := ParseTarget(tc.target)
		if err != nil {
			t.Fatal(err)
		}
		proto := tc.protocol
		if proto == "" {
			proto = loadgen.HTTP
		}
		r, err := Resolve(ctx, cs, tg, "demo", proto)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error = %v, want %q", tc.target, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.target, err)
			continue
		}
		if r.URL != tc.url || len(r.Pods) != tc.pods || !strings.Contains(r.Note, tc.note) {
			t.Errorf("%s: got url %q, %d pods, note %q", tc.target, r.URL, len(r.Pods), r.Note)
		}
	}
}
