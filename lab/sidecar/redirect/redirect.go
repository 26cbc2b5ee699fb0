// Package redirect installs the inbound capture of the lab's demo sidecar (cmd/mesh-sidecar): the
// nftables equivalent of what Istio's init container does with
//
//	iptables -t nat -A PREROUTING -p tcp --dport 8080 -j REDIRECT --to-ports 15006
//
// so that TCP arriving at the pod for the application's port is delivered to the proxy instead,
// with its original destination port in the connection's conntrack entry, exactly as a client
// outside the pod cannot tell. Optionally (Rules.Outbound) it also captures the pod's outgoing
// connections to listed destination ports for the proxy's outbound listener, exempting the
// proxy's own user as Istio exempts UID 1337. It is a lab fixture, not a product mesh.
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

// chainName is Table's inbound chain, hooked at prerouting like Istio's nat PREROUTING rules;
// outputChainName its outbound one, like Istio's nat OUTPUT rules.
const (
	chainName       = "prerouting"
	outputChainName = "output"
)

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
	// Outbound, when set, also captures the pod's outgoing connections.
	Outbound *Outbound
}

// Outbound is the outbound capture, Istio's
//
//	iptables -t nat -A OUTPUT -p tcp -m owner --uid-owner 1337 -j RETURN
//	iptables -t nat -A OUTPUT -o lo -j RETURN
//	iptables -t nat -A OUTPUT -p tcp --dport 80 -j REDIRECT --to-ports 15001
//
// limited to the destination ports listed (Istio captures every port by default).
type Outbound struct {
	// ProxyPort is where the proxy receives the redirected connections (Istio's 15001).
	ProxyPort uint16
	// DestPorts are the destination ports captured.
	DestPorts []uint16
	// ProxyUID owns the proxy's own sockets: its connections to the upstreams are never
	// captured (they would loop back into it).
	ProxyUID uint32
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
	if o := r.Outbound; o != nil {
		switch {
		case o.ProxyPort == 0:
			errs = append(errs, errors.New("no outbound proxy port"))
		case o.ProxyPort == r.ProxyPort:
			errs = append(errs, fmt.Errorf("outbound proxy port %d is the inbound one", o.ProxyPort))
		}
		if len(o.DestPorts) == 0 {
			errs = append(errs, errors.New("no outbound destination port to capture"))
		}
		if slices.Contains(o.DestPorts, 0) {
			errs = append(errs, errors.New("outbound destination port 0"))
		}
		if o.ProxyUID == 0 {
			// Root's connections would all escape the capture, the application's too
			// when it runs as root: the proxy must have a user of its own.
			errs = append(errs, errors.New("outbound capture needs the proxy's own non-root UID"))
		}
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
	if r.Outbound != nil {
		out := c.AddChain(&nftables.Chain{
			Name: outputChainName, Table: t, Type: nftables.ChainTypeNAT,
			// OUTPUT sees what the pod's own processes send, before routing decides the
			// interface: the place to catch the application's connections.
			Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest,
			Policy: &policy,
		})
		for _, exprs := range r.Outbound.exprs() {
			c.AddRule(&nftables.Rule{Table: t, Chain: out, Exprs: exprs})
		}
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
		if err != nil {
			return true, 0, err
		}
		rules = len(rs)
		chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
		if err != nil {
			return true, rules, err
		}
		for _, ch := range chains {
			if ch.Table.Name == Table && ch.Name == outputChainName {
				out, err := c.GetRules(t, ch)
				return true, rules + len(out), err
			}
		}
		return true, rules, nil
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

// exprs is the outbound rule list, in order:
//
//	meta skuid <proxy> return                the proxy's own connections
//	oifname "lo" return                      the pod talking to itself
//	tcp dport <dest> redirect to :<proxy>    each captured destination port
func (o *Outbound) exprs() [][]expr.Any {
	ret := &expr.Verdict{Kind: expr.VerdictReturn}
	out := [][]expr.Any{
		{
			&expr.Meta{Key: expr.MetaKeySKUID, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(o.ProxyUID)},
			ret,
		},
		{
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname("lo")},
			ret,
		},
	}
	ports := slices.Clone(o.DestPorts)
	slices.Sort(ports)
	for _, p := range slices.Compact(ports) {
		out = append(out, append(tcpDport(p), redirectTo(o.ProxyPort)...))
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
