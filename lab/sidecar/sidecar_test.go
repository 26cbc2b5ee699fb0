package sidecar

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubectl-mesh/kubectl-mesh/lab"
	"github.com/kubectl-mesh/kubectl-mesh/webhook/inject"
)

// echoPod is the lab's echo workload's pod, the sidecar's usual host.
func echoPod() *corev1.Pod {
	d, _ := lab.EchoWorkload("demo", "echo", 1)
	return &corev1.Pod{ObjectMeta: d.Spec.Template.ObjectMeta, Spec: d.Spec.Template.Spec}
}

func find(list []corev1.Container, name string) *corev1.Container {
	for i := range list {
		if list[i].Name == name {
			return &list[i]
		}
	}
	return nil
}

func TestAddIstioShape(t *testing.T) {
	pod := echoPod()
	pod.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "x"}}
	err := Add(&pod.ObjectMeta, &pod.Spec, Options{AppPort: 8080, Delay: time.Millisecond, CPUPerRequest: 200 * time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	// The init container runs first: the redirect is in place before anything else starts.
	if len(pod.Spec.InitContainers) != 2 || pod.Spec.InitContainers[0].Name != InitContainerName {
		t.Fatalf("init containers %v", names(pod.Spec.InitContainers))
	}
	initc := pod.Spec.InitContainers[0]
	if want := []string{"init", "--app-port", "8080", "--proxy-port", "15006"}; !slices.Equal(initc.Args, want) {
		t.Errorf("init args %q", initc.Args)
	}
	sc := initc.SecurityContext
	if *sc.RunAsUser != 0 || *sc.AllowPrivilegeEscalation || *sc.Privileged ||
		!slices.Equal(sc.Capabilities.Add, []corev1.Capability{"NET_ADMIN"}) || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("init security context %+v", sc)
	}
	if initc.Image != lab.ImageRef("mesh-sidecar") {
		t.Errorf("init image %s", initc.Image)
	}

	proxy := find(pod.Spec.Containers, ProxyContainerName)
	if proxy == nil || pod.Spec.Containers[len(pod.Spec.Containers)-1].Name != ProxyContainerName {
		t.Fatalf("containers %v", names(pod.Spec.Containers))
	}
	want := "proxy --listen :15006 --upstream 127.0.0.1:8080 --delay 1ms --response-delay 0s --cpu-per-request 200µs --admin :15000"
	if got := strings.Join(proxy.Args, " "); got != want {
		t.Errorf("proxy args\n got %s\nwant %s", got, want)
	}
	psc := proxy.SecurityContext
	if *psc.RunAsUser != ProxyUID || !*psc.RunAsNonRoot || *psc.AllowPrivilegeEscalation || len(psc.Capabilities.Add) != 0 ||
		!*psc.ReadOnlyRootFilesystem {
		t.Errorf("proxy security context %+v", psc)
	}
	if _, ok := proxy.Resources.Limits[corev1.ResourceCPU]; ok {
		t.Error("proxy has a CPU limit: throttling would distort what is measured")
	}
	if proxy.ReadinessProbe.HTTPGet.Path != "/healthz" || proxy.ReadinessProbe.HTTPGet.Port.StrVal != adminPortName {
		t.Errorf("readiness %+v", proxy.ReadinessProbe.HTTPGet)
	}

	for k, v := range map[string]string{inject.AnnotationProxyContainer: "mesh-sidecar",
		inject.AnnotationProxyInboundPort: "15006", inject.AnnotationProxyInboundPorts: "8080"} {
		if pod.Annotations[k] != v {
			t.Errorf("annotation %s=%q, want %q", k, pod.Annotations[k], v)
		}
	}

	if err := Add(&pod.ObjectMeta, &pod.Spec, Options{AppPort: 8080}); err == nil || !strings.Contains(err.Error(), "already has") {
		t.Errorf("adding twice: %v", err)
	}
}

// TestWebhookSeesCustomMesh runs the probe's webhook on a pod with the sidecar: it must find the
// proxy by the annotations, give the probe mesh "custom" with the proxy's container and port,
// and measure the application's port only, not the sidecar's own.
func TestWebhookSeesCustomMesh(t *testing.T) {
	for _, native := range []bool{false, true} {
		pod := echoPod()
		pod.Namespace = "demo"
		if err := Add(&pod.ObjectMeta, &pod.Spec, Options{AppPort: 8080, Native: native}); err != nil {
			t.Fatal(err)
		}
		if native {
			if p := find(pod.Spec.InitContainers, ProxyContainerName); p == nil || pod.Spec.InitContainers[1].Name != ProxyContainerName ||
				p.RestartPolicy == nil || *p.RestartPolicy != corev1.ContainerRestartPolicyAlways {
				t.Fatalf("native: init containers %v", names(pod.Spec.InitContainers))
			}
		}
		mesh, warnings := inject.DetectMesh(pod, nil, nil)
		if mesh.Name != inject.MeshCustom || mesh.State != inject.MeshPresent || mesh.ProxyContainer != ProxyContainerName ||
			mesh.InboundPort != ProxyPort || mesh.NativeProxy != native || len(warnings) > 0 {
			t.Fatalf("native=%t: detected %+v, warnings %q", native, mesh, warnings)
		}
		d := inject.Decide(inject.Input{Pod: pod, Namespace: "demo", NamespaceLabels: map[string]string{inject.LabelProbe: inject.ValueEnabled},
			NativeSidecars: true})
		if d.Reason != inject.ReasonInjected {
			t.Fatalf("native=%t: %s: %s", native, d.Reason, d.Message)
		}
		env := probeEnv(t, d)
		for k, v := range map[string]string{inject.EnvMesh: "custom", inject.EnvProxyContainer: ProxyContainerName,
			inject.EnvProxyInboundPort: "15006", inject.EnvProxyOutboundPort: "", inject.EnvAppPorts: "8080"} {
			if env[k] != v {
				t.Errorf("native=%t: probe env %s=%q, want %q", native, k, env[k], v)
			}
		}
	}
}

// probeEnv digs the probe container's environment out of the injection patch.
func probeEnv(t *testing.T, d inject.Decision) map[string]string {
	t.Helper()
	for _, op := range d.Patch {
		c, ok := op.Value.(corev1.Container)
		if !ok || c.Name != inject.ProbeContainerName {
			continue
		}
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
		return env
	}
	t.Fatalf("no probe container in the patch %+v", d.Patch)
	return nil
}

func TestAddCaddy(t *testing.T) {
	pod := echoPod()
	if err := Add(&pod.ObjectMeta, &pod.Spec, Options{AppPort: 8080, Proxy: ProxyCaddy}); err != nil {
		t.Fatal(err)
	}
	proxy := find(pod.Spec.Containers, ProxyContainerName)
	if proxy.Image != lab.ImageRef("mesh-caddy") || pod.Spec.InitContainers[0].Image != lab.ImageRef("mesh-sidecar") {
		t.Errorf("images: proxy %s, init %s", proxy.Image, pod.Spec.InitContainers[0].Image)
	}
	if got := strings.Join(proxy.Args, " "); got != "reverse-proxy --from http://:15006 --to 127.0.0.1:8080" {
		t.Errorf("caddy args %s", got)
	}
	if len(proxy.VolumeMounts) != 1 || len(pod.Spec.Volumes) != 1 || pod.Spec.Volumes[0].EmptyDir == nil || len(proxy.Ports) != 1 {
		t.Errorf("caddy scratch volume or ports: %+v %+v %+v", proxy.VolumeMounts, pod.Spec.Volumes, proxy.Ports)
	}
}

func TestAddRejects(t *testing.T) {
	for want, o := range map[string]Options{
		"not a port":             {},
		"sidecar's own":          {AppPort: 15000},
		"cannot add a delay":     {AppPort: 8080, Proxy: ProxyCaddy, Delay: time.Millisecond},
		"unknown proxy":          {AppPort: 8080, Proxy: "envoy"},
		"negative delay or CPU":  {AppPort: 8080, CPUPerRequest: -time.Microsecond},
		"is not a port (1-65535": {AppPort: 70000},
	} {
		pod := echoPod()
		err := Add(&pod.ObjectMeta, &pod.Spec, o)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: error %v, want one containing %q", o, err, want)
		}
		if len(pod.Spec.InitContainers) != 0 || len(pod.Annotations) != 0 {
			t.Errorf("%+v: a rejected Add changed the pod", o)
		}
	}
	if got := StatsURL("10.244.0.7"); got != "http://10.244.0.7:15000/stats" {
		t.Errorf("StatsURL %s", got)
	}
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}
