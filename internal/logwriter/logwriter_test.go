package logwriter

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// recorder is a destination that records each write.
type recorder struct {
	mu     sync.Mutex
	writes []string
	hold   chan struct{} // when set, the first write waits for it to close
	inside chan struct{} // closed when the first write has started
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	first := len(r.writes) == 0
	r.writes = append(r.writes, string(p))
	r.mu.Unlock()
	if first && r.hold != nil {
		close(r.inside)
		<-r.hold
	}
	return len(p), nil
}

func (r *recorder) all() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.writes, "")
}

func start(t *testing.T, w *Writer) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return stop
}

// TestEveryLineOnceInOrder: lines written concurrently, before Run starts,
// while it runs and after it returned, all reach the destination whole, once, each writer's in order.
func TestEveryLineOnceInOrder(t *testing.T) {
	rec := &recorder{}
	w := New(rec)
	fmt.Fprintf(w, "before\n") // queued until Run starts
	stop := start(t, w)
	const writers, lines = 8, 2000
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range lines {
				fmt.Fprintf(w, "%d %d\n", g, i)
			}
		}()
	}
	wg.Wait()
	stop()
	fmt.Fprintf(w, "after\n")

	got := strings.Split(strings.TrimSuffix(rec.all(), "\n"), "\n")
	if len(got) != writers*lines+2 || got[0] != "before" || got[len(got)-1] != "after" {
		t.Fatalf("%d lines, first %q, last %q; want %d between before and after", len(got), got[0], got[len(got)-1], writers*lines)
	}
	next := make([]int, writers)
	for _, l := range got[1 : len(got)-1] {
		var g, i int
		if _, err := fmt.Sscanf(l, "%d %d", &g, &i); err != nil || g < 0 || g >= writers {
			t.Fatalf("line %q is not one written", l)
		}
		if i != next[g] {
			t.Fatalf("writer %d: line %d after %d", g, i, next[g]-1)
		}
		next[g]++
	}
}

// TestLinesWaitingBehindAWriteGoOutTogether: lines written while a write
// is in progress reach the destination in one write after it, and Flush
// returns once they have.
func TestLinesWaitingBehindAWriteGoOutTogether(t *testing.T) {
	rec := &recorder{hold: make(chan struct{}), inside: make(chan struct{})}
	w := New(rec)
	start(t, w)
	fmt.Fprintf(w, "first\n")
	<-rec.inside
	var want bytes.Buffer
	for i := range 100 {
		fmt.Fprintf(w, "line %d\n", i)
		fmt.Fprintf(&want, "line %d\n", i)
	}
	close(rec.hold)
	w.Flush()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.writes) != 2 || rec.writes[0] != "first\n" || rec.writes[1] != want.String() {
		t.Fatalf("writes %q, want the first line, then the 100 queued behind it in one write", rec.writes)
	}
}
