// Package logwriter gives the process log a writer that gathers lines into
// fewer write system calls: with a line per delivery attempt, one write
// per line was about half of what the delivery log cost.
//
// Nothing waits on a timer: the writing goroutine writes whatever is
// queued as soon as it is idle, so at a low rate every line is written on
// its own at once, and only lines that arrive while a write is in progress
// are gathered into the next one.
package logwriter

import (
	"context"
	"io"
	"sync"
)

// maxPending is how many bytes of lines may wait for the writing goroutine
// before writers wait too: a destination that blocks (a full pipe) slows
// the process down instead of growing its memory.
const maxPending = 256 << 10

// Writer queues each Write whole and in order for the goroutine running
// Run, which writes the queue to the destination; once Run has returned,
// writes go to the destination directly. It is safe for concurrent use. Errors of the destination are not reported (a log has
// nowhere to report them).
type Writer struct {
	w    io.Writer
	wake chan struct{} // something was queued

	mu      sync.Mutex
	cond    sync.Cond // signalled when the queue shrinks or a write ends
	pending []byte
	spare   []byte
	busy    bool // Run is writing a batch
	running bool // false once Run has returned
}

// New returns a Writer to w; the caller runs its Run.
func New(w io.Writer) *Writer {
	c := &Writer{w: w, wake: make(chan struct{}, 1), running: true}
	c.cond.L = &c.mu
	return c
}

// Write queues p for Run, or writes it at once when Run has returned.
func (c *Writer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.running && len(c.pending) >= maxPending {
		c.cond.Wait()
	}
	if !c.running {
		_, _ = c.w.Write(p)
		return len(p), nil
	}
	if len(c.pending) == 0 {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	c.pending = append(c.pending, p...)
	return len(p), nil
}

// Run writes what is queued until ctx is done, then writes the rest and
// returns; later writes go to the destination directly.
func (c *Writer) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			// The rest is written under the lock, so that direct writes,
			// which take it too, come after it.
			c.mu.Lock()
			if len(c.pending) > 0 {
				_, _ = c.w.Write(c.pending)
			}
			c.pending, c.spare, c.running = nil, nil, false
			c.mu.Unlock()
			c.cond.Broadcast()
			return
		case <-c.wake:
			c.writeQueued()
		}
	}
}

// writeQueued writes the queue, batch after batch, until it is empty.
func (c *Writer) writeQueued() {
	c.mu.Lock()
	for len(c.pending) > 0 {
		batch := c.pending
		c.pending, c.busy = c.spare[:0], true
		c.mu.Unlock()
		c.cond.Broadcast()
		_, _ = c.w.Write(batch)
		c.mu.Lock()
		c.spare = batch[:0]
		if cap(c.spare) > 2*maxPending {
			c.spare = nil // a burst's buffer is not kept
		}
	}
	c.busy = false
	c.mu.Unlock()
	c.cond.Broadcast()
}

// Flush waits until every line queued so far has been written.
func (c *Writer) Flush() {
	c.mu.Lock()
	for len(c.pending) > 0 || c.busy {
		c.cond.Wait()
	}
	c.mu.Unlock()
}
