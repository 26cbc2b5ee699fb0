package exchange

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"unsafe"

	"github.com/kubectl-mesh/kubectl-mesh/bpf"
)

// TestLayoutMatchesBPF ties the hand-written decoder to the struct bpf2go
// generated from bpf/c/common.h: a layout change in C without a decoder
// change fails here.
func TestLayoutMatchesBPF(t *testing.T) {
	var ev bpf.ExchangeExchangeEvent
	if got := int(unsafe.Sizeof(ev)); got != Size {
		t.Fatalf("sizeof(struct exchange_event) = %d, decoder expects %d", got, Size)
	}
	want := map[string]int{
		"ReqStartNs": offReqStart, "ReqEndNs": offReqEnd, "RespStartNs": offRespStart,
		"RespEndNs": offRespEnd, "ReqBytes": offReqBytes, "RespBytes": offRespBytes,
		"ClientAddr": offClientAddr, "ServerAddr": offServerAddr, "ClientPort": offClientPort,
		"ServerPort": offServerPort, "Ifindex": offIfindex, "Flags": offFlags,
		"Retransmits": offRetransmits, "Requests": offRequests, "Responses": offResponses,
		"Version": offVersion, "Leg": offLeg, "Direction": offDirection, "Family": offFamily,
		"HeadLen": offHeadLen, "Pad": offPad, "Head": offHead,
	}
	typ := reflect.TypeOf(ev)
	seen := 0
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		if f.Name == "_" {
			continue
		}
		off, ok := want[f.Name]
		if !ok {
			t.Errorf("field %s of struct exchange_event is not decoded", f.Name)
			continue
		}
		seen++
		if int(f.Offset) != off {
			t.Errorf("field %s at offset %d, decoder reads %d", f.Name, f.Offset, off)
		}
	}
	if seen != len(want) {
		t.Errorf("decoder knows %d fields, struct has %d", len(want), seen)
	}
	if got := len(ev.Head); got != HeadLen {
		t.Errorf("head is %d bytes, decoder expects %d", got, HeadLen)
	}
	if Flags(bpf.ExchangeExchangeFlagEXCHANGE_F_CLIENT_FIN) != FlagClientFIN ||
		Flags(bpf.ExchangeExchangeFlagEXCHANGE_F_PREDATES_PROBE) != FlagPredatesProbe ||
		Flags(bpf.ExchangeExchangeFlagEXCHANGE_F_PIPELINED) != FlagPipelined ||
		Flags(bpf.ExchangeExchangeFlagEXCHANGE_F_IDLE) != FlagIdle ||
		Flags(bpf.ExchangeExchangeFlagEXCHANGE_F_GATE_INNER) != FlagGateInner {
		t.Error("flag values differ from enum exchange_flag")
	}
	if Leg(bpf.ExchangeLegLEG_EDGE) != LegEdge || Leg(bpf.ExchangeLegLEG_APP) != LegApp {
		t.Error("leg values differ from enum leg")
	}
}

func sampleEvent() Event {
	return Event{
		Leg:           LegApp,
		Direction:     Inbound,
		Client:        netip.MustParseAddrPort("127.0.0.6:43210"),
		Server:        netip.MustParseAddrPort("10.1.2.3:8080"),
		Ifindex:       1,
		RequestStart:  1_000,
		RequestEnd:    1_500,
		ResponseStart: 9_000,
		ResponseEnd:   9_800,
		RequestBytes:  120,
		ResponseBytes: 4096,
		Flags:         FlagFIN | FlagRetransmit,
		Retransmits:   2,
		Requests:      1,
		Responses:     1,
		Head:          []byte("GET /ping HTTP/1.1\r\nHost: x\r\n"),
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for _, ev := range []Event{sampleEvent(), func() Event {
		e := sampleEvent()
		e.Leg = LegEdge
		e.Client = netip.MustParseAddrPort("[2001:db8::1]:5555")
		e.Server = netip.MustParseAddrPort("[2001:db8::2]:80")
		e.Head = nil
		return e
	}()} {
		got, err := Decode(Encode(&ev))
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if !reflect.DeepEqual(got, ev) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, ev)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	good := sampleEvent()
	cases := map[string]struct {
		mutate func([]byte) []byte
		want   error
	}{
		"short":           {func(b []byte) []byte { return b[:Size-1] }, ErrSize},
		"long":            {func(b []byte) []byte { return append(b, 0) }, ErrSize},
		"version":         {func(b []byte) []byte { b[offVersion] = 2; return b }, ErrVersion},
		"leg":             {func(b []byte) []byte { b[offLeg] = 3; return b }, ErrInvalid},
		"direction":       {func(b []byte) []byte { b[offDirection] = 0; return b }, ErrInvalid},
		"family":          {func(b []byte) []byte { b[offFamily] = 5; return b }, ErrInvalid},
		"v4 not mapped":   {func(b []byte) []byte { b[offClientAddr+10] = 0; return b }, ErrInvalid},
		"head length":     {func(b []byte) []byte { b[offHeadLen] = HeadLen + 1; return b }, ErrInvalid},
		"unknown flag":    {func(b []byte) []byte { b[offFlags+1] = 0x02; return b }, ErrInvalid},
		"request reverse": {func(b []byte) []byte { b[offReqEnd], b[offReqEnd+1] = 0, 0; return b }, ErrInvalid},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Decode(c.mutate(Encode(&good)))
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

func TestDurationAndComplete(t *testing.T) {
	e := sampleEvent()
	if !e.Complete() || e.Duration() != 8_800 {
		t.Fatalf("complete=%v duration=%v", e.Complete(), e.Duration())
	}
	e.Flags |= FlagPredatesProbe
	if e.Complete() || e.Duration() != 0 {
		t.Fatal("an exchange that predates the probe must not be complete")
	}
	e = sampleEvent()
	e.ResponseStart, e.ResponseEnd = 0, 0
	if e.Complete() {
		t.Fatal("an exchange without response must not be complete")
	}
}

// FuzzDecodeEvent: Decode never panics, accepts only well-formed records,
// and whatever it accepts re-encodes to a record that decodes the same.
func FuzzDecodeEvent(f *testing.F) {
	good := sampleEvent()
	f.Add(Encode(&good))
	v6 := good
	v6.Client = netip.MustParseAddrPort("[2001:db8::1]:1")
	v6.Server = netip.MustParseAddrPort("[2001:db8::2]:2")
	f.Add(Encode(&v6))
	f.Add([]byte{})
	f.Add(make([]byte, Size))
	// One event reused across records, as exchange.Reader does, with the
	// head of an earlier record still in its array.
	reused := good
	reused.Head = append(make([]byte, 0, HeadLen), bytes.Repeat([]byte{'x'}, HeadLen)...)
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := Decode(b)
		errInto := DecodeInto(&reused, b)
		if (err == nil) != (errInto == nil) {
			t.Fatalf("Decode: %v, DecodeInto: %v", err, errInto)
		}
		if len(ev.Head) == 0 && len(reused.Head) == 0 {
			ev.Head = reused.Head // nil from Decode, the kept array from DecodeInto
		}
		if err == nil && !reflect.DeepEqual(reused, ev) {
			t.Fatalf("DecodeInto over an earlier event differs from Decode:\n%+v\n%+v", reused, ev)
		}
		if err != nil && !reflect.DeepEqual(reused, Event{Head: reused.Head[:0]}) {
			t.Fatalf("DecodeInto left fields of a record it rejected: %+v", reused)
		}
		if err != nil {
			if !errors.Is(err, ErrSize) && !errors.Is(err, ErrVersion) && !errors.Is(err, ErrInvalid) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		if len(ev.Head) == 0 {
			ev.Head = nil
		}
		if len(b) != Size || len(ev.Head) > HeadLen {
			t.Fatalf("accepted malformed record: len %d head %d", len(b), len(ev.Head))
		}
		if ev.Head != nil && !bytes.Equal(ev.Head, b[offHead:offHead+len(ev.Head)]) {
			t.Fatal("head not copied from the record")
		}
		again, err := Decode(Encode(&ev))
		if err != nil {
			t.Fatalf("re-encoded event does not decode: %v", err)
		}
		if !reflect.DeepEqual(again, ev) {
			t.Fatalf("re-encode changed the event:\n%+v\n%+v", again, ev)
		}
		_ = ev.Duration()
		_ = ev.Flags.String()
		_, _ = ParseRequestLine(ev.Head)
		_, _ = RequestID(ev.Head)
	})
}

// A record of several events decodes to those events in order; a record
// that is not a whole number of events is an ErrSize.
func TestDecodeRecord(t *testing.T) {
	a, b := sampleEvent(), sampleEvent()
	b.Client = netip.MustParseAddrPort("10.0.0.9:40001")
	b.Head = []byte("POST /b HTTP/1.1\r\n")
	rec := append(Encode(&a), Encode(&b)...)
	evs, err := DecodeRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || !reflect.DeepEqual(evs[0], a) || !reflect.DeepEqual(evs[1], b) {
		t.Fatalf("decoded %+v, want %+v and %+v", evs, a, b)
	}
	for _, n := range []int{0, 1, Size - 1, Size + 1, 2*Size - 8} {
		if _, err := DecodeRecord(make([]byte, n)); !errors.Is(err, ErrSize) {
			t.Errorf("%d bytes: err %v, want ErrSize", n, err)
		}
	}
	bad := bytes.Clone(rec)
	bad[Size+offVersion] = Version + 1
	if _, err := DecodeRecord(bad); !errors.Is(err, ErrVersion) {
		t.Errorf("second event of another version: err %v, want ErrVersion", err)
	}
}

// FuzzDecodeRecord: DecodeRecord never panics, and what it accepts is
// exactly the record cut into Size-byte events that each decode alone.
func FuzzDecodeRecord(f *testing.F) {
	good := sampleEvent()
	one := Encode(&good)
	f.Add(one)
	f.Add(append(bytes.Clone(one), one...))
	f.Add([]byte{})
	f.Add(make([]byte, 3*Size))
	f.Fuzz(func(t *testing.T, rec []byte) {
		evs, err := DecodeRecord(rec)
		if err != nil {
			if !errors.Is(err, ErrSize) && !errors.Is(err, ErrVersion) && !errors.Is(err, ErrInvalid) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		if len(rec) == 0 || len(rec) != len(evs)*Size {
			t.Fatalf("accepted %d bytes as %d events", len(rec), len(evs))
		}
		for i, ev := range evs {
			alone, err := Decode(rec[i*Size : (i+1)*Size])
			if err != nil || !reflect.DeepEqual(alone, ev) {
				t.Fatalf("event %d: %+v, alone %+v (%v)", i, ev, alone, err)
			}
		}
	})
}
