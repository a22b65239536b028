package dispatch

import (
	"sync"
	"time"

	"github.com/walhook/walhook/state"
)

// txMark is one transaction inside a tracker: how many of its deliveries
// are not settled yet, and whether all of them have been added (sealed).
type txMark struct {
	commit     state.LSN
	end        state.LSN
	commitTime time.Time
	pending    int
	sealed     bool
}

// tracker holds transactions in commit order and reports the newest one
// such that it and every earlier one are settled: track in order, settle
// in any order, confirm only the contiguous prefix.
type tracker struct {
	mu      sync.Mutex
	queue   []*txMark // unsettled transactions, oldest first
	commit  state.LSN
	end     state.LSN
	advance func(commit, end state.LSN) // called with mu held when the prefix advances
}

// open starts tracking a transaction. Transactions must be opened in
// commit order.
func (t *tracker) open(commit state.LSN, commitTime time.Time) *txMark {
	m := &txMark{commit: commit, commitTime: commitTime}
	t.mu.Lock()
	t.queue = append(t.queue, m)
	t.mu.Unlock()
	return m
}

// add counts n more unsettled deliveries in m.
func (t *tracker) add(m *txMark, n int) {
	t.mu.Lock()
	m.pending += n
	t.mu.Unlock()
}

// seal records that m has all its deliveries and its end position.
func (t *tracker) seal(m *txMark, end state.LSN) {
	t.mu.Lock()
	m.sealed = true
	m.end = end
	t.popLocked()
	t.mu.Unlock()
}

// done settles one delivery of m.
func (t *tracker) done(m *txMark) {
	t.mu.Lock()
	m.pending--
	if m.pending == 0 && m.sealed {
		t.popLocked()
	}
	t.mu.Unlock()
}

func (t *tracker) popLocked() {
	n := 0
	for n < len(t.queue) && t.queue[n].sealed && t.queue[n].pending == 0 {
		n++
	}
	if n == 0 {
		return
	}
	last := t.queue[n-1]
	t.commit, t.end = last.commit, last.end
	clear(t.queue[:n])
	t.queue = t.queue[n:]
	if t.advance != nil {
		t.advance(t.commit, t.end)
	}
}

// position returns the newest settled transaction's commit and end
// positions, whether nothing is unsettled, and the commit time of the
// oldest unsettled transaction (zero when idle).
func (t *tracker) position() (commit, end state.LSN, idle bool, oldest time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.queue) > 0 {
		oldest = t.queue[0].commitTime
	}
	return t.commit, t.end, len(t.queue) == 0, oldest
}
