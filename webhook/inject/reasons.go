package inject

import "sort"

// Action is what a Decision does to the pod.
type Action string

const (
	// ActionInject adds the probe container and the status annotation.
	ActionInject Action = "inject"
	// ActionUpdate rewrites the configuration of a probe we injected earlier (reinvocation).
	ActionUpdate Action = "update"
	// ActionRemove takes out a probe we injected earlier whose configuration became one the probe
	// would refuse (reinvocation after another webhook changed the pod).
	ActionRemove Action = "remove"
	// ActionSkip leaves the pod as it is.
	ActionSkip Action = "skip"
)

// Reason is the machine-readable cause of a Decision. Its values are stable: they are metric
// label values and the keys users grep for, so never rename one.
type Reason string

// The reasons, one per outcome of Decide and of the handler around it.
const (
	ReasonInjected             Reason = "injected"
	ReasonUpdated              Reason = "updated"
	ReasonAlreadyInjected      Reason = "already_injected"
	ReasonNamespaceNotEnabled  Reason = "namespace_not_enabled"
	ReasonPodOptedOut          Reason = "pod_opted_out"
	ReasonSystemNamespace      Reason = "system_namespace"
	ReasonOwnNamespace         Reason = "own_namespace"
	ReasonHostNetwork          Reason = "host_network"
	ReasonUnsupportedOS        Reason = "unsupported_os"
	ReasonPodSecurity          Reason = "pod_security_enforced"
	ReasonProbePresent         Reason = "probe_present_unmanaged"
	ReasonPortConflict         Reason = "port_conflict"
	ReasonNoAppPorts           Reason = "no_app_ports"
	ReasonProbeConfigRejected  Reason = "probe_config_rejected"
	ReasonRemoved              Reason = "removed"
	ReasonNamespaceUnavailable Reason = "namespace_unavailable"
	ReasonInvalidConfig        Reason = "invalid_config"
	ReasonNotAPod              Reason = "not_a_pod"
	ReasonUnsupportedOperation Reason = "unsupported_operation"
	ReasonMalformedRequest     Reason = "malformed_request"
	ReasonMalformedPod         Reason = "malformed_pod"
	ReasonInternalError        Reason = "internal_error"
)

// ReasonInfo explains a Reason.
type ReasonInfo struct {
	Reason Reason
	// Action is the action every Decision with this reason takes.
	Action Action
	// Summary is a one-line explanation for docs and `kubectl mesh` output.
	Summary string
}

// reasons is the single table of outcomes, like the reason maps of Istio's and Linkerd's
// injectors: Decide returns no reason that is not in it (TestReasonsTable checks), and the metrics
// pre-create one series per entry so dashboards see zeros rather than gaps.
var reasons = map[Reason]ReasonInfo{}

func init() {
	for _, info := range []ReasonInfo{
		{ReasonInjected, ActionInject, "the probe was added to the pod"},
		{ReasonUpdated, ActionUpdate, "the probe we injected earlier was reconfigured, usually because the mesh proxy appeared after us"},
		{ReasonAlreadyInjected, ActionSkip, "the pod already carries an up-to-date probe; nothing to change"},
		{ReasonNamespaceNotEnabled, ActionSkip, "neither the namespace label nor the pod's annotation or label asks for the probe"},
		{ReasonPodOptedOut, ActionSkip, "the pod's kubectl-mesh.io/probe annotation or label is disabled"},
		{ReasonSystemNamespace, ActionSkip, "kube-system, kube-public and kube-node-lease are never injected"},
		{ReasonOwnNamespace, ActionSkip, "kubectl-mesh's own namespace is never injected"},
		{ReasonHostNetwork, ActionSkip, "hostNetwork pods share the node's network namespace and are never injected"},
		{ReasonUnsupportedOS, ActionSkip, "the probe is eBPF-based and runs on Linux only"},
		{ReasonPodSecurity, ActionSkip, "the namespace enforces baseline or restricted Pod Security, which rejects the probe's capabilities"},
		{ReasonProbePresent, ActionSkip, "the pod has a mesh-probe container we did not inject; it is left alone"},
		{ReasonPortConflict, ActionSkip, "the pod already uses the probe's port 9464 or port name mesh-probe"},
		{ReasonNoAppPorts, ActionSkip, "the pod declares no TCP container port, so the probe would have nothing to measure"},
		{ReasonProbeConfigRejected, ActionSkip, "the probe's configuration parser rejects what this pod would give it"},
		{ReasonRemoved, ActionRemove, "the probe injected earlier was taken out because the pod, as changed by later webhooks, gives it a configuration it rejects"},
		{ReasonNamespaceUnavailable, ActionSkip, "the namespace could not be read, so opt-in and Pod Security cannot be checked"},
		{ReasonInvalidConfig, ActionSkip, "the injector's configuration is invalid"},
		{ReasonNotAPod, ActionSkip, "the admission request is not for a pod"},
		{ReasonUnsupportedOperation, ActionSkip, "only pod CREATE is mutated; containers cannot change afterwards"},
		{ReasonMalformedRequest, ActionSkip, "the AdmissionReview could not be used"},
		{ReasonMalformedPod, ActionSkip, "the admitted object could not be decoded as a pod"},
		{ReasonInternalError, ActionSkip, "the injector failed unexpectedly; the pod was admitted unchanged"},
	} {
		reasons[info.Reason] = info
	}
}

// Reasons returns every Reason with its explanation, sorted by name.
func Reasons() []ReasonInfo {
	out := make([]ReasonInfo, 0, len(reasons))
	for _, info := range reasons {
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Reason < out[j].Reason })
	return out
}

// Info returns the explanation of r; ok is false for a reason that does not exist.
func (r Reason) Info() (info ReasonInfo, ok bool) {
	info, ok = reasons[r]
	return info, ok
}
