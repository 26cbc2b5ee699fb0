package inject

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/version"
	apiversion "k8s.io/apimachinery/pkg/version"
)

// NamespaceGetter reads a namespace for its labels and annotations, which an AdmissionRequest
// does not carry. It should read from an informer cache: it is called for every pod creation.
//
// With a controller-runtime manager, the cached client fits:
//
//	inject.NamespaceGetterFunc(func(ctx context.Context, name string) (*corev1.Namespace, error) {
//		ns := &corev1.Namespace{}
//		return ns, mgr.GetClient().Get(ctx, client.ObjectKey{Name: name}, ns)
//	})
type NamespaceGetter interface {
	GetNamespace(ctx context.Context, name string) (*corev1.Namespace, error)
}

// NamespaceGetterFunc adapts a function to NamespaceGetter.
type NamespaceGetterFunc func(ctx context.Context, name string) (*corev1.Namespace, error)

// GetNamespace calls f.
func (f NamespaceGetterFunc) GetNamespace(ctx context.Context, name string) (*corev1.Namespace, error) {
	return f(ctx, name)
}

// nativeSidecarsSince is the first Kubernetes release whose API server accepts native sidecars by
// default (SidecarContainers beta, on by default, in 1.29; GA in 1.33). Older servers silently
// drop restartPolicy from init containers, which would turn the probe into an init container
// that never exits and blocks the pod.
var nativeSidecarsSince = version.MajorMinor(1, 29)

// NativeSidecarsSupported reports whether an API server of this version runs native sidecars, for
// Options.NativeSidecars (from a discovery client's ServerVersion). Unparseable versions report
// false: a regular container works everywhere.
func NativeSidecarsSupported(info *apiversion.Info) bool {
	if info == nil {
		return false
	}
	v, err := version.ParseGeneric(info.GitVersion)
	if err != nil {
		if v, err = version.ParseGeneric(info.Major + "." + trimPlus(info.Minor)); err != nil {
			return false
		}
	}
	return v.AtLeast(nativeSidecarsSince)
}

// trimPlus drops the "+" some distributions append to the minor version ("29+").
func trimPlus(s string) string {
	for len(s) > 0 && (s[len(s)-1] < '0' || s[len(s)-1] > '9') {
		s = s[:len(s)-1]
	}
	return s
}
