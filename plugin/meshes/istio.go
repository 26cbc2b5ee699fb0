package meshes

import (
	"context"
	"sort"
	"strings"

	"github.com/kubectl-mesh/kubectl-mesh/webhook/inject"
)

// Istio in sidecar mode, from its official charts: base (CRDs as templates, the default
// validating webhook), optionally cni, then istiod (the control plane and the injector), and
// optionally an ingress gateway (chart gateway, in its own namespace), as Istio's Helm install
// guide lays them out.
type istio struct{}

func init() { Register(istio{}) }

const istioSystem = "istio-system"

func (istio) Name() string       { return "istio" }
func (istio) Repository() string { return "https://istio-release.storage.googleapis.com/charts" }
func (istio) Namespace() string  { return istioSystem }

func (istio) NamespaceLabels(string) map[string]string { return nil }

func (istio) Charts() []Chart {
	return []Chart{
		{Name: "base", Release: "istio-base", CRDs: true},
		{Name: "cni", Release: "istio-cni", Optional: true},
		{Name: "istiod", Release: "istiod"},
		{Name: "gateway", Release: "istio-ingress", Namespace: "istio-ingress", Optional: true},
	}
}

// ChartVersion accepts 1.28.0 and v1.28.0: Istio's charts are versioned as Istio itself.
func (istio) ChartVersion(v string) string { return strings.TrimPrefix(v, "v") }

// Values point base's webhook and istiod at the install's namespace when it is not istio-system
// (the charts default to istio-system), and turn istiod's CNI mode on when the cni chart is part
// of the install.
func (istio) Values(_ context.Context, env Env, c Chart, _, _ map[string]any) (map[string]any, error) {
	vals := map[string]any{}
	if (c.Name == "base" || c.Name == "istiod" || c.Name == "cni") && env.Namespace != "" && env.Namespace != istioSystem {
		vals["global"] = map[string]any{"istioNamespace": env.Namespace}
	}
	if c.Name == "istiod" {
		for _, other := range env.Charts {
			if other.Name == "cni" {
				vals["pilot"] = map[string]any{"cni": map[string]any{"enabled": true}}
			}
		}
	}
	return vals, nil
}

func (istio) Selectors() Selectors {
	return Selectors{Deployments: "app=istiod", DaemonSets: "k8s-app=istio-cni-node", ConfigMaps: "istio.io/rev"}
}

func (istio) ProxyContainer() string { return inject.IstioProxyContainer }

func (istio) Injection() Injection {
	return Injection{Key: "istio-injection", Value: "enabled", AlsoEnabledBy: []string{"istio.io/rev"}}
}

// Detect finds istiod Deployments (label app=istiod, which Helm, istioctl and the generated
// manifests all set), one control plane per namespace and revision. The version comes from the
// standard version label of recent charts, the operator's version label of older istioctl
// installs, or the pilot image's tag.
func (istio) Detect(s *Snapshot) []ControlPlane {
	var out []ControlPlane
	for i := range s.Deployments {
		d := &s.Deployments[i]
		if d.Labels["app"] != "istiod" {
			continue
		}
		rev := d.Labels["istio.io/rev"]
		if rev == "" {
			rev = "default"
		}
		cp := ControlPlane{Mesh: "istio", Namespace: d.Namespace, Revision: rev, Components: []Component{deploymentComponent(d)}}
		cp.Version = d.Labels["app.kubernetes.io/version"]
		if cp.Version == "" {
			cp.Version = d.Labels["operator.istio.io/version"]
		}
		if cp.Version == "" {
			cp.Version = strings.TrimSuffix(imageTag(containerImage(d.Spec.Template.Spec, "discovery")), "-distroless")
		}
		switch owner := d.Labels["install.operator.istio.io/owning-resource"]; {
		case helmRelease(d.ObjectMeta) != "":
			cp.InstalledBy = "Helm (release " + helmRelease(d.ObjectMeta) + ")"
		case owner != "" && owner != "unknown":
			cp.InstalledBy = "istioctl"
		default:
			cp.InstalledBy = "unknown"
		}
		for j := range s.DaemonSets {
			if ds := &s.DaemonSets[j]; ds.Labels["k8s-app"] == "istio-cni-node" {
				cp.Components = append(cp.Components, daemonSetComponent(ds))
			}
		}
		suffix := ""
		if rev != "default" {
			suffix = "-" + rev
		}
		cp.Injector = webhookNamed(s.MutatingWebhooks, "istio-sidecar-injector"+suffix, "istio-sidecar-injector"+suffix+"-"+d.Namespace)
		if cp.Injector == "" {
			cp.Notes = append(cp.Notes, "no istio-sidecar-injector"+suffix+" webhook: new pods get no proxy")
		}
		if !hasConfigMap(s, d.Namespace, "istio"+suffix) {
			cp.Notes = append(cp.Notes, "ConfigMap "+d.Namespace+"/istio"+suffix+" (the mesh config istiod reads) is missing")
		}
		out = append(out, cp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Namespace+out[i].Revision < out[j].Namespace+out[j].Revision })
	return out
}

func hasConfigMap(s *Snapshot, ns, name string) bool {
	for _, cm := range s.ConfigMaps {
		if cm.Namespace == ns && cm.Name == name {
			return true
		}
	}
	return false
}

// ConflictHint explains Istio's cluster-wide objects that outlive an installation: istioctl
// uninstall without --purge, or a removed Helm release, leave the validating webhook (which
// istiod patches, so it is no longer Helm's) and the injector webhooks behind.
func (istio) ConflictHint(kind, name string) string {
	switch {
	case kind == "ValidatingWebhookConfiguration" && (name == "istiod-default-validator" || strings.HasPrefix(name, "istio-validator")):
		return "a leftover Istio validating webhook from an earlier installation (istioctl, or a release removed without it); with no istiod to answer it, it only gets in the way of Istio resources"
	case kind == "MutatingWebhookConfiguration" && (strings.HasPrefix(name, "istio-sidecar-injector") || strings.HasPrefix(name, "istio-revision-tag")):
		return "a leftover Istio injector webhook from an earlier installation (istioctl, or a release removed without it)"
	case strings.HasPrefix(name, "istio"):
		return "left by another Istio installation (istioctl or a Helm release under another name or namespace)"
	}
	return ""
}
