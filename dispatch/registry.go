package dispatch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"sync/atomic"

	"github.com/walhook/walhook/state"
	"github.com/walhook/walhook/topics"
	"github.com/walhook/walhook/webhook"
)

// SetConfigWebhooks records the webhooks declared in the configuration in
// the state schema (see state.Store.SyncConfigWebhook for which status
// wins), removes the ones no longer declared, and applies the result to the
// running pipeline. It is how a reload takes effect.
func (d *Dispatcher) SetConfigWebhooks(ctx context.Context, defs []Definition, statuses map[int64]webhook.Status) error {
	keep := make([]int64, 0, len(defs))
	for _, def := range defs {
		st := statuses[def.ID]
		if st == "" {
			st = webhook.StatusActive
		}
		_, err := d.opts.Store.SyncConfigWebhook(ctx, state.Webhook{
			ID: def.ID, Name: def.Name, Topic: def.Topic.String(), DeliveryURL: def.DeliveryURL,
			Signature: def.Signature, DefinitionHash: definitionHash(def, st), Status: st,
		})
		if err != nil {
			return err
		}
		keep = append(keep, def.ID)
	}
	removed, err := d.opts.Store.DeleteConfigWebhooksExcept(ctx, keep)
	if err != nil {
		return err
	}
	for _, id := range removed {
		d.log.Info("webhook removed from the configuration", "webhook_id", id)
	}
	d.mu.Lock()
	d.config = make(map[int64]Definition, len(defs))
	for _, def := range defs {
		d.config[def.ID] = def
	}
	d.mu.Unlock()
	return d.Refresh(ctx)
}

// Refresh re-reads every webhook from the state schema and applies
// additions, removals, definition and status changes to the running
// pipeline. Changes made by another process (an admin command, the API of
// another instance) are picked up by a poll that calls it.
func (d *Dispatcher) Refresh(ctx context.Context) error {
	stored, err := d.opts.Store.Webhooks(ctx)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	seen := make(map[int64]bool, len(stored))
	for _, w := range stored {
		seen[w.ID] = true
		def, err := d.definitionLocked(w)
		if err != nil {
			d.log.Error("webhook cannot run", "webhook_id", w.ID, "error", err)
			continue
		}
		h := d.hooks[w.ID]
		if h != nil && h.def.Load().Topic != def.Topic {
			// A new topic means new metric labels and routes: start afresh.
			d.removeLocked(h)
			h = nil
		}
		if h == nil {
			h = d.newHook(def, w)
			d.hooks[w.ID] = h
			if d.work != nil {
				h.start(d.work)
			}
		} else if w.Revision != h.revision {
			old := h.def.Load()
			if old.Definition != def {
				h.def.Store(newHookDef(def, d.opts.DeliveryLogger))
			}
			h.revision = w.Revision
			h.loadParked(ctx) // an operator may have discarded them
			h.failures.Store(int64(w.FailureCount))
			h.m.failures.Set(float64(w.FailureCount))
			h.setStatus(parseStatus(w.Status))
		}
		// A pending ping goes out once per start and per change of the
		// webhook, not on every refresh.
		if w.PendingPing && w.Status == webhook.StatusActive && d.work != nil && h.pingedRevision != w.Revision {
			h.pingedRevision = w.Revision
			h.ping(d.work)
		}
	}
	for id, h := range d.hooks {
		if !seen[id] {
			d.removeLocked(h)
		}
	}
	d.rebuildRoutesLocked()
	return nil
}

// definitionLocked joins a stored webhook with its configuration.
func (d *Dispatcher) definitionLocked(w state.Webhook) (Definition, error) {
	t, err := topics.Parse(w.Topic)
	if err != nil {
		return Definition{}, err
	}
	def := Definition{ID: w.ID, Name: w.Name, Topic: t, DeliveryURL: w.DeliveryURL, Secret: w.Secret, Signature: w.Signature}
	if w.Origin == state.OriginConfig {
		c, ok := d.config[w.ID]
		if !ok {
			return def, errors.New("declared in a configuration this instance has not loaded")
		}
		def.Secret, def.Filter = c.Secret, c.Filter
	}
	if def.Filter != "" {
		if _, err := d.compileFilterLocked(def.ID, def.Filter); err != nil {
			return def, err
		}
	}
	if def.Signature == "" {
		def.Signature = webhook.SignatureWooCommerce
	}
	return def, nil
}

func (d *Dispatcher) newHook(def Definition, w state.Webhook) *hook {
	h := &hook{
		d:        d,
		id:       def.ID,
		idLabel:  strconv.FormatInt(def.ID, 10),
		revision: w.Revision,
		m:        d.opts.Metrics.forHook(strconv.FormatInt(def.ID, 10), def.Topic.String()),
		lanes:    make([]atomic.Pointer[lane], max(1, d.opts.Delivery.Concurrency)),
		parkCh:   make(chan parkReq, parkQueue),
		wake:     make(chan struct{}, 1),
		parked:   make(map[string]int),
		pending:  make(map[string]int),
		stop:     make(chan struct{}),
	}
	h.def.Store(newHookDef(def, d.opts.DeliveryLogger))
	h.status.Store(parseStatus(w.Status))
	d.opts.Metrics.setStatus(h.idLabel, w.Status)
	h.failures.Store(int64(w.FailureCount))
	h.m.failures.Set(float64(w.FailureCount))
	h.delivered.Store(uint64(w.DeliveredThrough))
	d.log.Debug("webhook resumes", "webhook_id", w.ID, "status", w.Status, "delivered_through", w.DeliveredThrough.String())
	h.loadParked(context.Background())
	return h
}

// removeLocked takes a webhook out: its queued events are settled without
// sending, and its goroutines stop.
func (d *Dispatcher) removeLocked(h *hook) {
	delete(d.hooks, h.id)
	h.status.Store(statusRemoved)
	go func() {
		h.closeLanes()
		if h.cancel != nil {
			h.halt()
		}
		d.opts.Metrics.forget(h.idLabel, h.def.Load().Topic.String())
	}()
}

// rebuildRoutesLocked lists each webhook under every event topic its topic
// matches (three for "<resource>.*"), with its compiled filter, and forgets
// the filters of webhooks that are gone.
func (d *Dispatcher) rebuildRoutesLocked() {
	routes := make(routeTable)
	filters := make(map[int64]*compiledFilter, len(d.filters))
	for _, h := range d.hooks {
		def := h.def.Load()
		var f *compiledFilter
		if def.Filter != "" {
			f = d.filters[h.id] // compiled by definitionLocked
			filters[h.id] = f
		}
		for _, t := range def.Topic.Events() {
			routes[t] = append(routes[t], route{h: h, f: f})
		}
	}
	d.filters = filters
	d.routes.Store(&routes)
}

// definitionHash identifies a configured definition, so the stored runtime
// status is kept while the definition is unchanged.
func definitionHash(def Definition, status webhook.Status) string {
	h := sha256.New()
	fields := []string{def.Name, def.Topic.String(), def.DeliveryURL, def.Secret, string(def.Signature), string(status)}
	if def.Filter != "" {
		// Only with a filter, so the hash of a webhook without one stays
		// what it was before filters existed.
		fields = append(fields, "filter", def.Filter)
	}
	for _, s := range fields {
		h.Write([]byte(strconv.Itoa(len(s))))
		h.Write([]byte{':'})
		h.Write([]byte(s))
	}
	return hex.EncodeToString(h.Sum(nil))
}
