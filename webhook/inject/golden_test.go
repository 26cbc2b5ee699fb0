package inject

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden is what a testdata/<case>.golden.json holds.
type golden struct {
	Decision   Decision         `json:"decision"`
	Patch      []PatchOperation `json:"patch"`
	PatchedPod *corev1.Pod      `json:"patchedPod,omitempty"`
}

// TestGolden runs Decide on every testdata/*.yaml, applies the patch with an independent JSON
// patch implementation, checks the result and re-decides it, and compares decision, patch and
// patched pod with testdata/*.golden.json.
func TestGolden(t *testing.T) {
	inputs := map[string]bool{}
	for _, file := range caseFiles(t) {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		inputs[name+".golden.json"] = true
		t.Run(name, func(t *testing.T) {
			tc := loadCase(t, file)
			doc := mustJSON(t, &tc.Pod)

			d := Decide(tc.input(&tc.Pod))

			if !bytes.Equal(doc, mustJSON(t, &tc.Pod)) {
				t.Fatal("Decide modified its input pod")
			}
			if d.Reason != tc.Expect.Reason {
				t.Errorf("reason %s, want %s: %s", d.Reason, tc.Expect.Reason, d.Message)
			}
			checkDecisionShape(t, d)

			g := golden{Decision: d, Patch: d.Patch}
			g.Decision.Patch = nil
			if g.Patch == nil {
				g.Patch = []PatchOperation{}
			}
			if len(d.Patch) > 0 {
				patched, out := applyPatch(t, doc, d.Patch)
				checkProbe(t, patched, tc.NativeSidecars)
				again := Decide(tc.input(patched))
				if again.Reason != ReasonAlreadyInjected || len(again.Patch) != 0 {
					t.Errorf("re-deciding the patched pod: %s with %d patch ops, want %s and none: %s",
						again.Reason, len(again.Patch), ReasonAlreadyInjected, again.Message)
				}
				if err := json.Unmarshal(out, &g.PatchedPod); err != nil {
					t.Fatal(err)
				}
			}
			got, err := json.MarshalIndent(g, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			compareGolden(t, filepath.Join("testdata", name+".golden.json"), append(got, '\n'))
		})
	}

	// A golden file whose input is gone would never be checked again.
	goldens, _ := filepath.Glob(filepath.Join("testdata", "*.golden.json"))
	for _, g := range goldens {
		if !inputs[filepath.Base(g)] {
			if *update {
				_ = os.Remove(g)
				continue
			}
			t.Errorf("%s has no input .yaml; delete it or rerun with -update", g)
		}
	}
}

// checkDecisionShape checks what must hold for every decision: a known reason whose action
// matches, a message, a patch exactly when the action changes the pod.
func checkDecisionShape(t testing.TB, d Decision) {
	t.Helper()
	info, ok := d.Reason.Info()
	if !ok {
		t.Fatalf("reason %q is not in the reasons table", d.Reason)
	}
	if d.Action != info.Action {
		t.Errorf("action %s, but reason %s means %s", d.Action, d.Reason, info.Action)
	}
	if d.Message == "" {
		t.Error("empty message")
	}
	if (d.Action == ActionSkip) != (len(d.Patch) == 0) {
		t.Errorf("action %s with %d patch operations", d.Action, len(d.Patch))
	}
	for _, w := range d.Warnings {
		if len(w) > 256 {
			t.Errorf("warning longer than the API's 256 characters: %q", w)
		}
	}
}
