package bpf

import (
	"encoding/binary"
	"net/netip"
)

// Crafted Ethernet frames for BPF_PROG_TEST_RUN, built with encoding/binary
// so the tests need no packet library.

const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpPSH = 0x08
	tcpACK = 0x10
)

// tsOptions are the options Linux puts on every segment: NOP, NOP,
// timestamps (12 bytes, so the data offset is 8 words, not 5).
var tsOptions = []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}

type frameSpec struct {
	src, dst netip.AddrPort
	seq, ack uint32
	flags    uint8
	options  []byte // multiple of 4 bytes
	payload  []byte
	padTo    int    // pad the frame with zeros to this length (Ethernet minimum)
	ipv6Next uint8  // IPv6 next header when not TCP (extension header tests)
	hopByHop bool   // IPv6 next header 0 (hop-by-hop options)
	ipProto  uint8  // IPv4 protocol when not TCP
	fragment bool   // IPv4 more-fragments bit
	vlan     uint16 // 802.1Q tag when non-zero
}

func (f frameSpec) bytes() []byte {
	be := binary.BigEndian
	tcp := make([]byte, 20+len(f.options))
	be.PutUint16(tcp[0:], f.src.Port())
	be.PutUint16(tcp[2:], f.dst.Port())
	be.PutUint32(tcp[4:], f.seq)
	be.PutUint32(tcp[8:], f.ack)
	tcp[12] = byte(len(tcp)/4) << 4
	tcp[13] = f.flags
	be.PutUint16(tcp[14:], 65535)
	copy(tcp[20:], f.options)
	l4 := append(tcp, f.payload...)

	var ip []byte
	var ethType uint16
	if f.src.Addr().Is4() {
		ethType = 0x0800
		ip = make([]byte, 20)
		ip[0] = 0x45
		be.PutUint16(ip[2:], uint16(20+len(l4)))
		if f.fragment {
			be.PutUint16(ip[6:], 0x2000)
		}
		ip[8] = 64
		ip[9] = 6
		if f.ipProto != 0 {
			ip[9] = f.ipProto
		}
		s, d := f.src.Addr().As4(), f.dst.Addr().As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		be.PutUint16(ip[10:], ipChecksum(ip))
	} else {
		ethType = 0x86dd
		ip = make([]byte, 40)
		ip[0] = 0x60
		be.PutUint16(ip[4:], uint16(len(l4)))
		ip[6] = 6
		if f.ipv6Next != 0 {
			ip[6] = f.ipv6Next
		}
		if f.hopByHop {
			ip[6] = 0
		}
		ip[7] = 64
		s, d := f.src.Addr().As16(), f.dst.Addr().As16()
		copy(ip[8:], s[:])
		copy(ip[24:], d[:])
	}

	eth := make([]byte, 14)
	copy(eth[0:], []byte{0x02, 0, 0, 0, 0, 0x02}) // destination
	copy(eth[6:], []byte{0x02, 0, 0, 0, 0, 0x01}) // source
	if f.vlan != 0 {
		be.PutUint16(eth[12:], 0x8100)
		tag := make([]byte, 4)
		be.PutUint16(tag[0:], f.vlan)
		be.PutUint16(tag[2:], ethType)
		eth = append(eth, tag...)
	} else {
		be.PutUint16(eth[12:], ethType)
	}
	frame := append(append(eth, ip...), l4...)
	for len(frame) < f.padTo {
		frame = append(frame, 0)
	}
	return frame
}

func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(h[i])<<8 | uint32(h[i+1])
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// tcpConn produces the frames of one TCP connection, tracking sequence
// numbers in both directions like real endpoints do.
type tcpConn struct {
	client, server netip.AddrPort
	cseq, sseq     uint32 // next sequence number of each side
	options        []byte
}

func newConn(client, server string) *tcpConn {
	return &tcpConn{
		client:  netip.MustParseAddrPort(client),
		server:  netip.MustParseAddrPort(server),
		cseq:    0xfffff000, // close to wrapping, so seq arithmetic must be modular
		sseq:    0x10000000,
		options: tsOptions,
	}
}

func (c *tcpConn) fromClient(flags uint8, payload []byte) []byte {
	f := frameSpec{src: c.client, dst: c.server, seq: c.cseq, ack: c.sseq, flags: flags, options: c.options, payload: payload}
	c.cseq += uint32(len(payload))
	if flags&(tcpSYN|tcpFIN) != 0 {
		c.cseq++
	}
	return f.bytes()
}

func (c *tcpConn) fromServer(flags uint8, payload []byte) []byte {
	f := frameSpec{src: c.server, dst: c.client, seq: c.sseq, ack: c.cseq, flags: flags, options: c.options, payload: payload}
	c.sseq += uint32(len(payload))
	if flags&(tcpSYN|tcpFIN) != 0 {
		c.sseq++
	}
	return f.bytes()
}

func (c *tcpConn) syn() []byte    { return c.fromClient(tcpSYN, nil) }
func (c *tcpConn) synAck() []byte { return c.fromServer(tcpSYN|tcpACK, nil) }
func (c *tcpConn) ackC() []byte   { return c.fromClient(tcpACK, nil) }
func (c *tcpConn) ackS() []byte   { return c.fromServer(tcpACK, nil) }
func (c *tcpConn) request(p string) []byte {
	return c.fromClient(tcpACK|tcpPSH, []byte(p))
}
func (c *tcpConn) response(p string) []byte {
	return c.fromServer(tcpACK|tcpPSH, []byte(p))
}

// retransmitServer resends payload that starts back bytes before the
// server's next sequence number.
func (c *tcpConn) retransmitServer(back uint32, p string) []byte {
	f := frameSpec{src: c.server, dst: c.client, seq: c.sseq - back, ack: c.cseq, flags: tcpACK | tcpPSH, options: c.options, payload: []byte(p)}
	if end := c.sseq - back + uint32(len(p)); int32(end-c.sseq) > 0 {
		c.sseq = end
	}
	return f.bytes()
}

func (c *tcpConn) retransmitClient(back uint32, p string) []byte {
	f := frameSpec{src: c.client, dst: c.server, seq: c.cseq - back, ack: c.sseq, flags: tcpACK | tcpPSH, options: c.options, payload: []byte(p)}
	if end := c.cseq - back + uint32(len(p)); int32(end-c.cseq) > 0 {
		c.cseq = end
	}
	return f.bytes()
}
