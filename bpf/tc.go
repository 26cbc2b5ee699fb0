package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TCDirection selects the TC hook of an interface.
type TCDirection int

const (
	// Ingress: packets the interface receives, before netfilter PREROUTING.
	Ingress TCDirection = iota
	// Egress: packets the interface sends, after netfilter POSTROUTING.
	Egress
)

func (d TCDirection) String() string {
	if d == Ingress {
		return "ingress"
	}
	return "egress"
}

// TCMode selects how a TC program is attached.
type TCMode int

const (
	// TCAuto uses TCX (bpf_link, kernel 6.6+) and falls back to a clsact
	// qdisc with a cls_bpf filter where TCX is not supported.
	TCAuto TCMode = iota
	// TCLegacy always uses clsact + cls_bpf (netlink).
	TCLegacy
)

// Mechanisms reported by TCAttachment.Mechanism.
const (
	MechanismTCX    = "tcx"
	MechanismClsact = "clsact"
)

// legacyPriority is the cls_bpf filter priority used on the clsact fallback.
// Priority 1 runs before other filters, so a CNI filter that redirects the
// packet cannot hide it from the probe; the probe itself never changes a
// packet and always continues the chain.
const legacyPriority = 1

// legacyHandle is the cls_bpf filter handle used on the clsact fallback.
const legacyHandle = 0x6b6d // "km"

// TCAttachment is a TC program attached to one hook of one interface.
type TCAttachment struct {
	// Mechanism is MechanismTCX or MechanismClsact.
	Mechanism string
	Ifindex   int
	Direction TCDirection

	tcx    link.Link
	filter *netlink.BpfFilter
}

// AttachTC attaches a sched_cls program to the ingress or egress hook of the
// interface ifindex, first in the chain. The interface is looked up in the
// network namespace of the calling OS thread: to attach inside a pod's
// namespace, lock the goroutine to its thread and setns first.
//
// Needs CAP_NET_ADMIN (TCX links and tc filters are network configuration).
func AttachTC(prog *ebpf.Program, ifindex int, dir TCDirection, mode TCMode) (*TCAttachment, error) {
	if mode == TCAuto {
		attach := ebpf.AttachTCXIngress
		if dir == Egress {
			attach = ebpf.AttachTCXEgress
		}
		l, err := link.AttachTCX(link.TCXOptions{
			Interface: ifindex,
			Program:   prog,
			Attach:    attach,
			Anchor:    link.Head(),
		})
		if err == nil {
			return &TCAttachment{Mechanism: MechanismTCX, Ifindex: ifindex, Direction: dir, tcx: l}, nil
		}
		if !errors.Is(err, ebpf.ErrNotSupported) {
			return nil, fmt.Errorf("attach TCX %s to ifindex %d (needs CAP_NET_ADMIN): %w", dir, ifindex, err)
		}
		// Kernel older than 6.6: fall through to clsact.
	}
	return attachClsact(prog, ifindex, dir)
}

// attachClsact is the pre-TCX way: a clsact qdisc (created if missing) and a
// direct-action cls_bpf filter on its ingress or egress side.
func attachClsact(prog *ebpf.Program, ifindex int, dir TCDirection) (*TCAttachment, error) {
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: ifindex,
			Handle:    netlink.MakeHandle(0xffff, 0),
			Parent:    netlink.HANDLE_CLSACT,
		},
		QdiscType: "clsact",
	}
	if err := netlink.QdiscAdd(qdisc); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("add clsact qdisc to ifindex %d (needs CAP_NET_ADMIN): %w", ifindex, err)
	}
	parent := uint32(netlink.HANDLE_MIN_INGRESS)
	if dir == Egress {
		parent = netlink.HANDLE_MIN_EGRESS
	}
	name := "kubectl-mesh"
	if info, err := prog.Info(); err == nil && info.Name != "" {
		name = info.Name
	}
	filter := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: ifindex,
			Parent:    parent,
			Handle:    legacyHandle,
			Priority:  legacyPriority,
			Protocol:  unix.ETH_P_ALL,
		},
		Fd:           prog.FD(),
		Name:         name,
		DirectAction: true,
	}
	if err := netlink.FilterAdd(filter); err != nil {
		return nil, fmt.Errorf("add cls_bpf %s filter to ifindex %d (needs CAP_NET_ADMIN): %w", dir, ifindex, err)
	}
	return &TCAttachment{Mechanism: MechanismClsact, Ifindex: ifindex, Direction: dir, filter: filter}, nil
}

// Close detaches the program. On the clsact fallback the filter is deleted
// but the qdisc is left: other programs may use it, and an empty clsact
// qdisc costs nothing. Like attaching, it acts in the calling thread's
// network namespace.
func (a *TCAttachment) Close() error {
	if a.tcx != nil {
		return a.tcx.Close()
	}
	if a.filter != nil {
		if err := netlink.FilterDel(a.filter); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("delete cls_bpf filter from ifindex %d: %w", a.Ifindex, err)
		}
		a.filter = nil
	}
	return nil
}
