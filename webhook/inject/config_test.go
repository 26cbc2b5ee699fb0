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
