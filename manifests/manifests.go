// Package manifests holds the in-cluster components' manifests (a kustomize base) and renders
// them with kustomize's library, so that `kubectl mesh probe install` applies exactly the objects
// the tests install, with no kustomize binary needed.
package manifests

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/kubectl-mesh/kubectl-mesh/internal/apply"
)

//go:embed base cert-manager
var files embed.FS

// Names of the installed objects that other code looks for.
const (
	Namespace         = "kubectl-mesh-system"
	WebhookDeployment = "mesh-webhook"
	WebhookConfig     = "kubectl-mesh-probe-injector"
	TLSSecret         = "mesh-webhook-tls"
)

// Defaults for the lab; a release overrides them with its registry.
const (
	DefaultWebhookImage = "kubectl-mesh.local/mesh-webhook:lab"
	DefaultProbeImage   = "kubectl-mesh.local/mesh-probe:lab"
)

// Options adjust the rendering.
type Options struct {
	WebhookImage string // default DefaultWebhookImage
	ProbeImage   string // default DefaultProbeImage
	// CertManager selects the overlay in which cert-manager issues the webhook's certificate and
	// injects the caBundle, instead of the webhook managing its own CA.
	CertManager bool
	// ExtraWebhookArgs are appended to the webhook's command line (e.g. certificate lifetimes).
	ExtraWebhookArgs []string
}

// Render returns the objects to apply, in an order the API server accepts (namespace first).
func Render(o Options) ([]*unstructured.Unstructured, error) {
	mem := filesys.MakeFsInMemory()
	err := fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		return mem.WriteFile(path.Join("/", p), b)
	})
	if err != nil {
		return nil, err
	}
	dir := "/base"
	if o.CertManager {
		dir = "/cert-manager"
	}
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(mem, dir)
	if err != nil {
		return nil, fmt.Errorf("manifests: kustomize: %w", err)
	}
	y, err := res.AsYaml()
	if err != nil {
		return nil, err
	}
	objs, err := apply.Decode(strings.NewReader(string(y)))
	if err != nil {
		return nil, err
	}
	for _, obj := range objs {
		if obj.GetKind() == "Deployment" && obj.GetName() == WebhookDeployment {
			if err := setWebhookContainer(obj, o); err != nil {
				return nil, err
			}
		}
	}
	return objs, nil
}

func setWebhookContainer(obj *unstructured.Unstructured, o Options) error {
	containers, _, err := unstructured.NestedSlice(obj.Object, "spec", "template", "spec", "containers")
	if err != nil || len(containers) != 1 {
		return fmt.Errorf("manifests: webhook Deployment must have exactly one container")
	}
	c := containers[0].(map[string]any)
	if o.WebhookImage != "" {
		c["image"] = o.WebhookImage
	}
	var args []string
	for _, a := range c["args"].([]any) {
		s := a.(string)
		if o.ProbeImage != "" && strings.HasPrefix(s, "--probe-image=") {
			s = "--probe-image=" + o.ProbeImage
		}
		args = append(args, s)
	}
	args = append(args, o.ExtraWebhookArgs...)
	anyArgs := make([]any, len(args))
	for i, a := range args {
		anyArgs[i] = a
	}
	c["args"] = anyArgs
	return unstructured.SetNestedSlice(obj.Object, containers, "spec", "template", "spec", "containers")
}
