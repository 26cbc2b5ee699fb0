package pairing

// queue holds one side's pending exchanges by value, sorted by request
// start. Exchanges arrive nearly in that order and are decided nearly in
// it too, so a queue is appended to at the back and cut at the front, in
// one array that is reused: no allocation per exchange, and the exchanges
// a resolve walks lie next to each other in memory. (Pointers to nodes
// allocated one by one sent every comparison of a resolve, and every
// insertion, to a different cold cache line: at ten thousand requests per
// second that was a fifth of the probe's CPU.)
type queue struct {
	buf  []node // buf[head:] are the pending nodes
	head int
}

// pending returns the pending nodes, valid until the next insert or cut.
func (q *queue) pending() []node { return q.buf[q.head:] }

func (q *queue) len() int { return len(q.buf) - q.head }

// insert adds n at its place by request start. The search from the back
// stops after a few steps: each exchange is emitted when its connection's
// next request starts (or by the idle scan), after the exchanges of other
// connections that started meanwhile.
func (q *queue) insert(n *node) {
	if len(q.buf) == cap(q.buf) {
		q.makeRoom()
	}
	q.buf = append(q.buf, node{})
	i := len(q.buf) - 1
	for i > q.head && q.buf[i-1].x.RequestStart > n.x.RequestStart {
		q.buf[i] = q.buf[i-1]
		i--
	}
	q.buf[i] = *n
}

// makeRoom frees the array's end for appends: it moves the pending nodes
// to the front of the array when the cut front is at least a quarter of
// it (each node is then moved once per several appends), and grows the
// array otherwise.
func (q *queue) makeRoom() {
	if q.head > 0 && q.head >= cap(q.buf)/4 {
		n := copy(q.buf, q.buf[q.head:])
		q.buf, q.head = q.buf[:n], 0
		return
	}
	pending := q.pending()
	buf := make([]node, len(pending), max(2*len(pending), 64))
	copy(buf, pending)
	q.buf, q.head = buf, 0
}

// cut removes the decided nodes from the front part of the queue that done
// covers: the kept ones of that part move back against the rest, in their
// order, and the queue then starts after the removed ones. Nothing beyond
// that part moves.
func (q *queue) cut(done []bool) {
	p := q.pending()
	w := len(done)
	for i := len(done) - 1; i >= 0; i-- {
		if !done[i] {
			w--
			p[w] = p[i]
		}
	}
	q.head += w
	// After a burst, give back an array far larger than what is pending.
	if cap(q.buf) > retain && q.len() < cap(q.buf)/8 {
		buf := make([]node, q.len(), 2*q.len())
		copy(buf, q.pending())
		q.buf, q.head = buf, 0
	}
}
