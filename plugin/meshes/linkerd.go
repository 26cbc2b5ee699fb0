package meshes

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"regexp"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-mesh/kubectl-mesh/webhook/inject"
)

// Linkerd from its edge charts: linkerd-crds (CRDs as templates, and the Gateway API CRDs when
// asked), then linkerd-control-plane, which needs a trust anchor and an identity issuer that
// Helm does not make: they are generated here (ECDSA P-256, as Linkerd requires) and kept across
// upgrades.
type linkerd struct{}

func init() { Register(linkerd{}) }

func (linkerd) Name() string       { return "linkerd" }
func (linkerd) Repository() string { return "https://helm.linkerd.io/edge" }
func (linkerd) Namespace() string  { return "linkerd" }

// NamespaceLabels are the ones `linkerd install` puts on its namespace: the injector and the
// policy webhooks leave the control plane's own pods alone, and linkerd-init's NET_ADMIN is
// allowed under Pod Security.
func (linkerd) NamespaceLabels(ns string) map[string]string {
	return map[string]string{
		"linkerd.io/is-control-plane":          "true",
		"linkerd.io/control-plane-ns":          ns,
		"config.linkerd.io/admission-webhooks": "disabled",
		"pod-security.kubernetes.io/enforce":   "privileged",
	}
}

func (linkerd) Charts() []Chart {
	return []Chart{
		{Name: "linkerd-crds", Release: "linkerd-crds", CRDs: true},
		{Name: "linkerd-control-plane", Release: "linkerd-control-plane"},
	}
}

var edgeVersion = regexp.MustCompile(`^edge-(\d\d)\.(\d+)\.(\d+)$`)

// ChartVersion accepts the release name too: edge-25.11.3 is chart version 2025.11.3.
func (linkerd) ChartVersion(v string) string {
	if m := edgeVersion.FindStringSubmatch(v); m != nil {
		return "20" + m[1] + "." + m[2] + "." + m[3]
	}
	return v
}

// Gateway API CRDs Linkerd's policy controller watches; without them it does not start.
var gatewayAPICRDs = []string{"httproutes.gateway.networking.k8s.io", "grpcroutes.gateway.networking.k8s.io"}

// Values: linkerd-crds installs the Gateway API CRDs only when they are missing and asked for
// (or when this release installed them before); linkerd-control-plane gets its certificates,
// those of the installed release on an upgrade, new ones on a first install, none when the user
// gives their own.
func (linkerd) Values(ctx context.Context, env Env, c Chart, user, previous map[string]any) (map[string]any, error) {
	switch c.Name {
	case "linkerd-crds":
		if _, set := user["installGatewayAPI"]; set {
			return nil, nil
		}
		if v, _ := previous["installGatewayAPI"].(bool); v {
			return map[string]any{"installGatewayAPI": true}, nil
		}
		var missing []string
		for _, name := range gatewayAPICRDs {
			_, err := env.Dynamic.Resource(crdResource).Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				missing = append(missing, name)
			} else if err != nil {
				return nil, fmt.Errorf("checking the Gateway API CRDs: %w", err)
			}
		}
		switch {
		case len(missing) == 0:
			return map[string]any{"installGatewayAPI": false}, nil
		case env.GatewayAPI:
			return map[string]any{"installGatewayAPI": true}, nil
		default:
			return nil, fmt.Errorf("the Gateway API CRDs Linkerd needs are missing (%s): add --gateway-api to have linkerd-crds install them, or install them first (kubectl apply -f the Gateway API standard-install.yaml)",
				strings.Join(missing, ", "))
		}
	case "linkerd-control-plane":
		if _, own := user["identityTrustAnchorsPEM"]; own {
			return nil, nil
		}
		if anchor, _ := previous["identityTrustAnchorsPEM"].(string); anchor != "" {
			crt, _ := lookup(previous, "identity", "issuer", "tls", "crtPEM").(string)
			key, _ := lookup(previous, "identity", "issuer", "tls", "keyPEM").(string)
			if crt != "" && key != "" {
				return certValues(&LinkerdCertificates{TrustAnchorPEM: anchor, IssuerCertPEM: crt, IssuerKeyPEM: key}), nil
			}
		}
		domain, _ := user["identityTrustDomain"].(string)
		certs, err := GenerateLinkerdCertificates(domain, time.Now())
		if err != nil {
			return nil, err
		}
		return certValues(certs), nil
	}
	return nil, nil
}

func certValues(c *LinkerdCertificates) map[string]any {
	return map[string]any{
		"identityTrustAnchorsPEM": c.TrustAnchorPEM,
		"identity": map[string]any{"issuer": map[string]any{"tls": map[string]any{
			"crtPEM": c.IssuerCertPEM, "keyPEM": c.IssuerKeyPEM,
		}}},
	}
}

func lookup(m map[string]any, path ...string) any {
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[p]
	}
	return cur
}

// LinkerdCertificates are the PEM blocks linkerd-control-plane takes as identityTrustAnchorsPEM
// and identity.issuer.tls.crtPEM/keyPEM.
type LinkerdCertificates struct {
	TrustAnchorPEM string
	IssuerCertPEM  string
	IssuerKeyPEM   string
}

// Lifetimes of the generated certificates, those of Linkerd's own guide (step's root-ca profile,
// and an issuer of 8760h): the issuer must be rotated within a year, the anchor much later.
const (
	TrustAnchorLifetime = 10 * 365 * 24 * time.Hour
	IssuerLifetime      = 365 * 24 * time.Hour
)

// GenerateLinkerdCertificates makes a self-signed trust anchor root.linkerd.DOMAIN and an
// intermediate identity issuer identity.linkerd.DOMAIN signed by it, both ECDSA P-256 (the only
// key type Linkerd's identity controller accepts). The issuer may sign leaf certificates only
// (path length 0). domain is the trust domain, cluster.local when empty.
func GenerateLinkerdCertificates(domain string, now time.Time) (*LinkerdCertificates, error) {
	if domain == "" {
		domain = "cluster.local"
	}
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	// A little in the past, so that nodes whose clock lags still accept the certificates.
	notBefore := now.Add(-5 * time.Minute).UTC()
	root := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "root.linkerd." + domain},
		NotBefore:             notBefore,
		NotAfter:              now.Add(TrustAnchorLifetime).UTC(),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	rootDER, err := sign(root, root, &rootKey.PublicKey, rootKey)
	if err != nil {
		return nil, err
	}
	rootCert, err := x509.ParseCertificate(rootDER)
	if err != nil {
		return nil, err
	}
	issuerKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	issuer := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "identity.linkerd." + domain},
		NotBefore:             notBefore,
		NotAfter:              now.Add(IssuerLifetime).UTC(),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	issuerDER, err := sign(issuer, rootCert, &issuerKey.PublicKey, rootKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(issuerKey)
	if err != nil {
		return nil, err
	}
	return &LinkerdCertificates{
		TrustAnchorPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootDER})),
		IssuerCertPEM:  string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: issuerDER})),
		IssuerKeyPEM:   string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})),
	}, nil
}

// sign fills in a random serial and the subject key id, and signs tmpl with parent's key.
func sign(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, parentKey *ecdsa.PrivateKey) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	// RFC 5280's method 1 would hash the bit string only; any stable unique id does.
	id := sha1.Sum(pubDER)
	tmpl.SubjectKeyId = id[:]
	return x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
}

func (linkerd) Selectors() Selectors {
	return Selectors{Deployments: "linkerd.io/control-plane-component", ConfigMaps: "linkerd.io/control-plane-component=controller"}
}

func (linkerd) ProxyContainer() string { return inject.LinkerdProxyContainer }

func (linkerd) Injection() Injection {
	return Injection{Annotation: true, Key: "linkerd.io/inject", Value: "enabled"}
}

var linkerdCore = []string{"destination", "identity", "proxy-injector"}

// Detect groups the Deployments labelled linkerd.io/control-plane-component by namespace. Both
// the linkerd CLI and the Helm charts annotate them linkerd.io/created-by ("linkerd/cli
// edge-25.11.3", "linkerd/helm edge-25.11.3"), which says who installed them and the version.
func (linkerd) Detect(s *Snapshot) []ControlPlane {
	byNS := map[string]*ControlPlane{}
	var order []string
	found := map[string]map[string]bool{}
	for i := range s.Deployments {
		d := &s.Deployments[i]
		comp := d.Labels["linkerd.io/control-plane-component"]
		if comp == "" {
			continue
		}
		cp := byNS[d.Namespace]
		if cp == nil {
			cp = &ControlPlane{Mesh: "linkerd", Namespace: d.Namespace}
			byNS[d.Namespace] = cp
			order = append(order, d.Namespace)
			found[d.Namespace] = map[string]bool{}
		}
		found[d.Namespace][comp] = true
		cp.Components = append(cp.Components, deploymentComponent(d))
		by, version, _ := strings.Cut(d.Annotations["linkerd.io/created-by"], " ")
		if cp.Version == "" {
			cp.Version = version
		}
		if cp.Version == "" {
			cp.Version = d.Labels["app.kubernetes.io/version"]
		}
		if cp.Version == "" {
			for _, c := range d.Spec.Template.Spec.Containers {
				if strings.Contains(c.Image, "/controller:") {
					cp.Version = imageTag(c.Image)
				}
			}
		}
		switch {
		case helmRelease(d.ObjectMeta) != "":
			cp.InstalledBy = "Helm (release " + helmRelease(d.ObjectMeta) + ")"
		case cp.InstalledBy != "":
		case by == "linkerd/cli":
			cp.InstalledBy = "linkerd CLI"
		case by == "linkerd/helm":
			cp.InstalledBy = "Helm"
		}
	}
	var out []ControlPlane
	sort.Strings(order)
	for _, ns := range order {
		cp := byNS[ns]
		if cp.InstalledBy == "" {
			cp.InstalledBy = "unknown"
		}
		sort.Slice(cp.Components, func(i, j int) bool { return cp.Components[i].Name < cp.Components[j].Name })
		for _, want := range linkerdCore {
			if !found[ns][want] {
				cp.Notes = append(cp.Notes, "no "+want+" Deployment")
			}
		}
		cp.Injector = webhookNamed(s.MutatingWebhooks, "linkerd-proxy-injector-webhook-config")
		if cp.Injector == "" {
			cp.Notes = append(cp.Notes, "no linkerd-proxy-injector-webhook-config webhook: new pods get no proxy")
		}
		if !hasConfigMap(s, ns, "linkerd-config") {
			cp.Notes = append(cp.Notes, "ConfigMap "+ns+"/linkerd-config is missing")
		}
		out = append(out, *cp)
	}
	return out
}

// ConflictHint explains Linkerd objects that outlive an installation made by the linkerd CLI.
func (linkerd) ConflictHint(kind, name string) string {
	if strings.HasPrefix(name, "linkerd") || strings.HasSuffix(name, ".linkerd.io") {
		return "left by another Linkerd installation (the linkerd CLI, or a Helm release under another name or namespace); `linkerd uninstall | kubectl delete -f -` removes one made by the CLI"
	}
	return ""
}
