package perf

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/kubectl-mesh/kubectl-mesh/loadgen"
	"github.com/kubectl-mesh/kubectl-mesh/plugin/runstore"
	"github.com/kubectl-mesh/kubectl-mesh/webhook/inject"
)

// DefaultLoadgenImage is the load generator image perf run uses unless told otherwise.
const DefaultLoadgenImage = "kubectl-mesh.local/mesh-loadgen:lab"

// loadgenContainer is the Job's one container.
const loadgenContainer = "loadgen"

// JobSpec is one load generator run in the cluster.
type JobSpec struct {
	Namespace string
	// Name of the Job; also the run's name plus a suffix for a baseline run.
	Name  string
	Run   string
	Image string
	Load  loadgen.Config
}

// loadgenArgs are mesh-loadgen's flags for c.
func loadgenArgs(c loadgen.Config) []string {
	args := []string{
		"--url=" + c.URL,
		"--protocol=" + string(c.Protocol),
		"--qps=" + strconv.FormatFloat(c.QPS, 'f', -1, 64),
		"--connections=" + strconv.Itoa(c.Connections),
		"--duration=" + c.Duration.String(),
		"--progress-interval=1s",
	}
	if c.Warmup > 0 {
		args = append(args, "--warmup="+c.Warmup.String())
	}
	if c.PayloadSize > 0 {
		args = append(args, "--payload-size="+strconv.Itoa(c.PayloadSize))
	}
	if c.GRPCPing {
		args = append(args, "--grpc-ping")
	}
	return args
}

// job builds the load generator Job. It is built to run anywhere a user may run pods: under the
// restricted Pod Security profile, without the probe (it is the client, not a workload), with
// no retries (a second attempt would measure a different run), and it cleans up after itself
// even if the plugin dies.
func (s JobSpec) job() *batchv1.Job {
	// The Job may outlive the plugin (killed mid-run); the deadline and TTL bound what it leaves.
	deadline := int64((s.Load.Duration + s.Load.Warmup + 5*time.Minute) / time.Second)
	labels := map[string]string{
		runstore.LabelRun:        s.Run,
		runstore.LabelManagedBy:  runstore.ManagedBy,
		"app.kubernetes.io/name": "mesh-loadgen",
		// The load generator is the client of the measurement; a probe in it would measure
		// nothing the user asked for. The webhook's objectSelector honours this label.
		inject.LabelProbe: inject.ValueDisabled,
	}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, Labels: labels},
		Spec: batchv1.JobSpec{
			BackoffLimit:            ptr.To[int32](0),
			ActiveDeadlineSeconds:   &deadline,
			TTLSecondsAfterFinished: ptr.To[int32](600),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{inject.AnnotationProbe: inject.ValueDisabled}},
				Spec: corev1.PodSpec{
					RestartPolicy:                 corev1.RestartPolicyNever,
					AutomountServiceAccountToken:  ptr.To(false),
					TerminationGracePeriodSeconds: ptr.To[int64](15),
					EnableServiceLinks:            ptr.To(false),
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   ptr.To(true),
						RunAsUser:      ptr.To[int64](65532),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name:  loadgenContainer,
						Image: s.Image,
						Args:  loadgenArgs(s.Load),
						// Requests sized so the generator gets a core's share under load: a starved
						// client measures its own queueing, not the target.
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
						},
						TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr.To(false),
							ReadOnlyRootFilesystem:   ptr.To(true),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
					}},
				},
			},
		},
	}
}

// ErrInterrupted is returned (wrapped) when the run was stopped early; the partial result, if
// the generator wrote one, is returned with it.
var ErrInterrupted = errors.New("run interrupted")

// runJob runs the load generator Job and returns its result, reporting progress as it comes.
// When ctx is cancelled (Ctrl-C) it stops the generator with SIGTERM, the signal Kubernetes
// sends on deletion, and still returns the partial result the generator writes on SIGTERM.
func runJob(ctx context.Context, cs kubernetes.Interface, s JobSpec, onProgress func(loadgen.Progress), onStatus func(string)) (*loadgen.Result, error) {
	jobs := cs.BatchV1().Jobs(s.Namespace)
	if _, err := jobs.Create(ctx, s.job(), metav1.CreateOptions{}); err != nil {
		if apierrors.IsForbidden(err) {
			return nil, fmt.Errorf("permission denied: cannot create jobs in namespace %s, where the load generator runs (kubectl auth can-i create jobs -n %s)", s.Namespace, s.Namespace)
		}
		return nil, fmt.Errorf("cannot create the load generator Job: %w", err)
	}
	// The Job goes when the run ends, however it ends; its TTL covers a dead plugin.
	defer func() {
		bg, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = jobs.Delete(bg, s.Name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)})
	}()

	pod, err := waitLoadgenStarted(ctx, cs, s, onStatus)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w before the load generator started", ErrInterrupted)
		}
		return nil, err
	}

	// The log stream must outlive ctx: after Ctrl-C the partial result is still to be read.
	streamCtx, cancelStream := context.WithCancel(context.Background())
	defer cancelStream()
	interrupted := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-streamCtx.Done():
			return
		}
		close(interrupted)
		onStatus("interrupted: stopping the load generator (it writes the partial result)")
		bg, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = cs.CoreV1().Pods(s.Namespace).Delete(bg, pod, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](15)})
		cancel()
		// Give the generator its grace period to write the result, then stop waiting.
		select {
		case <-time.After(25 * time.Second):
			cancelStream()
		case <-streamCtx.Done():
		}
	}()

	res, lastErr, err := followLog(streamCtx, cs, s.Namespace, pod, onProgress)
	select {
	case <-interrupted:
		if res != nil {
			return res, fmt.Errorf("%w: partial result covers %s", ErrInterrupted, res.ActualDuration)
		}
		return nil, fmt.Errorf("%w: the load generator wrote no result", ErrInterrupted)
	default:
	}
	if res != nil {
		return res, nil
	}
	why := lastErr
	if why == "" && err != nil {
		why = err.Error()
	}
	if t := terminated(ctx, cs, s.Namespace, pod); t != "" {
		why = strings.TrimSpace(why + " (" + t + ")")
	}
	if why == "" {
		why = "it wrote no result"
	}
	return nil, fmt.Errorf("load generator failed: %s (kubectl -n %s logs job/%s)", why, s.Namespace, s.Name)
}

// waitLoadgenStarted waits for the Job's pod to run (or to have run) and returns its name,
// failing early with the cause when it cannot start.
func waitLoadgenStarted(ctx context.Context, cs kubernetes.Interface, s JobSpec, onStatus func(string)) (string, error) {
	deadline := time.Now().Add(2 * time.Minute)
	last := ""
	for {
		pods, err := cs.CoreV1().Pods(s.Namespace).List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + s.Name})
		if err != nil {
			return "", err
		}
		status := "waiting for the load generator pod"
		for _, p := range pods.Items {
			switch p.Status.Phase {
			case corev1.PodRunning, corev1.PodSucceeded, corev1.PodFailed:
				return p.Name, nil
			}
			if msg, fatal := startTrouble(&p); msg != "" {
				if fatal {
					return "", fmt.Errorf("load generator cannot start: %s", msg)
				}
				status = "load generator pod: " + msg
			}
		}
		if len(pods.Items) == 0 {
			if msg := jobCreateFailure(ctx, cs, s); msg != "" {
				return "", fmt.Errorf("load generator cannot start: %s", msg)
			}
		}
		if status != last {
			onStatus(status)
			last = status
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("load generator did not start within 2m: %s", last)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// startTrouble says what keeps a pod from starting; fatal when waiting will not help.
func startTrouble(p *corev1.Pod) (string, bool) {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return "not scheduled: " + c.Message, false
		}
	}
	for _, st := range p.Status.ContainerStatuses {
		if w := st.State.Waiting; w != nil {
			switch w.Reason {
			case "ErrImagePull", "ImagePullBackOff", "InvalidImageName":
				return fmt.Sprintf("cannot pull image %s (%s): check --loadgen-image and registry access", st.Image, w.Reason), true
			case "CreateContainerConfigError", "CreateContainerError":
				return w.Reason + ": " + w.Message, true
			}
		}
	}
	return "", false
}

// jobCreateFailure reports why the Job controller cannot create the pod (Pod Security, quota).
func jobCreateFailure(ctx context.Context, cs kubernetes.Interface, s JobSpec) string {
	evs, err := cs.CoreV1().Events(s.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.kind=Job,involvedObject.name=" + s.Name + ",reason=FailedCreate",
	})
	if err != nil || len(evs.Items) == 0 {
		return ""
	}
	return evs.Items[len(evs.Items)-1].Message
}

// maxLogLine bounds one line of the generator's log: the result line carries the histogram.
const maxLogLine = 8 << 20

// followLog reads the generator's log to its end. It returns the result line's result, the
// last error line (the generator's own explanation when it fails), and the stream's error.
func followLog(ctx context.Context, cs kubernetes.Interface, ns, pod string, onProgress func(loadgen.Progress)) (*loadgen.Result, string, error) {
	var rc io.ReadCloser
	var err error
	// The log may not be readable the instant the container starts.
	for i := 0; i < 20; i++ {
		rc, err = cs.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: loadgenContainer, Follow: true}).Stream(ctx)
		if err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		if apierrors.IsForbidden(err) {
			return nil, "", fmt.Errorf("permission denied: cannot get pods/log in namespace %s, where the load generator writes its result", ns)
		}
		return nil, "", err
	}
	defer rc.Close()
	return parseLog(rc, onProgress)
}

// parseLog reads the generator's JSON lines: progress, the result, fortio's log lines.
func parseLog(r io.Reader, onProgress func(loadgen.Progress)) (*loadgen.Result, string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLogLine)
	var res *loadgen.Result
	lastErr := ""
	for sc.Scan() {
		line := sc.Bytes()
		var head struct {
			Kind  string `json:"kind"`
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal(line, &head) != nil {
			// Plain text: the generator's final error line ("mesh-loadgen: ...").
			if s := strings.TrimSpace(string(line)); s != "" {
				lastErr = s
			}
			continue
		}
		switch head.Kind {
		case loadgen.KindProgress:
			var p loadgen.Progress
			if json.Unmarshal(line, &p) == nil && onProgress != nil {
				onProgress(p)
			}
		case loadgen.KindResult:
			var r loadgen.Result
			if err := json.Unmarshal(line, &r); err != nil {
				return nil, lastErr, fmt.Errorf("load generator result unreadable: %v", err)
			}
			res = &r
		default:
			if head.Level == "err" || head.Level == "error" || head.Level == "crit" || head.Level == "fatal" {
				lastErr = head.Msg
			}
		}
	}
	return res, lastErr, sc.Err()
}

// terminated describes how the generator's container ended, if it has.
func terminated(ctx context.Context, cs kubernetes.Interface, ns, pod string) string {
	p, err := cs.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return ""
	}
	for _, st := range p.Status.ContainerStatuses {
		if t := st.State.Terminated; t != nil {
			msg := fmt.Sprintf("exit code %d", t.ExitCode)
			if t.Reason != "" && t.Reason != "Error" && t.Reason != "Completed" {
				msg += ", " + t.Reason
			}
			return msg
		}
	}
	return ""
}
