package exchange

import (
	"fmt"
	"time"

	"github.com/cilium/ebpf/ringbuf"
)

// Reader decodes exchange events from the ring buffer opened by
// bpf.ExchangeProbe.NewEventReader.
type Reader struct {
	rd  *ringbuf.Reader
	rec ringbuf.Record
	ev  Event // decoded into, so that its Head's array is reused
}

// NewReader wraps an open ring buffer reader. Closing the ring buffer
// reader unblocks Read.
func NewReader(rd *ringbuf.Reader) *Reader {
	return &Reader{rd: rd}
}

// SetDeadline makes Read return os.ErrDeadlineExceeded once t passes.
func (r *Reader) SetDeadline(t time.Time) {
	r.rd.SetDeadline(t)
}

// Read blocks for the next record and decodes it. A record that does not
// decode is returned as an error wrapping ErrSize, ErrVersion or ErrInvalid,
// so the caller can count it and go on. The event's Head is valid until
// the next Read, which reuses its array: a caller that keeps the head
// copies it.
func (r *Reader) Read() (Event, error) {
	if err := r.rd.ReadInto(&r.rec); err != nil {
		return Event{}, err
	}
	if err := DecodeInto(&r.ev, r.rec.RawSample); err != nil {
		return Event{}, fmt.Errorf("decode ring buffer record: %w", err)
	}
	return r.ev, nil
}
