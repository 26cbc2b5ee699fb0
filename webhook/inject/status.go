package inject

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
)

// Status is the value of the kubectl-mesh.io/probe-status annotation: what was injected. It makes
// injection idempotent and tells `kubectl mesh` what it is talking to without reading the spec.
type Status struct {
	// Container is the probe's container name (always ProbeContainerName).
	Container string `json:"container"`
	// Image is the probe image that was injected.
	Image string `json:"image"`
	// Version is the probe version (Config.Version).
	Version string `json:"version"`
	// Native is true when the probe is a native sidecar (init container, restartPolicy Always).
	Native bool `json:"native"`
	// Mesh and MeshState are the mesh the probe was configured for.
	Mesh      MeshName  `json:"mesh"`
	MeshState MeshState `json:"meshState"`
	// ConfigHash identifies the probe's configuration (its environment). On reinvocation the
	// configuration is recomputed from the pod; an equal hash means there is nothing to change.
	// Comparing a hash rather than the container keeps us blind to fields other webhooks or the
	// API server's defaulting changed in our container, so we never undo them.
	ConfigHash string `json:"configHash"`
}

// ParseStatus decodes the status annotation. A value that is not a status we wrote is an error,
// and the container it describes is then not ours to change.
func ParseStatus(s string) (Status, error) {
	var st Status
	if err := json.Unmarshal([]byte(s), &st); err != nil {
		return Status{}, fmt.Errorf("%s is not valid JSON: %w", AnnotationStatus, err)
	}
	if st.Container != ProbeContainerName {
		return Status{}, fmt.Errorf("%s names container %q, not %q", AnnotationStatus, st.Container, ProbeContainerName)
	}
	if st.ConfigHash == "" {
		return Status{}, errors.New(AnnotationStatus + " has no configHash")
	}
	return st, nil
}

func (s Status) String() string {
	b, err := json.Marshal(s)
	if err != nil { // a struct of strings and a bool always marshals
		panic(err)
	}
	return string(b)
}

// configHash hashes the probe's environment, which is all of its pod-derived configuration.
func configHash(env []corev1.EnvVar) string {
	h := sha256.New()
	for _, e := range env {
		h.Write([]byte(e.Name))
		h.Write([]byte{0})
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			h.Write([]byte("fieldRef:" + e.ValueFrom.FieldRef.FieldPath))
		} else {
			h.Write([]byte(e.Value))
		}
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}
