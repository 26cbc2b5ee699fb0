package inject

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// PatchOperation is one RFC 6902 JSON patch operation. Value is omitted only when nil (remove,
// move), so an empty string value is still sent.
type PatchOperation struct {
	Op    string `json:"op"`
	From  string `json:"from,omitempty"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// EncodePatch marshals ops; nil or empty ops give nil, which the admission response treats as "no
// patch".
func EncodePatch(ops []PatchOperation) ([]byte, error) {
	if len(ops) == 0 {
		return nil, nil
	}
	return json.Marshal(ops)
}

// escapePointer escapes one JSON pointer token (RFC 6901).
func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

func listPath(native bool) string {
	if native {
		return "/spec/initContainers"
	}
	return "/spec/containers"
}

// addToList inserts v at index i of a list of length n that exists in the pod; an empty or
// missing list is replaced whole ("add" on an existing member replaces it), because a pointer
// into a missing array fails.
func addToList(path string, n, i int, v any) PatchOperation {
	if n == 0 {
		return PatchOperation{Op: "add", Path: path, Value: []any{v}}
	}
	return PatchOperation{Op: "add", Path: path + "/" + strconv.Itoa(i), Value: v}
}

// setAnnotation adds or replaces one annotation, creating the map if the pod has none.
func setAnnotation(pod *corev1.Pod, key, value string) PatchOperation {
	if pod.Annotations == nil {
		return PatchOperation{Op: "add", Path: "/metadata/annotations", Value: map[string]string{key: value}}
	}
	return PatchOperation{Op: "add", Path: "/metadata/annotations/" + escapePointer(key), Value: value}
}

// injectPatch adds the probe at index idx of its list and records status.
func injectPatch(pod *corev1.Pod, c corev1.Container, native bool, idx int, st Status) []PatchOperation {
	n := len(pod.Spec.Containers)
	if native {
		n = len(pod.Spec.InitContainers)
	}
	ops := []PatchOperation{addToList(listPath(native), n, idx, c)}
	if !slices.ContainsFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == TokenShadowVolume }) {
		nv := len(pod.Spec.Volumes)
		ops = append(ops, addToList("/spec/volumes", nv, nv, tokenShadowVolume()))
	}
	return append(ops, setAnnotation(pod, AnnotationStatus, st.String()))
}

// envPatch rewrites only the probe's own variables, by name, in the existing container at path,
// leaving any variable another webhook added alone.
func envPatch(path string, have, want []corev1.EnvVar) []PatchOperation {
	if len(have) == 0 {
		return []PatchOperation{{Op: "add", Path: path + "/env", Value: want}}
	}
	var ops []PatchOperation
	for _, w := range want {
		j := -1
		for k := range have {
			if have[k].Name == w.Name {
				j = k
				break
			}
		}
		switch {
		case j < 0:
			ops = append(ops, PatchOperation{Op: "add", Path: path + "/env/-", Value: w})
		case !equality.Semantic.DeepEqual(have[j], w):
			ops = append(ops, PatchOperation{Op: "replace", Path: path + "/env/" + strconv.Itoa(j), Value: w})
		}
	}
	return ops
}
