package inject

import (
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	probeconfig "github.com/kubectl-mesh/kubectl-mesh/probe/config"
)

// Environment variables the probe reads its configuration from: exactly the contract of
// probe/config, which validates them when the probe starts (see validateProbeEnv). Env rather
// than args because reinvocation can then rewrite one variable by name without touching
// anything else in the container. The probe's per-mesh defaults cover what is not passed (proxy
// UID, Istio's 127.0.0.6 inbound source, the proxy's own listener ports).
const (
	EnvMesh                 = "MESH_PROBE_MESH"                   // none | istio | linkerd | custom
	EnvProxyContainer       = "MESH_PROBE_PROXY_CONTAINER"        // the proxy to attach to, by name
	EnvProxyInboundPort     = "MESH_PROBE_PROXY_INBOUND_PORT"     // where inbound traffic is redirected
	EnvProxyOutboundPort    = "MESH_PROBE_PROXY_OUTBOUND_PORT"    // where outbound traffic is redirected
	EnvAppPorts             = "MESH_PROBE_APP_PORTS"              // the pod's declared TCP ports: what is measured
	EnvExcludedInboundPorts = "MESH_PROBE_EXCLUDED_INBOUND_PORTS" // declared ports the proxy does not intercept
	EnvLogLevel             = "MESH_PROBE_LOG_LEVEL"              // debug | info | warn | error
	EnvListen               = "MESH_PROBE_LISTEN"                 // must match the declared port below
	EnvSampleAboveRPS       = "MESH_PROBE_SAMPLE_ABOVE_RPS"       // only when configured: the probe's default otherwise
)

// probeEnv is the probe's whole configuration. Its order is fixed so the configuration hash and
// the golden files are stable. With no mesh the proxy variables are empty, which the probe reads
// as "no proxy".
func probeEnv(cfg Config, mesh MeshInfo, appPorts []int32) []corev1.EnvVar {
	port := func(p int32) string {
		if p <= 0 {
			return ""
		}
		return strconv.Itoa(int(p))
	}
	var excluded []int32
	for _, p := range appPorts {
		if mesh.bypassesInbound(p) {
			excluded = append(excluded, p)
		}
	}
	env := []corev1.EnvVar{
		{Name: EnvMesh, Value: string(mesh.Name)},
		{Name: EnvProxyContainer, Value: mesh.ProxyContainer},
		{Name: EnvProxyInboundPort, Value: port(mesh.InboundPort)},
		{Name: EnvProxyOutboundPort, Value: port(mesh.OutboundPort)},
		{Name: EnvAppPorts, Value: joinPorts(appPorts)},
		// Only declared ports are listed: the probe uses the list to leave bypassing ports out
		// of its measurement, and a mesh's exclusion ranges (Linkerd allows "1-65535") could
		// otherwise exceed what it accepts.
		{Name: EnvExcludedInboundPorts, Value: joinPorts(excluded)},
		{Name: EnvLogLevel, Value: cfg.LogLevel},
		{Name: EnvListen, Value: ":" + strconv.Itoa(ProbePort)},
	}
	// Last, and only when set, so that pods injected with the default keep their hash.
	if cfg.SampleAboveRPS != "" {
		env = append(env, corev1.EnvVar{Name: EnvSampleAboveRPS, Value: cfg.SampleAboveRPS})
	}
	return env
}

func joinPorts(ports []int32) string {
	parts := make([]string, len(ports))
	for i, p := range ports {
		parts[i] = strconv.Itoa(int(p))
	}
	return strings.Join(parts, ",")
}

// appPorts lists the TCP ports the pod's own containers declare, sorted and unique: regular
// containers and native sidecars, not run-to-completion init containers (they are gone before
// traffic flows), and neither a mesh proxy (a custom one too) nor the probe, so the list is the
// same before and after either injector ran. UDP and SCTP ports are left out: the probe measures
// TCP requests.
func appPorts(pod *corev1.Pod) []int32 {
	var ports []int32
	// A custom proxy's own ports are no more the application's than Envoy's are.
	customProxy := pod.Annotations[AnnotationProxyContainer]
	collect := func(c *corev1.Container) {
		switch c.Name {
		case IstioProxyContainer, LinkerdProxyContainer, ProbeContainerName:
			return
		}
		if customProxy != "" && c.Name == customProxy {
			return
		}
		for _, p := range c.Ports {
			if p.ContainerPort > 0 && (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) {
				ports = append(ports, p.ContainerPort)
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
	slices.Sort(ports)
	return slices.Compact(ports)
}

// validateProbeEnv runs the probe's own configuration parser on env, so the webhook never
// injects a probe that would refuse to start: a crash-looping probe never becomes ready, and
// its readiness counts towards the pod's.
func validateProbeEnv(env []corev1.EnvVar) error {
	vals := make(map[string]string, len(env))
	for _, e := range env {
		vals[e.Name] = e.Value
	}
	_, err := probeconfig.Load(nil, nil, func(k string) string { return vals[k] })
	return err
}

// TokenShadowVolume is the empty volume the probe mounts over the service-account token's path
// (see probeContainer).
const TokenShadowVolume = "mesh-probe-no-token"

// serviceAccountTokenPath is where the ServiceAccount admission plugin mounts the pod's token.
const serviceAccountTokenPath = "/var/run/secrets/kubernetes.io/serviceaccount"

// tokenShadowVolume is the pod volume behind the probe's mount over the token path: an emptyDir
// that stays empty (the mount is read-only), allowed by every Pod Security level.
func tokenShadowVolume() corev1.Volume {
	return corev1.Volume{Name: TokenShadowVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
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
		// entrypoint and flags stay the probe's own business.
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
		// No readiness probe, on purpose: a container's readiness counts towards the pod's
		// (native sidecars' too), so a probe that is restarting or not yet attached would take
		// the workload out of its Services. Measuring must never cost the workload its traffic;
		// the plugin reads the probe's health itself (/v1/snapshot, /readyz) and reports it.
		// Liveness restarts only the probe, never the workload, when its HTTP server hangs.
		LivenessProbe: httpProbe("/healthz"),
		// The default path, set explicitly (defaulting again); FallbackToLogsOnError so a probe
		// that dies before writing a message (say, the kernel refuses its eBPF programs) still
		// shows why in `kubectl describe pod`.
		TerminationMessagePath:   corev1.TerminationMessagePathDefault,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		// One mount, and it takes something away: an empty, read-only directory over the
		// service-account token's path. The probe never calls the API server, so it should not
		// hold the pod's token; and the ServiceAccount admission plugin, which adds the token
		// mount to every container without one at that path, re-runs after a webhook changes a
		// pod, so without this it changed our container after us and the API server called the
		// webhook a second time for every pod (542 calls for 271 pods in the admission
		// benchmark). No hostPath, no host /sys or /proc; see probeSecurityContext.
		VolumeMounts:    []corev1.VolumeMount{{Name: TokenShadowVolume, MountPath: serviceAccountTokenPath, ReadOnly: true}},
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
