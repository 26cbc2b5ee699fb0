// Package sidecar puts the lab's demo sidecar into a pod the way Istio's injector puts
// istio-proxy there: an init container that installs the inbound REDIRECT (mesh-sidecar init,
// root with NET_ADMIN only), and a proxy container that receives the redirected traffic as the
// non-root UID 1337 and forwards it to the application on 127.0.0.1. It is a test fixture and
// demo workload for the lab and the end-to-end tests, not a product mesh.
//
// The proxy is either our own (ProxyMeshSidecar: adds a configured delay and CPU cost, and keeps
// the ground-truth account of every request on its admin port, GET /stats) or unmodified Caddy
// (ProxyCaddy: image mesh-caddy, built on request with `mesh-lab build caddy`).
//
// The probe and its webhook learn about the sidecar from annotations rather than from the
// container's name, which would have to pose as Istio's (webhook/inject: mesh "custom",
// AnnotationProxyContainer and friends). The probe then reports the mesh as "custom", names the
// proxy's CPU after the mesh-sidecar container, and leaves the proxy's own ports out of the
// application's.
package sidecar

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/kubectl-mesh/kubectl-mesh/lab"
	"github.com/kubectl-mesh/kubectl-mesh/webhook/inject"
)

// The sidecar's fixed names and numbers, Istio's where Istio has one.
const (
	InitContainerName  = "mesh-sidecar-init"
	ProxyContainerName = "mesh-sidecar"
	// ProxyPort receives the redirected inbound traffic (Istio's 15006).
	ProxyPort = 15006
	// OutboundPort receives the redirected outbound traffic (Istio's 15001), with
	// Options.OutboundDestPorts.
	OutboundPort = 15001
	// AdminPort serves the proxy's own account (Istio's Envoy admin is 15000 too).
	AdminPort = 15000
	// ProxyUID runs the proxy, as istio-proxy runs as 1337.
	ProxyUID = 1337

	proxyPortName = "mesh-proxy"
	adminPortName = "mesh-admin"
	tmpVolume     = "mesh-sidecar-tmp"
)

// Proxy chooses the proxy program.
type Proxy string

const (
	// ProxyMeshSidecar is `mesh-sidecar proxy`: known delay and CPU cost, ground truth on
	// AdminPort.
	ProxyMeshSidecar Proxy = "mesh-sidecar"
	// ProxyCaddy is Caddy's `reverse-proxy` command, a proxy we did not write. It adds no
	// configured delay and has no admin account.
	ProxyCaddy Proxy = "caddy"
)

// Options configure Add. AppPort is required; every other zero value is a default.
type Options struct {
	// AppPort is the application's port: inbound TCP to it is redirected to the proxy, which
	// forwards to 127.0.0.1:AppPort.
	AppPort int32
	// Proxy is ProxyMeshSidecar unless set.
	Proxy Proxy
	// Delay, ResponseDelay and CPUPerRequest are what ProxyMeshSidecar adds to each request
	// (flags --delay, --response-delay, --cpu-per-request).
	Delay, ResponseDelay, CPUPerRequest time.Duration
	// Native adds the proxy as a native sidecar (an init container with restartPolicy Always),
	// as Istio does with native sidecars enabled; otherwise it is appended to the containers.
	Native bool
	// Image runs both containers, InitImage the init container when set; lab images by
	// default (mesh-sidecar, or mesh-caddy for the proxy with ProxyCaddy).
	Image, InitImage string
	// OutboundDestPorts, when set, also captures the pod's outgoing TCP to these destination
	// ports: ProxyMeshSidecar forwards it to its original destination through OutboundPort,
	// with the same delays, and keeps its account at /outbound/stats.
	OutboundDestPorts []int32
}

func (o Options) withDefaults() Options {
	if o.Proxy == "" {
		o.Proxy = ProxyMeshSidecar
	}
	if o.InitImage == "" {
		o.InitImage = lab.ImageRef("mesh-sidecar")
	}
	if o.Image == "" {
		o.Image = lab.ImageRef("mesh-sidecar")
		if o.Proxy == ProxyCaddy {
			o.Image = lab.ImageRef("mesh-caddy")
		}
	}
	return o
}

func (o Options) validate() error {
	var errs []error
	switch {
	case o.AppPort < 1 || o.AppPort > 65535:
		errs = append(errs, fmt.Errorf("app port %d is not a port (1-65535)", o.AppPort))
	case o.AppPort == ProxyPort || o.AppPort == AdminPort:
		errs = append(errs, fmt.Errorf("app port %d is the sidecar's own", o.AppPort))
	}
	switch o.Proxy {
	case ProxyMeshSidecar:
		for _, d := range []time.Duration{o.Delay, o.ResponseDelay, o.CPUPerRequest} {
			if d < 0 {
				errs = append(errs, fmt.Errorf("negative delay or CPU cost %v", d))
			}
		}
	case ProxyCaddy:
		if o.Delay != 0 || o.ResponseDelay != 0 || o.CPUPerRequest != 0 {
			errs = append(errs, errors.New("caddy is unmodified: it cannot add a delay or CPU cost"))
		}
		if len(o.OutboundDestPorts) > 0 {
			errs = append(errs, errors.New("caddy has no outbound listener"))
		}
	default:
		errs = append(errs, fmt.Errorf("unknown proxy %q (want %s or %s)", o.Proxy, ProxyMeshSidecar, ProxyCaddy))
	}
	return errors.Join(errs...)
}

// Add puts the sidecar into a pod (or a pod template): the init container first, so the
// redirect is in place before any other container starts; the proxy; and the annotations that
// tell the probe's webhook which container is the proxy and which port it captures. It refuses a
// pod that has either container already: adding twice would redirect to one proxy and start two.
func Add(meta *metav1.ObjectMeta, spec *corev1.PodSpec, o Options) error {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return fmt.Errorf("sidecar: %w", err)
	}
	for _, list := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for _, c := range list {
			if c.Name == InitContainerName || c.Name == ProxyContainerName {
				return fmt.Errorf("sidecar: the pod already has a container %s", c.Name)
			}
		}
	}

	proxy := proxyContainer(o)
	initc := initContainer(o)
	if o.Native {
		always := corev1.ContainerRestartPolicyAlways
		proxy.RestartPolicy = &always
		spec.InitContainers = append([]corev1.Container{initc, proxy}, spec.InitContainers...)
	} else {
		spec.InitContainers = append([]corev1.Container{initc}, spec.InitContainers...)
		spec.Containers = append(spec.Containers, proxy)
	}
	if o.Proxy == ProxyCaddy {
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: tmpVolume,
			VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}})
	}

	if meta.Annotations == nil {
		meta.Annotations = map[string]string{}
	}
	meta.Annotations[inject.AnnotationProxyContainer] = ProxyContainerName
	meta.Annotations[inject.AnnotationProxyInboundPort] = strconv.Itoa(ProxyPort)
	// Only the application's port is captured (init --app-port), not every port as Istio does
	// by default: other declared ports bypass the proxy, and the probe must know they do.
	meta.Annotations[inject.AnnotationProxyInboundPorts] = strconv.Itoa(int(o.AppPort))
	if len(o.OutboundDestPorts) > 0 {
		meta.Annotations[inject.AnnotationProxyOutboundPort] = strconv.Itoa(OutboundPort)
	}
	return nil
}

// initContainer runs `mesh-sidecar init`: nftables rules in the pod's network namespace.
func initContainer(o Options) corev1.Container {
	f := false
	return corev1.Container{
		Name:            InitContainerName,
		Image:           o.InitImage,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Args:            initArgs(o),
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
		},
		SecurityContext: &corev1.SecurityContext{
			Capabilities: &corev1.Capabilities{
				// NET_ADMIN: change nftables in the pod's network namespace. Unlike Istio's
				// istio-init, no NET_RAW: the rules go over netlink from Go, not through the
				// iptables binaries. Everything else is dropped.
				Add:  []corev1.Capability{"NET_ADMIN"},
				Drop: []corev1.Capability{"ALL"},
			},
			// Root because Kubernetes grants added capabilities to a non-root process only
			// through file capabilities, which the image does not carry; the bounding set
			// above is all this root has, in the pod's own namespaces.
			RunAsUser:                ptr.To[int64](0),
			RunAsNonRoot:             &f,
			Privileged:               &f,
			AllowPrivilegeEscalation: &f,
			ReadOnlyRootFilesystem:   ptr.To(true),
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

func initArgs(o Options) []string {
	args := []string{"init", "--app-port", strconv.Itoa(int(o.AppPort)), "--proxy-port", strconv.Itoa(ProxyPort)}
	if len(o.OutboundDestPorts) > 0 {
		var dests []string
		for _, p := range o.OutboundDestPorts {
			dests = append(dests, strconv.Itoa(int(p)))
		}
		args = append(args, "--outbound-port", strconv.Itoa(OutboundPort),
			"--outbound-dest-ports", strings.Join(dests, ","), "--proxy-uid", strconv.Itoa(ProxyUID))
	}
	return args
}

// proxyContainer runs the proxy as UID 1337 with no capability at all.
func proxyContainer(o Options) corev1.Container {
	f, t := false, true
	c := corev1.Container{
		Name:            ProxyContainerName,
		Image:           o.Image,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Ports:           []corev1.ContainerPort{{Name: proxyPortName, ContainerPort: ProxyPort, Protocol: corev1.ProtocolTCP}},
		Resources: corev1.ResourceRequirements{
			// No CPU limit: throttling would add delays that are neither the configured ones
			// nor the proxy's own, and the probe would measure them.
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
		},
		SecurityContext: &corev1.SecurityContext{
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			RunAsUser:                ptr.To[int64](ProxyUID),
			RunAsGroup:               ptr.To[int64](ProxyUID),
			RunAsNonRoot:             &t,
			Privileged:               &f,
			AllowPrivilegeEscalation: &f,
			ReadOnlyRootFilesystem:   &t,
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	upstream := "127.0.0.1:" + strconv.Itoa(int(o.AppPort))
	switch o.Proxy {
	case ProxyCaddy:
		// http:// and a port-only address: plain HTTP, no certificate automation.
		c.Args = []string{"reverse-proxy", "--from", "http://:" + strconv.Itoa(ProxyPort), "--to", upstream}
		// Caddy keeps its instance ID and storage under XDG directories; the root filesystem
		// stays read-only and they go to a memory-backed scratch volume.
		c.Env = []corev1.EnvVar{{Name: "XDG_DATA_HOME", Value: "/tmp/data"}, {Name: "XDG_CONFIG_HOME", Value: "/tmp/config"}}
		c.VolumeMounts = []corev1.VolumeMount{{Name: tmpVolume, MountPath: "/tmp"}}
		c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{
			Port: intstr.FromString(proxyPortName)}}, PeriodSeconds: 2}
	default:
		c.Args = []string{"proxy", "--listen", ":" + strconv.Itoa(ProxyPort), "--upstream", upstream,
			"--delay", o.Delay.String(), "--response-delay", o.ResponseDelay.String(),
			"--cpu-per-request", o.CPUPerRequest.String(), "--admin", ":" + strconv.Itoa(AdminPort)}
		if len(o.OutboundDestPorts) > 0 {
			c.Args = append(c.Args, "--outbound-listen", "127.0.0.1:"+strconv.Itoa(OutboundPort))
		}
		c.Ports = append(c.Ports, corev1.ContainerPort{Name: adminPortName, ContainerPort: AdminPort, Protocol: corev1.ProtocolTCP})
		c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: "/healthz", Port: intstr.FromString(adminPortName)}}, PeriodSeconds: 2}
	}
	return c
}

// StatsURL is where the ground truth of a pod's ProxyMeshSidecar is, from inside the lab;
// OutboundStatsURL that of its outbound listener.
func StatsURL(podIP string) string {
	return "http://" + net.JoinHostPort(podIP, strconv.Itoa(AdminPort)) + "/stats"
}

func OutboundStatsURL(podIP string) string {
	return "http://" + net.JoinHostPort(podIP, strconv.Itoa(AdminPort)) + "/outbound/stats"
}
