// Package proc starts the lab's long-running components as daemons and stops them again by PID.
//
// Every process gets a PID file that records its PID and its start time (field 22 of
// /proc/PID/stat). Stop signals a PID only if that start time still matches, so a PID that the
// kernel has reused for somebody else's process is never touched. Nothing here looks processes up
// by name: names are ambiguous, and kube-controller-manager is too long for comm anyway.
package proc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Spec describes a daemon.
type Spec struct {
	Name   string   // component name, used for the PID and log file names
	Argv   []string // command and arguments
	Env    []string // extra environment (KEY=VALUE), added to a minimal base
	NetNS  string   // if set, the path of a network namespace to run in (via nsenter --net)
	Dir    string   // working directory
	LogDir string   // where NAME.log goes
	PIDDir string   // where NAME.pid goes
}

// Process is a started (or found) daemon.
type Process struct {
	Name      string
	PID       int
	StartTime uint64
	LogPath   string
	PIDPath   string
}

// Start launches s detached from the caller (own session, stdin closed, output to the log
// file), so that it outlives the command that started it, and writes its PID file.
func Start(s Spec) (*Process, error) {
	if len(s.Argv) == 0 {
		return nil, errors.New("proc: empty command")
	}
	for _, d := range []string{s.LogDir, s.PIDDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	logPath := filepath.Join(s.LogDir, s.Name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "\n==== %s starting %s\n", time.Now().UTC().Format(time.RFC3339), strings.Join(s.Argv, " "))

	argv := s.Argv
	if s.NetNS != "" {
		// nsenter enters only the network namespace and then execs the command, so the PID we
		// get is the component's own. `ip netns exec` would also unshare the mount namespace,
		// hiding kubelet's volume mounts from containerd.
		argv = append([]string{"nsenter", "--net=" + s.NetNS, "--"}, argv...)
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return nil, fmt.Errorf("proc: %s: %w", s.Name, err)
	}
	cmd := exec.Command(path, argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = s.Dir
	cmd.Env = append(baseEnv(), s.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("proc: start %s: %w", s.Name, err)
	}
	pid := cmd.Process.Pid
	// Release: we never Wait for it; it belongs to the lab, not to this command.
	_ = cmd.Process.Release()
	st, err := startTime(pid)
	if err != nil {
		return nil, fmt.Errorf("proc: %s exited immediately: %w\n%s", s.Name, err, Tail(logPath, 20))
	}
	p := &Process{Name: s.Name, PID: pid, StartTime: st, LogPath: logPath, PIDPath: filepath.Join(s.PIDDir, s.Name+".pid")}
	if err := os.WriteFile(p.PIDPath, []byte(fmt.Sprintf("%d %d\n", pid, st)), 0o644); err != nil {
		return nil, err
	}
	return p, nil
}

func baseEnv() []string {
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}
	for _, k := range []string{"GOTRACEBACK", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// Load reads the PID file of a component. It returns os.ErrNotExist if there is none.
func Load(pidDir, logDir, name string) (*Process, error) {
	pidPath := filepath.Join(pidDir, name+".pid")
	b, err := os.ReadFile(pidPath)
	if err != nil {
		return nil, err
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return nil, fmt.Errorf("proc: malformed PID file %s", pidPath)
	}
	pid, err1 := strconv.Atoi(f[0])
	st, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil || pid <= 1 {
		return nil, fmt.Errorf("proc: malformed PID file %s", pidPath)
	}
	return &Process{Name: name, PID: pid, StartTime: st, PIDPath: pidPath, LogPath: filepath.Join(logDir, name+".log")}, nil
}

// Alive reports whether the recorded process still runs (same PID and same start time) and
// is not a zombie.
func (p *Process) Alive() bool {
	st, err := startTime(p.PID)
	if err != nil || st != p.StartTime {
		return false
	}
	state, _ := procState(p.PID)
	return state != "Z" && state != "X"
}

// Stop sends SIGTERM, waits up to grace, then SIGKILL, and removes the PID file. Stopping a
// process that is already gone is not an error.
func (p *Process) Stop(grace time.Duration) error {
	defer os.Remove(p.PIDPath)
	if !p.Alive() {
		return nil
	}
	_ = syscall.Kill(p.PID, syscall.SIGTERM)
	if waitGone(p, grace) {
		return nil
	}
	_ = syscall.Kill(p.PID, syscall.SIGKILL)
	if waitGone(p, 5*time.Second) {
		return nil
	}
	return fmt.Errorf("proc: %s (pid %d) did not exit after SIGKILL", p.Name, p.PID)
}

// KillPID stops a process whose PID we learnt from a component's own state (for example a
// containerd shim's shim.pid), after checking it is not PID 1 or ourselves.
func KillPID(pid int, grace time.Duration) {
	if pid <= 1 || pid == os.Getpid() {
		return
	}
	st, err := startTime(pid)
	if err != nil {
		return
	}
	p := &Process{PID: pid, StartTime: st}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	if !waitGone(p, grace) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		waitGone(p, 2*time.Second)
	}
}

func waitGone(p *Process, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !p.Alive() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return !p.Alive()
}

// startTime returns field 22 of /proc/PID/stat (start time in clock ticks since boot).
func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// comm (field 2) may contain spaces and parentheses: split after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("proc: malformed stat for %d", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field 22 is f[19].
	if len(f) < 20 {
		return 0, fmt.Errorf("proc: short stat for %d", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

func procState(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return "", fmt.Errorf("proc: malformed stat for %d", pid)
	}
	return string(b[i+2]), nil
}

// Tail returns the last n lines of a log file, for error messages.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log at %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return fmt.Sprintf("--- last %d lines of %s ---\n%s", len(lines), path, strings.Join(lines, "\n"))
}
