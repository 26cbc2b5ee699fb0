package inject

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// The probe's resources from mesh-webhook's flags: parsed, passed on unchanged, and a malformed
// quantity or a request above its (possibly default) limit is refused with the flag's name.
func TestResourceFlags(t *testing.T) {
	f := ResourceFlags{CPURequest: "100m", CPULimit: "1", MemoryLimit: "128Mi"}
	r, err := f.Resources()
	if err != nil {
		t.Fatal(err)
	}
	c := Config{Resources: r}.WithDefaults()
	for name, want := range map[string]string{
		"requests.cpu": "100m", "limits.cpu": "1", "requests.memory": DefaultMemoryRequest.String(), "limits.memory": "128Mi",
	} {
		list, res, _ := strings.Cut(name, ".")
		got := c.Resources.Requests[corev1.ResourceName(res)]
		if list == "limits" {
			got = c.Resources.Limits[corev1.ResourceName(res)]
		}
		if got.String() != want {
			t.Errorf("%s = %s, want %s", name, got.String(), want)
		}
	}
	if got := strings.Join(f.Args(), " "); got != "--probe-cpu-request=100m --probe-cpu-limit=1 --probe-memory-limit=128Mi" {
		t.Errorf("args %q", got)
	}
	if _, err := (ResourceFlags{MemoryRequest: "lots"}).Resources(); err == nil || !strings.Contains(err.Error(), "--probe-memory-request") {
		t.Errorf("malformed quantity: %v", err)
	}
	r, _ = ResourceFlags{CPURequest: "500m"}.Resources()
	if err := (Config{Resources: r}).Validate(); err == nil || !strings.Contains(err.Error(), "exceeds its limit (200m)") {
		t.Errorf("request above the default limit: %v", err)
	}
}

// A sampling threshold is validated like the probe reads it, and reaches the probe's environment
// only when set, last, so that pods injected with the default keep their configuration hash.
func TestSampleAboveRPS(t *testing.T) {
	if err := (Config{SampleAboveRPS: "-1"}).Validate(); err == nil || !strings.Contains(err.Error(), "sampleAboveRps") {
		t.Errorf("negative threshold: %v", err)
	}
	if err := (Config{SampleAboveRPS: "2500"}).Validate(); err != nil {
		t.Error(err)
	}
	mesh := MeshInfo{Name: MeshNone}
	env := probeEnv(Config{}.WithDefaults(), mesh, []int32{8080})
	for _, e := range env {
		if e.Name == EnvSampleAboveRPS {
			t.Errorf("default configuration sets %s", e.Name)
		}
	}
	env = probeEnv(Config{SampleAboveRPS: "0"}.WithDefaults(), mesh, []int32{8080})
	if last := env[len(env)-1]; last.Name != EnvSampleAboveRPS || last.Value != "0" {
		t.Errorf("last variable %+v, want %s=0", last, EnvSampleAboveRPS)
	}
	if err := validateProbeEnv(env); err != nil {
		t.Errorf("the probe refuses its environment: %v", err)
	}
}
