package pki

import (
	"crypto/x509"
	"net"
	"testing"
	"time"
)

func TestIssueVerifiesAgainstCA(t *testing.T) {
	ca, err := NewCA("lab-ca")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(Request{CommonName: "kube-apiserver", DNSNames: []string{"kubernetes.default.svc"},
		IPs: []net.IP{net.ParseIP("127.0.0.1")}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	if _, err := leaf.Cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "kubernetes.default.svc",
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Fatalf("server cert does not verify: %v", err)
	}
	if _, err := leaf.Cert.Verify(x509.VerifyOptions{Roots: pool,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Fatal("a server-only certificate verified for client auth")
	}
	if leaf.Cert.NotAfter.Before(time.Now().Add(Validity - 2*time.Hour)) {
		t.Fatalf("validity too short: %v", leaf.Cert.NotAfter)
	}
}

func TestIssueRejectsNoUsage(t *testing.T) {
	ca, err := NewCA("lab-ca")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Issue(Request{CommonName: "x"}); err == nil {
		t.Fatal("expected an error for a certificate without usage")
	}
}

func TestWriteLoadRoundTrip(t *testing.T) {
	ca, err := NewCA("lab-ca")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := WritePair(dir, "ca", ca.Cert, ca.Key); err != nil {
		t.Fatal(err)
	}
	cert, key, err := LoadPair(dir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	if !cert.Equal(ca.Cert) {
		t.Fatal("certificate changed in round trip")
	}
	if _, err := (&CA{Cert: cert, Key: key}).Issue(Request{CommonName: "c", Client: true}); err != nil {
		t.Fatalf("loaded CA cannot sign: %v", err)
	}
}
