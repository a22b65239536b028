package dispatch

import (
	"context"
	"errors"
	"time"

	"github.com/walhook/walhook/state"
	"github.com/walhook/walhook/webhook"
)

// parkReq asks the parker to keep a task in the state schema.
type parkReq struct {
	t       *task
	failure *result // the failed delivery's last attempt; nil when parked without trying
	disable bool    // disable the webhook at once (410 Gone)
}

// park counts t's row as waiting and hands t to the parker. A task that
// cannot be handed over because walhook stops stays unsettled.
func (h *hook) park(ctx context.Context, req parkReq) {
	h.mu.Lock()
	h.pending[req.t.ev.RowKey]++
	h.mu.Unlock()
	select {
	case h.parkCh <- req:
	case <-h.stop:
		h.abandon(req.t)
	case <-ctx.Done():
		h.abandon(req.t)
	}
}

// runParker writes parked deliveries in batches, each batch in one
// transaction with the failures it records, and only then settles them.
func (h *hook) runParker(ctx context.Context) {
	const maxBatch = 256
	batch := make([]parkReq, 0, maxBatch)
	for {
		batch = batch[:0]
		select {
		case <-h.stop:
			if h.status.Load() == statusRemoved {
				for {
					select {
					case req := <-h.parkCh:
						h.abandon(req.t)
					default:
						return
					}
				}
			}
			return
		case req := <-h.parkCh:
			batch = append(batch, req)
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case req := <-h.parkCh:
				batch = append(batch, req)
			default:
				break fill
			}
		}
		if !h.writeParked(ctx, batch) {
			return
		}
	}
}

func (h *hook) writeParked(ctx context.Context, batch []parkReq) bool {
	h.parkMu.Lock()
	defer h.parkMu.Unlock()
	def := h.def.Load()
	now := h.d.clock.Now()
	retry := h.d.opts.Delivery.Retry
	rows := make([]state.Parked, len(batch))
	failures, disable := 0, false
	var last *result
	var size int64
	for i, req := range batch {
		ev := req.t.ev
		rows[i] = state.Parked{
			WebhookID:     h.id,
			RowKey:        ev.RowKey,
			Topic:         ev.Topic.String(),
			DeliveryID:    DeliveryID(def.ID, ev.Commit, ev.Index),
			CommitLSN:     ev.Commit,
			Body:          ev.Payload(),
			NextAttemptAt: now,
		}
		size += int64(len(ev.Payload()))
		if req.failure != nil {
			failures++
			last = req.failure
			rows[i].Attempts = 1
			rows[i].LastError = req.failure.describe()
			rows[i].NextAttemptAt = now.Add(jitter(retry.ParkedBackoff))
			disable = disable || req.disable
		}
	}
	dr := state.DeliveryResult{At: now}
	if last != nil {
		dr.Code, dr.Error = last.code, last.describe()
	}
	var f state.Failure
	for try := 1; ; try++ {
		var err error
		f, err = h.d.opts.Store.RecordFailure(ctx, h.id, failures, dr, h.rule(), disable, rows)
		if err == nil {
			break
		}
		if errors.Is(err, state.ErrNotFound) {
			// The webhook was deleted: nothing to keep.
			h.mu.Lock()
			for _, req := range batch {
				decr(h.pending, req.t.ev.RowKey)
			}
			h.mu.Unlock()
			for _, req := range batch {
				h.settle(req.t, webhook.OutcomeSkipped)
			}
			return true
		}
		h.d.log.Error("park deliveries; retrying", "webhook_id", h.id, "deliveries", len(batch), "error", err)
		if !sleep(ctx, h.d.clock, h.stop, backoff(time.Second, 30*time.Second, try)) {
			return false // left unsettled: delivered again after the restart
		}
	}
	if failures > 0 {
		h.recorded(f, *last)
	}
	limit := h.d.opts.Delivery.ParkLimit
	h.mu.Lock()
	for _, req := range batch {
		decr(h.pending, req.t.ev.RowKey)
		h.parked[req.t.ev.RowKey]++
	}
	h.parkedRows += int64(len(rows))
	h.parkedSize += size
	over := h.parkedRows > limit.Rows || h.parkedSize > limit.Bytes
	h.m.parked.Set(float64(h.parkedRows))
	h.mu.Unlock()
	if over {
		dropped, droppedSize, err := h.d.opts.Store.TrimParked(ctx, h.id, limit.Rows, limit.Bytes)
		if err != nil {
			h.d.log.Warn("enforce park limit", "webhook_id", h.id, "error", err)
		}
		h.forgetParked(dropped, droppedSize)
		if len(dropped) > 0 {
			h.m.outcome[webhook.OutcomeDropped].Add(float64(len(dropped)))
			h.d.log.Warn("park limit reached: oldest parked deliveries dropped",
				"webhook_id", h.id, "dropped", len(dropped), "max_rows", limit.Rows, "max_bytes", limit.Bytes)
		}
	}
	for _, req := range batch {
		h.settle(req.t, webhook.OutcomeParked)
	}
	h.poke()
	return true
}

// forgetParked takes deliveries that left the parked table (delivered or
// dropped) out of the in-memory view. The caller holds parkMu.
func (h *hook) forgetParked(keys []string, size int64) {
	if len(keys) == 0 {
		return
	}
	h.mu.Lock()
	for _, k := range keys {
		decr(h.parked, k)
	}
	h.parkedRows -= int64(len(keys))
	h.parkedSize -= size
	h.m.parked.Set(float64(h.parkedRows))
	h.mu.Unlock()
}

// loadParked reads which rows the webhook has parked deliveries for (at
// start, and after another process may have discarded them).
func (h *hook) loadParked(ctx context.Context) {
	h.parkMu.Lock()
	defer h.parkMu.Unlock()
	store := h.d.opts.Store
	keys, err := store.ParkedKeys(ctx, h.id)
	if err != nil {
		h.d.log.Error("read parked deliveries", "webhook_id", h.id, "error", err)
		return
	}
	rows, size, err := store.ParkedCount(ctx, h.id)
	if err != nil {
		h.d.log.Error("read parked deliveries", "webhook_id", h.id, "error", err)
		return
	}
	h.mu.Lock()
	h.parked = keys
	h.parkedRows, h.parkedSize = rows, size
	h.mu.Unlock()
	h.m.parked.Set(float64(rows))
}
