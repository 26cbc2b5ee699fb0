package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// tcHooks attaches a pod's three TC programs (eth0 ingress and egress, lo
// ingress) and moves their sampling gate, parking two of them while it is
// closed: what a probe does with its hooks whatever its programs do with
// the packets (ExchangeProbe, SegmentProbe).
type tcHooks struct {
	edgeIn, edgeOut, app *ebpf.Program
	// gateVar and epochVar are the programs' sampling_gate and
	// sampling_epoch.
	gateVar, epochVar *ebpf.Variable
	attachments       []*TCAttachment // eth0 egress's
	// parkable are the hooks whose programs are detached while the
	// sampling gate is closed (SetGate): lo's and eth0 ingress's.
	parkable []*parkable
	// gate is the sampling gate last set (SetGate) and epoch the number of
	// times it reopened: both live in the programs' .bss.
	gate  Gate
	epoch uint32
}

// AttachEdge attaches the edge programs to both TC hooks of the pod's eth0
// (ifindex in the calling thread's network namespace). Needs CAP_NET_ADMIN.
func (h *tcHooks) AttachEdge(ifindex int, mode TCMode) error {
	in, err := AttachTC(h.edgeIn, ifindex, Ingress, mode)
	if err != nil {
		return err
	}
	out, err := AttachTC(h.edgeOut, ifindex, Egress, mode)
	if err != nil {
		_ = in.Close()
		return err
	}
	h.parkable = append(h.parkable, &parkable{prog: h.edgeIn, att: in})
	h.attachments = append(h.attachments, out)
	return nil
}

// AttachApp attaches the app program to TC ingress of the pod's lo
// (ifindex in the calling thread's network namespace, normally 1). Needs
// CAP_NET_ADMIN.
func (h *tcHooks) AttachApp(ifindex int, mode TCMode) error {
	in, err := AttachTC(h.app, ifindex, Ingress, mode)
	if err != nil {
		return err
	}
	h.parkable = append(h.parkable, &parkable{prog: h.app, att: in})
	return nil
}

// Attachments lists the TC attachments in place: those made, less the
// ones parked while the sampling gate is closed (SetGate).
func (h *tcHooks) Attachments() []*TCAttachment {
	all := append([]*TCAttachment(nil), h.attachments...)
	for _, pk := range h.parkable {
		if !pk.parked {
			all = append(all, pk.att)
		}
	}
	return all
}

// SetGate moves the sampling gate. Reopening a closed gate starts a new
// epoch first: a connection seen in an older one missed segments while the
// gate was closed, and its exchange in progress is cut (Stats().GateCut)
// rather than emitted with a wrong end. Not safe for concurrent use.
//
// Closing it also parks the programs of lo and of eth0 ingress: their TCX
// links are released, and made again before the gate leaves closed. With
// the gate closed they would only parse each packet and let it go;
// detached, those packets run nothing, and only eth0 egress, whose
// outbound SYNs must be seen (outbound connections are followed only from
// their SYN), still parses (docs/benchmarks.md, session 15). What that
// costs: SYNs, FINs and RSTs on those hooks go unseen meanwhile, so a
// connection that starts while parked is first seen mid-stream (and
// followed from its next request line, as after any gate cycle), one that
// ends stays in the flow table until evicted or its tuple is reused, and a
// proxy's connection to an unconfigured port teaches it at the next SYN
// seen. Clsact filters (kernels before 6.6) stay attached: deleting and
// adding filters would change the qdisc's chain under other users.
// Attaching acts in the calling thread's network namespace, as AttachEdge
// and AttachApp: call it from the pod's. Closing and reopening each take
// about 20 ms here (releasing a link waits for an RCU grace period): time
// the caller's loop spends waiting, not CPU, twice a sampling period.
func (h *tcHooks) SetGate(g Gate) error {
	if g > GateClosed {
		return fmt.Errorf("set sampling gate: unknown state %d", uint32(g))
	}
	if h.gate == GateClosed && g != GateClosed {
		for _, pk := range h.parkable {
			if !pk.parked {
				continue
			}
			// Only TCX links are parked: TCAuto attaches one again.
			a, err := AttachTC(pk.prog, pk.att.Ifindex, pk.att.Direction, TCAuto)
			if err != nil {
				return fmt.Errorf("sampling gate %v: attach %s to ifindex %d %v again: %w", g, progName(pk.prog), pk.att.Ifindex, pk.att.Direction, err)
			}
			pk.att, pk.parked = a, false
		}
		if err := h.epochVar.Set(h.epoch + 1); err != nil {
			return fmt.Errorf("set sampling epoch: %w", err)
		}
		h.epoch++
	}
	if err := h.gateVar.Set(uint32(g)); err != nil {
		return fmt.Errorf("set sampling gate %v: %w", g, err)
	}
	h.gate = g
	if g != GateClosed {
		return nil
	}
	for _, pk := range h.parkable {
		if pk.parked || pk.att.Mechanism != MechanismTCX {
			continue
		}
		pk.parked = true
		if err := pk.att.Close(); err != nil {
			return fmt.Errorf("sampling gate closed: detach %s from ifindex %d %v: %w", progName(pk.prog), pk.att.Ifindex, pk.att.Direction, err)
		}
	}
	return nil
}

// Gate reads the sampling gate as the programs see it: what SetGate last
// set, once set. Safe to call while another goroutine moves the gate (an
// observer's view; a test's ground truth of which exchanges it let in).
func (h *tcHooks) Gate() (Gate, error) {
	var g uint32
	if err := h.gateVar.Get(&g); err != nil {
		return 0, fmt.Errorf("read sampling gate: %w", err)
	}
	return Gate(g), nil
}

// progName names a program in errors.
func progName(prog *ebpf.Program) string {
	if info, err := prog.Info(); err == nil && info.Name != "" {
		return info.Name
	}
	return "a program"
}

// parkable is a hook whose program SetGate detaches while the sampling
// gate is closed: the program and its attachment (while parked, the
// released one, whose interface and direction say where it goes back).
type parkable struct {
	prog   *ebpf.Program
	att    *TCAttachment
	parked bool
}

// Parked says whether programs are detached because the sampling gate is
// closed (SetGate).
func (h *tcHooks) Parked() bool {
	for _, pk := range h.parkable {
		if pk.parked {
			return true
		}
	}
	return false
}

// detach releases every attachment.
func (h *tcHooks) detach() error {
	var errs []error
	for _, a := range h.Attachments() {
		errs = append(errs, a.Close())
	}
	h.attachments, h.parkable = nil, nil
	return errors.Join(errs...)
}

// GateState is the sampling gate as last set (SetGate) and how many times
// it has reopened: what the programs stamp on what they record.
func (h *tcHooks) GateState() (Gate, uint32) { return h.gate, h.epoch }
