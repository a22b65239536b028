// Package walhooktest starts walhook for tests, in-process through
// app.Run or as the real binary, reads its metrics, and waits for
// conditions without a wall-clock budget.
//
// Waits here fail only when nothing has moved for a generous period
// (Patience), never because a loaded machine is slower than the
// machine a test was written on:
//
//	walhooktest.WaitCount(t, "deliveries", 20, func() int { return len(recv.Accepted()) })
//	walhooktest.WaitFor(t, "webhook 1 to be disabled", func() bool { ... })
package walhooktest

import (
	"os"
	"testing"
	"time"
)

// defaultPatience is how long a wait goes on without progress before the
// test fails, unless WALHOOK_TEST_PATIENCE says otherwise. It is far
// longer than anything should take; it only bounds how long a real
// defect takes to be reported.
const defaultPatience = 2 * time.Minute

// pollInterval is how often waits look at their condition.
const pollInterval = 20 * time.Millisecond

// Patience returns how long a wait goes on without progress before it
// fails: WALHOOK_TEST_PATIENCE (a Go duration) when set and valid, else
// two minutes.
func Patience() time.Duration {
	if s := os.Getenv("WALHOOK_TEST_PATIENCE"); s != "" {
		if d, err := time.ParseDuration(s); err == nil && d > 0 {
			return d
		}
	}
	return defaultPatience
}

// WaitFor polls cond until it holds. It fails the test, naming what it
// waited for, when cond has not held for Patience: use it for a single
// step (a status changes, a process listens), and WaitCount or
// WaitProgress when the wait can report progress.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	patience := Patience()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s: it did not happen", patience, what)
		}
		time.Sleep(pollInterval)
	}
}

// Holds polls cond like WaitFor and reports whether it held, for tests
// that report a failure themselves.
func Holds(cond func() bool) bool {
	deadline := time.Now().Add(Patience())
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollInterval)
	}
	return true
}

// WaitProgress polls f until it reports done. progress is any number that
// grows as the awaited work advances (events delivered, rows settled); the
// test fails only when progress has not changed for noProgress, with a
// message naming what and the last progress.
func WaitProgress(t testing.TB, what string, noProgress time.Duration, f func() (done bool, progress int)) {
	t.Helper()
	if !progressed(noProgress, f) {
		_, p := f()
		t.Fatalf("waiting for %s: no progress for %s (progress stayed at %d)", what, noProgress, p)
	}
}

// WaitCount waits until count() reaches want, failing the test when the
// count has not moved for Patience.
func WaitCount(t testing.TB, what string, want int, count func() int) {
	t.Helper()
	if !CountReaches(want, count) {
		t.Fatalf("waiting for %s: %d of %d, no progress for %s", what, count(), want, Patience())
	}
}

// CountReaches waits like WaitCount and reports whether count() reached
// want, for tests that report a failure themselves.
func CountReaches(want int, count func() int) bool {
	return progressed(Patience(), func() (bool, int) {
		n := count()
		return n >= want, n
	})
}

// progressed polls f until done, giving up after noProgress without a
// change in progress.
func progressed(noProgress time.Duration, f func() (done bool, progress int)) bool {
	done, last := f()
	moved := time.Now()
	for !done {
		time.Sleep(pollInterval)
		var p int
		done, p = f()
		if p != last {
			last, moved = p, time.Now()
		}
		if !done && time.Since(moved) > noProgress {
			return false
		}
	}
	return true
}

// Quiet waits d so that an action that must not happen (a request to a
// disabled webhook, a second ping) has a chance to show before the test
// looks. It is for negative checks only: a slow machine can make such a
// check weaker, never fail a correct run. Never use it to let something
// happen; wait for a condition instead.
func Quiet(d time.Duration) { time.Sleep(d) }
