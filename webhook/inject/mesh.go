package inject

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// MeshName identifies a service mesh.
type MeshName string

const (
	MeshNone    MeshName = "none"
	MeshIstio   MeshName = "istio"
	MeshLinkerd MeshName = "linkerd"
	// MeshCustom is a sidecar proxy the pod names itself with AnnotationProxyContainer: the
	// lab's mesh-sidecar (lab/sidecar), Caddy in the sidecar position, or any proxy behind an
	// inbound REDIRECT that is neither Istio's nor Linkerd's.
	MeshCustom MeshName = "custom"
)

// MeshState says how sure the detection is.
type MeshState string

const (
	// MeshAbsent: no proxy in the pod and nothing says one will be added.
	MeshAbsent MeshState = "absent"
	// MeshExpected: no proxy container yet, but the mesh's injector is enabled for this pod (it
	// usually runs after us) or its status annotation is there. The probe is configured with the
	// mesh's defaults, and reinvocation corrects it once the proxy is in the spec.
	MeshExpected MeshState = "expected"
	// MeshPresent: the proxy container is in the pod spec.
	MeshPresent MeshState = "present"
)

// Istio's well-known names and ports (istio/istio tools/istio-iptables and the injection
// template). None can be changed per pod except through the traffic annotations below.
const (
	IstioProxyContainer = "istio-proxy"
	IstioInboundPort    = 15006 // inbound capture: iptables REDIRECTs inbound traffic here
	IstioOutboundPort   = 15001 // outbound capture
	IstioAdminPort      = 15000 // Envoy admin, loopback only
	IstioProxyUID       = 1337  // iptables skips traffic of this UID so Envoy's own is not looped
	IstioInboundSource  = "127.0.0.6"

	istioStatusPort     = 15020 // pilot-agent; never captured
	istioHealthPort     = 15021 // Envoy health; never captured
	istioPrometheusPort = 15090 // Envoy stats; never captured

	annIstioStatus          = "sidecar.istio.io/status"
	annIstioInject          = "sidecar.istio.io/inject" // label or annotation on the pod
	annIstioExcludeInbound  = "traffic.sidecar.istio.io/excludeInboundPorts"
	annIstioIncludeInbound  = "traffic.sidecar.istio.io/includeInboundPorts"
	annIstioExcludeOutbound = "traffic.sidecar.istio.io/excludeOutboundPorts"
	labelIstioInjection     = "istio-injection"
	labelIstioRev           = "istio.io/rev"
)

// Linkerd's well-known names and ports (linkerd2 charts/partials proxy and proxy-init).
const (
	LinkerdProxyContainer = "linkerd-proxy"
	LinkerdInboundPort    = 4143
	LinkerdOutboundPort   = 4140
	LinkerdAdminPort      = 4191
	LinkerdControlPort    = 4190 // proxy-init always skips control and admin inbound
	LinkerdProxyUID       = 2102

	annLinkerdInject        = "linkerd.io/inject"
	annLinkerdSkipInbound   = "config.linkerd.io/skip-inbound-ports"
	annLinkerdSkipOutbound  = "config.linkerd.io/skip-outbound-ports"
	annLinkerdInboundPort   = "config.linkerd.io/proxy-inbound-port"
	annLinkerdOutboundPort  = "config.linkerd.io/proxy-outbound-port"
	annLinkerdAdminPort     = "config.linkerd.io/proxy-admin-port"
	envLinkerdInboundAddr   = "LINKERD2_PROXY_INBOUND_LISTEN_ADDR"
	envLinkerdInboundAddrs  = "LINKERD2_PROXY_INBOUND_LISTEN_ADDRS"
	envLinkerdOutboundAddr  = "LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR"
	envLinkerdOutboundAddrs = "LINKERD2_PROXY_OUTBOUND_LISTEN_ADDRS"
	envLinkerdAdminAddr     = "LINKERD2_PROXY_ADMIN_LISTEN_ADDR"
)

// Annotations that describe a custom sidecar proxy (MeshCustom). Istio and Linkerd are
// recognised by their containers' well-known names; any other proxy is declared by the pod, since
// no name can be guessed. lab/sidecar writes them next to the containers it adds.
const (
	// AnnotationProxyContainer names the proxy container (classic or native sidecar). Present
	// with a container of that name, it decides the mesh, before any name-based detection.
	AnnotationProxyContainer = "kubectl-mesh.io/proxy-container"
	// AnnotationProxyInboundPort is where inbound traffic is redirected to; required.
	AnnotationProxyInboundPort = "kubectl-mesh.io/proxy-inbound-port"
	// AnnotationProxyInboundPorts lists the captured inbound ports, or "*" (the default) for all.
	AnnotationProxyInboundPorts = "kubectl-mesh.io/proxy-inbound-ports"
	// AnnotationProxyExcludeInboundPorts lists inbound ports that bypass the proxy.
	AnnotationProxyExcludeInboundPorts = "kubectl-mesh.io/proxy-exclude-inbound-ports"
	// AnnotationProxyOutboundPort is where outbound traffic is redirected to, if the proxy
	// captures it; with it the probe measures the pod's outbound calls too.
	AnnotationProxyOutboundPort = "kubectl-mesh.io/proxy-outbound-port"
)

// MeshInfo is what detection found. The probe gets the part it uses in its environment (mesh,
// proxy container, redirect ports, which declared ports bypass the proxy; see probeEnv); the rest
// (UID, inbound source, admin port, outbound exclusions) explains the Decision. Ports are the
// proxy's listeners; port lists are canonical ("25,3306-3309"); IncludeInboundPorts is "*" for
// every port.
type MeshInfo struct {
	Name  MeshName  `json:"name"`
	State MeshState `json:"state"`
	// Evidence lists what the detection was based on, for the Decision's message.
	Evidence []string `json:"evidence,omitempty"`
	// ProxyContainer is the proxy's container name (set when a mesh is present or expected).
	ProxyContainer string `json:"proxyContainer,omitempty"`
	// NativeProxy is true when the proxy is a native sidecar (init container, restartPolicy
	// Always); the probe is then placed after it.
	NativeProxy bool `json:"nativeProxy,omitempty"`
	// proxyIndex is the proxy's index in initContainers (native) or containers, -1 when absent.
	proxyIndex int
	// The parsed inbound port sets behind IncludeInboundPorts and ExcludeInboundPorts.
	includeAll bool
	includeIn  portSet
	excludeIn  portSet

	InboundPort          int32  `json:"inboundPort,omitempty"`
	OutboundPort         int32  `json:"outboundPort,omitempty"`
	AdminPort            int32  `json:"adminPort,omitempty"`
	ProxyUID             int64  `json:"proxyUID,omitempty"`
	InboundSource        string `json:"inboundSource,omitempty"`
	IncludeInboundPorts  string `json:"includeInboundPorts,omitempty"`
	ExcludeInboundPorts  string `json:"excludeInboundPorts,omitempty"`
	ExcludeOutboundPorts string `json:"excludeOutboundPorts,omitempty"`
}

// bypassesInbound reports whether inbound traffic to port p reaches the app without the proxy.
func (m MeshInfo) bypassesInbound(p int32) bool {
	if m.Name == MeshNone {
		return false
	}
	return m.excludeIn.contains(p) || (!m.includeAll && !m.includeIn.contains(p))
}

// DetectMesh finds the pod's mesh from its spec, its annotations and its namespace's labels and
// annotations. A custom proxy (AnnotationProxyContainer naming a container of the pod) wins over
// name-based detection; a proxy container in the spec wins over any "expected" signal. warnings describe
// annotations that were present but unusable.
func DetectMesh(pod *corev1.Pod, nsLabels, nsAnnotations map[string]string) (info MeshInfo, warnings []string) {
	info = MeshInfo{Name: MeshNone, State: MeshAbsent, proxyIndex: -1}
	if pod == nil {
		return info, nil
	}
	var proxy *corev1.Container
	customName, custom := pod.Annotations[AnnotationProxyContainer]
	if custom {
		if c, idx, native := findProxy(pod, customName); c != nil {
			info.Name, info.State, proxy, info.proxyIndex, info.NativeProxy = MeshCustom, MeshPresent, c, idx, native
			info.Evidence = append(info.Evidence, "annotation "+AnnotationProxyContainer, containerEvidence(customName, native))
		} else {
			// Named but absent (a typo, or a manifest copied without the container): the pod
			// is detected as if the annotation were not there.
			warnings = append(warnings, fmt.Sprintf("kubectl-mesh: ignored annotation %s: the pod has no container %q",
				AnnotationProxyContainer, truncate(customName, 63)))
		}
	}
	if info.Name != MeshCustom {
		proxy = detectByName(&info, pod, nsLabels, nsAnnotations)
	}
	if info.Name == MeshIstio && info.State == MeshPresent {
		if _, ok := pod.Annotations[annIstioStatus]; ok {
			info.Evidence = append(info.Evidence, "annotation "+annIstioStatus)
		}
	}

	switch info.Name {
	case MeshIstio:
		warnings = append(warnings, istioPorts(&info, pod, proxy)...)
	case MeshLinkerd:
		warnings = append(warnings, linkerdPorts(&info, pod, nsAnnotations, proxy)...)
	case MeshCustom:
		warnings = append(warnings, customPorts(&info, pod, proxy)...)
	}
	return info, warnings
}

// customPorts reads a custom proxy's annotations. There are no defaults to fall back on: a
// missing or invalid inbound port is a warning, and the probe's own parser then refuses the
// configuration, so the pod is not injected with a probe that would guess.
func customPorts(info *MeshInfo, pod *corev1.Pod, proxy *corev1.Container) (warnings []string) {
	info.ProxyContainer = proxy.Name
	switch v, ok := pod.Annotations[AnnotationProxyInboundPort]; {
	case !ok:
		warnings = append(warnings, fmt.Sprintf("kubectl-mesh: annotation %s is missing: the probe needs the proxy's inbound port",
			AnnotationProxyInboundPort))
	default:
		if p, ok := parsePort(v); ok {
			info.InboundPort = p
		} else {
			warnings = append(warnings, fmt.Sprintf("kubectl-mesh: ignored invalid port %q in annotation %s", truncate(v, 16), AnnotationProxyInboundPort))
		}
	}
	if v, ok := pod.Annotations[AnnotationProxyOutboundPort]; ok {
		if p, ok := parsePort(v); ok {
			info.OutboundPort = p
		} else {
			warnings = append(warnings, fmt.Sprintf("kubectl-mesh: ignored invalid port %q in annotation %s: outbound calls are not measured", truncate(v, 16), AnnotationProxyOutboundPort))
		}
	}
	// The UID only explains the decision; 0 (unset) means the proxy's image decides it.
	info.ProxyUID = proxyUID(proxy, 0)

	ex, bad := parsePortList(pod.Annotations[AnnotationProxyExcludeInboundPorts])
	warnings = appendPortWarning(warnings, "annotation "+AnnotationProxyExcludeInboundPorts, bad)
	info.excludeIn = ex
	info.ExcludeInboundPorts = ex.String()

	info.IncludeInboundPorts, info.includeAll = "*", true
	if v, ok := pod.Annotations[AnnotationProxyInboundPorts]; ok && strings.TrimSpace(v) != "*" {
		in, bad := parsePortList(v)
		warnings = appendPortWarning(warnings, "annotation "+AnnotationProxyInboundPorts, bad)
		info.includeIn, info.includeAll = in, false
		info.IncludeInboundPorts = in.String()
	}
	return warnings
}

// detectByName recognises Istio and Linkerd by their proxies' well-known container names, else by
// their injectors' signals, and returns the proxy container when it is there.
func detectByName(info *MeshInfo, pod *corev1.Pod, nsLabels, nsAnnotations map[string]string) (proxy *corev1.Container) {
	if c, idx, native := findProxy(pod, IstioProxyContainer); c != nil {
		info.Name, info.State, proxy, info.proxyIndex, info.NativeProxy = MeshIstio, MeshPresent, c, idx, native
		info.Evidence = append(info.Evidence, containerEvidence(IstioProxyContainer, native))
	} else if c, idx, native := findProxy(pod, LinkerdProxyContainer); c != nil {
		info.Name, info.State, proxy, info.proxyIndex, info.NativeProxy = MeshLinkerd, MeshPresent, c, idx, native
		info.Evidence = append(info.Evidence, containerEvidence(LinkerdProxyContainer, native))
	} else if ev := istioExpected(pod, nsLabels); len(ev) > 0 {
		info.Name, info.State, info.Evidence = MeshIstio, MeshExpected, ev
	} else if ev := linkerdExpected(pod, nsAnnotations); len(ev) > 0 {
		info.Name, info.State, info.Evidence = MeshLinkerd, MeshExpected, ev
	}
	return proxy
}

// findProxy returns the named proxy, looking first for a native sidecar, then for a classic one.
// An init container without restartPolicy Always is a run-to-completion step, not a proxy.
func findProxy(pod *corev1.Pod, name string) (c *corev1.Container, idx int, native bool) {
	for i := range pod.Spec.InitContainers {
		if ic := &pod.Spec.InitContainers[i]; ic.Name == name && isNativeSidecar(ic) {
			return ic, i, true
		}
	}
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i], i, false
		}
	}
	return nil, -1, false
}

func isNativeSidecar(c *corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

func containerEvidence(name string, native bool) string {
	if native {
		return "native sidecar " + name
	}
	return "container " + name
}

// istioExpected reports why Istio's injector will act on this pod, following its own precedence:
// the pod's sidecar.istio.io/inject=false (label or annotation) wins; then the namespace label
// istio-injection (enabled or disabled) wins over istio.io/rev; a pod label
// sidecar.istio.io/inject=true also selects the pod.
func istioExpected(pod *corev1.Pod, nsLabels map[string]string) []string {
	if pod.Labels[annIstioInject] == "false" || pod.Annotations[annIstioInject] == "false" {
		return nil
	}
	var ev []string
	if v, ok := nsLabels[labelIstioInjection]; ok {
		if v == "enabled" {
			ev = append(ev, "namespace label istio-injection=enabled")
		}
	} else if rev := nsLabels[labelIstioRev]; rev != "" {
		ev = append(ev, "namespace label istio.io/rev="+rev)
	}
	if pod.Labels[annIstioInject] == "true" {
		ev = append(ev, "pod label sidecar.istio.io/inject=true")
	}
	if _, ok := pod.Annotations[annIstioStatus]; ok {
		ev = append(ev, "annotation "+annIstioStatus)
	}
	return ev
}

// linkerdExpected reports why Linkerd's injector will act: linkerd.io/inject on the pod, else on
// the namespace. "ingress" mode still adds the proxy, so it counts.
func linkerdExpected(pod *corev1.Pod, nsAnnotations map[string]string) []string {
	if v, ok := pod.Annotations[annLinkerdInject]; ok {
		if v == "enabled" || v == "ingress" {
			return []string{"pod annotation linkerd.io/inject=" + v}
		}
		return nil
	}
	if v := nsAnnotations[annLinkerdInject]; v == "enabled" || v == "ingress" {
		return []string{"namespace annotation linkerd.io/inject=" + v}
	}
	return nil
}

func istioPorts(info *MeshInfo, pod *corev1.Pod, proxy *corev1.Container) (warnings []string) {
	info.ProxyContainer = IstioProxyContainer
	info.InboundPort, info.OutboundPort, info.AdminPort = IstioInboundPort, IstioOutboundPort, IstioAdminPort
	info.ProxyUID = proxyUID(proxy, IstioProxyUID)
	info.InboundSource = IstioInboundSource

	exIn, bad := parsePortList(pod.Annotations[annIstioExcludeInbound])
	warnings = appendPortWarning(warnings, "annotation "+annIstioExcludeInbound, bad)
	info.excludeIn = exIn.add(istioStatusPort, istioHealthPort, istioPrometheusPort)
	info.ExcludeInboundPorts = info.excludeIn.String()

	exOut, bad := parsePortList(pod.Annotations[annIstioExcludeOutbound])
	warnings = appendPortWarning(warnings, "annotation "+annIstioExcludeOutbound, bad)
	info.ExcludeOutboundPorts = exOut.String()

	// Istio captures every inbound port unless includeInboundPorts narrows it ("" = none).
	info.IncludeInboundPorts, info.includeAll = "*", true
	if v, ok := pod.Annotations[annIstioIncludeInbound]; ok && strings.TrimSpace(v) != "*" {
		in, bad := parsePortList(v)
		warnings = appendPortWarning(warnings, "annotation "+annIstioIncludeInbound, bad)
		info.includeIn, info.includeAll = in, false
		info.IncludeInboundPorts = in.String()
	}
	return warnings
}

func linkerdPorts(info *MeshInfo, pod *corev1.Pod, nsAnnotations map[string]string, proxy *corev1.Container) (warnings []string) {
	// Linkerd reads its config.linkerd.io annotations from the pod, falling back to the
	// namespace.
	ann := func(key string) (string, string, bool) {
		if v, ok := pod.Annotations[key]; ok {
			return v, "annotation " + key, true
		}
		if v, ok := nsAnnotations[key]; ok {
			return v, "namespace annotation " + key, true
		}
		return "", "", false
	}
	// The proxy's own listen addresses are the truth once it is in the pod: they also reflect
	// cluster-wide Helm values, which no annotation shows. Before that, the annotations are what
	// the injector will use.
	port := func(env []string, key string, def int32) int32 {
		if p, ok := envPort(proxy, env...); ok {
			return p
		}
		if v, src, ok := ann(key); ok {
			if p, ok := parsePort(v); ok {
				return p
			}
			warnings = append(warnings, fmt.Sprintf("kubectl-mesh: ignored invalid port %q in %s", truncate(v, 16), src))
		}
		return def
	}
	info.ProxyContainer = LinkerdProxyContainer
	info.InboundPort = port([]string{envLinkerdInboundAddr, envLinkerdInboundAddrs}, annLinkerdInboundPort, LinkerdInboundPort)
	info.OutboundPort = port([]string{envLinkerdOutboundAddr, envLinkerdOutboundAddrs}, annLinkerdOutboundPort, LinkerdOutboundPort)
	info.AdminPort = port([]string{envLinkerdAdminAddr}, annLinkerdAdminPort, LinkerdAdminPort)
	info.ProxyUID = proxyUID(proxy, LinkerdProxyUID)
	info.IncludeInboundPorts, info.includeAll = "*", true

	var skipIn, skipOut portSet
	if v, src, ok := ann(annLinkerdSkipInbound); ok {
		var bad []string
		skipIn, bad = parsePortList(v)
		warnings = appendPortWarning(warnings, src, bad)
	}
	if v, src, ok := ann(annLinkerdSkipOutbound); ok {
		var bad []string
		skipOut, bad = parsePortList(v)
		warnings = appendPortWarning(warnings, src, bad)
	}
	info.excludeIn = skipIn.add(LinkerdControlPort, info.AdminPort)
	info.ExcludeInboundPorts = info.excludeIn.String()
	info.ExcludeOutboundPorts = skipOut.String()
	return warnings
}

func appendPortWarning(warnings []string, source string, bad []string) []string {
	if len(bad) == 0 {
		return warnings
	}
	return append(warnings, portListWarning(source, bad))
}

// proxyUID is the proxy container's runAsUser when set (OpenShift and custom installs change it),
// else the mesh's default.
func proxyUID(proxy *corev1.Container, def int64) int64 {
	if proxy != nil && proxy.SecurityContext != nil && proxy.SecurityContext.RunAsUser != nil {
		return *proxy.SecurityContext.RunAsUser
	}
	return def
}

// envPort reads the port of the first listen address ("0.0.0.0:4143", or a comma-separated list
// in the *_ADDRS variants) in the first of the named variables that the container sets.
func envPort(c *corev1.Container, names ...string) (int32, bool) {
	if c == nil {
		return 0, false
	}
	for _, name := range names {
		for _, e := range c.Env {
			if e.Name != name || e.Value == "" {
				continue
			}
			first, _, _ := strings.Cut(e.Value, ",")
			_, p, err := net.SplitHostPort(strings.TrimSpace(first))
			if err != nil {
				continue
			}
			if n, err := strconv.ParseUint(p, 10, 16); err == nil && n > 0 {
				return int32(n), true
			}
		}
	}
	return 0, false
}
