// Package dispatch delivers events to webhooks: it matches events to
// webhooks by topic, keeps each row's events in commit order while other
// rows and webhooks go in parallel, signs and POSTs them, retries, parks
// what keeps failing in the state schema, disables failing webhooks, pings
// activated ones, and reports which transactions are settled so the slot's
// position can move on.
package dispatch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/state"
	"github.com/walhook/walhook/topics"
)

// laneQueue is how many tasks each delivery lane holds; with the lanes of
// every webhook it bounds the events kept in memory.
const laneQueue = 128

// Options configure a Dispatcher.
type Options struct {
	Source   string // X-WC-Webhook-Source, ending with "/"
	Version  string // walhook's version, for the User-Agent
	Server   string // PostgreSQL's version, for the User-Agent
	Slot     string // the replication slot, under which positions are saved
	Delivery config.Delivery
	Store    *state.Store
	Mapper   *topics.Mapper
	Confirm  func(end pglogrepl.LSN) // told the end of every newly settled prefix of transactions
	Client   *http.Client            // nil: NewClient from Delivery
	Logger   *slog.Logger            // walhook's log
	Metrics  *Metrics
	// DeliveryLogger receives one line per delivery attempt (source
	// webhooks-delivery); nil uses Logger.
	DeliveryLogger *slog.Logger
}

// Dispatcher routes transactions to webhooks. Create it with New, set its
// webhooks with SetConfigWebhooks, then Run it.
type Dispatcher struct {
	opts      Options
	log       *slog.Logger
	client    *http.Client
	source    []string
	userAgent []string

	tracker    tracker
	lastRouted atomic.Uint64 // commit LSN of the newest fully routed transaction

	mu      sync.Mutex // guards hooks, config and work
	hooks   map[int64]*hook
	config  map[int64]Definition // webhooks declared in the configuration (their secrets live only here)
	work    context.Context      // the context hooks run under; nil before Run
	routes  atomic.Pointer[map[topics.Topic][]*hook]
	changed chan struct{} // positions or webhooks changed since the last save
}

// New returns a dispatcher.
func New(opts Options) *Dispatcher {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.DeliveryLogger == nil {
		opts.DeliveryLogger = opts.Logger
	}
	d := &Dispatcher{
		opts:      opts,
		log:       opts.Logger,
		client:    opts.Client,
		source:    []string{opts.Source},
		userAgent: userAgent(opts.Version, opts.Server),
		hooks:     make(map[int64]*hook),
		config:    make(map[int64]Definition),
		changed:   make(chan struct{}, 1),
	}
	if d.client == nil {
		d.client = NewClient(opts.Delivery.Concurrency, opts.Delivery.AllowPrivateNetworks, opts.Delivery.AllowCIDRs)
	}
	d.tracker.advance = func(_, end pglogrepl.LSN) {
		if opts.Confirm != nil {
			opts.Confirm(end)
		}
		opts.Metrics.SettledLSN.Set(float64(end))
		select {
		case d.changed <- struct{}{}:
		default:
		}
	}
	empty := map[topics.Topic][]*hook{}
	d.routes.Store(&empty)
	return d
}

// SetConfigWebhooks records the webhooks declared in the configuration in
// the state schema (see state.Store.SyncConfigWebhook for which status
// wins), removes the ones no longer declared, and applies the result to the
// running pipeline. It is how a reload takes effect.
func (d *Dispatcher) SetConfigWebhooks(ctx context.Context, defs []Definition, statuses map[int64]string) error {
	keep := make([]int64, 0, len(defs))
	for _, def := range defs {
		st := statuses[def.ID]
		if st == "" {
			st = state.StatusActive
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
				h.def.Store(newHookDef(def))
			}
			h.revision = w.Revision
			d.loadParked(ctx, h) // an operator may have discarded them
			h.failures.Store(int64(w.FailureCount))
			h.m.failures.Set(float64(w.FailureCount))
			h.setStatus(parseStatus(w.Status))
		}
		// A pending ping goes out once per start and per change of the
		// webhook, not on every refresh.
		if w.PendingPing && w.Status == state.StatusActive && d.work != nil && h.pingedRevision != w.Revision {
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
		def.Secret = c.Secret
	}
	if def.Signature == "" {
		def.Signature = SignatureWooCommerce
	}
	return def, nil
}

func (d *Dispatcher) newHook(def Definition, w state.Webhook) *hook {
	h := &hook{
		d:           d,
		id:          def.ID,
		idLabel:     strconv.FormatInt(def.ID, 10),
		revision:    w.Revision,
		m:           d.opts.Metrics.forHook(strconv.FormatInt(def.ID, 10), def.Topic.String()),
		lanes:       make([]chan *task, max(1, d.opts.Delivery.Concurrency)),
		parkCh:      make(chan parkReq, laneQueue),
		wake:        make(chan struct{}, 1),
		parkedKeys:  make(map[string]int),
		pendingKeys: make(map[string]int),
		stop:        make(chan struct{}),
	}
	for i := range h.lanes {
		h.lanes[i] = make(chan *task, laneQueue)
	}
	h.def.Store(newHookDef(def))
	h.status.Store(parseStatus(w.Status))
	d.opts.Metrics.setStatus(h.idLabel, w.Status)
	h.failures.Store(int64(w.FailureCount))
	h.m.failures.Set(float64(w.FailureCount))
	h.delivered.Store(uint64(w.DeliveredThrough))
	d.loadParked(context.Background(), h)
	return h
}

// loadParked reads which rows a webhook has parked deliveries for.
func (d *Dispatcher) loadParked(ctx context.Context, h *hook) {
	h.parkMu.Lock()
	defer h.parkMu.Unlock()
	keys, err := d.opts.Store.ParkedKeys(ctx, h.id)
	if err != nil {
		d.log.Error("read parked deliveries", "webhook_id", h.id, "error", err)
		return
	}
	rows, size, err := d.opts.Store.ParkedCount(ctx, h.id)
	if err != nil {
		d.log.Error("read parked deliveries", "webhook_id", h.id, "error", err)
		return
	}
	h.mu.Lock()
	h.parkedKeys = keys
	h.parkedRows, h.parkedSize = rows, size
	h.mu.Unlock()
	h.m.parked.Set(float64(rows))
}

// removeLocked takes a webhook out: its queued events are settled without
// sending, and its goroutines stop.
func (d *Dispatcher) removeLocked(h *hook) {
	delete(d.hooks, h.id)
	h.status.Store(statusRemoved)
	h.sendMu.Lock()
	for _, ch := range h.lanes {
		close(ch)
	}
	h.sendMu.Unlock()
	go func() {
		// Lanes settle what is queued (skipped) and exit on the closed channels.
		for _, ch := range h.lanes {
			for t := range ch {
				h.settle(t, OutcomeSkipped)
			}
		}
		if h.cancel != nil {
			h.halt()
		}
		d.opts.Metrics.forget(h.idLabel, h.def.Load().Topic.String())
	}()
}

func (d *Dispatcher) rebuildRoutesLocked() {
	routes := make(map[topics.Topic][]*hook)
	for _, h := range d.hooks {
		t := h.def.Load().Topic
		routes[t] = append(routes[t], h)
	}
	d.routes.Store(&routes)
}

// Run starts the webhooks and routes batches from in until ctx is done or
// in is closed. Then it stops reading, lets in-flight attempts finish for
// up to Delivery.ShutdownGrace, saves positions and returns. Transactions
// not settled by then are delivered again after a restart.
func (d *Dispatcher) Run(ctx context.Context, in <-chan *cdc.Batch) error {
	// Work outlives ctx by the shutdown grace, so in-flight requests finish.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	d.mu.Lock()
	d.work = work
	for _, h := range d.hooks {
		h.start(work)
	}
	d.mu.Unlock()
	if err := d.Refresh(ctx); err != nil {
		return err
	}

	var wg sync.WaitGroup
	saveCtx, stopSave := context.WithCancel(work)
	wg.Add(2)
	go func() {
		defer wg.Done()
		d.savePositions(saveCtx)
	}()
	go func() {
		defer wg.Done()
		d.pollChanges(saveCtx)
	}()

	err := d.route(ctx, in)

	// Graceful stop: no new work; in-flight attempts get the grace period.
	grace := time.AfterFunc(d.opts.Delivery.ShutdownGrace, cancelWork)
	d.mu.Lock()
	hooks := make([]*hook, 0, len(d.hooks))
	for _, h := range d.hooks {
		hooks = append(hooks, h)
	}
	d.mu.Unlock()
	for _, h := range hooks {
		h.halt()
	}
	grace.Stop()
	stopSave()
	wg.Wait()
	saveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if serr := d.save(saveCtx); serr != nil {
		d.log.Warn("save positions at shutdown", "error", serr)
	}
	return err
}

// routeState follows the transaction being routed.
type routeState struct {
	commit    pglogrepl.LSN
	gtx       *txMark
	next      uint32 // first change index not yet routed
	hookMarks map[*hook]*txMark
	sealed    bool
}

func (d *Dispatcher) route(ctx context.Context, in <-chan *cdc.Batch) error {
	var cur routeState
	cur.sealed = true
	var lastCommit pglogrepl.LSN
	events := make([]*event, 0, 512)
	eventCounters := make(map[topics.Topic]interface{ Inc() })
	for {
		var b *cdc.Batch
		select {
		case <-ctx.Done():
			return nil
		case bb, ok := <-in:
			if !ok {
				return nil
			}
			b = bb
		}
		// A reconnect resends what was not confirmed: skip what was routed.
		if b.CommitLSN < lastCommit || b.CommitLSN == lastCommit && cur.sealed {
			continue
		}
		if cur.sealed || b.CommitLSN != cur.commit {
			if !cur.sealed {
				// The connection dropped inside a transaction and a later
				// one arrived: impossible with pgoutput; refuse to guess.
				return fmt.Errorf("dispatch: transaction %s was cut off before its end", cur.commit)
			}
			cur = routeState{commit: b.CommitLSN, gtx: d.tracker.open(b.CommitLSN, b.CommitTime), hookMarks: make(map[*hook]*txMark)}
		}
		events = events[:0]
		for i := range b.Changes {
			ch := &b.Changes[i]
			if ch.Index < cur.next {
				continue
			}
			cur.next = ch.Index + 1
			ev, ok, err := d.opts.Mapper.Map(ch)
			if err != nil {
				// A value walhook cannot encode: never drop it silently.
				return fmt.Errorf("dispatch: transaction %s change %d: %w", b.CommitLSN, ch.Index, err)
			}
			if !ok {
				continue
			}
			if len(ev.Omitted) > 0 {
				d.opts.Metrics.OmittedColumns.WithLabelValues(ev.Topic.Resource).Add(float64(len(ev.Omitted)))
				d.log.Warn("unchanged TOASTed columns left out of a payload: set REPLICA IDENTITY FULL on the table",
					"topic", ev.Topic.String(), "columns", ev.Omitted, "commit_lsn", b.CommitLSN.String())
			}
			e := &event{Event: ev, rowKey: ev.Topic.Resource + "/" + ev.Key, commit: b.CommitLSN}
			events = append(events, e)
		}
		if d.opts.Delivery.Coalesce != "none" && len(events) > 1 {
			events = coalesce(events)
		}
		routes := *d.routes.Load()
		for _, e := range events {
			c, ok := eventCounters[e.Topic]
			if !ok {
				label := e.Topic.String()
				if e.Topic.IsAction() && len(routes[e.Topic]) == 0 {
					label = "action.*" // bounded labels: unsubscribed action names are not kept apart
				}
				c = d.opts.Metrics.Events.WithLabelValues(label)
				eventCounters[e.Topic] = c
			}
			c.Inc()
			for _, h := range routes[e.Topic] {
				if h.status.Load() == statusPaused {
					h.m.outcome[OutcomeSkipped].Inc()
					continue
				}
				if uint64(b.CommitLSN) <= h.delivered.Load() {
					continue // delivered before a restart
				}
				hm := cur.hookMarks[h]
				if hm == nil {
					hm = h.tracker.open(b.CommitLSN, b.CommitTime)
					cur.hookMarks[h] = hm
				}
				t := &task{ev: e, gtx: cur.gtx, htx: hm, hook: h}
				d.tracker.add(cur.gtx, 1)
				h.tracker.add(hm, 1)
				if !d.send(ctx, h, t) {
					if ctx.Err() != nil {
						return nil
					}
					// Removed while routing: settle it here.
					h.tracker.done(hm)
					d.tracker.done(cur.gtx)
				}
			}
		}
		if b.Last {
			for h, hm := range cur.hookMarks {
				h.tracker.seal(hm, b.EndLSN)
			}
			d.tracker.seal(cur.gtx, b.EndLSN)
			cur.sealed = true
			lastCommit = b.CommitLSN
			d.lastRouted.Store(uint64(b.CommitLSN))
			d.opts.Metrics.Transactions.Inc()
		}
	}
}

// send queues t on its row's lane; false if ctx ended or the webhook was removed.
func (d *Dispatcher) send(ctx context.Context, h *hook, t *task) bool {
	h.sendMu.RLock()
	defer h.sendMu.RUnlock()
	if h.status.Load() == statusRemoved {
		return false
	}
	h.m.queue.Inc()
	select {
	case h.lane(t.ev.rowKey) <- t:
		return true
	case <-ctx.Done():
		h.m.queue.Dec()
		return false
	}
}

// coalesce keeps one delivery per row and topic within a batch, with the
// row's last state: insert then updates give one created and one updated,
// both with the final row; anything then delete gives one deleted; updates
// give one updated. Events keep their transaction order.
func coalesce(events []*event) []*event {
	type rowEvents struct{ idx []int }
	rows := make(map[string]*rowEvents, len(events))
	multi := false
	for i, e := range events {
		if e.Key == "" && e.Topic.IsAction() {
			continue
		}
		r := rows[e.rowKey]
		if r == nil {
			r = &rowEvents{}
			rows[e.rowKey] = r
		} else {
			multi = true
		}
		r.idx = append(r.idx, i)
	}
	if !multi {
		return events
	}
	drop := make([]bool, len(events))
	for _, r := range rows {
		if len(r.idx) < 2 {
			continue
		}
		first, last := events[r.idx[0]], events[r.idx[len(r.idx)-1]]
		for _, i := range r.idx {
			drop[i] = true
		}
		switch {
		case last.Topic.Event == topics.EventDeleted:
			drop[r.idx[len(r.idx)-1]] = false
		case first.Topic.Event == topics.EventCreated:
			created := *first
			created.Body = last.Body
			events[r.idx[0]] = &created
			drop[r.idx[0]] = false
			if last.Topic.Event == topics.EventUpdated {
				drop[r.idx[len(r.idx)-1]] = false
			}
		default:
			drop[r.idx[len(r.idx)-1]] = false
		}
	}
	out := events[:0]
	for i, e := range events {
		if !drop[i] {
			out = append(out, e)
		}
	}
	return out
}

// savePositions writes positions when they move, at most ten times a
// second, so a restart skips what each webhook already received.
func (d *Dispatcher) savePositions(ctx context.Context) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		_, _, idle, oldest := d.tracker.position()
		if idle {
			d.opts.Metrics.LagSeconds.Set(0)
		} else {
			d.opts.Metrics.LagSeconds.Set(time.Since(oldest).Seconds())
		}
		select {
		case <-d.changed:
		default:
			continue
		}
		if err := d.save(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("save positions", "error", err)
		}
	}
}

func (d *Dispatcher) save(ctx context.Context) error {
	routed := pglogrepl.LSN(d.lastRouted.Load()) // read before the trackers: see below
	_, end, _, _ := d.tracker.position()
	d.mu.Lock()
	progress := make(map[int64]state.Progress, len(d.hooks))
	for id, h := range d.hooks {
		commit, _, idle, _ := h.tracker.position()
		if idle {
			// Every task of every transaction routed up to `routed` was
			// added before routed was published, and all are settled.
			commit = max(commit, routed)
		}
		p := state.Progress{Through: commit, LastCode: int(h.lastCode.Load())}
		if at := h.lastAt.Load(); at != 0 {
			p.LastAt = time.Unix(0, at)
		}
		progress[id] = p
	}
	d.mu.Unlock()
	return d.opts.Store.SavePositions(ctx, d.opts.Slot, end, progress)
}

// pollChanges refreshes the webhooks when another process changed them.
func (d *Dispatcher) pollChanges(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		revs, err := d.opts.Store.Revisions(ctx)
		if err != nil {
			if ctx.Err() == nil {
				d.log.Warn("poll webhook changes", "error", err)
			}
			continue
		}
		d.mu.Lock()
		differs := len(revs) != len(d.hooks)
		for id, h := range d.hooks {
			if revs[id] != h.revision {
				differs = true
				break
			}
		}
		d.mu.Unlock()
		if differs {
			if err := d.Refresh(ctx); err != nil && ctx.Err() == nil {
				d.log.Warn("apply webhook changes", "error", err)
			}
		}
	}
}

// definitionHash identifies a configured definition, so the stored runtime
// status is kept while the definition is unchanged.
func definitionHash(def Definition, status string) string {
	h := sha256.New()
	for _, s := range []string{def.Name, def.Topic.String(), def.DeliveryURL, def.Secret, def.Signature, status} {
		h.Write([]byte(strconv.Itoa(len(s))))
		h.Write([]byte{':'})
		h.Write([]byte(s))
	}
	return hex.EncodeToString(h.Sum(nil))
}
