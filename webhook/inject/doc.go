// Package inject decides whether the kubectl-mesh eBPF probe ("mesh-probe") is added to a pod, and
// builds the JSON patch that adds it. It is the policy and the admission handler of the mutating
// webhook; serving it (TLS, manager, webhook configuration) lives elsewhere.
//
// # Policy
//
// All of the policy is in one function, [Decide], in the style of Istio's and Linkerd's injectors:
// it walks an ordered list of checks and the first that matches yields a [Decision] whose
// machine-readable [Reason] (a metric label and an event reason key) and human Message say why.
// [Reasons] lists every reason with a one-line explanation. In order:
//
//  1. Never in kube-system, kube-public, kube-node-lease, nor in our own namespace
//     ([Config.OwnNamespace], default "kubectl-mesh-system"): the control plane and the probe's
//     own tooling are never measured.
//
//  2. The pod annotation kubectl-mesh.io/probe: disabled opts a pod out. A pod label of the same
//     name is honoured too (the annotation wins): labels are what the webhook configuration's
//     objectSelector can see.
//
//  3. Otherwise the pod must be opted in: by the annotation (or label) kubectl-mesh.io/probe:
//     enabled, or by its namespace's label kubectl-mesh.io/probe=enabled. The pod's choice
//     overrides the namespace label in both directions. A namespace that cannot be read means no injection: neither the opt-in
//     nor Pod Security can be checked.
//
//  4. Never hostNetwork pods (the probe would attach to the node's network namespace) nor Windows
//     pods (eBPF is Linux only).
//
//  5. Pod Security Admission: if the namespace label pod-security.kubernetes.io/enforce is
//     baseline or restricted (or an invalid value, which PSA itself treats as restricted), the
//     pod would be rejected with the probe in it, because the probe adds CAP_BPF, CAP_PERFMON and
//     CAP_NET_ADMIN and baseline allows none of them. The probe is then not injected and the user
//     gets an admission warning saying so.
//
//     The namespace label kubectl-mesh.io/probe-allow-psa=true overrides this. Set it only where
//     the cluster's PodSecurity admission configuration exempts these pods (for example a
//     runtimeClass or namespace exemption) or where another mechanism admits the capabilities;
//     otherwise the whole pod is rejected by PSA, not just the probe.
//
//  6. A pod that already carries a container named mesh-probe is never injected again. If the
//     annotation kubectl-mesh.io/probe-status says we injected it, its configuration is brought
//     up to date (see below), else it is left alone (someone else's container).
//
//  7. A pod that already declares port 9464 or a port named mesh-probe would collide with the
//     probe's metrics port, so it is skipped.
//
//  8. The probe measures requests to the pod's declared TCP container ports, so a pod without
//     any is skipped, and the configuration the probe would get is run through the probe's own
//     parser (probe/config): one it would reject is never injected, because a probe that cannot
//     start is never ready and its readiness counts towards the pod's.
//
// # Mesh detection
//
// The probe is told which mesh it sits next to. Istio is recognised by a container istio-proxy
// (classic sidecar, or native sidecar: an init container with restartPolicy Always) and by the
// annotation sidecar.istio.io/status; Linkerd by a container linkerd-proxy. Because this webhook
// may run before the mesh's own injector, a mesh is also "expected" when the namespace says its
// injector will act: label istio-injection=enabled or istio.io/rev, annotation
// linkerd.io/inject=enabled on the pod or the namespace. Port-changing annotations
// (traffic.sidecar.istio.io/*, config.linkerd.io/*) are read; see [MeshInfo].
//
// Any other sidecar proxy is declared by the pod (mesh "custom"): the annotation
// kubectl-mesh.io/proxy-container names its container, kubectl-mesh.io/proxy-inbound-port says where
// inbound traffic is redirected (required), and kubectl-mesh.io/proxy-inbound-ports ("*" by default)
// and kubectl-mesh.io/proxy-exclude-inbound-ports say which ports are captured. The lab's demo
// sidecar (lab/sidecar) writes them. The annotation wins over name-based detection, and it is
// ignored, with a warning, when no container has that name.
//
// # Reinvocation and idempotency
//
// The webhook is meant to be registered with reinvocationPolicy: IfNeeded. The annotation
// kubectl-mesh.io/probe-status records what was injected ([Status]: container, image, version,
// mesh and a hash of the probe's configuration). When the pod is seen again and the configuration
// computed from it still has that hash, nothing changes (empty patch). When it differs — typically
// because Istio's or Linkerd's injector added its proxy after us — only the probe's own
// environment variables are rewritten (and, for native sidecars, the probe is moved after a
// native proxy), so changes other webhooks made to our container (such as Istio's probe
// rewriting) are kept and webhooks do not fight. Should the new configuration be one the probe
// rejects, the probe is taken out again (reason removed) while the pod can still change.
//
// # Never failing a pod
//
// Every admission answer is Allowed=true: the probe is an observer and must never stop a workload
// from starting. When the input is malformed (a body that is JSON but not a usable
// AdmissionReview, an object that is not a decodable Pod, a namespace that cannot be read), the
// answer is Allowed=true without a patch, with a Warning the user sees (for an unreadable
// namespace only if the pod itself asked for the probe, as every pod passes through) and a Result
// message for the API server's logs, and the Decision's reason says what was wrong. Only what cannot carry a
// request UID to answer gets an HTTP error with a plain-text explanation: a body that does not
// decode as a JSON AdmissionReview (400), one larger than the API server could ever send (3 MiB,
// 413), a method other than POST (405). The webhook's failurePolicy is Ignore, so even then the
// pod is admitted.
package inject
