package dispatch

import (
	"context"
	"hash/maphash"
	"net/http"

	"github.com/walhook/walhook/webhook"
)

// laneQueue is how many tasks each delivery lane holds; with the lanes of
// every webhook it bounds the events kept in memory. 32 keeps every lane
// busy in a drain (a lane sends one at a time) while twelve webhooks at
// concurrency 8 hold about 3,000 events, not 12,000.
const laneQueue = 32

// parkQueue is how many parking requests wait for a webhook's parker.
const parkQueue = 128

// lane delivers its rows' events one at a time, in the order routed: a row
// always hashes to the same lane, so its events never overtake each other.
type lane struct {
	ch chan *task
}

var laneSeed = maphash.MakeSeed()

// lane returns row's lane, creating and starting it on first use, so a
// paused webhook or a quiet one holds no goroutines.
func (h *hook) lane(rowKey string) *lane {
	i := 0
	if len(h.lanes) > 1 {
		i = int(maphash.String(laneSeed, rowKey) % uint64(len(h.lanes)))
	}
	if l := h.lanes[i].Load(); l != nil {
		return l
	}
	h.laneMu.Lock()
	defer h.laneMu.Unlock()
	l := h.lanes[i].Load()
	if l == nil {
		l = &lane{ch: make(chan *task, laneQueue)}
		h.lanes[i].Store(l)
		if h.spawn != nil {
			h.spawn(l)
		}
	}
	return l
}

// send queues t on its row's lane; false if ctx ended or the webhook was
// removed.
func (h *hook) send(ctx context.Context, t *task) bool {
	h.sendMu.RLock()
	defer h.sendMu.RUnlock()
	if h.status.Load() == statusRemoved {
		return false
	}
	h.m.queue.Inc()
	select {
	case h.lane(t.ev.RowKey).ch <- t:
		return true
	case <-ctx.Done():
		h.m.queue.Dec()
		return false
	}
}

// closeLanes stops routing to the webhook and settles what its lanes still
// hold as skipped (it is being removed).
func (h *hook) closeLanes() {
	h.sendMu.Lock()
	h.laneMu.Lock()
	h.spawn = nil
	var lanes []*lane
	for i := range h.lanes {
		if l := h.lanes[i].Load(); l != nil {
			lanes = append(lanes, l)
			close(l.ch)
		}
	}
	h.laneMu.Unlock()
	h.sendMu.Unlock()
	for _, l := range lanes {
		for t := range l.ch {
			h.m.queue.Dec()
			h.settle(t, webhook.OutcomeSkipped)
		}
	}
}

func (h *hook) runLane(ctx context.Context, l *lane) {
	var sg *signer
	var sgDef *hookDef
	var scratch []header
	for {
		select {
		case <-h.stop:
			return
		case t, ok := <-l.ch:
			if !ok {
				return
			}
			h.m.queue.Dec()
			def := h.def.Load()
			if sgDef != def {
				sg, sgDef = newSigner(def.Secret), def
			}
			h.deliverLive(ctx, &scratch, t, def, sg)
		}
	}
}

// deliverLive delivers t with quick retries, or parks it: without an
// attempt when its row waits behind a parked delivery, the breaker is open
// or the webhook is disabled; as a failed delivery when its attempts are
// spent.
func (h *hook) deliverLive(ctx context.Context, scratch *[]header, t *task, def *hookDef, sg *signer) {
	switch h.status.Load() {
	case statusPaused, statusRemoved:
		h.settle(t, webhook.OutcomeSkipped)
		return
	case statusDisabled:
		h.park(ctx, parkReq{t: t})
		return
	}
	h.mu.Lock()
	wait := h.brk.open || h.waitingLocked(t.ev.RowKey) > 0
	h.mu.Unlock()
	if wait {
		h.park(ctx, parkReq{t: t})
		return
	}
	id := DeliveryID(def.ID, t.ev.Commit, t.ev.Index)
	retry := h.d.opts.Delivery.Retry
	var r result
	for attempt := 1; ; attempt++ {
		r = h.attempt(ctx, scratch, def, sg, t.ev, id, attempt)
		if r.ok() {
			h.succeeded(ctx, r)
			h.settle(t, webhook.OutcomeSuccess)
			return
		}
		if ctx.Err() != nil || h.stopping() {
			h.abandon(t)
			return
		}
		if r.code == http.StatusGone || r.permanent() || attempt >= retry.Attempts {
			break
		}
		h.m.outcome[webhook.OutcomeRetried].Inc()
		wait := r.retryAfter
		if wait == 0 {
			wait = backoff(retry.Backoff, retry.MaxBackoff, attempt)
		}
		if !sleep(ctx, h.d.clock, h.stop, wait) {
			h.abandon(t)
			return
		}
	}
	h.m.outcome[webhook.OutcomeFailed].Inc()
	h.failed(t.ev.RowKey)
	h.park(ctx, parkReq{t: t, failure: &r, disable: r.code == http.StatusGone})
}
