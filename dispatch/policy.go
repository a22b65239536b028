package dispatch

import (
	"context"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/walhook/walhook/state"
)

// breakerRows is how many distinct rows must fail, with no success in
// between, before a webhook's receiver is taken to be down. One row that
// keeps failing is a bad row: it parks and waits alone while every other
// row is delivered live.
const breakerRows = 3

// breaker tells a receiver that is down from a bad row. It opens when
// failed deliveries span breakerRows distinct rows with no success between
// them; while it is open, live deliveries park without an attempt and the
// drainer probes the receiver with its oldest parked delivery. The first
// success closes it. It is not safe for concurrent use: the hook guards
// it with its mu.
type breaker struct {
	open   bool
	failed map[string]struct{} // rows that failed since the last success
}

// failure records a failed delivery of row and reports whether it opened
// the breaker.
func (b *breaker) failure(row string) (opened bool) {
	if b.open {
		return false
	}
	if b.failed == nil {
		b.failed = make(map[string]struct{}, breakerRows)
	}
	b.failed[row] = struct{}{}
	if len(b.failed) >= breakerRows {
		b.open = true
		clear(b.failed)
		return true
	}
	return false
}

// success records a delivered one and reports whether it closed the
// breaker.
func (b *breaker) success() (closed bool) {
	clear(b.failed)
	closed = b.open
	b.open = false
	return closed
}

// disableRule is when failures disable a webhook: its consecutive failures
// exceed maxFailures and nothing has succeeded for at least after (since
// the first of those failures). after 0 is WooCommerce's rule: the count
// alone.
func disableRule(maxFailures int, after time.Duration, now time.Time) state.DisableRule {
	return func(count int, since time.Time) bool {
		return count > maxFailures && now.Sub(since) >= after
	}
}

// backoff returns a full-jitter exponential backoff for the n-th retry.
func backoff(base, max time.Duration, n int) time.Duration {
	d := exponential(base, max, n)
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d))) + 1
}

// exponential returns base doubled n-1 times, capped at max.
func exponential(base, max time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

// jitter spreads d by ±20 %.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d*4/5 + time.Duration(rand.Int64N(int64(d)*2/5+1))
}

// sleep waits d on clock; false when ctx or stop ended first.
func sleep(ctx context.Context, clock Clock, stop <-chan struct{}, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return true
	case <-ctx.Done():
		return false
	case <-stop:
		return false
	}
}

// userAgent builds WooCommerce's User-Agent shape naming walhook.
func userAgent(version, serverVersion string) string {
	ua := "walhook/" + strings.TrimPrefix(version, "v") + " Hookshot"
	if serverVersion != "" {
		ua += " (PostgreSQL/" + serverVersion + ")"
	}
	return ua
}
