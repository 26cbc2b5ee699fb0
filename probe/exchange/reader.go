package exchange

import (
	"fmt"
	"time"

	"github.com/cilium/ebpf/ringbuf"
)

// Reader decodes exchange events from the ring buffer opened by
// bpf.ExchangeProbe.NewEventReader, one event per Read whatever the number
// in a record.
type Reader struct {
	rd   *ringbuf.Reader
	rec  ringbuf.Record
	rest []byte // events of rec not yet returned
	ev   Event  // decoded into, so that its Head's array is reused
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

// Read returns the next event, reading the next record when the last one
// is used up (it blocks for it until the deadline). An event that does not
// decode is returned as an error wrapping ErrSize, ErrVersion or
// ErrInvalid, so the caller can count it and go on; a record that is not
// a whole number of events is one such error. The event's Head is valid
// until the next Read, which reuses its array: a caller that keeps the
// head copies it.
func (r *Reader) Read() (Event, error) {
	if len(r.rest) == 0 {
		if err := r.rd.ReadInto(&r.rec); err != nil {
			return Event{}, err
		}
		if _, err := EventsIn(r.rec.RawSample); err != nil {
			return Event{}, fmt.Errorf("decode ring buffer record: %w", err)
		}
		r.rest = r.rec.RawSample
	}
	b := r.rest[:Size]
	r.rest = r.rest[Size:]
	if err := DecodeInto(&r.ev, b); err != nil {
		return Event{}, fmt.Errorf("decode ring buffer record: %w", err)
	}
	return r.ev, nil
}
