package bpf

import (
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
)

// portRoles is a program object's roles_by_port, one byte per port, in its
// memory-mapped .bss: read by every packet without a map lookup, written
// here without a system call and without touching the bytes of other ports
// (the programs learn ports concurrently). Shared by ExchangeProbe and
// SegmentProbe, whose programs keep the same array.
type portRoles struct {
	mem *ebpf.Memory // the .bss
	at  int64        // offset of roles_by_port in it
}

// SetPort sets the roles of a port of interest (host order).
func (r portRoles) SetPort(port uint16, roles PortRole) error {
	if roles > 0xff {
		return fmt.Errorf("set port %d: roles 0x%x do not fit the programs' byte per port", port, uint32(roles))
	}
	if _, err := r.mem.WriteAt([]byte{uint8(roles)}, r.at+int64(port)); err != nil {
		return fmt.Errorf("set port %d: %w", port, err)
	}
	return nil
}

// RemovePort forgets a port of interest. Connections already followed keep
// being followed until they end or are forgotten.
func (r portRoles) RemovePort(port uint16) error {
	if _, err := r.mem.WriteAt([]byte{0}, r.at+int64(port)); err != nil {
		return fmt.Errorf("remove port %d: %w", port, err)
	}
	return nil
}

// Ports returns every port of interest, including learnt ones.
func (r portRoles) Ports() (map[uint16]PortRole, error) {
	var all [1 << 16]uint8
	if _, err := r.mem.ReadAt(all[:], r.at); err != nil {
		return nil, fmt.Errorf("list ports: %w", err)
	}
	out := map[uint16]PortRole{}
	for port, roles := range all {
		if roles != 0 {
			out[uint16(port)] = PortRole(roles)
		}
	}
	return out, nil
}

// addProxySource registers, in a program object's proxy_sources map, an
// address the sidecar uses as source of its connections to the application
// (Istio: 127.0.0.6). A SYN from it on lo to an unconfigured port makes
// that port an app port (PortApp|PortLearnt).
func addProxySource(sources *ebpf.Map, addr netip.Addr) error {
	if !addr.IsValid() {
		return fmt.Errorf("add proxy source: invalid address")
	}
	key := addr.As16() // IPv4 becomes IPv4-mapped, as the programs store it
	if err := sources.Put(key, uint8(1)); err != nil {
		return fmt.Errorf("add proxy source %s: %w", addr, err)
	}
	return nil
}
