package manifests

import (
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

func TestRenderBase(t *testing.T) {
	objs, err := Render(Options{ProbeImage: "example.com/probe:v1", ExtraWebhookArgs: []string{"--cert-validity=90s"}})
	if err != nil {
		t.Fatal(err)
	}
	if objs[0].GetKind() != "Namespace" || objs[0].GetName() != Namespace {
		t.Fatalf("first object must be the namespace, got %s %s", objs[0].GetKind(), objs[0].GetName())
	}
	for _, want := range [][2]string{{"ServiceAccount", "mesh-webhook"}, {"ClusterRole", "kubectl-mesh-webhook"}, {"Role", "mesh-webhook"},
		{"Deployment", WebhookDeployment}, {"Service", "mesh-webhook"}, {"PodDisruptionBudget", "mesh-webhook"}, {"MutatingWebhookConfiguration", WebhookConfig}} {
		o := find(objs, want[0], want[1])
		if o == nil {
			t.Fatalf("missing %s %s", want[0], want[1])
		}
		if o.GetLabels()["app.kubernetes.io/part-of"] != "kubectl-mesh" {
			t.Errorf("%s %s lacks the part-of label", want[0], want[1])
		}
	}
	d := find(objs, "Deployment", WebhookDeployment)
	cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	c := cs[0].(map[string]any)
	if c["image"] != DefaultWebhookImage {
		t.Errorf("webhook image %v", c["image"])
	}
	args := []string{}
	for _, a := range c["args"].([]any) {
		args = append(args, a.(string))
	}
	joined := strings.Join(args, " ")
	if !strings.Contains(joined, "--probe-image=example.com/probe:v1") || !strings.Contains(joined, "--cert-validity=90s") {
		t.Errorf("webhook args %v", args)
	}
	mwc := find(objs, "MutatingWebhookConfiguration", WebhookConfig)
	hooks, _, _ := unstructured.NestedSlice(mwc.Object, "webhooks")
	if len(hooks) != 2 {
		t.Fatalf("want 2 webhook entries, got %d", len(hooks))
	}
	for _, h := range hooks {
		m := h.(map[string]any)
		if m["failurePolicy"] != "Ignore" || m["sideEffects"] != "None" || fmt.Sprint(m["timeoutSeconds"]) != "5" {
			t.Errorf("webhook %v: unsafe settings %v %v %v", m["name"], m["failurePolicy"], m["sideEffects"], m["timeoutSeconds"])
		}
	}
}

func TestRenderCertManager(t *testing.T) {
	objs, err := Render(Options{CertManager: true})
	if err != nil {
		t.Fatal(err)
	}
	if find(objs, "Certificate", "mesh-webhook") == nil || find(objs, "Issuer", "mesh-webhook-selfsigned") == nil {
		t.Fatal("cert-manager overlay lacks its Certificate or Issuer")
	}
	mwc := find(objs, "MutatingWebhookConfiguration", WebhookConfig)
	if mwc.GetAnnotations()["cert-manager.io/inject-ca-from"] != "kubectl-mesh-system/mesh-webhook" {
		t.Fatal("caBundle injection annotation missing")
	}
	d := find(objs, "Deployment", WebhookDeployment)
	cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	if !strings.Contains(strings.Join(toStrings(cs[0].(map[string]any)["args"].([]any)), " "), "--cert-mode=cert-manager") {
		t.Fatal("webhook not switched to cert-manager mode")
	}
}

func toStrings(a []any) []string {
	out := make([]string, len(a))
	for i, x := range a {
		out[i] = x.(string)
	}
	return out
}
