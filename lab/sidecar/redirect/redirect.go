// Package redirect installs the inbound capture of the lab's demo sidecar (cmd/mesh-sidecar): the
// nftables equivalent of what Istio's init container does with
//
//	iptables -t nat -A PREROUTING -p tcp --dport 8080 -j REDIRECT --to-ports 15006
//
// so that TCP arriving at the pod for the application's port is delivered to the proxy instead,
// with its original destination port in the connection's conntrack entry, exactly as a client
// outside the pod cannot tell. It is a lab fixture, not a product mesh: there is no outbound
// capture and no per-UID exemption, because the demo proxy only forwards inbound requests to the
// application on 127.0.0.1.
//
// The rules live in a table of their own (Table, family inet so IPv4 and IPv6 alike), which
// Install replaces as a whole in one nftables transaction: running it twice leaves one copy, and
// a pod restart that re-runs the init container finds no half-installed state. Changing nftables
// needs CAP_NET_ADMIN in the pod's network namespace; nothing here needs CAP_NET_RAW (that is
// for the iptables binaries, not for netlink).
package redirect

import (
	"errors"
	"fmt"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Table is the nftables table the sidecar owns; nothing else in the pod may use this name.
const Table = "kubectl-mesh-sidecar"

// chainName is the one chain of Table, hooked at prerouting like Istio's nat PREROUTING rules.
const chainName = "prerouting"

// Rules says what to capture.
type Rules struct {
	// AppPorts are redirected to ProxyPort. Empty with AllPorts.
	AppPorts []uint16
	// AllPorts redirects every inbound TCP port except ExcludePorts and ProxyPort, as Istio does
	// by default (traffic.sidecar.istio.io/includeInboundPorts: "*").
	AllPorts bool
	// ProxyPort is where the proxy listens.
	ProxyPort uint16
	// ExcludePorts reach the pod unredirected (with AllPorts; with a port list they may not
	// overlap it, since the two would contradict each other).
	ExcludePorts []uint16
}

// Validate reports what makes r unusable.
func (r Rules) Validate() error {
	var errs []error
	if r.ProxyPort == 0 {
		errs = append(errs, errors.New("no proxy port"))
	}
	switch {
	case r.AllPorts && len(r.AppPorts) > 0:
		errs = append(errs, errors.New("both all ports and a port list"))
	case !r.AllPorts && len(r.AppPorts) == 0:
		errs = append(errs, errors.New("no application port to redirect"))
	}
	for _, p := range r.AppPorts {
		if p == 0 {
			errs = append(errs, errors.New("port 0"))
		}
		if p == r.ProxyPort {
			// Redirecting the proxy's own port to itself is harmless but says the caller
			// confused the two.
			errs = append(errs, fmt.Errorf("application port %d is the proxy port", p))
		}
		if slices.Contains(r.ExcludePorts, p) {
			errs = append(errs, fmt.Errorf("port %d is both redirected and excluded", p))
		}
	}
	return errors.Join(errs...)
}

// Install replaces Table with r's rules in the calling thread's network namespace.
func Install(r Rules) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("redirect: %w", err)
	}
	c, err := nftables.New()
	if err != nil {
		return err
	}
	t := &nftables.Table{Name: Table, Family: nftables.TableFamilyINet}
	// Add (a no-op when it exists), delete, add again: the kernel applies the batch as one
	// transaction, so the table is replaced atomically whether or not it was there, and packets
	// never see an empty or doubled rule set.
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	policy := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{
		Name: chainName, Table: t, Type: nftables.ChainTypeNAT,
		// PREROUTING sees only packets that arrive on an interface: the proxy's own
		// connections to the application (OUTPUT, then lo) and anything the pod sends itself
		// are never captured here.
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest,
		Policy: &policy,
	})
	for _, exprs := range r.exprs() {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: exprs})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("redirect: installing nftables table %s (needs CAP_NET_ADMIN): %w", Table, err)
	}
	return nil
}

// Uninstall deletes Table; it is not an error when it is absent.
func Uninstall() error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	t := &nftables.Table{Name: Table, Family: nftables.TableFamilyINet}
	// Add first so the delete always has something to delete: one transaction either way.
	c.AddTable(t)
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("redirect: deleting nftables table %s (needs CAP_NET_ADMIN): %w", Table, err)
	}
	return nil
}

// Installed reports whether Table exists and how many rules its chain holds.
func Installed() (exists bool, rules int, err error) {
	c, err := nftables.New()
	if err != nil {
		return false, 0, err
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, 0, err
	}
	for _, t := range tables {
		if t.Name != Table {
			continue
		}
		rs, err := c.GetRules(t, &nftables.Chain{Name: chainName, Table: t})
		return true, len(rs), err
	}
	return false, 0, nil
}

// exprs is the rule list, in order:
//
//	iifname "lo" return                      loopback is the pod talking to itself
//	tcp dport <excluded> return              (all-ports mode: each excluded port, the proxy's)
//	tcp dport <app> redirect to :<proxy>     (port-list mode: each port)
//	meta l4proto tcp redirect to :<proxy>    (all-ports mode)
func (r Rules) exprs() [][]expr.Any {
	ret := &expr.Verdict{Kind: expr.VerdictReturn}
	out := [][]expr.Any{{
		// Locally generated traffic over lo is already left alone by PREROUTING's NAT (its
		// conntrack entry was set up on the way out), but saying so keeps the intent visible
		// in `nft list ruleset` and independent of that kernel detail.
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname("lo")},
		ret,
	}}
	if r.AllPorts {
		skip := slices.Clone(r.ExcludePorts)
		skip = append(skip, r.ProxyPort)
		slices.Sort(skip)
		for _, p := range slices.Compact(skip) {
			out = append(out, append(tcpDport(p), ret))
		}
		return append(out, append(tcp(), redirectTo(r.ProxyPort)...))
	}
	ports := slices.Clone(r.AppPorts)
	slices.Sort(ports)
	for _, p := range slices.Compact(ports) {
		out = append(out, append(tcpDport(p), redirectTo(r.ProxyPort)...))
	}
	return out
}

func tcp() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
	}
}

func tcpDport(p uint16) []expr.Any {
	return append(tcp(),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(p)},
	)
}

// redirectTo is REDIRECT --to-ports p: DNAT to the address of the interface the packet arrived
// on, port p.
func redirectTo(p uint16) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(p)},
		&expr.Redir{RegisterProtoMin: 1, Flags: unix.NF_NAT_RANGE_PROTO_SPECIFIED},
	}
}

// ifname pads an interface name to IFNAMSIZ, as the kernel compares it.
func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}
