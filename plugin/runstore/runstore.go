// Package runstore keeps performance runs in the cluster, so that `kubectl mesh perf list|get|
// compare` work from any machine with access to it.
//
// A run is one ConfigMap, named RecordPrefix+NAME, in the namespace of the workload it loaded.
// A ConfigMap rather than a CRD: storing a run then needs no cluster-wide install and no
// cluster-admin (anyone allowed to run load in a namespace may write ConfigMaps there), it is
// deleted with the namespace, and a run's documents (a few tens of KiB) are far below the 1 MiB
// object limit. The record (run.json) holds what list needs; the SMPS and overhead documents are
// further keys, read only by get.
package runstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// Identity of the stored objects.
const (
	APIVersion = "kubectl-mesh.io/v1alpha1"
	KindRun    = "PerfRun"
	// RecordPrefix starts every run's ConfigMap name.
	RecordPrefix = "mesh-perf-"
	// LabelRun carries the run's name on its ConfigMap and on its load generator Job.
	LabelRun = "kubectl-mesh.io/perf-run"
	// LabelManagedBy marks what kubectl-mesh created.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "kubectl-mesh"
	// KeyRecord is the ConfigMap key of the Record.
	KeyRecord = "run.json"
	// MaxNameLength keeps RecordPrefix+name, and the Job's pod names, within 63 characters.
	MaxNameLength = 40
)

// Status of a run.
type Status string

// Statuses.
const (
	// Running: the plugin is running it (or was, see Abandoned).
	Running Status = "Running"
	// Succeeded: the load ran its whole duration and the results were collected.
	Succeeded Status = "Succeeded"
	// Partial: stopped early (Ctrl-C, or the generator was stopped); the figures cover the part that ran.
	Partial Status = "Partial"
	// Failed: no result; Message says why.
	Failed Status = "Failed"
	// Abandoned is never stored: list reports it for a Running record whose load generator Job
	// is gone or finished, that is, whose plugin process died before writing the result.
	Abandoned Status = "Abandoned"
)

// Record describes one run.
type Record struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	Namespace  string `json:"namespace"`
	Status     Status `json:"status"`
	// Message explains a Failed or Partial status, or what the figures leave out.
	Message string `json:"message,omitempty"`
	// Target is the target as given; URL what the load generator loaded.
	Target string `json:"target"`
	URL    string `json:"url"`
	// Service is the Service behind the target, when there is one.
	Service string `json:"service,omitempty"`
	// Pods are the target pods whose probes were read.
	Pods   []string          `json:"pods,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	Spec   Spec              `json:"spec"`
	// Job is the load generator Job of the run.
	Job     string    `json:"job,omitempty"`
	Created time.Time `json:"created"`
	// Start and End bound the measured phase, once known.
	Start *time.Time `json:"start,omitempty"`
	End   *time.Time `json:"end,omitempty"`
	// Summary is the headline figures, for list and compare; nil until measured.
	Summary *Summary `json:"summary,omitempty"`
}

// Spec is the requested load.
type Spec struct {
	QPS         float64 `json:"qps"`
	Connections int     `json:"connections"`
	Duration    string  `json:"duration"`
	Warmup      string  `json:"warmup,omitempty"`
	Protocol    string  `json:"protocol"`
	PayloadSize int     `json:"payloadSize,omitempty"`
	// Baseline is the baseline target, when one was run.
	Baseline string `json:"baseline,omitempty"`
}

// Summary holds the headline figures of a run. Latencies are milliseconds.
type Summary struct {
	Requests  int64   `json:"requests"`
	Errors    int64   `json:"errors"`
	ActualQPS float64 `json:"actualQps"`
	ClientP50 float64 `json:"clientP50Ms"`
	ClientP90 float64 `json:"clientP90Ms"`
	ClientP99 float64 `json:"clientP99Ms"`
	// ProxyAdded* are the probes' proxy-added latency over all target pods; nil when no probe
	// measured a proxy.
	ProxyAddedP50 *float64 `json:"proxyAddedP50Ms,omitempty"`
	ProxyAddedP90 *float64 `json:"proxyAddedP90Ms,omitempty"`
	ProxyAddedP99 *float64 `json:"proxyAddedP99Ms,omitempty"`
	// ProxyCPUMillicores is summed over the target pods' proxies.
	ProxyCPUMillicores *float64 `json:"proxyCpuMillicores,omitempty"`
	// Baseline* are the client's view of the baseline run, when there was one.
	BaselineP50 *float64 `json:"baselineP50Ms,omitempty"`
	BaselineP90 *float64 `json:"baselineP90Ms,omitempty"`
	BaselineP99 *float64 `json:"baselineP99Ms,omitempty"`
	// Probed counts the target pods whose probe answered; Pods all target pods.
	Probed int `json:"probed"`
	Pods   int `json:"pods"`
}

// ValidateName checks a run name: a DNS label short enough for the objects named after it.
func ValidateName(name string) error {
	if name == "" {
		return errors.New("run name is empty")
	}
	if len(name) > MaxNameLength {
		return fmt.Errorf("run name %q is longer than %d characters", name, MaxNameLength)
	}
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		return fmt.Errorf("run name %q: %s", name, errs[0])
	}
	return nil
}

// ErrNotFound is returned (wrapped) when a run does not exist.
var ErrNotFound = errors.New("run not found")

// Store reads and writes runs.
type Store struct {
	Client kubernetes.Interface
}

// Create stores a new run; it fails if one of the same name exists in the namespace.
func (s Store) Create(ctx context.Context, r *Record) error {
	cm, err := toConfigMap(r, nil)
	if err != nil {
		return err
	}
	_, err = s.Client.CoreV1().ConfigMaps(r.Namespace).Create(ctx, cm, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("a run named %s already exists in namespace %s: choose another --name, or delete it (kubectl mesh perf delete %s -n %s)", r.Name, r.Namespace, r.Name, r.Namespace)
	}
	if apierrors.IsForbidden(err) {
		return fmt.Errorf("permission denied: cannot create configmaps in namespace %s, where kubectl mesh stores the run (kubectl auth can-i create configmaps -n %s)", r.Namespace, r.Namespace)
	}
	return err
}

// Update replaces the run's record and sets the given documents (others are kept).
func (s Store) Update(ctx context.Context, r *Record, docs map[string][]byte) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := s.Client.CoreV1().ConfigMaps(r.Namespace).Get(ctx, RecordPrefix+r.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		next, err := toConfigMap(r, docs)
		if err != nil {
			return err
		}
		if cur.Data == nil {
			cur.Data = map[string]string{}
		}
		for k, v := range next.Data {
			cur.Data[k] = v
		}
		cur.Labels = next.Labels
		_, err = s.Client.CoreV1().ConfigMaps(r.Namespace).Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
}

// Get returns a run and all its documents, by key.
func (s Store) Get(ctx context.Context, namespace, name string) (*Record, map[string][]byte, error) {
	cm, err := s.Client.CoreV1().ConfigMaps(namespace).Get(ctx, RecordPrefix+name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil, fmt.Errorf("%w: no run %s in namespace %s (kubectl mesh perf list -A)", ErrNotFound, name, namespace)
	}
	if err != nil {
		return nil, nil, err
	}
	r, err := fromConfigMap(cm)
	if err != nil {
		return nil, nil, err
	}
	docs := map[string][]byte{}
	for k, v := range cm.Data {
		if k != KeyRecord {
			docs[k] = []byte(v)
		}
	}
	return r, docs, nil
}

// List returns the runs of a namespace ("" for all namespaces), oldest first. selector is a
// label selector over the runs' labels (--labels of perf run), "" for all.
func (s Store) List(ctx context.Context, namespace, selector string) ([]Record, error) {
	sel := LabelRun
	if selector != "" {
		sel += "," + selector
	}
	cms, err := s.Client.CoreV1().ConfigMaps(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, err
	}
	var out []Record
	for i := range cms.Items {
		r, err := fromConfigMap(&cms.Items[i])
		if err != nil {
			// One damaged record must not hide the others.
			out = append(out, Record{Name: cms.Items[i].Labels[LabelRun], Namespace: cms.Items[i].Namespace, Status: Failed, Message: err.Error()})
			continue
		}
		out = append(out, *r)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].Namespace+"/"+out[i].Name < out[j].Namespace+"/"+out[j].Name
	})
	return out, nil
}

// Delete removes a run.
func (s Store) Delete(ctx context.Context, namespace, name string) error {
	err := s.Client.CoreV1().ConfigMaps(namespace).Delete(ctx, RecordPrefix+name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%w: no run %s in namespace %s", ErrNotFound, name, namespace)
	}
	return err
}

func toConfigMap(r *Record, docs map[string][]byte) (*corev1.ConfigMap, error) {
	r.APIVersion, r.Kind = APIVersion, KindRun
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	labels := map[string]string{}
	for k, v := range r.Labels {
		labels[k] = v
	}
	labels[LabelRun] = r.Name
	labels[LabelManagedBy] = ManagedBy
	data := map[string]string{KeyRecord: string(b)}
	for k, v := range docs {
		data[k] = string(v)
	}
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: RecordPrefix + r.Name, Namespace: r.Namespace, Labels: labels},
		Data:       data,
	}, nil
}

func fromConfigMap(cm *corev1.ConfigMap) (*Record, error) {
	raw, ok := cm.Data[KeyRecord]
	if !ok {
		return nil, fmt.Errorf("configmap %s/%s has no %s: not a kubectl-mesh run", cm.Namespace, cm.Name, KeyRecord)
	}
	var r Record
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		return nil, fmt.Errorf("configmap %s/%s: damaged run record: %v", cm.Namespace, cm.Name, err)
	}
	if r.Kind != KindRun {
		return nil, fmt.Errorf("configmap %s/%s: %s holds kind %q, not %s", cm.Namespace, cm.Name, KeyRecord, r.Kind, KindRun)
	}
	r.Namespace = cm.Namespace
	return &r, nil
}
