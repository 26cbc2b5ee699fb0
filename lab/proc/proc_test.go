package proc

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestStartStopByPID(t *testing.T) {
	dir := t.TempDir()
	p, err := Start(Spec{Name: "sleeper", Argv: []string{"sleep", "60"}, LogDir: dir, PIDDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(time.Second) })
	if !p.Alive() {
		t.Fatal("started process is not alive")
	}
	q, err := Load(dir, dir, "sleeper")
	if err != nil {
		t.Fatal(err)
	}
	if q.PID != p.PID || q.StartTime != p.StartTime {
		t.Fatalf("PID file round trip: got %+v want %+v", q, p)
	}
	if err := q.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if p.Alive() {
		t.Fatal("process still alive after Stop")
	}
	if _, err := os.Stat(q.PIDPath); !os.IsNotExist(err) {
		t.Fatal("PID file left behind")
	}
}

func TestStaleStartTimeIsNotSignalled(t *testing.T) {
	dir := t.TempDir()
	p, err := Start(Spec{Name: "sleeper", Argv: []string{"sleep", "60"}, LogDir: dir, PIDDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(time.Second) })
	// A record with the right PID but another start time stands for a reused PID.
	stale := *p
	stale.StartTime++
	if stale.Alive() {
		t.Fatal("a record with a different start time was taken as alive")
	}
	if err := stale.Stop(time.Second); err != nil {
		t.Fatal(err)
	}
	if !p.Alive() {
		t.Fatal("Stop of a stale record killed the real process")
	}
}

func TestTailShowsLastLines(t *testing.T) {
	dir := t.TempDir()
	p, err := Start(Spec{Name: "talker", Argv: []string{"sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done"}, LogDir: dir, PIDDir: dir})
	if err != nil && !strings.Contains(err.Error(), "exited immediately") {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && (p == nil || p.Alive()) {
		time.Sleep(20 * time.Millisecond)
	}
	got := Tail(dir+"/talker.log", 2)
	if !strings.Contains(got, "line4\nline5") || strings.Contains(got, "line3") {
		t.Fatalf("tail: %q", got)
	}
}
