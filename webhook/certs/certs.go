// Package certs lets the webhook manage its own TLS: a CA and a serving certificate kept in a
// Secret, the CA bundle written into the MutatingWebhookConfiguration, and the serving files
// written where controller-runtime's webhook server reloads them without a restart.
//
// Rotation without losing an admission:
//   - the serving certificate is renewed, under the same CA, when a third of its lifetime is
//     left; the CA bundle does not change, so the API server trusts the new one at once;
//   - the CA is renewed when a third of its lifetime is left; the new CA is added to the bundle
//     in front of the old one (which stays until it expires), and the bundle is written into the
//     webhook configuration before any replica serves a certificate of the new CA.
//
// Every replica runs the same loop. Writes to the Secret use its resourceVersion, so replicas
// never overwrite each other: the loser of a race reads the winner's certificates.
package certs

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-mesh/kubectl-mesh/lab/pki"
)

// Secret keys.
const (
	KeyCABundle = "ca.crt" // current CA first, then older CAs that have not expired
	KeyCAKey    = "ca.key" // key of the current (first) CA
	KeyCert     = "tls.crt"
	KeyKey      = "tls.key"
)

// Manager keeps the webhook's certificates valid.
type Manager struct {
	Client            kubernetes.Interface
	Namespace         string
	SecretName        string
	WebhookConfigName string
	DNSNames          []string
	CertDir           string
	CAValidity        time.Duration
	CertValidity      time.Duration
	// Now is the clock (tests move it); nil means time.Now.
	Now func() time.Time
	// Rotations counts certificate or CA renewals this replica made (for metrics and tests).
	Rotations func(kind string)
}

func (m *Manager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// state is what the Secret holds, parsed.
type state struct {
	cas    []*x509.Certificate // bundle, current first
	ca     *pki.CA
	cert   *x509.Certificate
	certPE []byte
	keyPE  []byte
}

// Ensure makes the Secret, the webhook configuration's caBundle and the files in CertDir
// current. It is safe to call concurrently from several replicas.
func (m *Manager) Ensure(ctx context.Context) error {
	for attempt := 0; attempt < 5; attempt++ {
		sec, err := m.Client.CoreV1().Secrets(m.Namespace).Get(ctx, m.SecretName, metav1.GetOptions{})
		exists := err == nil
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("certs: read Secret %s/%s: %w", m.Namespace, m.SecretName, err)
		}
		var st *state
		if exists {
			st, _ = parse(sec.Data) // unparseable data is replaced below
		}
		next, changed, err := m.renew(st)
		if err != nil {
			return err
		}
		if changed {
			data, err := next.data()
			if err != nil {
				return err
			}
			if exists {
				sec.Data = data
				_, err = m.Client.CoreV1().Secrets(m.Namespace).Update(ctx, sec, metav1.UpdateOptions{})
			} else {
				_, err = m.Client.CoreV1().Secrets(m.Namespace).Create(ctx, &corev1.Secret{
					ObjectMeta: metav1.ObjectMeta{Name: m.SecretName, Namespace: m.Namespace,
						Labels: map[string]string{"app.kubernetes.io/part-of": "kubectl-mesh"}},
					Type: corev1.SecretTypeOpaque, Data: data,
				}, metav1.CreateOptions{})
			}
			if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
				continue // another replica wrote first: use its certificates
			}
			if err != nil {
				return fmt.Errorf("certs: write Secret %s/%s: %w", m.Namespace, m.SecretName, err)
			}
		}
		// The bundle first, then the files: a certificate of a new CA is served only once the
		// API server can verify it.
		if err := m.patchCABundle(ctx, next.bundlePEM()); err != nil {
			return err
		}
		return writeFiles(m.CertDir, next.certPE, next.keyPE)
	}
	return errors.New("certs: the Secret kept changing under us; will retry")
}

// renew decides what to renew and returns the new state.
func (m *Manager) renew(st *state) (*state, bool, error) {
	now := m.now()
	changed := false
	next := &state{}
	if st != nil && st.ca != nil && !dueForRenewal(st.ca.Cert, now) {
		*next = *st
	} else {
		ca, err := pki.NewCAAt("kubectl-mesh-webhook-ca", now, m.CAValidity)
		if err != nil {
			return nil, false, err
		}
		next.ca = ca
		next.cas = []*x509.Certificate{ca.Cert}
		if st != nil {
			for _, old := range st.cas {
				if now.Before(old.NotAfter) {
					next.cas = append(next.cas, old)
				}
			}
		}
		next.cert = nil // a new CA always gets a new serving certificate
		changed = true
		if st != nil && m.Rotations != nil {
			m.Rotations("ca")
		}
	}
	if next.cert == nil || dueForRenewal(next.cert, now) || !signedBy(next.cert, next.ca.Cert) {
		leaf, err := next.ca.IssueAt(pki.Request{CommonName: m.DNSNames[0], DNSNames: m.DNSNames, Server: true}, now, m.CertValidity)
		if err != nil {
			return nil, false, err
		}
		keyPEM, err := pki.KeyPEM(leaf.Key)
		if err != nil {
			return nil, false, err
		}
		if st != nil && st.cert != nil && m.Rotations != nil {
			m.Rotations("serving")
		}
		next.cert, next.certPE, next.keyPE = leaf.Cert, pki.CertPEM(leaf.Cert), keyPEM
		changed = true
	}
	return next, changed, nil
}

// dueForRenewal: less than a third of the lifetime left.
func dueForRenewal(c *x509.Certificate, now time.Time) bool {
	life := c.NotAfter.Sub(c.NotBefore)
	return now.After(c.NotAfter.Add(-life / 3))
}

func signedBy(c, ca *x509.Certificate) bool { return c.CheckSignatureFrom(ca) == nil }

func (s *state) bundlePEM() []byte {
	var b bytes.Buffer
	for _, c := range s.cas {
		b.Write(pki.CertPEM(c))
	}
	return b.Bytes()
}

func (s *state) data() (map[string][]byte, error) {
	caKey, err := pki.KeyPEM(s.ca.Key)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{KeyCABundle: s.bundlePEM(), KeyCAKey: caKey, KeyCert: s.certPE, KeyKey: s.keyPE}, nil
}

func parse(data map[string][]byte) (*state, error) {
	var cas []*x509.Certificate
	rest := data[KeyCABundle]
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		cas = append(cas, c)
	}
	if len(cas) == 0 {
		return nil, errors.New("certs: no CA in Secret")
	}
	caKey, err := pki.ParseKeyPEM(data[KeyCAKey])
	if err != nil {
		return nil, err
	}
	st := &state{cas: cas, ca: &pki.CA{Cert: cas[0], Key: caKey}, certPE: data[KeyCert], keyPE: data[KeyKey]}
	if b, _ := pem.Decode(st.certPE); b != nil {
		if c, err := x509.ParseCertificate(b.Bytes); err == nil {
			if _, err := pki.ParseKeyPEM(st.keyPE); err == nil {
				st.cert = c
			}
		}
	}
	return st, nil
}

func (m *Manager) patchCABundle(ctx context.Context, bundle []byte) error {
	if m.WebhookConfigName == "" {
		return nil
	}
	for attempt := 0; attempt < 5; attempt++ {
		cfg, err := m.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, m.WebhookConfigName, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("certs: read MutatingWebhookConfiguration %s: %w", m.WebhookConfigName, err)
		}
		if !setBundle(cfg, bundle) {
			return nil
		}
		_, err = m.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Update(ctx, cfg, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("certs: update caBundle of %s: %w", m.WebhookConfigName, err)
		}
		return nil
	}
	return fmt.Errorf("certs: MutatingWebhookConfiguration %s kept changing", m.WebhookConfigName)
}

func setBundle(cfg *admissionregistrationv1.MutatingWebhookConfiguration, bundle []byte) bool {
	changed := false
	for i := range cfg.Webhooks {
		if !bytes.Equal(cfg.Webhooks[i].ClientConfig.CABundle, bundle) {
			cfg.Webhooks[i].ClientConfig.CABundle = bundle
			changed = true
		}
	}
	return changed
}

// writeFiles replaces tls.crt and tls.key atomically (write, then rename), and only when they
// changed, so the server's file watcher reloads exactly once per rotation.
func writeFiles(dir string, certPEM, keyPEM []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{KeyKey, keyPEM}, {KeyCert, certPEM}} {
		p := filepath.Join(dir, f.name)
		if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, f.data) {
			continue
		}
		tmp := p + ".tmp"
		if err := os.WriteFile(tmp, f.data, 0o600); err != nil {
			return err
		}
		if err := os.Rename(tmp, p); err != nil {
			return err
		}
	}
	return nil
}

// Run calls Ensure every interval until ctx ends. Errors are reported to onErr and retried: a
// transient API error must not stop rotation.
func (m *Manager) Run(ctx context.Context, interval time.Duration, onErr func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := m.Ensure(ctx); err != nil && onErr != nil {
				onErr(err)
			}
		}
	}
}

// CheckInterval picks how often to check: often enough to renew well inside the renewal window.
func CheckInterval(certValidity time.Duration) time.Duration {
	iv := certValidity / 12
	if iv > time.Minute {
		iv = time.Minute
	}
	if iv < time.Second {
		iv = time.Second
	}
	return iv
}
