// Package dispatch delivers events to webhooks: it matches events to
// webhooks by topic, keeps each row's events in commit order while other
// rows and webhooks go in parallel, signs and POSTs them, retries, parks
// what keeps failing in the state schema, disables failing webhooks, pings
// activated ones, and reports which transactions are settled so the slot's
// position can move on.
//
// It receives transactions as Batches of events from the routing stage and
// knows nothing of the replication protocol. Its delivery policy:
//
//   - a delivery whose quick attempts fail is parked; only later events of
//     the same row wait behind it, every other row keeps going out live;
//   - when failures span several rows with no success between (the
//     breaker, policy.go), live events park without an attempt and the
//     receiver is probed with the oldest parked delivery; the first
//     success drains everything parked at once;
//   - a webhook is disabled when its consecutive failures exceed
//     max_failures and nothing has succeeded for disable_after (410 Gone
//     disables at once).
package dispatch

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/state"
	"github.com/walhook/walhook/topics"
	"github.com/walhook/walhook/webhook"
)

// Options configure a Dispatcher.
type Options struct {
	Source   string // X-WC-Webhook-Source, ending with "/"
	Version  string // walhook's version, for the User-Agent
	Server   string // PostgreSQL's version, for the User-Agent
	Slot     string // the replication slot, under which positions are saved
	Delivery config.Delivery
	Store    Store
	// Confirm is told the end of every newly settled prefix of
	// transactions.
	Confirm func(end state.LSN)
	Logger  *slog.Logger // walhook's log
	Metrics *Metrics
	// DeliveryLogger receives one line per delivery attempt (source
	// webhooks-delivery); nil uses Logger.
	DeliveryLogger *slog.Logger
	// Clock is the delivery policy's time source; nil is the system clock.
	Clock Clock
}

// Dispatcher routes transactions to webhooks. Create it with New, set its
// webhooks with SetConfigWebhooks, then Run it.
type Dispatcher struct {
	opts      Options
	log       *slog.Logger
	clock     Clock
	client    *Client
	source    string
	userAgent string

	tracker    tracker
	lastRouted atomic.Uint64 // commit LSN of the newest fully routed transaction

	mu      sync.Mutex // guards hooks, config and work
	hooks   map[int64]*hook
	config  map[int64]Definition // webhooks declared in the configuration (their secrets live only here)
	work    context.Context      // the context hooks run under; nil before Run
	routes  atomic.Pointer[routeTable]
	filters map[int64]*compiledFilter // compiled filters by webhook id; guarded by mu
	changed chan struct{}             // positions or webhooks changed since the last save
}

// New returns a dispatcher.
func New(opts Options) *Dispatcher {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.DeliveryLogger == nil {
		opts.DeliveryLogger = opts.Logger
	}
	if opts.Clock == nil {
		opts.Clock = systemClock{}
	}
	d := &Dispatcher{
		opts:      opts,
		log:       opts.Logger,
		clock:     opts.Clock,
		client:    NewClient(opts.Delivery),
		source:    opts.Source,
		userAgent: userAgent(opts.Version, opts.Server),
		hooks:     make(map[int64]*hook),
		config:    make(map[int64]Definition),
		filters:   make(map[int64]*compiledFilter),
		changed:   make(chan struct{}, 1),
	}
	d.tracker.advance = func(_, end state.LSN) {
		if opts.Confirm != nil {
			opts.Confirm(end)
		}
		opts.Metrics.SettledLSN.Set(float64(end))
		select {
		case d.changed <- struct{}{}:
		default:
		}
	}
	empty := routeTable{}
	d.routes.Store(&empty)
	return d
}

// Run starts the webhooks and routes batches from in until ctx is done or
// in is closed. Then it stops reading, lets in-flight attempts finish for
// up to Delivery.ShutdownGrace, saves positions and returns. Transactions
// not settled by then are delivered again after a restart.
func (d *Dispatcher) Run(ctx context.Context, in <-chan *Batch) error {
	// Work outlives ctx by the shutdown grace, so in-flight requests finish.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	// When work ends (the grace ran out, or Run returns), requests still
	// in flight are cut and every connection is closed.
	context.AfterFunc(work, d.client.Abort)
	d.mu.Lock()
	d.work = work
	for _, h := range d.hooks {
		h.start(work)
	}
	d.mu.Unlock()
	// Webhooks changed since SetConfigWebhooks are picked up here; a
	// failure stops Run through the graceful path below, unless it is
	// only the shutdown that cancelled the read.
	err := d.Refresh(ctx)
	if ctx.Err() != nil {
		err = nil
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

	if err == nil {
		err = d.route(ctx, in)
	}

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

// route matches each batch's events to webhooks and queues them on their
// lanes, tracking every (event, webhook) pair until it is settled. An
// event a webhook's filter leaves out is never queued nor tracked for it:
// it is settled at once and counted as filtered.
func (d *Dispatcher) route(ctx context.Context, in <-chan *Batch) error {
	var (
		commit    state.LSN
		open      bool
		gtx       *txMark
		hookMarks = make(map[*hook]*txMark)
		skipped   = make(map[*hook]struct{}) // hooks told of a skip in this transaction
	)
	eventCounters := make(map[topics.Topic]interface{ Inc() })
	var fi filterInput
	for {
		var b *Batch
		select {
		case <-ctx.Done():
			return nil
		case bb, ok := <-in:
			if !ok {
				return nil
			}
			b = bb
		}
		if !open || b.Commit != commit {
			if open {
				return fmt.Errorf("dispatch: transaction %s was cut off before its end", commit)
			}
			commit, open = b.Commit, true
			gtx = d.tracker.open(b.Commit, b.CommitTime)
			clear(hookMarks)
			clear(skipped)
		}
		routes := *d.routes.Load()
		for _, e := range b.Events {
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
			for _, r := range routes[e.Topic] {
				h := r.h
				if h.status.Load() == statusPaused {
					h.m.outcome[webhook.OutcomeSkipped].Inc()
					continue
				}
				if uint64(b.Commit) <= h.delivered.Load() {
					// Delivered before a restart.
					if _, seen := skipped[h]; !seen {
						skipped[h] = struct{}{}
						d.log.Debug("transaction delivered to the webhook before a restart: skipped",
							"webhook_id", h.id, "commit_lsn", b.Commit.String(), "delivered_through", state.LSN(h.delivered.Load()).String())
					}
					continue
				}
				if !d.pass(r, &fi, e) {
					continue
				}
				hm := hookMarks[h]
				if hm == nil {
					hm = h.tracker.open(b.Commit, b.CommitTime)
					hookMarks[h] = hm
				}
				t := &task{ev: e, gtx: gtx, htx: hm}
				d.tracker.add(gtx, 1)
				h.tracker.add(hm, 1)
				if !h.send(ctx, t) {
					if ctx.Err() != nil {
						return nil
					}
					// Removed while routing: settle it here.
					h.tracker.done(hm)
					d.tracker.done(gtx)
				}
			}
		}
		fi.cur = nil // the batch's events may be reused
		if b.Last {
			for h, hm := range hookMarks {
				h.tracker.seal(hm, b.End)
			}
			d.tracker.seal(gtx, b.End)
			open = false
			d.lastRouted.Store(uint64(b.Commit))
			d.opts.Metrics.Transactions.Inc()
		}
	}
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
	routed := state.LSN(d.lastRouted.Load()) // read before the trackers: see below
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
