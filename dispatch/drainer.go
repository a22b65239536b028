package dispatch

import (
	"context"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/walhook/walhook/state"
	"github.com/walhook/walhook/topics"
	"github.com/walhook/walhook/webhook"
)

// A drain reads parked deliveries a page at a time: at most drainPageRows
// rows and, beyond the first, drainPageBytes of bodies, so re-enabling a
// webhook with many large parked payloads does not load them all at once.
const (
	drainPageRows  = 256
	drainPageBytes = 8 << 20
)

// farFuture is a due-by time that every parked delivery meets.
var farFuture = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// runDrainer retries the webhook's parked deliveries. It has two modes:
//
//   - receiver down (breaker open), and once at start when probe is set
//     (deliveries parked by an earlier run): one probe — the oldest parked delivery, then the next
//     row's on each following probe — on a schedule that
//     starts at retry.probe_interval and doubles up to
//     retry.probe_max_interval. The first success drains everything at
//     once.
//   - otherwise: rows whose head delivery is due are retried, each row in
//     commit order and rows in parallel; a row whose retry fails is
//     rescheduled on the parked backoff and does not stop the others.
//
// Re-enabling a webhook drains everything at once as well.
func (h *hook) runDrainer(ctx context.Context, probe bool) {
	retry := h.d.opts.Delivery.Retry
	timer := h.d.clock.NewTimer(-1)
	defer timer.Stop()
	// armed: the timer is set; forProbe: for a probe, not for the
	// parked schedule.
	armed, forProbe := false, false
	arm := func(d time.Duration, probe bool) {
		if armed {
			timer.Stop()
		}
		timer.Reset(d)
		armed, forProbe = true, probe
	}
	probeWait := retry.ProbeInterval
	if probe {
		arm(0, true)
	}
	for {
		fired := false
		select {
		case <-h.stop:
			return
		case <-timer.C():
			armed, fired = false, true
		case <-h.wake:
		}
		if h.status.Load() != statusActive {
			continue // re-enabling wakes the drainer with force set
		}
		h.mu.Lock()
		open, force := h.brk.open, h.force
		h.force = false
		h.mu.Unlock()
		if (open || probe) && !force {
			if !fired {
				if !armed || !forProbe {
					arm(probeWait, true) // the breaker just opened
				}
				continue
			}
			probe = false
			if !h.probe(ctx) {
				if h.breakerOpen() {
					probeWait = min(probeWait*2, retry.ProbeMaxInterval)
					arm(probeWait, true)
				} else {
					arm(h.nextRetry(ctx), false)
				}
				continue
			}
			force = true
		}
		probeWait = retry.ProbeInterval
		h.drain(ctx, force)
		if h.stopping() {
			return
		}
		h.mu.Lock()
		open, rows := h.brk.open, h.parkedRows
		h.mu.Unlock()
		switch {
		case open:
			arm(probeWait, true)
		case rows > 0:
			arm(h.nextRetry(ctx), false)
		}
	}
}

// nextRetry returns the wait until the earliest scheduled retry of a
// parked delivery (the parked backoff when it cannot be read).
func (h *hook) nextRetry(ctx context.Context) time.Duration {
	now := h.d.clock.Now()
	next, ok, err := h.d.opts.Store.NextParkedAttempt(ctx, h.id, now)
	if err != nil || !ok {
		return jitter(h.d.opts.Delivery.Retry.ParkedBackoff)
	}
	return next.Sub(now)
}

func (h *hook) breakerOpen() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.brk.open
}

// probe retries the oldest parked delivery once and reports whether it
// was delivered (or nothing is parked any more).
func (h *hook) probe(ctx context.Context) bool {
	// Each probe tries the next row's oldest parked delivery, so a row the
	// receiver rejects for its own reasons cannot keep the breaker open
	// while other rows would be accepted.
	heads, err := h.d.opts.Store.ParkedHeads(ctx, h.id, h.probeAfter, farFuture, 1, math.MaxInt64)
	if err == nil && len(heads) == 0 && h.probeAfter != 0 {
		h.probeAfter = 0
		heads, err = h.d.opts.Store.ParkedHeads(ctx, h.id, 0, farFuture, 1, math.MaxInt64)
	}
	if err != nil {
		if ctx.Err() == nil {
			h.d.log.Warn("read parked deliveries", "webhook_id", h.id, "error", err)
		}
		return false
	}
	if len(heads) == 0 {
		h.mu.Lock()
		empty := len(h.pending) == 0
		if empty {
			h.brk.success()
		}
		h.mu.Unlock()
		return empty
	}
	h.probeAfter = heads[0].ID
	delivered, _ := h.retryParked(ctx, heads, nil)
	if delivered > 0 {
		h.probeAfter = 0
	}
	return delivered > 0
}

// drain retries parked deliveries: the due ones, or all of them when all
// is set, until a sweep delivers nothing, the breaker opens or the webhook
// stops being active.
func (h *hook) drain(ctx context.Context, all bool) {
	skip := make(map[string]bool) // rows whose retry failed in this drain
	for {
		dueBy := h.d.clock.Now()
		if all {
			dueBy = farFuture
		}
		delivered := 0
		var after int64
		for {
			heads, err := h.d.opts.Store.ParkedHeads(ctx, h.id, after, dueBy, drainPageRows, drainPageBytes)
			if err != nil {
				if ctx.Err() == nil {
					h.d.log.Warn("read parked deliveries", "webhook_id", h.id, "error", err)
				}
				return
			}
			if len(heads) == 0 {
				break
			}
			after = heads[len(heads)-1].ID
			todo := heads[:0]
			for _, p := range heads {
				if !skip[p.RowKey] {
					todo = append(todo, p)
				}
			}
			n, goOn := h.retryParked(ctx, todo, skip)
			delivered += n
			if !goOn {
				return
			}
		}
		if delivered == 0 {
			return
		}
	}
}

// retryParked tries each delivery once, in parallel (they are of different
// rows), then records the outcomes: delivered ones leave the parked table
// in one transaction; failed ones are rescheduled, counted and added to
// failedRows. It returns how many were delivered, and false when the drain
// should stop (the breaker opened, the webhook is no longer active, or
// walhook is stopping).
func (h *hook) retryParked(ctx context.Context, ps []state.Parked, failedRows map[string]bool) (int, bool) {
	if len(ps) == 0 {
		return 0, true
	}
	results := make([]result, len(ps))
	tried := make([]bool, len(ps))
	def := h.def.Load()
	workers := min(len(ps), max(1, h.d.opts.Delivery.Concurrency))
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sg := newSigner(def.Secret)
			var scratch []header
			for i := range next {
				p := &ps[i]
				t, _ := topics.Parse(p.Topic)
				ev := &Event{Event: topics.Event{Topic: t, Body: p.Body}, RowKey: p.RowKey, Commit: p.CommitLSN}
				results[i] = h.attempt(ctx, &scratch, def, sg, ev, p.DeliveryID, p.Attempts+1)
			}
		}()
	}
	for i := range ps {
		if h.status.Load() != statusActive || h.stopping() {
			break
		}
		tried[i] = true
		next <- i
	}
	close(next)
	wg.Wait()

	store := h.d.opts.Store
	now := h.d.clock.Now()
	var ok []int64
	var lastOK result
	for i, r := range results {
		if r.ok() {
			ok = append(ok, ps[i].ID)
			lastOK = r
		}
	}
	if len(ok) > 0 {
		h.parkMu.Lock()
		keys, size, err := store.DeleteParked(ctx, h.id, ok, state.DeliveryResult{At: now, Code: lastOK.code})
		if err == nil {
			h.forgetParked(keys, size)
		}
		h.parkMu.Unlock()
		if err != nil {
			// Delivered but still parked: sent again later (the receiver
			// deduplicates by delivery id).
			h.d.log.Warn("remove delivered parked deliveries", "webhook_id", h.id, "error", err)
			return 0, false
		}
		h.m.outcome[webhook.OutcomeSuccess].Add(float64(len(ok)))
		h.failures.Store(0)
		h.m.failures.Set(0)
		h.lastAt.Store(now.UnixNano())
		h.lastCode.Store(int64(lastOK.code))
		h.mu.Lock()
		h.brk.success()
		h.mu.Unlock()
	}
	retry := h.d.opts.Delivery.Retry
	for i, r := range results {
		if !tried[i] || r.ok() {
			continue
		}
		if ctx.Err() != nil || h.stopping() {
			continue // interrupted by shutdown: tried again after the restart
		}
		p := ps[i]
		h.m.outcome[webhook.OutcomeFailed].Inc()
		wait := jitter(exponential(retry.ParkedBackoff, retry.ParkedMaxBackoff, p.Attempts+1))
		f, err := store.RescheduleParked(ctx, p, state.DeliveryResult{At: now, Code: r.code, Error: r.describe()},
			now.Add(wait), h.rule(), r.code == http.StatusGone)
		if err != nil {
			h.d.log.Warn("reschedule parked delivery", "webhook_id", h.id, "error", err)
			return len(ok), false
		}
		h.recorded(f, r)
		if p.Attempts == 0 {
			// A row parked untried (behind the breaker, or behind its own
			// parked delivery) that now fails is news about the receiver;
			// a row that had failed before is that row's problem, and its
			// failing retries must not take the receiver for down.
			h.failed(p.RowKey)
		}
		if failedRows != nil {
			failedRows[p.RowKey] = true
		}
	}
	goOn := h.status.Load() == statusActive && !h.stopping() && ctx.Err() == nil && !h.breakerOpen()
	return len(ok), goOn
}
