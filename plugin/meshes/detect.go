package meshes

import (
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Helpers the meshes' Detect share: what Helm, kubectl and the meshes' own installers leave on
// the objects they create.

// helmRelease is the Helm release that owns an object, "" when none does.
func helmRelease(m metav1.ObjectMeta) string {
	if m.Labels[LabelManagedBy] != "Helm" {
		return ""
	}
	return m.Annotations[helmReleaseName]
}

// imageTag is the tag of an image reference, without a digest; "" when it has none.
func imageTag(image string) string {
	if i := strings.Index(image, "@"); i >= 0 {
		image = image[:i]
	}
	slash := strings.LastIndex(image, "/")
	if colon := strings.LastIndex(image, ":"); colon > slash {
		return image[colon+1:]
	}
	return ""
}

// containerImage is the image of the named container, or of the first one when name is "".
func containerImage(spec corev1.PodSpec, name string) string {
	for _, c := range spec.Containers {
		if name == "" || c.Name == name {
			return c.Image
		}
	}
	return ""
}

func images(spec corev1.PodSpec) []string {
	var out []string
	for _, c := range spec.Containers {
		out = append(out, c.Image)
	}
	return out
}

// DeploymentReadiness counts the ready pods of a Deployment's current version against the wanted
// replicas. A rollout in progress is not done until the new pods are ready and the old ones
// gone (as kubectl rollout status judges it): ready pods of the old version do not count.
func DeploymentReadiness(d *appsv1.Deployment) (ready, want int32) {
	want = 1
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	ready = d.Status.ReadyReplicas
	if old := d.Status.Replicas - d.Status.UpdatedReplicas; old > 0 {
		ready = max(0, ready-old)
	}
	ready = min(ready, d.Status.UpdatedReplicas)
	if d.Status.ObservedGeneration < d.Generation {
		ready = 0
	}
	return ready, want
}

func deploymentComponent(d *appsv1.Deployment) Component {
	ready, want := DeploymentReadiness(d)
	var sel map[string]string
	if d.Spec.Selector != nil {
		sel = d.Spec.Selector.MatchLabels
	}
	return Component{Kind: "Deployment", Namespace: d.Namespace, Name: d.Name, Want: want, ReadyN: ready, Selector: sel, Images: images(d.Spec.Template.Spec)}
}

func daemonSetComponent(d *appsv1.DaemonSet) Component {
	var sel map[string]string
	if d.Spec.Selector != nil {
		sel = d.Spec.Selector.MatchLabels
	}
	return Component{Kind: "DaemonSet", Namespace: d.Namespace, Name: d.Name, Want: d.Status.DesiredNumberScheduled,
		ReadyN: d.Status.NumberReady, Selector: sel, Images: images(d.Spec.Template.Spec)}
}

// webhookNamed reports the first mutating webhook configuration whose name is one of names.
func webhookNamed(all []string, names ...string) string {
	for _, n := range names {
		for _, w := range all {
			if w == n {
				return w
			}
		}
	}
	return ""
}
