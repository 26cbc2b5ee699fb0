package runstore

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestCreateUpdateGetListDelete(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset()
	s := Store{Client: cs}
	t0 := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	a := &Record{Name: "a", Namespace: "demo", Status: Running, Target: "svc/echo:80", Created: t0.Add(time.Minute), Labels: map[string]string{"suite": "x"}}
	b := &Record{Name: "b", Namespace: "other", Status: Running, Target: "svc/echo:80", Created: t0}
	for _, r := range []*Record{a, b} {
		if err := s.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Create(ctx, a); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second create of the same name: %v", err)
	}
	a.Status, a.Summary = Succeeded, &Summary{Requests: 10}
	if err := s.Update(ctx, a, map[string][]byte{"doc.yaml": []byte("x: 1\n")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, a, map[string][]byte{"other.yaml": []byte("y: 2\n")}); err != nil {
		t.Fatal(err)
	}
	got, docs, err := s.Get(ctx, "demo", "a")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != Succeeded || got.Summary.Requests != 10 || string(docs["doc.yaml"]) != "x: 1\n" || string(docs["other.yaml"]) != "y: 2\n" {
		t.Errorf("Get = %+v, %v: updates must keep earlier documents", got, docs)
	}
	if _, ok := docs[KeyRecord]; ok {
		t.Error("the record must not be listed among the documents")
	}

	all, err := s.List(ctx, "", "")
	if err != nil || len(all) != 2 || all[0].Name != "b" || all[1].Name != "a" {
		t.Fatalf("List all = %+v, %v; want b then a (oldest first)", all, err)
	}
	sel, err := s.List(ctx, "", "suite=x")
	if err != nil || len(sel) != 1 || sel[0].Name != "a" {
		t.Errorf("List suite=x = %+v, %v", sel, err)
	}

	// A ConfigMap with the run label but a damaged record is listed as failed, not dropped.
	_, _ = cs.CoreV1().ConfigMaps("demo").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: RecordPrefix + "bad", Namespace: "demo", Labels: map[string]string{LabelRun: "bad"}},
		Data:       map[string]string{KeyRecord: "{not json"},
	}, metav1.CreateOptions{})
	l, err := s.List(ctx, "demo", "")
	if err != nil || len(l) != 2 {
		t.Fatalf("List demo = %+v, %v", l, err)
	}
	for _, r := range l {
		if r.Name == "bad" && (r.Status != Failed || !strings.Contains(r.Message, "damaged")) {
			t.Errorf("damaged record listed as %+v", r)
		}
	}

	if err := s.Delete(ctx, "demo", "a"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(ctx, "demo", "a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete: %v", err)
	}
	if err := s.Delete(ctx, "demo", "a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete twice: %v", err)
	}
}

func TestValidateName(t *testing.T) {
	for name, ok := range map[string]bool{
		"echo-20261126-010203":  true,
		"":                      false,
		"Echo":                  false,
		"-x":                    false,
		strings.Repeat("a", 40): true,
		strings.Repeat("a", 41): false,
	} {
		if err := ValidateName(name); (err == nil) != ok {
			t.Errorf("ValidateName(%q) = %v", name, err)
		}
	}
}
