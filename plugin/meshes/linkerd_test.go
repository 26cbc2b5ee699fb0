package meshes

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"
)

func parseCert(t *testing.T, p string) *x509.Certificate {
	t.Helper()
	b, rest := pem.Decode([]byte(p))
	if b == nil || b.Type != "CERTIFICATE" || len(rest) != 0 {
		t.Fatalf("not one PEM certificate: %q", p)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLinkerdCertificatesChainKeyTypeAndValidity(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	certs, err := GenerateLinkerdCertificates("", now)
	if err != nil {
		t.Fatal(err)
	}
	root := parseCert(t, certs.TrustAnchorPEM)
	issuer := parseCert(t, certs.IssuerCertPEM)

	// Names as in Linkerd's guide, for the default trust domain.
	if root.Subject.CommonName != "root.linkerd.cluster.local" || issuer.Subject.CommonName != "identity.linkerd.cluster.local" {
		t.Errorf("names %q, %q", root.Subject.CommonName, issuer.Subject.CommonName)
	}
	// Both ECDSA P-256, signed with ECDSA-SHA256.
	for name, c := range map[string]*x509.Certificate{"anchor": root, "issuer": issuer} {
		pub, ok := c.PublicKey.(*ecdsa.PublicKey)
		if !ok || pub.Curve != elliptic.P256() || c.PublicKeyAlgorithm != x509.ECDSA {
			t.Errorf("%s key is %T %v, want ECDSA P-256", name, c.PublicKey, c.PublicKeyAlgorithm)
		}
		if c.SignatureAlgorithm != x509.ECDSAWithSHA256 {
			t.Errorf("%s signed with %v", name, c.SignatureAlgorithm)
		}
		if !c.IsCA || !c.BasicConstraintsValid || c.KeyUsage&x509.KeyUsageCertSign == 0 {
			t.Errorf("%s is not a CA that may sign certificates", name)
		}
	}
	// The issuer signs leaves only.
	if issuer.MaxPathLen != 0 || !issuer.MaxPathLenZero {
		t.Errorf("issuer path length %d (zero %v), want 0", issuer.MaxPathLen, issuer.MaxPathLenZero)
	}
	// The chain: the issuer verifies against the anchor alone, the anchor is self-signed.
	pool := x509.NewCertPool()
	pool.AddCert(root)
	if _, err := issuer.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("issuer does not chain to the trust anchor: %v", err)
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		t.Errorf("anchor not self-signed: %v", err)
	}
	// Validity: valid now (and for nodes whose clock lags a little), the issuer for a year, the
	// anchor for ten, and the issuer expires first.
	for name, c := range map[string]*x509.Certificate{"anchor": root, "issuer": issuer} {
		if !c.NotBefore.Before(now.Add(-time.Minute)) {
			t.Errorf("%s not valid a minute ago: %s", name, c.NotBefore)
		}
	}
	if got := issuer.NotAfter.Sub(now); got != IssuerLifetime {
		t.Errorf("issuer valid for %s, want %s", got, IssuerLifetime)
	}
	if got := root.NotAfter.Sub(now); got != TrustAnchorLifetime {
		t.Errorf("anchor valid for %s, want %s", got, TrustAnchorLifetime)
	}
	if _, err := issuer.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now.Add(IssuerLifetime + time.Hour), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
		t.Error("issuer still verifies after its lifetime")
	}
	// The key is the issuer's, in the EC PRIVATE KEY form Linkerd reads.
	kb, _ := pem.Decode([]byte(certs.IssuerKeyPEM))
	if kb == nil || kb.Type != "EC PRIVATE KEY" {
		t.Fatalf("issuer key block %v", kb)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !key.PublicKey.Equal(issuer.PublicKey) {
		t.Error("issuer key does not match the issuer certificate")
	}
	// Two runs make two different anchors.
	again, _ := GenerateLinkerdCertificates("", now)
	if again.TrustAnchorPEM == certs.TrustAnchorPEM || root.SerialNumber.Cmp(parseCert(t, again.TrustAnchorPEM).SerialNumber) == 0 {
		t.Error("two generated anchors are the same")
	}
	custom, _ := GenerateLinkerdCertificates("example.org", now)
	if cn := parseCert(t, custom.IssuerCertPEM).Subject.CommonName; cn != "identity.linkerd.example.org" {
		t.Errorf("issuer for trust domain example.org named %q", cn)
	}
}

// An upgrade keeps the installed release's certificates; a user's own are left alone.
func TestLinkerdValuesKeepCertificates(t *testing.T) {
	l := Must("linkerd")
	cp := Chart{Name: "linkerd-control-plane"}
	first, err := l.Values(context.Background(), Env{}, cp, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	anchor, _ := first["identityTrustAnchorsPEM"].(string)
	if anchor == "" || lookup(first, "identity", "issuer", "tls", "keyPEM") == "" {
		t.Fatalf("first install generated no certificates: %v", first)
	}
	again, err := l.Values(context.Background(), Env{}, cp, nil, first)
	if err != nil {
		t.Fatal(err)
	}
	if !sameValues(first, again) {
		t.Error("an upgrade generated new certificates instead of keeping the installed ones")
	}
	own, err := l.Values(context.Background(), Env{}, cp, map[string]any{"identityTrustAnchorsPEM": "mine"}, first)
	if err != nil || len(own) != 0 {
		t.Errorf("with the user's own anchor: %v, %v", own, err)
	}
}

func TestLinkerdChartVersion(t *testing.T) {
	l := Must("linkerd")
	for in, want := range map[string]string{"edge-25.11.3": "2025.11.3", "2025.11.3": "2025.11.3", "": ""} {
		if got := l.ChartVersion(in); got != want {
			t.Errorf("ChartVersion(%q) = %q, want %q", in, got, want)
		}
	}
	if got := Must("istio").ChartVersion("v1.28.0"); got != "1.28.0" {
		t.Errorf("istio ChartVersion(v1.28.0) = %q", got)
	}
}
