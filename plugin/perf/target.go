package perf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-mesh/kubectl-mesh/loadgen"
)

// Target is what a run loads: a Service of the cluster (svc/NAME:PORT[/path]) or a URL.
type Target struct {
	// Raw is the argument as the user gave it, kept for the run's record.
	Raw string
	// Service and Port name a Service target; Port is the service port's number or name.
	Service string
	Port    string
	Path    string
	// URL is set for a URL target.
	URL *url.URL
}

// ParseTarget reads `svc/NAME:PORT[/path]` (also `service/`), or an http://, https:// or
// grpc:// URL. It checks the syntax only: whether the Service exists is Resolve's job.
func ParseTarget(s string) (Target, error) {
	t := Target{Raw: s}
	if s == "" {
		return t, errors.New("no target: give svc/NAME:PORT[/path] or a URL")
	}
	for _, prefix := range []string{"svc/", "service/", "services/"} {
		rest, ok := strings.CutPrefix(s, prefix)
		if !ok {
			continue
		}
		hostPort, path, _ := strings.Cut(rest, "/")
		name, port, ok := strings.Cut(hostPort, ":")
		if !ok || port == "" {
			return t, fmt.Errorf("target %q has no port: write svc/%s:PORT[/path] (PORT is the service port's number or name)", s, name)
		}
		if errs := validation.IsDNS1035Label(name); len(errs) > 0 {
			return t, fmt.Errorf("target %q: %q is not a Service name: %s", s, name, errs[0])
		}
		if n, err := strconv.Atoi(port); err == nil {
			if n < 1 || n > 65535 {
				return t, fmt.Errorf("target %q: port %d is outside 1-65535", s, n)
			}
		} else if errs := validation.IsValidPortName(port); len(errs) > 0 {
			return t, fmt.Errorf("target %q: %q is neither a port number nor a port name: %s", s, port, errs[0])
		}
		t.Service, t.Port, t.Path = name, port, "/"+path
		return t, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return t, fmt.Errorf("target %q is neither svc/NAME:PORT nor a URL: %v", s, err)
	}
	switch u.Scheme {
	case "http", "https", "grpc":
	case "":
		return t, fmt.Errorf("target %q is neither svc/NAME:PORT[/path] nor a URL with a scheme (http://, https://, grpc://)", s)
	default:
		return t, fmt.Errorf("target %q: scheme %q is not supported (http, https, grpc)", s, u.Scheme)
	}
	if u.Hostname() == "" {
		return t, fmt.Errorf("target %q has no host", s)
	}
	t.URL = u
	return t, nil
}

// Resolved is a target as the cluster sees it.
type Resolved struct {
	// URL is what the load generator loads, from inside the cluster.
	URL string
	// Namespace and Service name the Service behind the target, when there is one.
	Namespace, Service string
	// Pods are the Service's ready endpoints' pods: whose probes the run reads.
	Pods []corev1.Pod
	// Note says why the probes' view will be missing, when it will.
	Note string
}

// Resolve finds the Service and its pods. A URL target whose host is a Service of this cluster
// (NAME, NAME.NS, NAME.NS.svc[.DOMAIN]) is resolved the same way; any other URL is loaded as
// given, with the client's view only.
func Resolve(ctx context.Context, cs kubernetes.Interface, t Target, namespace string, protocol loadgen.Protocol) (*Resolved, error) {
	if t.URL != nil {
		r := &Resolved{URL: t.URL.String()}
		name, ns := serviceOfHost(t.URL.Hostname(), namespace)
		if name == "" {
			r.Note = fmt.Sprintf("%s is not a Service name of this cluster: only the client's view is reported", t.URL.Hostname())
			return r, nil
		}
		svc, err := cs.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) {
				r.Note = fmt.Sprintf("no Service %s/%s: only the client's view is reported", ns, name)
				return r, nil
			}
			return nil, ExplainForbidden(err, "get services", ns)
		}
		port := t.URL.Port()
		if port == "" {
			port = map[string]string{"http": "80", "https": "443"}[t.URL.Scheme]
		}
		sp, err := servicePort(svc, port)
		if err != nil {
			return nil, err
		}
		r.Namespace, r.Service = ns, name
		r.Pods, err = endpointPods(ctx, cs, svc, sp)
		return r, err
	}
	svc, err := cs.CoreV1().Services(namespace).Get(ctx, t.Service, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("service %s not found in namespace %s (kubectl get svc -n %s)", t.Service, namespace, namespace)
		}
		return nil, ExplainForbidden(err, "get services", namespace)
	}
	sp, err := servicePort(svc, t.Port)
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if protocol == loadgen.GRPC {
		scheme = "grpc"
	} else if sp.AppProtocol != nil && *sp.AppProtocol == "https" {
		scheme = "https"
	}
	// NAME.NS.svc resolves through every pod's DNS search path whatever the cluster domain is.
	host := net.JoinHostPort(fmt.Sprintf("%s.%s.svc", svc.Name, svc.Namespace), strconv.Itoa(int(sp.Port)))
	u := url.URL{Scheme: scheme, Host: host, Path: t.Path}
	if scheme == "grpc" {
		u.Path = ""
	}
	r := &Resolved{URL: u.String(), Namespace: svc.Namespace, Service: svc.Name}
	r.Pods, err = endpointPods(ctx, cs, svc, sp)
	return r, err
}

// serviceOfHost recognises the host names a pod may use for a Service.
func serviceOfHost(host, namespace string) (name, ns string) {
	if net.ParseIP(host) != nil {
		return "", ""
	}
	parts := strings.Split(host, ".")
	switch {
	case len(parts) == 1:
		return parts[0], namespace
	case len(parts) == 2:
		return parts[0], parts[1]
	case len(parts) >= 3 && parts[2] == "svc":
		return parts[0], parts[1]
	}
	return "", ""
}

func servicePort(svc *corev1.Service, port string) (corev1.ServicePort, error) {
	var names []string
	for _, p := range svc.Spec.Ports {
		if p.Name == port || strconv.Itoa(int(p.Port)) == port {
			return p, nil
		}
		names = append(names, fmt.Sprintf("%d", p.Port))
		if p.Name != "" {
			names[len(names)-1] += " (" + p.Name + ")"
		}
	}
	return corev1.ServicePort{}, fmt.Errorf("service %s/%s has no port %s; its ports: %s", svc.Namespace, svc.Name, port, strings.Join(names, ", "))
}

// endpointPods returns the pods behind the Service's ready endpoints. A Service with none is
// an error: the load would only measure connection failures.
func endpointPods(ctx context.Context, cs kubernetes.Interface, svc *corev1.Service, sp corev1.ServicePort) ([]corev1.Pod, error) {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil, fmt.Errorf("service %s/%s is an ExternalName service: it has no pods to measure", svc.Namespace, svc.Name)
	}
	slices, err := cs.DiscoveryV1().EndpointSlices(svc.Namespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc.Name})
	if err != nil {
		return nil, ExplainForbidden(err, "list endpointslices", svc.Namespace)
	}
	seen := map[string]bool{}
	var pods []corev1.Pod
	for _, s := range slices.Items {
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			if ep.TargetRef == nil || ep.TargetRef.Kind != "Pod" || seen[ep.TargetRef.Name] {
				continue
			}
			seen[ep.TargetRef.Name] = true
			p, err := cs.CoreV1().Pods(svc.Namespace).Get(ctx, ep.TargetRef.Name, metav1.GetOptions{})
			if err != nil {
				if apierrors.IsNotFound(err) {
					continue // deleted since the slice was written
				}
				return nil, ExplainForbidden(err, "get pods", svc.Namespace)
			}
			pods = append(pods, *p)
		}
	}
	if len(pods) == 0 {
		return nil, fmt.Errorf("service %s/%s has no ready endpoints (port %s): check its selector and that its pods are Ready (kubectl -n %s get endpointslices -l %s=%s)",
			svc.Namespace, svc.Name, strconv.Itoa(int(sp.Port)), svc.Namespace, discoveryv1.LabelServiceName, svc.Name)
	}
	return pods, nil
}

// ExplainForbidden names the permission a Forbidden error lacks and the command that checks it
// (namespace "" means all namespaces); other errors are returned as they are.
func ExplainForbidden(err error, verbResource, namespace string) error {
	if !apierrors.IsForbidden(err) {
		return err
	}
	where := "in namespace " + namespace
	flag := " -n " + namespace
	if namespace == "" {
		where, flag = "in all namespaces", " -A"
	}
	return fmt.Errorf("permission denied: cannot %s %s (kubectl auth can-i %s%s)", verbResource, where, verbResource, flag)
}
