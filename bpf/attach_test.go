package bpf

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/kubectl-mesh/kubectl-mesh/probe/exchange"
)

// serveHTTP serves handler on l until the test ends, or until the caller
// closes the server it returns.
func serveHTTP(t *testing.T, l net.Listener, handler http.HandlerFunc) *http.Server {
	t.Helper()
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// getOn sends GET target on c and reads the whole response.
func getOn(c net.Conn, br *bufio.Reader, target string) error {
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: app\r\n\r\n", target); err != nil {
		return err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// loopbackProbe loads an exchange probe for app port 9080 and attaches it
// (mode) to lo of a network namespace of its own; the test's end closes it.
func loopbackProbe(t *testing.T, mode TCMode) (*netns, *ExchangeProbe) {
	t.Helper()
	ns := newNetns(t, "lo")
	p, err := LoadExchangeProbe(ExchangeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.do(p.Close) }) // Close twice is harmless
	if err := p.SetPort(9080, PortApp); err != nil {
		t.Fatal(err)
	}
	if err := ns.do(func() error { return p.AttachApp(1, mode) }); err != nil {
		t.Fatal(err)
	}
	return ns, p
}

// gateSetter returns what moves p's sampling gate from ns, where its
// programs are attached (reopening attaches parked ones again).
func gateSetter(t *testing.T, ns *netns, p *ExchangeProbe) func(Gate) {
	return func(g Gate) {
		t.Helper()
		if err := ns.do(func() error { return p.SetGate(g) }); err != nil {
			t.Fatal(err)
		}
	}
}

// followedAfterReopening reopens p's closed sampling gate, which must
// leave nothing parked and attachments hooks attached, then sends GET
// /item/1 and /item/2 on c, a connection opened while the programs were
// parked, and closes it: both exchanges must be followed on leg, and none
// reported as predating the probe.
func followedAfterReopening(t *testing.T, p *ExchangeProbe, setGate func(Gate), attachments int, leg string,
	rd *ringbuf.Reader, c net.Conn, br *bufio.Reader) {
	t.Helper()
	setGate(GateInnerOnly)
	if p.Parked() || len(p.Attachments()) != attachments {
		t.Fatalf("gate reopening: parked %v, %d attachments, want %d", p.Parked(), len(p.Attachments()), attachments)
	}
	setGate(GateOpen)
	for _, target := range []string{"/item/1", "/item/2"} {
		if err := getOn(c, br, target); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	var got []string
	for _, e := range drainEvents(t, p, rd, 300*time.Millisecond) {
		line, _ := exchange.ParseRequestLine(e.Head)
		got = append(got, e.Leg.String()+" "+line.Target+" ["+e.Flags.String()+"]")
	}
	if want := []string{leg + " /item/1 []", leg + " /item/2 [fin]"}; !slices.Equal(got, want) {
		t.Errorf("exchanges %q, want %q", got, want)
	}
	if s, err := p.Stats(); err != nil || s.PredatesProbe != 0 {
		t.Errorf("stats %+v (%v): want no connection predating the probe (it started while the programs were parked)", s, err)
	}
}

// keepAliveRequests sends n sequential GETs on one connection and closes it.
func keepAliveRequests(c net.Conn, host string, n int) error {
	defer c.Close()
	br := bufio.NewReader(c)
	for i := 0; i < n; i++ {
		if _, err := fmt.Fprintf(c, "GET /item/%d HTTP/1.1\r\nHost: %s\r\n\r\n", i, host); err != nil {
			return err
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
	}
	return nil
}

// drainEvents reads every event until quiet has passed without one,
// sending what the programs staged to the ring buffer each time it finds
// the ring empty (as the agent's idle scan does). It returns them in the
// order the exchanges started: each CPU stages its own, so the ring
// holds them in the order the CPUs sent their batches.
func drainEvents(t *testing.T, p *ExchangeProbe, rd *ringbuf.Reader, quiet time.Duration) []exchange.Event {
	t.Helper()
	r := exchange.NewReader(rd)
	var out []exchange.Event
	for {
		r.SetDeadline(time.Now().Add(quiet))
		ev, err := r.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			sent, err := p.FlushStaged()
			if err != nil {
				t.Fatal(err)
			}
			if sent > 0 {
				continue
			}
			slices.SortStableFunc(out, func(a, b exchange.Event) int {
				return cmp.Compare(a.RequestStart, b.RequestStart)
			})
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		ev.Head = bytes.Clone(ev.Head) // the reader reuses its array
		out = append(out, ev)
	}
}

// The app program attached to a real lo (TCX, then the clsact fallback)
// times real HTTP/1.1 keep-alive exchanges, and detaching removes it.
func TestAttachAppToLoopback(t *testing.T) {
	requireRoot(t)
	eachTCMode(t, func(t *testing.T, mode TCMode, name string) {
		ns, p := loopbackProbe(t, mode)
		if got := p.Attachments()[0].Mechanism; got != name {
			t.Fatalf("attached with %s, want %s", got, name)
		}
		rd, err := p.NewEventReader()
		if err != nil {
			t.Fatal(err)
		}
		defer rd.Close()

		l := ns.listen(t, "127.0.0.1:9080")
		serveHTTP(t, l, func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(time.Millisecond)
			_, _ = io.WriteString(w, "hello from the app")
		})
		c, err := ns.dial("127.0.0.1:9080")
		if err != nil {
			t.Fatal(err)
		}
		client := c.LocalAddr().(*net.TCPAddr)
		if err := keepAliveRequests(c, "app", 3); err != nil {
			t.Fatal(err)
		}

		evs := drainEvents(t, p, rd, 300*time.Millisecond)
		if len(evs) != 3 {
			t.Fatalf("got %d events, want 3: %+v", len(evs), evs)
		}
		for i, e := range evs {
			if e.Leg != exchange.LegApp || e.Server.Port() != 9080 || int(e.Client.Port()) != client.Port {
				t.Errorf("event %d: %+v", i, e)
			}
			if !e.Complete() || e.Duration() < time.Millisecond {
				t.Errorf("event %d lasted %v, the handler sleeps 1ms: %+v", i, e.Duration(), e)
			}
			line, ok := exchange.ParseRequestLine(e.Head)
			if !ok || line.Target != fmt.Sprintf("/item/%d", i) {
				t.Errorf("event %d request line %+v", i, line)
			}
		}
		if evs[2].Flags&exchange.FlagFIN == 0 {
			t.Errorf("last exchange not ended by FIN: %v", evs[2].Flags)
		}

		if err := ns.do(p.Close); err != nil {
			t.Fatal(err)
		}
		if mode == TCLegacy {
			out, err := exec.Command("ip", "netns", "exec", ns.name, "tc", "filter", "show", "dev", "lo", "ingress").CombinedOutput()
			if err == nil && strings.Contains(string(out), "bpf") {
				t.Errorf("cls_bpf filter left after Close:\n%s", out)
			}
		}
	})
}

// Closing the sampling gate parks the app program: on TCX its link on lo is
// released, so loopback packets run nothing, and reopening attaches it
// again. A connection that started while parked is followed from its
// first request seen, not reported as predating the probe. The clsact
// fallback stays attached.
func TestSetGateParksAppProgram(t *testing.T) {
	requireRoot(t)
	eachTCMode(t, func(t *testing.T, mode TCMode, name string) {
		ns, p := loopbackProbe(t, mode)
		rd, err := p.NewEventReader()
		if err != nil {
			t.Fatal(err)
		}
		defer rd.Close()
		serveHTTP(t, ns.listen(t, "127.0.0.1:9080"), func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "hello from the app")
		})
		setGate := gateSetter(t, ns, p)
		packets := func() uint64 {
			t.Helper()
			s, err := p.Stats()
			if err != nil {
				t.Fatal(err)
			}
			return s.Packets
		}

		setGate(GateInnerOnly)
		setGate(GateClosed)
		parked := mode == TCAuto
		if p.Parked() != parked || (len(p.Attachments()) == 0) != parked {
			t.Fatalf("gate closed: parked %v with %d attachments, want parked %v", p.Parked(), len(p.Attachments()), parked)
		}
		before := packets()
		c, br := openedWhileParked(t, ns, "127.0.0.1:9080")
		if n := packets() - before; parked && n != 0 {
			t.Errorf("%d loopback packets ran the parked program", n)
		} else if !parked && n == 0 {
			t.Error("no loopback packet reached the clsact program")
		}

		followedAfterReopening(t, p, setGate, 1, "app", rd, c, br)
	})
}

// eachTCMode runs test as a subtest for each way of attaching TC programs:
// TCX (named "tcx"), then the clsact fallback ("clsact").
func eachTCMode(t *testing.T, test func(t *testing.T, mode TCMode, name string)) {
	for _, mode := range []TCMode{TCAuto, TCLegacy} {
		name := map[TCMode]string{TCAuto: "tcx", TCLegacy: "clsact"}[mode]
		t.Run(name, func(t *testing.T) { test(t, mode, name) })
	}
}

// openedWhileParked dials addr from ns and gets /unseen on the new
// connection, which the test then keeps: its SYN and first request pass
// while the programs are parked.
func openedWhileParked(t *testing.T, ns *netns, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := ns.dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	br := bufio.NewReader(c)
	if err := getOn(c, br, "/unseen"); err != nil {
		t.Fatal(err)
	}
	return c, br
}
