package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func newManager(t *testing.T, now *time.Time) (*Manager, *fake.Clientset) {
	cs := fake.NewSimpleClientset(&admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "injector"},
		Webhooks:   []admissionregistrationv1.MutatingWebhook{{Name: "a.example.io"}, {Name: "b.example.io"}},
	})
	m := &Manager{Client: cs, Namespace: "sys", SecretName: "tls", WebhookConfigName: "injector",
		DNSNames: []string{"svc.sys.svc"}, CertDir: t.TempDir(), CAValidity: 90 * time.Hour, CertValidity: 9 * time.Hour,
		Now: func() time.Time { return *now }}
	return m, cs
}

// verify checks the served files against the caBundle the API server would use.
func verify(t *testing.T, m *Manager, cs *fake.Clientset, at time.Time) *x509.Certificate {
	t.Helper()
	cfg, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(context.Background(), "injector", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(m.CertDir, KeyCert), filepath.Join(m.CertDir, KeyKey))
	if err != nil {
		t.Fatalf("served files do not form a key pair: %v", err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	for _, w := range cfg.Webhooks {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(w.ClientConfig.CABundle) {
			t.Fatalf("webhook %s has no caBundle", w.Name)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "svc.sys.svc", CurrentTime: at}); err != nil {
			t.Fatalf("webhook %s: served certificate does not verify against its caBundle: %v", w.Name, err)
		}
	}
	return leaf
}

func TestEnsureCreatesAndIsStable(t *testing.T) {
	now := time.Now()
	m, cs := newManager(t, &now)
	ctx := context.Background()
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	first := verify(t, m, cs, now)
	sec, _ := cs.CoreV1().Secrets("sys").Get(ctx, "tls", metav1.GetOptions{})
	rv := sec.ResourceVersion
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	sec, _ = cs.CoreV1().Secrets("sys").Get(ctx, "tls", metav1.GetOptions{})
	if sec.ResourceVersion != rv {
		t.Fatal("a second Ensure with valid certificates rewrote the Secret")
	}
	if !verify(t, m, cs, now).Equal(first) {
		t.Fatal("the served certificate changed without a reason")
	}
}

func TestServingRotationKeepsCA(t *testing.T) {
	now := time.Now()
	m, cs := newManager(t, &now)
	var rotations []string
	m.Rotations = func(k string) { rotations = append(rotations, k) }
	ctx := context.Background()
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	first := verify(t, m, cs, now)
	now = now.Add(7 * time.Hour) // past two thirds of the 9h serving lifetime
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	second := verify(t, m, cs, now)
	if second.Equal(first) {
		t.Fatal("serving certificate not renewed")
	}
	if string(second.RawIssuer) != string(first.RawIssuer) {
		t.Fatal("serving renewal changed the CA")
	}
	if len(rotations) != 1 || rotations[0] != "serving" {
		t.Fatalf("rotations = %v", rotations)
	}
}

func TestCARotationKeepsOldCAInBundle(t *testing.T) {
	now := time.Now()
	m, cs := newManager(t, &now)
	ctx := context.Background()
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	old := verify(t, m, cs, now)
	now = now.Add(61 * time.Hour) // past two thirds of the 90h CA lifetime
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	fresh := verify(t, m, cs, now)
	if string(fresh.RawIssuer) == string(old.RawIssuer) && fresh.Equal(old) {
		t.Fatal("CA rotation did not issue a new serving certificate")
	}
	// Certificates of the old CA (other replicas mid-rollover) must keep verifying: the old CA
	// stays in the bundle, behind the new one.
	cfg, _ := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "injector", metav1.GetOptions{})
	st, err := parse(map[string][]byte{KeyCABundle: cfg.Webhooks[0].ClientConfig.CABundle, KeyCAKey: mustSecret(t, cs)[KeyCAKey]})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.cas) != 2 {
		t.Fatalf("bundle holds %d CAs, want the new and the old", len(st.cas))
	}
	if old.CheckSignatureFrom(st.cas[1]) != nil || fresh.CheckSignatureFrom(st.cas[0]) != nil {
		t.Fatal("bundle order: want the new CA first and the old one second")
	}
}

func mustSecret(t *testing.T, cs *fake.Clientset) map[string][]byte {
	sec, err := cs.CoreV1().Secrets("sys").Get(context.Background(), "tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return sec.Data
}

func TestCorruptSecretIsReplaced(t *testing.T) {
	now := time.Now()
	m, cs := newManager(t, &now)
	ctx := context.Background()
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	sec, _ := cs.CoreV1().Secrets("sys").Get(ctx, "tls", metav1.GetOptions{})
	sec.Data[KeyCABundle] = []byte("garbage")
	if _, err := cs.CoreV1().Secrets("sys").Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	verify(t, m, cs, now)
}

func TestFilesWrittenOnlyOnChange(t *testing.T) {
	dir := t.TempDir()
	if err := writeFiles(dir, []byte("c"), []byte("k")); err != nil {
		t.Fatal(err)
	}
	st1, _ := os.Stat(filepath.Join(dir, KeyCert))
	time.Sleep(10 * time.Millisecond)
	if err := writeFiles(dir, []byte("c"), []byte("k")); err != nil {
		t.Fatal(err)
	}
	st2, _ := os.Stat(filepath.Join(dir, KeyCert))
	if !st1.ModTime().Equal(st2.ModTime()) {
		t.Fatal("unchanged certificate rewritten (would trigger a needless reload)")
	}
}

func TestCheckInterval(t *testing.T) {
	if CheckInterval(90*time.Second) != 7500*time.Millisecond || CheckInterval(1000*time.Hour) != time.Minute || CheckInterval(time.Second) != time.Second {
		t.Fatal("check interval outside its bounds")
	}
}
