package inject

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Environment variables the probe reads its configuration from. Env rather than args because the
// probe's flags can then change without the injector knowing them, and because reinvocation can
// rewrite one variable by name without touching anything else in the container.
const (
	EnvMesh                 = "MESH_PROBE_MESH"                   // none | istio | linkerd
	EnvMeshState            = "MESH_PROBE_MESH_STATE"             // absent | expected | present
	EnvProxyContainer       = "MESH_PROBE_PROXY_CONTAINER"        // the proxy to attach to, by name
	EnvProxyInboundPort     = "MESH_PROBE_PROXY_INBOUND_PORT"     // where inbound traffic is redirected
	EnvProxyOutboundPort    = "MESH_PROBE_PROXY_OUTBOUND_PORT"    // where outbound traffic is redirected
	EnvProxyAdminPort       = "MESH_PROBE_PROXY_ADMIN_PORT"       // the proxy's admin/stats listener
	EnvProxyUID             = "MESH_PROBE_PROXY_UID"              // tells proxy-originated sockets from the app's
	EnvInboundSource        = "MESH_PROBE_INBOUND_SOURCE"         // source address of proxy->app inbound hops
	EnvPodPorts             = "MESH_PROBE_POD_PORTS"              // the app's declared ports, "8080/TCP,..."
	EnvIncludeInboundPorts  = "MESH_PROBE_INCLUDE_INBOUND_PORTS"  // "*" or the captured inbound ports
	EnvExcludeInboundPorts  = "MESH_PROBE_EXCLUDE_INBOUND_PORTS"  // inbound ports that bypass the proxy
	EnvExcludeOutboundPorts = "MESH_PROBE_EXCLUDE_OUTBOUND_PORTS" // outbound ports that bypass the proxy
	EnvListenPort           = "MESH_PROBE_LISTEN_PORT"            // must match the declared port below
	EnvLogLevel             = "MESH_PROBE_LOG_LEVEL"
	EnvPodName              = "MESH_PROBE_POD_NAME" // downward API: labels the probe's metrics
	EnvPodNamespace         = "MESH_PROBE_POD_NAMESPACE"
	EnvNodeName             = "MESH_PROBE_NODE_NAME"
)

// probeEnv is the probe's whole configuration. Its order is fixed so the configuration hash and
// the golden files are stable.
func probeEnv(cfg Config, mesh MeshInfo, podPorts string) []corev1.EnvVar {
	num := func(n int64) string {
		if n <= 0 {
			return ""
		}
		return strconv.FormatInt(n, 10)
	}
	return []corev1.EnvVar{
		{Name: EnvMesh, Value: string(mesh.Name)},
		{Name: EnvMeshState, Value: string(mesh.State)},
		{Name: EnvProxyContainer, Value: mesh.ProxyContainer},
		{Name: EnvProxyInboundPort, Value: num(int64(mesh.InboundPort))},
		{Name: EnvProxyOutboundPort, Value: num(int64(mesh.OutboundPort))},
		{Name: EnvProxyAdminPort, Value: num(int64(mesh.AdminPort))},
		{Name: EnvProxyUID, Value: num(mesh.ProxyUID)},
		{Name: EnvInboundSource, Value: mesh.InboundSource},
		{Name: EnvPodPorts, Value: podPorts},
		{Name: EnvIncludeInboundPorts, Value: mesh.IncludeInboundPorts},
		{Name: EnvExcludeInboundPorts, Value: mesh.ExcludeInboundPorts},
		{Name: EnvExcludeOutboundPorts, Value: mesh.ExcludeOutboundPorts},
		{Name: EnvListenPort, Value: strconv.Itoa(ProbePort)},
		{Name: EnvLogLevel, Value: cfg.LogLevel},
		fieldEnv(EnvPodName, "metadata.name"),
		fieldEnv(EnvPodNamespace, "metadata.namespace"),
		fieldEnv(EnvNodeName, "spec.nodeName"),
	}
}

// fieldEnv sets apiVersion explicitly: the API server would default it, and an explicit value
// keeps what we compare on reinvocation equal to what we wrote.
func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path},
	}}
}

// podPorts lists the ports the pod's own containers declare: regular containers and native
// sidecars, not run-to-completion init containers (they are gone before traffic flows), and
// neither a mesh proxy nor the probe, so the list is the same before and after either injector
// ran.
func podPorts(pod *corev1.Pod) string {
	type key struct {
		port  int32
		proto corev1.Protocol
	}
	seen := map[key]bool{}
	collect := func(c *corev1.Container) {
		switch c.Name {
		case IstioProxyContainer, LinkerdProxyContainer, ProbeContainerName:
			return
		}
		for _, p := range c.Ports {
			proto := p.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			if p.ContainerPort > 0 {
				seen[key{p.ContainerPort, proto}] = true
			}
		}
	}
	for i := range pod.Spec.InitContainers {
		if isNativeSidecar(&pod.Spec.InitContainers[i]) {
			collect(&pod.Spec.InitContainers[i])
		}
	}
	for i := range pod.Spec.Containers {
		collect(&pod.Spec.Containers[i])
	}
	keys := make([]key, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].port != keys[j].port {
			return keys[i].port < keys[j].port
		}
		return keys[i].proto < keys[j].proto
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d/%s", k.port, k.proto)
	}
	return strings.Join(parts, ",")
}

// probeContainer builds the probe. Fields the API server would default are set explicitly, so
// the container we record is the container that runs.
func probeContainer(cfg Config, native bool, env []corev1.EnvVar) corev1.Container {
	c := corev1.Container{
		// A fixed name: kubectl-mesh finds the probe by it in every pod, and it is how
		// injection recognises a pod that already has one.
		Name: ProbeContainerName,
		// Operator-chosen (mirrors, pinned digests); the pull policy is explicit so the API
		// server's defaulting cannot make the container differ from what we recorded.
		Image:           cfg.Image,
		ImagePullPolicy: cfg.ImagePullPolicy,
		// All configuration is in the environment (see probeEnv); no args, so the image's
		// entrypoint stays the probe's own business.
		Env: env,
		// One port serves /metrics (scraped by kubectl-mesh and Prometheus), /v1/snapshot (read
		// by `kubectl mesh`), /readyz and /healthz. It is named so Services, PodMonitors and
		// the kubelet probes below refer to it by name.
		Ports: []corev1.ContainerPort{{
			Name: ProbePortName, ContainerPort: ProbePort, Protocol: corev1.ProtocolTCP,
		}},
		// Requests and limits always set (Config defaults), so the probe never runs unbounded
		// next to the workload it measures, and a namespace LimitRange cannot reject it for
		// missing values.
		Resources: *cfg.Resources.DeepCopy(),
		// Readiness counts towards the pod's readiness (for native sidecars as well), so the
		// probe must report ready as soon as it serves HTTP, even if attaching eBPF programs
		// failed (it reports that in /v1/snapshot instead): a broken observer must not take the
		// workload out of its Service.
		ReadinessProbe: httpProbe("/readyz"),
		// Liveness restarts only the probe, never the workload, when its HTTP server hangs.
		LivenessProbe: httpProbe("/healthz"),
		// The default path, set explicitly (defaulting again); FallbackToLogsOnError so a probe
		// that dies before writing a message (say, the kernel refuses its eBPF programs) still
		// shows why in `kubectl describe pod`.
		TerminationMessagePath:   corev1.TerminationMessagePathDefault,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		// No volume mounts at all: no hostPath, no host /sys or /proc; see probeSecurityContext.
		SecurityContext: probeSecurityContext(),
	}
	if native {
		// A native sidecar starts before and stops after the app containers, so the probe sees
		// the whole life of the workload's connections, and it does not keep a Job's pod alive.
		always := corev1.ContainerRestartPolicyAlways
		c.RestartPolicy = &always
	}
	return c
}

func httpProbe(path string) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path:   path,
			Port:   intstr.FromString(ProbePortName),
			Scheme: corev1.URISchemeHTTP,
		}},
		TimeoutSeconds:   1,
		PeriodSeconds:    10,
		SuccessThreshold: 1,
		FailureThreshold: 3,
	}
}

// probeSecurityContext grants exactly what the eBPF probe needs and nothing else.
func probeSecurityContext() *corev1.SecurityContext {
	f, t := false, true
	root := int64(0)
	return &corev1.SecurityContext{
		Capabilities: &corev1.Capabilities{
			// BPF: load programs and create maps. PERFMON: attach kprobes/tracepoints and read
			// perf events. NET_ADMIN: attach TC/cgroup socket programs. Everything else,
			// including SYS_ADMIN and the runtime's default set (NET_RAW, CHOWN, ...), is
			// dropped.
			Add:  []corev1.Capability{"BPF", "PERFMON", "NET_ADMIN"},
			Drop: []corev1.Capability{"ALL"},
		},
		// The capabilities above suffice; privileged would give every device and capability.
		Privileged: &f,
		// Sets no_new_privs: nothing the probe execs can gain privileges.
		AllowPrivilegeEscalation: &f,
		// The probe writes nothing to disk; a read-only root blocks tampering with its binary.
		ReadOnlyRootFilesystem: &t,
		// UID 0 because Kubernetes cannot grant ambient capabilities: a non-root process gets
		// added capabilities only through file capabilities, and no_new_privs (set above) makes
		// the kernel ignore those at exec. Root's capabilities are still limited to the bounding
		// set above, and no host path or host namespace is shared, so this root owns nothing but
		// the probe's own container.
		RunAsUser: &root,
		// Explicit so a pod-level runAsNonRoot: true does not make the kubelet refuse to start
		// the probe (and with it the pod) as root.
		RunAsNonRoot: &f,
	}
}
