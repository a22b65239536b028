package dispatch

import (
	"context"
	"errors"
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/walhook/walhook/state"
	"github.com/walhook/walhook/topics"
)

// Definition is a webhook as configured in the YAML file or through the API.
type Definition struct {
	ID          int64
	Name        string
	Topic       topics.Topic
	DeliveryURL string
	Secret      string
	Signature   string // SignatureWooCommerce (default), SignatureStandardWebhooks or SignatureBoth
}

// hookDef is a definition with its header values computed once.
type hookDef struct {
	Definition
	idText   []string
	topic    []string
	resource []string
	event    []string
	logURL   string
}

func newHookDef(d Definition) *hookDef {
	return &hookDef{
		Definition: d,
		idText:     []string{strconv.FormatInt(d.ID, 10)},
		topic:      []string{d.Topic.String()},
		resource:   []string{d.Topic.Resource},
		event:      []string{d.Topic.Event},
		logURL:     redactURL(d.DeliveryURL),
	}
}

// Runtime statuses. statusRemoved marks a webhook being taken out.
const (
	statusActive int32 = iota
	statusPaused
	statusDisabled
	statusRemoved
)

func parseStatus(s string) int32 {
	switch s {
	case state.StatusPaused:
		return statusPaused
	case state.StatusDisabled:
		return statusDisabled
	}
	return statusActive
}

func statusName(s int32) string {
	switch s {
	case statusPaused:
		return state.StatusPaused
	case statusDisabled:
		return state.StatusDisabled
	case statusRemoved:
		return "removed"
	}
	return state.StatusActive
}

// task is one event to deliver to one webhook.
type task struct {
	ev   *event
	gtx  *txMark // the transaction in the dispatcher's tracker
	htx  *txMark // the transaction in the webhook's tracker
	hook *hook
}

// event is a mapped change shared by the tasks of every matching webhook.
type event struct {
	topics.Event
	rowKey string // resource and row key: the unit of ordering
	commit pglogrepl.LSN
}

// parkReq asks the parker to keep a task in the state schema.
type parkReq struct {
	t       *task
	failure *result // the failed delivery's last attempt; nil when parked without trying
	disable bool    // disable the webhook at once (410 Gone)
}

// hook is one webhook at run time: its lanes, parker, drainer and positions.
type hook struct {
	d        *Dispatcher
	id       int64
	idLabel  string
	def      atomic.Pointer[hookDef]
	status   atomic.Int32
	failures atomic.Int64
	revision int64 // owned by the dispatcher's refresh
	// pingedRevision is the revision a ping was last sent for (refresh).
	pingedRevision int64
	m              *hookMetrics

	lanes  []chan *task
	sendMu sync.RWMutex // held for reading while routing to lanes, for writing while removing
	parkCh chan parkReq
	wake   chan struct{}
	force  atomic.Bool // the next drain pass runs at once (re-enabled)

	tracker   tracker       // per-webhook positions
	delivered atomic.Uint64 // commit LSN through which this webhook had everything at start

	// parkMu serializes changes to this webhook's parked table with the
	// in-memory view of it (parker, drainer, reload).
	parkMu sync.Mutex

	mu          sync.Mutex
	parkedKeys  map[string]int // row keys with deliveries in the parked table
	pendingKeys map[string]int // row keys with deliveries on their way to it
	parkedRows  int64          // deliveries in the parked table
	parkedSize  int64          // their body bytes
	breaker     bool           // the receiver is failing: park without trying until a retry succeeds

	lastAt   atomic.Int64 // unix nanos of the last delivery
	lastCode atomic.Int64
	pinging  atomic.Bool

	stop   chan struct{} // closed to stop taking new work
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var laneSeed = maphash.MakeSeed()

func (h *hook) lane(rowKey string) chan *task {
	if len(h.lanes) == 1 {
		return h.lanes[0]
	}
	return h.lanes[maphash.String(laneSeed, rowKey)%uint64(len(h.lanes))]
}

// start launches the webhook's goroutines; work bounds in-flight requests.
func (h *hook) start(work context.Context) {
	ctx, cancel := context.WithCancel(work)
	h.cancel = cancel
	for _, ch := range h.lanes {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			h.runLane(ctx, ch)
		}()
	}
	h.wg.Add(2)
	go func() {
		defer h.wg.Done()
		h.runParker(ctx)
	}()
	go func() {
		defer h.wg.Done()
		h.runDrainer(ctx)
	}()
}

// halt stops taking work and waits for in-flight attempts (bounded by the
// work context given to start).
func (h *hook) halt() {
	close(h.stop)
	h.wg.Wait()
	h.cancel()
}

func (h *hook) setStatus(s int32) {
	old := h.status.Swap(s)
	h.d.opts.Metrics.setStatus(h.idLabel, statusName(s))
	if s == statusActive && old != statusActive {
		h.mu.Lock()
		h.breaker = false
		h.mu.Unlock()
		h.force.Store(true)
		h.poke()
	}
}

func (h *hook) poke() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// settle marks t as settled for the slot and the webhook's position.
func (h *hook) settle(t *task, outcome string) {
	h.m.outcome[outcome].Inc()
	h.tracker.done(t.htx)
	h.d.tracker.done(t.gtx)
}

func (h *hook) runLane(ctx context.Context, ch chan *task) {
	var sg *signer
	var sgDef *hookDef
	header := make(http.Header, 12)
	for {
		select {
		case <-h.stop:
			return
		case t, ok := <-ch:
			if !ok {
				return
			}
			h.m.queue.Dec()
			def := h.def.Load()
			if sgDef != def {
				sg, sgDef = newSigner(def.Secret), def
			}
			h.handle(ctx, header, t, def, sg)
		}
	}
}

func (h *hook) handle(ctx context.Context, header http.Header, t *task, def *hookDef, sg *signer) {
	switch h.status.Load() {
	case statusPaused, statusRemoved:
		h.settle(t, OutcomeSkipped)
		return
	case statusDisabled:
		h.park(ctx, parkReq{t: t}, true)
		return
	}
	h.mu.Lock()
	wait := h.breaker || h.parkedKeys[t.ev.rowKey]+h.pendingKeys[t.ev.rowKey] > 0
	if wait {
		h.pendingKeys[t.ev.rowKey]++
	}
	h.mu.Unlock()
	if wait {
		h.park(ctx, parkReq{t: t}, false)
		return
	}
	id := DeliveryID(def.ID, t.ev.commit, t.ev.Index)
	retry := h.d.opts.Delivery.Retry
	var r result
	for attempt := 1; ; attempt++ {
		r = h.attempt(ctx, header, def, sg, t.ev, id, attempt)
		if r.ok() {
			h.succeeded(ctx, r)
			h.settle(t, OutcomeSuccess)
			return
		}
		if ctx.Err() != nil || h.stopping() {
			h.abandon(t)
			return
		}
		if r.code == http.StatusGone || r.permanent() || attempt >= retry.Attempts {
			break
		}
		h.m.outcome[OutcomeRetried].Inc()
		wait := r.retryAfter
		if wait == 0 {
			wait = backoff(retry.Backoff, retry.MaxBackoff, attempt)
		}
		if !sleep(ctx, h.stop, wait) {
			h.abandon(t)
			return
		}
	}
	h.m.outcome[OutcomeFailed].Inc()
	h.mu.Lock()
	h.pendingKeys[t.ev.rowKey]++
	h.breaker = true
	h.mu.Unlock()
	h.park(ctx, parkReq{t: t, failure: &r, disable: r.code == http.StatusGone}, false)
}

// abandon leaves a task unsettled when walhook stops (it is delivered
// again after the restart), but settles it when its webhook is being
// removed, so the slot is not held back by a webhook that is gone.
func (h *hook) abandon(t *task) {
	if h.status.Load() == statusRemoved {
		h.settle(t, OutcomeSkipped)
	}
}

func (h *hook) stopping() bool {
	select {
	case <-h.stop:
		return true
	default:
		return false
	}
}

// park hands a task to the parker. countKey is set when the caller has not
// counted the row key yet.
func (h *hook) park(ctx context.Context, req parkReq, countKey bool) {
	if countKey {
		h.mu.Lock()
		h.pendingKeys[req.t.ev.rowKey]++
		h.mu.Unlock()
	}
	select {
	case h.parkCh <- req:
	case <-h.stop:
		h.abandon(req.t)
	case <-ctx.Done():
		h.abandon(req.t)
	}
}

// succeeded records a success: the failure count goes back to zero.
func (h *hook) succeeded(ctx context.Context, r result) {
	h.lastAt.Store(time.Now().UnixNano())
	h.lastCode.Store(int64(r.code))
	if h.failures.Load() == 0 {
		return
	}
	if err := h.d.opts.Store.RecordSuccess(ctx, h.id, state.DeliveryResult{At: time.Now(), Code: r.code}); err != nil {
		h.d.log.Warn("record delivery success", "webhook_id", h.id, "error", err)
		return
	}
	h.failures.Store(0)
	h.m.failures.Set(0)
}

// attempt sends one request and writes its delivery log line.
// header is the caller's to reuse: it is cleared and filled here, and the
// transport is done with it when the attempt returns.
func (h *hook) attempt(ctx context.Context, header http.Header, def *hookDef, sg *signer, ev *event, id string, n int) result {
	clear(header)
	header["Content-Type"] = contentJSON
	header["User-Agent"] = h.d.userAgent
	if def.Signature != SignatureStandardWebhooks {
		header["X-Wc-Webhook-Source"] = h.d.source
		header["X-Wc-Webhook-Topic"] = def.topic
		header["X-Wc-Webhook-Resource"] = def.resource
		header["X-Wc-Webhook-Event"] = def.event
		header["X-Wc-Webhook-Signature"] = []string{sg.WooCommerce(ev.Body)}
		header["X-Wc-Webhook-Id"] = def.idText
		header["X-Wc-Webhook-Delivery-Id"] = []string{id}
		header["X-Wc-Delivery-Id"] = header["X-Wc-Webhook-Delivery-Id"]
	}
	if def.Signature == SignatureStandardWebhooks || def.Signature == SignatureBoth {
		ts := time.Now().Unix()
		header["Webhook-Id"] = []string{id}
		header["Webhook-Timestamp"] = []string{strconv.FormatInt(ts, 10)}
		header["Webhook-Signature"] = []string{sg.StandardWebhooks(id, ts, ev.Body)}
	}
	m := h.d.opts.Metrics
	m.InFlight.Inc()
	r := post(ctx, h.d.client, h.d.opts.Delivery.Timeout, def.DeliveryURL, header, ev.Body, h.d.opts.Delivery.Retry.RetryAfterCap)
	m.InFlight.Dec()
	h.m.duration.Observe(r.duration.Seconds())
	h.m.attempts[r.codeClass()].Inc()
	h.logAttempt(ctx, def, ev.Topic.String(), id, n, r)
	return r
}

var contentJSON = []string{"application/json"}

func (h *hook) logAttempt(ctx context.Context, def *hookDef, topic, id string, n int, r result) {
	level := slog.LevelInfo
	if !r.ok() {
		level = slog.LevelWarn
	}
	log := h.d.opts.DeliveryLogger
	if !log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.Int64("webhook_id", def.ID),
		slog.String("topic", topic),
		slog.String("delivery_id", id),
		slog.String("url", def.logURL),
		slog.Int("attempt", n),
		slog.Float64("duration_seconds", r.duration.Seconds()),
		slog.Int("response_code", r.code),
	}
	if r.err != nil {
		attrs = append(attrs, slog.String("error", r.err.Error()))
	}
	if r.excerpt != "" {
		attrs = append(attrs, slog.String("response_body", r.excerpt))
	}
	log.LogAttrs(ctx, level, "webhook delivery", attrs...)
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
	now := time.Now()
	rows := make([]state.Parked, len(batch))
	failures, disable := 0, false
	var last *result
	for i, req := range batch {
		rows[i] = state.Parked{
			WebhookID:     h.id,
			RowKey:        req.t.ev.rowKey,
			Topic:         req.t.ev.Topic.String(),
			DeliveryID:    DeliveryID(def.ID, req.t.ev.commit, req.t.ev.Index),
			CommitLSN:     req.t.ev.commit,
			Body:          req.t.ev.Body,
			NextAttemptAt: now,
		}
		if req.failure != nil {
			failures++
			last = req.failure
			rows[i].Attempts = 1
			rows[i].LastError = req.failure.describe()
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
		f, err = h.d.opts.Store.RecordFailure(ctx, h.id, failures, dr, h.d.opts.Delivery.MaxFailures, disable, rows)
		if err == nil {
			break
		}
		if errors.Is(err, state.ErrNotFound) {
			// The webhook was deleted: nothing to keep.
			h.mu.Lock()
			for _, req := range batch {
				decr(h.pendingKeys, req.t.ev.rowKey)
			}
			h.mu.Unlock()
			for _, req := range batch {
				h.settle(req.t, OutcomeSkipped)
			}
			return true
		}
		h.d.log.Error("park deliveries; retrying", "webhook_id", h.id, "deliveries", len(batch), "error", err)
		if !sleep(ctx, h.stop, backoff(time.Second, 30*time.Second, try)) {
			return false // left unsettled: delivered again after the restart
		}
	}
	if failures > 0 {
		h.failures.Store(int64(f.FailureCount))
		h.m.failures.Set(float64(f.FailureCount))
	}
	if f.Disabled {
		h.disabled(f, *last)
	}
	var size int64
	for _, r := range rows {
		size += int64(len(r.Body))
	}
	limit := h.d.opts.Delivery.ParkLimit
	h.mu.Lock()
	for _, req := range batch {
		decr(h.pendingKeys, req.t.ev.rowKey)
		h.parkedKeys[req.t.ev.rowKey]++
	}
	h.parkedRows += int64(len(rows))
	h.parkedSize += size
	over := h.parkedRows > limit.Rows || h.parkedSize > limit.Bytes
	h.m.parked.Set(float64(h.parkedRows))
	h.mu.Unlock()
	var dropped []string
	if over {
		var droppedSize int64
		var err error
		dropped, droppedSize, err = h.d.opts.Store.TrimParked(ctx, h.id, limit.Rows, limit.Bytes)
		if err != nil {
			h.d.log.Warn("enforce park limit", "webhook_id", h.id, "error", err)
		}
		h.mu.Lock()
		h.parkedRows -= int64(len(dropped))
		h.parkedSize -= droppedSize
		h.m.parked.Set(float64(h.parkedRows))
		h.mu.Unlock()
	}
	if len(dropped) > 0 {
		h.mu.Lock()
		for _, k := range dropped {
			decr(h.parkedKeys, k)
		}
		h.mu.Unlock()
		h.m.outcome[OutcomeDropped].Add(float64(len(dropped)))
		h.d.log.Warn("park limit reached: oldest parked deliveries dropped",
			"webhook_id", h.id, "dropped", len(dropped), "max_rows", limit.Rows, "max_bytes", limit.Bytes)
	}
	for _, req := range batch {
		h.settle(req.t, OutcomeParked)
	}
	h.poke()
	return true
}

// disabled applies an automatic disable the state schema has recorded.
func (h *hook) disabled(f state.Failure, last result) {
	h.status.Store(statusDisabled)
	h.d.opts.Metrics.setStatus(h.idLabel, state.StatusDisabled)
	h.m.disables.Inc()
	h.d.log.Warn("webhook disabled after failed deliveries",
		"webhook_id", h.id, "failures", f.FailureCount, "max_failures", h.d.opts.Delivery.MaxFailures,
		"last_response_code", last.code, "last_error", last.describe(), "last_response_body", last.excerpt)
}

// decr counts one less for key, forgetting it at zero.
func decr(m map[string]int, key string) {
	if n := m[key]; n > 1 {
		m[key] = n - 1
	} else {
		delete(m, key)
	}
}

// runDrainer retries parked deliveries in the order they were parked: at
// once when the webhook is (re-)enabled, else on the parked schedule. The
// first failure ends a pass; passes back off exponentially.
func (h *hook) runDrainer(ctx context.Context) {
	retry := h.d.opts.Delivery.Retry
	failed := 0
	// A first pass at start picks up what an earlier run parked. Without
	// any, there is none: it could catch a delivery parked a moment later
	// and retry it at once instead of on the parked schedule.
	h.mu.Lock()
	earlier := h.parkedRows > 0
	h.mu.Unlock()
	timer := time.NewTimer(0)
	timerSet := true
	if !earlier {
		timer.Stop()
		timerSet = false
	}
	defer timer.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-timer.C:
			timerSet = false
		case <-h.wake:
			if !h.force.Swap(false) {
				h.mu.Lock()
				failing := h.breaker
				h.mu.Unlock()
				if failing {
					// The receiver is failing: retry on the parked schedule.
					if !timerSet {
						timer.Reset(jitter(retry.ParkedBackoff))
						timerSet = true
					}
					continue
				}
			}
		}
		if h.status.Load() != statusActive {
			continue // re-enabling forces a pass
		}
		ok, err := h.drainPass(ctx)
		if err != nil {
			h.d.log.Warn("retry parked deliveries", "webhook_id", h.id, "error", err)
		}
		if ok && err == nil {
			failed = 0
			continue
		}
		if h.stopping() {
			return
		}
		failed++
		timer.Reset(backoff(retry.ParkedBackoff, retry.ParkedMaxBackoff, failed))
		timerSet = true
	}
}

// drainPass delivers parked deliveries oldest first until none is left
// (true) or one fails (false).
func (h *hook) drainPass(ctx context.Context) (bool, error) {
	store := h.d.opts.Store
	header := make(http.Header, 12)
	var after int64
	for {
		rows, err := store.DueParked(ctx, h.id, after, 100)
		if err != nil {
			return false, err
		}
		if len(rows) == 0 {
			return true, nil
		}
		for _, p := range rows {
			after = p.ID
			if h.status.Load() != statusActive || h.stopping() {
				return false, nil
			}
			def := h.def.Load()
			ev := &event{Event: topics.Event{Body: p.Body}}
			ev.Topic, _ = topics.Parse(p.Topic)
			r := h.attempt(ctx, header, def, newSigner(def.Secret), ev, p.DeliveryID, p.Attempts+1)
			dr := state.DeliveryResult{At: time.Now(), Code: r.code, Error: r.describe()}
			if r.ok() {
				h.parkMu.Lock()
				deleted, err := store.DeleteParked(ctx, p, dr)
				if err != nil {
					h.parkMu.Unlock()
					return false, err
				}
				h.lastAt.Store(dr.At.UnixNano())
				h.lastCode.Store(int64(r.code))
				h.failures.Store(0)
				h.m.failures.Set(0)
				h.m.outcome[OutcomeSuccess].Inc()
				h.mu.Lock()
				if deleted {
					// Otherwise the park limit or a discard removed it
					// meanwhile and already took it out of the counts.
					h.parkedRows--
					h.parkedSize -= int64(len(p.Body))
					h.m.parked.Set(float64(h.parkedRows))
					decr(h.parkedKeys, p.RowKey)
				}
				h.breaker = false
				h.mu.Unlock()
				h.parkMu.Unlock()
				continue
			}
			if ctx.Err() != nil {
				return false, nil
			}
			h.m.outcome[OutcomeFailed].Inc()
			next := time.Now().Add(backoff(h.d.opts.Delivery.Retry.ParkedBackoff, h.d.opts.Delivery.Retry.ParkedMaxBackoff, p.Attempts+1))
			f, err := store.RescheduleParked(ctx, p, dr, next, h.d.opts.Delivery.MaxFailures, r.code == http.StatusGone)
			if err != nil {
				return false, err
			}
			h.failures.Store(int64(f.FailureCount))
			h.m.failures.Set(float64(f.FailureCount))
			if f.Disabled {
				h.disabled(f, r)
			}
			h.mu.Lock()
			h.breaker = true
			h.mu.Unlock()
			return false, nil
		}
	}
}

// ping posts webhook_id=<id> form-encoded, as WooCommerce does when a
// webhook becomes active; only a 200 clears the pending ping.
func (h *hook) ping(ctx context.Context) {
	if !h.pinging.CompareAndSwap(false, true) {
		return
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer h.pinging.Store(false)
		def := h.def.Load()
		header := http.Header{
			"Content-Type": {"application/x-www-form-urlencoded"},
			"User-Agent":   h.d.userAgent,
		}
		body := []byte(url.Values{"webhook_id": {strconv.FormatInt(def.ID, 10)}}.Encode())
		r := post(ctx, h.d.client, h.d.opts.Delivery.Timeout, def.DeliveryURL, header, body, 0)
		ok := r.err == nil && r.code == http.StatusOK
		outcome, result := "success", "HTTP 200"
		if !ok {
			outcome, result = "failed", r.describe()
			if r.err == nil {
				result = "HTTP " + strconv.Itoa(r.code)
			}
			h.d.log.Warn("webhook ping failed", "webhook_id", def.ID, "url", def.logURL, "result", result)
		} else {
			h.d.log.Info("webhook ping delivered", "webhook_id", def.ID, "url", def.logURL)
		}
		h.d.opts.Metrics.Pings.WithLabelValues(h.idLabel, outcome).Inc()
		if err := h.d.opts.Store.RecordPing(ctx, def.ID, ok, result); err != nil {
			h.d.log.Warn("record ping", "webhook_id", def.ID, "error", err)
		}
	}()
}

// backoff returns a full-jitter exponential backoff for the n-th retry.
func backoff(base, max time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d))) + 1
}

// jitter spreads d by ±20 %.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d*4/5 + time.Duration(rand.Int64N(int64(d)*2/5+1))
}

// sleep waits d; false when ctx or stop ended first.
func sleep(ctx context.Context, stop <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-stop:
		return false
	}
}

// userAgent builds WooCommerce's User-Agent shape naming walhook.
func userAgent(version, serverVersion string) []string {
	ua := "walhook/" + strings.TrimPrefix(version, "v") + " Hookshot"
	if serverVersion != "" {
		ua += " (PostgreSQL/" + serverVersion + ")"
	}
	return []string{ua}
}
