package dispatch

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/walhook/walhook/state"
	"github.com/walhook/walhook/topics"
	"github.com/walhook/walhook/webhook"
)

// Definition is a webhook as configured in the YAML file or through the API.
type Definition struct {
	ID          int64
	Name        string
	Topic       topics.Topic
	DeliveryURL string
	Secret      string
	Signature   webhook.Signature // webhook.SignatureWooCommerce when empty
	// Filter is a CEL expression (package filter) an event must satisfy
	// to be delivered; "" delivers every event. Only configured webhooks
	// have one.
	Filter string
}

// hookDef is a definition with its header values computed once.
type hookDef struct {
	Definition
	idText string
	topic  string
	logURL string
	// deliveryLog is the delivery logger with the webhook's id and URL,
	// rendered once instead of on every line.
	deliveryLog *slog.Logger
}

func newHookDef(d Definition, deliveryLog *slog.Logger) *hookDef {
	logURL := redactURL(d.DeliveryURL)
	return &hookDef{
		Definition:  d,
		idText:      strconv.FormatInt(d.ID, 10),
		topic:       d.Topic.String(),
		logURL:      logURL,
		deliveryLog: deliveryLog.With(slog.Int64("webhook_id", d.ID), slog.String("url", logURL)),
	}
}

// Runtime statuses. statusRemoved marks a webhook being taken out.
const (
	statusActive int32 = iota
	statusPaused
	statusDisabled
	statusRemoved
)

func parseStatus(s webhook.Status) int32 {
	switch s {
	case webhook.StatusPaused:
		return statusPaused
	case webhook.StatusDisabled:
		return statusDisabled
	}
	return statusActive
}

func statusName(s int32) webhook.Status {
	switch s {
	case statusPaused:
		return webhook.StatusPaused
	case statusDisabled:
		return webhook.StatusDisabled
	case statusRemoved:
		return "removed"
	}
	return webhook.StatusActive
}

// task is one event to deliver to one webhook.
type task struct {
	ev  *Event
	gtx *txMark // the transaction in the dispatcher's tracker
	htx *txMark // the transaction in the webhook's tracker
}

// hook is one webhook at run time. Its parts, each in its own file:
//
//   - lanes (lanes.go): live delivery, one goroutine per lane, a row always
//     on the same lane so its events go out in commit order;
//   - the parker (parking.go): writes deliveries that cannot go out now to
//     the state schema, counting failures and disabling in the same
//     transaction, and only then settles them;
//   - the drainer (drainer.go): retries parked deliveries, row by row in
//     order and rows in parallel, and probes a receiver that is down;
//   - the breaker (policy.go): tells a receiver that is down from a bad row.
//
// Invariant: a row with a delivery parked or on its way to the parker
// (waitingLocked > 0) has every later event parked behind it, so a row's
// events reach the receiver in commit order whichever path they take.
//
// Lock order: parkMu before mu. parkMu serializes changes to this
// webhook's parked table with the in-memory view of it (parker, drainer,
// reload); mu guards the maps, counts and breaker below and is never held
// across I/O.
type hook struct {
	d        *Dispatcher
	id       int64
	idLabel  string
	def      atomic.Pointer[hookDef]
	status   atomic.Int32
	failures atomic.Int64
	m        *hookMetrics
	// revision and pingedRevision are owned by the dispatcher's refresh
	// (under Dispatcher.mu).
	revision       int64
	pingedRevision int64

	lanes  []atomic.Pointer[lane] // started on first use
	laneMu sync.Mutex             // serializes starting lanes
	sendMu sync.RWMutex           // held for reading while routing to lanes, for writing while removing
	spawn  func(*lane)            // starts a lane's goroutine; set by start
	parkCh chan parkReq
	wake   chan struct{} // pokes the drainer

	tracker   tracker       // per-webhook positions
	delivered atomic.Uint64 // commit LSN through which this webhook had everything at start

	parkMu sync.Mutex

	mu         sync.Mutex
	parked     map[string]int // row keys with deliveries in the parked table
	pending    map[string]int // row keys with deliveries on their way to it
	parkedRows int64          // deliveries in the parked table
	parkedSize int64          // their body bytes
	brk        breaker
	force      bool // the drainer's next pass delivers everything parked (re-enabled)

	probeAfter int64 // the parked id the last failed probe tried; owned by the drainer

	lastAt   atomic.Int64 // unix nanos of the last delivery
	lastCode atomic.Int64
	pinging  atomic.Bool

	stop   chan struct{} // closed to stop taking new work
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// waitingLocked is how many deliveries of row wait in or for the parked
// table; later events of the row wait behind them.
func (h *hook) waitingLocked(row string) int { return h.parked[row] + h.pending[row] }

// start launches the parker and the drainer; lanes start on first use.
// work bounds in-flight requests.
func (h *hook) start(work context.Context) {
	ctx, cancel := context.WithCancel(work)
	h.cancel = cancel
	// Deliveries parked by an earlier run are probed promptly. This is
	// decided here, before any lane runs: the drainer's goroutine may
	// first run after this run's own failures have parked something, and
	// probing those at once would count a failure too many.
	h.mu.Lock()
	probe := h.parkedRows > 0
	h.mu.Unlock()
	h.laneMu.Lock()
	h.spawn = func(l *lane) {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			h.runLane(ctx, l)
		}()
	}
	for i := range h.lanes {
		if l := h.lanes[i].Load(); l != nil {
			h.spawn(l)
		}
	}
	h.laneMu.Unlock()
	h.wg.Add(2)
	go func() {
		defer h.wg.Done()
		h.runParker(ctx)
	}()
	go func() {
		defer h.wg.Done()
		h.runDrainer(ctx, probe)
	}()
}

// halt stops taking work and waits for in-flight attempts (bounded by the
// work context given to start).
func (h *hook) halt() {
	close(h.stop)
	h.wg.Wait()
	h.cancel()
}

func (h *hook) stopping() bool {
	select {
	case <-h.stop:
		return true
	default:
		return false
	}
}

func (h *hook) setStatus(s int32) {
	old := h.status.Swap(s)
	h.d.opts.Metrics.setStatus(h.idLabel, statusName(s))
	if s == statusActive && old != statusActive {
		// Re-enabled: everything parked goes out at once, in row order.
		h.mu.Lock()
		h.brk.success()
		h.force = true
		h.mu.Unlock()
		h.poke()
	}
}

// poke wakes the drainer.
func (h *hook) poke() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// settle marks t as settled for the slot and the webhook's position.
func (h *hook) settle(t *task, outcome webhook.Outcome) {
	h.m.outcome[outcome].Inc()
	h.tracker.done(t.htx)
	h.d.tracker.done(t.gtx)
}

// abandon leaves a task unsettled when walhook stops (it is delivered
// again after the restart), but settles it when its webhook is being
// removed, so the slot is not held back by a webhook that is gone.
func (h *hook) abandon(t *task) {
	if h.status.Load() == statusRemoved {
		h.settle(t, webhook.OutcomeSkipped)
	}
}

// succeeded records a delivered attempt: the failure count goes back to
// zero and the breaker closes.
func (h *hook) succeeded(ctx context.Context, r result) {
	now := h.d.clock.Now()
	h.lastAt.Store(now.UnixNano())
	h.lastCode.Store(int64(r.code))
	h.mu.Lock()
	closed := h.brk.success()
	h.mu.Unlock()
	if closed {
		h.d.log.Info("receiver answering again: parked deliveries drain now", "webhook_id", h.id)
		h.poke()
	}
	if h.failures.Load() == 0 {
		return
	}
	if err := h.d.opts.Store.RecordSuccess(ctx, h.id, state.DeliveryResult{At: now, Code: r.code}); err != nil {
		h.d.log.Warn("record delivery success", "webhook_id", h.id, "error", err)
		return
	}
	h.failures.Store(0)
	h.m.failures.Set(0)
}

// failed records a failed delivery of row (its quick attempts spent, or a
// parked retry): the breaker may open.
func (h *hook) failed(row string) {
	h.mu.Lock()
	opened := h.brk.failure(row)
	h.mu.Unlock()
	if opened {
		h.d.log.Warn("receiver failing for several rows: live deliveries park without an attempt while walhook probes it",
			"webhook_id", h.id, "rows", breakerRows)
		h.poke()
	}
}

// recorded applies what the state schema recorded of failures.
func (h *hook) recorded(f state.Failure, last result) {
	h.failures.Store(int64(f.FailureCount))
	h.m.failures.Set(float64(f.FailureCount))
	if !f.Disabled {
		return
	}
	h.status.Store(statusDisabled)
	h.d.opts.Metrics.setStatus(h.idLabel, webhook.StatusDisabled)
	h.m.disables.Inc()
	h.d.log.Warn("webhook disabled after failed deliveries",
		"webhook_id", h.id, "failures", f.FailureCount, "max_failures", h.d.opts.Delivery.MaxFailures,
		"failing_since", f.FailingSince, "disable_after", h.d.opts.Delivery.DisableAfter,
		"last_response_code", last.code, "last_error", last.describe(), "last_response_body", last.excerpt)
}

// rule is the disable rule as of now.
func (h *hook) rule() state.DisableRule {
	return disableRule(h.d.opts.Delivery.MaxFailures, h.d.opts.Delivery.DisableAfter, h.d.clock.Now())
}

// decr counts one less for key, forgetting it at zero.
func decr(m map[string]int, key string) {
	if n := m[key]; n > 1 {
		m[key] = n - 1
	} else {
		delete(m, key)
	}
}
