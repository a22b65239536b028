package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/walhook/walhook/internal/pgtest"
	"github.com/walhook/walhook/internal/receiver"
	"github.com/walhook/walhook/internal/shop"
	"github.com/walhook/walhook/internal/walhooktest"
	"github.com/walhook/walhook/state"
	"github.com/walhook/walhook/webhook"
)

// The failure policy of SPEC §5–§6: quick retries, parking, the circuit
// breaker, auto-disable, re-enabling, paused webhooks, pings, faults of
// the receiver, the park limit and isolation between webhooks.

// answer makes a receiver.Respond function answering every delivery with code.
func answer(code int) func(*receiver.Delivery) (int, http.Header) {
	return func(*receiver.Delivery) (int, http.Header) { return code, nil }
}

// openStore opens walhook's state schema for the test to read and change,
// as `walhook webhooks` does.
func openStore(t testing.TB, db string) *state.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), walhooktest.Patience())
	defer cancel()
	st, err := state.Open(ctx, db, "walhook")
	if err != nil {
		t.Fatalf("open the state schema: %v", err)
	}
	t.Cleanup(st.Close)
	return st
}

func storedWebhook(t testing.TB, st *state.Store, id int64) state.Webhook {
	t.Helper()
	w, err := st.Webhook(context.Background(), id)
	if err != nil {
		t.Fatalf("read webhook %d: %v", id, err)
	}
	return w
}

func parkedRows(t testing.TB, st *state.Store, id int64) int64 {
	t.Helper()
	n, _, err := st.ParkedCount(context.Background(), id)
	if err != nil {
		t.Fatalf("count parked deliveries of webhook %d: %v", id, err)
	}
	return n
}

func setStatus(t testing.TB, st *state.Store, id int64, status webhook.Status) {
	t.Helper()
	_, err := st.UpdateWebhook(context.Background(), id, func(w *state.Webhook) error {
		w.Status = status
		return nil
	})
	if err != nil {
		t.Fatalf("set webhook %d %s: %v", id, status, err)
	}
}

// metricValue sums the series of the metric name whose labels include
// labels; a missing metric family fails the test.
func metricValue(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	var pairs []string
	for k, v := range labels {
		pairs = append(pairs, k, v)
	}
	return walhooktest.Metric(t, reg, name, pairs...)
}

func deliveries(t testing.TB, in *instance, id int64, outcome webhook.Outcome) float64 {
	t.Helper()
	return metricValue(t, in.reg, "walhook_deliveries_total", map[string]string{"webhook": strconv.FormatInt(id, 10), "outcome": string(outcome)})
}

func statusGauge(t testing.TB, in *instance, id int64, status string) float64 {
	t.Helper()
	return metricValue(t, in.reg, "walhook_webhook_status", map[string]string{"webhook": strconv.FormatInt(id, 10), "status": status})
}

// logRecords parses walhook's JSON log lines whose msg is msg.
func logRecords(t testing.TB, in *instance, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(in.logs.String(), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("a log line is not JSON: %q", line)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// attemptLogs returns the delivery log lines of webhook id.
func attemptLogs(t testing.TB, in *instance, id int64) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, rec := range logRecords(t, in, "webhook delivery") {
		if rec["webhook_id"] == float64(id) {
			out = append(out, rec)
		}
	}
	return out
}

// walLSN returns the server's current WAL position.
func walLSN(t testing.TB, db string) pglogrepl.LSN {
	t.Helper()
	return walhooktest.WALPosition(t, db)
}

func queryRow(t testing.TB, db, sql string, args []any, dest ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), walhooktest.Patience())
	defer cancel()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := conn.QueryRow(ctx, sql, args...).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// waitSlotPasses waits until the slot's confirmed position reaches lsn.
func waitSlotPasses(t testing.TB, db, slot string, lsn pglogrepl.LSN) {
	t.Helper()
	walhooktest.WaitSlotPasses(t, db, slot, lsn)
}

// productRow is what the tests read from a product payload.
type productRow struct {
	ID    int `json:"id"`
	Stock int `json:"stock"`
}

func productOf(t testing.TB, body []byte) productRow {
	t.Helper()
	var p productRow
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("payload is not a product: %s", body)
	}
	return p
}

// stockByRow lists each product's stock values in arrival order.
func stockByRow(t testing.TB, ds []receiver.Delivery) map[int][]int {
	t.Helper()
	out := map[int][]int{}
	for _, d := range ds {
		p := productOf(t, d.Body)
		out[p.ID] = append(out[p.ID], p.Stock)
	}
	return out
}

func checkRows(t testing.TB, got, want map[int][]int) {
	t.Helper()
	for id, w := range want {
		if !slices.Equal(got[id], w) {
			t.Errorf("product %d: stock values arrived as %v, want %v (per-row commit order, each once)", id, got[id], w)
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			t.Errorf("product %d: unexpected deliveries %v", id, got[id])
		}
	}
}

// updates returns one transaction per "id:stock" pair, in order.
func updates(pairs ...[2]int) []string {
	out := make([]string, len(pairs))
	for i, p := range pairs {
		out[i] = fmt.Sprintf(`UPDATE products SET stock = %d WHERE id = %d`, p[1], p[0])
	}
	return out
}

// seedProducts inserts products 1..n before walhook starts (so the slot,
// created at start, does not see them).
func seedProducts(t testing.TB, db string, n int) {
	t.Helper()
	pgtest.Exec(t, db, shop.Schema, fmt.Sprintf(`INSERT INTO products (id, name, sku, price) SELECT i, 'p', 'sku' || i, 1 FROM generate_series(1, %d) i`, n))
}

func hookYAML(id int64, topic, url string) string {
	return fmt.Sprintf("  - { id: %d, topic: %s, delivery_url: %q, secret: %q }\n", id, topic, url, secret)
}

// TestAutoDisable: a receiver that always fails disables its webhook after
// max_failures+1 failed deliveries; the status survives a restart; what
// happens while disabled is parked; re-enabling delivers everything in
// per-row order.
func TestAutoDisable(t *testing.T) {
	db := pgtest.NewDatabase(t)
	seedProducts(t, db, 3)
	st := openStore(t, db)
	recv, url := newReceiver(t, secrets(1))
	recv.Respond(answer(http.StatusInternalServerError))
	cfg := parseConfig(t, baseConfig(t, db, "")+"webhooks:\n"+hookYAML(1, "product.updated", url))
	cfg.Delivery.MaxFailures = 2
	cfg.Delivery.DisableAfter = 0 // WooCommerce's rule: the count alone
	cfg.Delivery.Concurrency = 1
	cfg.Delivery.Retry.Attempts = 2
	in := start(t, cfg)
	eventually(t, "the activation ping", func() bool { return len(recv.Pings()) == 1 })

	// Three changes of two rows: row 1's first change and row 2's change
	// are tried (a failing row does not hold back another); row 1's second
	// change waits behind its first, untried.
	pgtest.Exec(t, db, updates([2]int{1, 1}, [2]int{2, 1}, [2]int{1, 2})...)
	eventually(t, "webhook 1 to be disabled", func() bool {
		return storedWebhook(t, st, 1).Status == webhook.StatusDisabled
	})
	walhooktest.Quiet(1500 * time.Millisecond) // longer than parked_max_backoff: a retry after the disable would show
	got := recv.Deliveries()
	wantAttempts := len(got)
	if ids := distinctIDs(got); len(ids) != 2 {
		t.Errorf("failed requests carried %d delivery ids, want 2 (row 1's first change and row 2's; row 1's second waits behind)", len(ids))
	}
	if p := productOf(t, got[0].Body); p != (productRow{ID: 1, Stock: 1}) {
		t.Errorf("the first delivery tried was %+v, want the first change", p)
	}
	for _, d := range got {
		if p := productOf(t, d.Body); p == (productRow{ID: 1, Stock: 2}) {
			t.Errorf("row 1's second change was sent while its first was parked")
		}
	}
	failedID := got[0].DeliveryID
	w := storedWebhook(t, st, 1)
	if w.FailureCount <= cfg.Delivery.MaxFailures {
		t.Errorf("failure_count = %d, want more than %d", w.FailureCount, cfg.Delivery.MaxFailures)
	}
	if n := deliveries(t, in, 1, webhook.OutcomeFailed); n != float64(w.FailureCount) {
		t.Errorf(`walhook_deliveries_total{outcome="failed"} = %v, want the failure count %d`, n, w.FailureCount)
	}
	if statusGauge(t, in, 1, "disabled") != 1 || statusGauge(t, in, 1, "active") != 0 {
		t.Error("walhook_webhook_status does not say disabled")
	}
	if n := metricValue(t, in.reg, "walhook_webhook_disables_total", map[string]string{"webhook": "1"}); n != 1 {
		t.Errorf("walhook_webhook_disables_total = %v, want 1", n)
	}
	if n := parkedRows(t, st, 1); n != 3 {
		t.Errorf("%d deliveries parked, want 3", n)
	}
	recs := logRecords(t, in, "webhook disabled after failed deliveries")
	if len(recs) != 1 || recs[0]["level"] != "WARN" || recs[0]["last_response_code"] != float64(500) {
		t.Errorf("want one WARN line naming the last response (500) for the disable, got %v", recs)
	}

	// Disabled across a restart: nothing is sent, no ping.
	in.stop(t)
	in = start(t, cfg)
	if statusGauge(t, in, 1, "disabled") != 1 {
		t.Error("after a restart walhook_webhook_status does not say disabled")
	}
	pgtest.Exec(t, db, updates([2]int{2, 2}, [2]int{3, 1}, [2]int{1, 3}, [2]int{3, 2})...)
	eventually(t, "the changes made while disabled to be parked", func() bool { return parkedRows(t, st, 1) == 7 })
	walhooktest.Quiet(1500 * time.Millisecond) // a request to the disabled webhook would show
	if n := len(recv.Deliveries()); n != wantAttempts {
		t.Fatalf("a disabled webhook was sent %d requests", n-wantAttempts)
	}
	if n := len(recv.Pings()); n != 1 {
		t.Errorf("%d pings, want the first activation's only", n)
	}
	if w := storedWebhook(t, st, 1); w.Status != webhook.StatusDisabled {
		t.Fatalf("status %q after a restart, want disabled", w.Status)
	}

	// Re-enabled through the store: everything parked arrives in per-row order.
	recv.Respond(nil)
	setStatus(t, st, 1, webhook.StatusActive)
	ok := recv.Wait(walhooktest.Patience(), func(r *receiver.Receiver) bool { return len(r.Accepted()) >= 7 })
	if !ok {
		t.Fatalf("after re-enabling %d of 7 parked deliveries arrived", len(recv.Accepted()))
	}
	pgtest.Exec(t, db, updates([2]int{2, 3})...)
	if !recv.Wait(walhooktest.Patience(), func(r *receiver.Receiver) bool { return len(r.Accepted()) >= 8 }) {
		t.Fatal("a change made after re-enabling did not arrive")
	}
	eventually(t, "the parked table to empty", func() bool { return parkedRows(t, st, 1) == 0 })
	waitSettled(t, db, cfg.Postgres.Slot)
	accepted := recv.Accepted()
	checkRows(t, stockByRow(t, accepted), map[int][]int{1: {1, 2, 3}, 2: {1, 2, 3}, 3: {1, 2}})
	if accepted[0].DeliveryID != failedID {
		t.Errorf("the first redelivery has id %s, want the failed delivery's %s", accepted[0].DeliveryID, failedID)
	}
	w = storedWebhook(t, st, 1)
	if w.Status != webhook.StatusActive || w.FailureCount != 0 || parkedRows(t, st, 1) != 0 {
		t.Errorf("after re-enabling: status %q, failure_count %d, %d parked", w.Status, w.FailureCount, parkedRows(t, st, 1))
	}
	if statusGauge(t, in, 1, "active") != 1 {
		t.Error("walhook_webhook_status does not say active after re-enabling")
	}
}

// TestGoneDisablesAtOnce: 410 Gone disables after one delivery, without
// quick retries.
func TestGoneDisablesAtOnce(t *testing.T) {
	db := pgtest.NewDatabase(t)
	seedProducts(t, db, 1)
	st := openStore(t, db)
	recv, url := newReceiver(t, secrets(1))
	recv.Respond(answer(http.StatusGone))
	cfg := parseConfig(t, baseConfig(t, db, "")+"webhooks:\n"+hookYAML(1, "product.updated", url))
	in := start(t, cfg)
	pgtest.Exec(t, db, updates([2]int{1, 1}, [2]int{1, 2})...)
	eventually(t, "webhook 1 to be disabled", func() bool {
		return storedWebhook(t, st, 1).Status == webhook.StatusDisabled
	})
	walhooktest.Quiet(1500 * time.Millisecond) // a retry after 410 would show
	if n := len(recv.Deliveries()); n != 1 {
		t.Errorf("%d requests, want 1: 410 Gone is neither retried nor followed by more", n)
	}
	if w := storedWebhook(t, st, 1); w.FailureCount != 1 {
		t.Errorf("failure_count = %d, want 1", w.FailureCount)
	}
	if n := deliveries(t, in, 1, webhook.OutcomeRetried); n != 0 {
		t.Errorf("%v quick retries after 410", n)
	}
	if n := metricValue(t, in.reg, "walhook_webhook_disables_total", map[string]string{"webhook": "1"}); n != 1 {
		t.Errorf("walhook_webhook_disables_total = %v, want 1", n)
	}
	eventually(t, "both changes to be parked", func() bool { return parkedRows(t, st, 1) == 2 })
}

// TestPausedWebhook: a paused webhook receives nothing, not even a ping,
// and never holds the slot back; an active one on the same topic gets
// everything.
func TestPausedWebhook(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, shop.Schema)
	paused, pausedURL := newReceiver(t, secrets(3))
	active, activeURL := newReceiver(t, secrets(3))
	cfg := parseConfig(t, baseConfig(t, db, "")+fmt.Sprintf(`webhooks:
  - { id: 1, topic: product.created, delivery_url: %q, secret: %q, status: paused }
  - { id: 2, topic: product.created, delivery_url: %q, secret: %q }
  - { id: 3, topic: product.updated, delivery_url: %q, secret: %q, status: paused }
`, pausedURL, secret, activeURL, secret, pausedURL, secret))
	in := start(t, cfg)
	var sqls []string
	for i := 1; i <= 10; i++ {
		sqls = append(sqls, fmt.Sprintf(`INSERT INTO products (id, name, sku, price) VALUES (%d, 'p', 'sku%d', 1)`, i, i))
	}
	for i := 1; i <= 5; i++ {
		sqls = append(sqls, fmt.Sprintf(`UPDATE products SET stock = 1 WHERE id = %d`, i))
	}
	pgtest.Exec(t, db, sqls...)
	end := walLSN(t, db)
	if !active.Wait(walhooktest.Patience(), func(r *receiver.Receiver) bool { return len(r.Accepted()) >= 10 }) {
		t.Fatalf("the active webhook got %d of 10 deliveries", len(active.Accepted()))
	}
	// Only product.updated webhook 3 (paused) matched the updates: the slot
	// must pass them all the same.
	waitSlotPasses(t, db, cfg.Postgres.Slot, end)
	if n := len(paused.Deliveries()); n != 0 {
		t.Errorf("paused webhooks received %d deliveries", n)
	}
	if n := len(paused.Pings()); n != 0 {
		t.Errorf("paused webhooks were pinged %d times", n)
	}
	if n := len(active.Pings()); n != 1 {
		t.Errorf("the active webhook was pinged %d times, want 1", n)
	}
	if n := len(active.Deliveries()); n != 10 {
		t.Errorf("the active webhook got %d requests, want 10", n)
	}
	for id, want := range map[int64]float64{1: 10, 3: 5} {
		if n := deliveries(t, in, id, webhook.OutcomeSkipped); n != want {
			t.Errorf(`webhook %d: walhook_deliveries_total{outcome="skipped"} = %v, want %v`, id, n, want)
		}
	}
}

// switchable is a receiver that can be taken down (its port refuses
// connections) and brought back on the same address.
type switchable struct {
	t    testing.TB
	addr string
	h    http.Handler
	mu   sync.Mutex
	srv  *http.Server
}

func newSwitchable(t testing.TB, h http.Handler) *switchable {
	s := &switchable{t: t, h: h}
	s.up()
	t.Cleanup(s.down)
	return s
}

func (s *switchable) up() {
	s.mu.Lock()
	defer s.mu.Unlock()
	addr := s.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		s.t.Fatalf("listen on %s: %v", addr, err)
	}
	s.addr = ln.Addr().String()
	srv := &http.Server{Handler: s.h, ReadHeaderTimeout: 10 * time.Second}
	s.srv = srv
	go func() { _ = srv.Serve(ln) }()
}

func (s *switchable) down() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		_ = s.srv.Close()
		s.srv = nil
	}
}

// TestReceiverDown: while the receiver is down the slot keeps advancing
// (the deliveries are parked); once it answers again everything arrives,
// in per-row order.
func TestReceiverDown(t *testing.T) {
	db := pgtest.NewDatabase(t)
	seedProducts(t, db, 3)
	st := openStore(t, db)
	recv := receiver.New(secrets(1))
	srv := newSwitchable(t, recv)
	srv.down()
	cfg := parseConfig(t, baseConfig(t, db, "")+"webhooks:\n"+hookYAML(1, "product.updated", "http://"+srv.addr+"/hooks"))
	cfg.Delivery.MaxFailures = 1000 // a long outage must not disable it here
	start(t, cfg)

	var pairs [][2]int
	want := map[int][]int{}
	for v := 1; v <= 4; v++ {
		for id := 1; id <= 3; id++ {
			pairs = append(pairs, [2]int{id, v})
			want[id] = append(want[id], v)
		}
	}
	pgtest.Exec(t, db, updates(pairs...)...)
	end := walLSN(t, db)
	waitSlotPasses(t, db, cfg.Postgres.Slot, end)
	if n := parkedRows(t, st, 1); n != int64(len(pairs)) {
		t.Fatalf("the slot passed the changes with %d of %d deliveries parked", n, len(pairs))
	}
	if w := storedWebhook(t, st, 1); w.Status != webhook.StatusActive || w.FailureCount == 0 {
		t.Errorf("during the outage: status %q, failure_count %d", w.Status, w.FailureCount)
	}

	srv.up()
	if !recv.Wait(walhooktest.Patience(), func(r *receiver.Receiver) bool { return len(r.Accepted()) >= len(pairs) }) {
		t.Fatalf("after the receiver came back %d of %d deliveries arrived", len(recv.Accepted()), len(pairs))
	}
	// Once nothing is parked, every retry has been made: count them.
	eventually(t, "the parked table to empty", func() bool { return parkedRows(t, st, 1) == 0 })
	got := recv.Accepted()
	if len(got) != len(pairs) || len(distinctIDs(got)) != len(pairs) {
		t.Errorf("%d deliveries with %d ids, want %d each", len(got), len(distinctIDs(got)), len(pairs))
	}
	checkRows(t, stockByRow(t, got), want)
	if w := storedWebhook(t, st, 1); w.FailureCount != 0 {
		t.Errorf("failure_count = %d after a success, want 0", w.FailureCount)
	}
}

// TestRetryAfter: 429 and 503 with Retry-After (seconds or an HTTP date,
// capped by retry_after_cap) are retried after the wait asked for, within
// the quick attempts, without parking.
func TestRetryAfter(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, shop.Schema)
	st := openStore(t, db)
	recv, url := newReceiver(t, secrets(1))
	const retryAfterCap = 3 * time.Second
	cases := []struct {
		id       int
		name     string
		code     int
		header   func() string
		minDelay time.Duration // the wait asked for, less the HTTP date's second precision
	}{
		{1, "503 seconds", http.StatusServiceUnavailable, func() string { return "1" }, time.Second},
		{2, "503 HTTP date", http.StatusServiceUnavailable, func() string { return time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat) }, time.Second},
		{3, "429 seconds", http.StatusTooManyRequests, func() string { return "1" }, time.Second},
		{4, "503 capped", http.StatusServiceUnavailable, func() string { return "3600" }, retryAfterCap},
	}
	seen := map[string]bool{}
	recv.Respond(func(d *receiver.Delivery) (int, http.Header) {
		if seen[d.DeliveryID] {
			return http.StatusOK, nil
		}
		seen[d.DeliveryID] = true
		var p productRow
		_ = json.Unmarshal(d.Body, &p)
		for _, c := range cases {
			if c.id == p.ID {
				return c.code, http.Header{"Retry-After": {c.header()}}
			}
		}
		return http.StatusBadRequest, nil
	})
	cfg := parseConfig(t, baseConfig(t, db, "")+"webhooks:\n"+hookYAML(1, "product.created", url))
	cfg.Delivery.Retry.Attempts = 2
	cfg.Delivery.Retry.RetryAfterCap = retryAfterCap
	in := start(t, cfg)
	var sqls []string
	for _, c := range cases {
		sqls = append(sqls, fmt.Sprintf(`INSERT INTO products (id, name, sku, price) VALUES (%d, 'p', 'sku%d', 1)`, c.id, c.id))
	}
	pgtest.Exec(t, db, sqls...)
	if !recv.Wait(walhooktest.Patience(), func(r *receiver.Receiver) bool { return len(r.Accepted()) >= len(cases) }) {
		t.Fatalf("%d of %d deliveries succeeded after Retry-After", len(recv.Accepted()), len(cases))
	}
	waitSettled(t, db, cfg.Postgres.Slot)
	byRow := map[int][]receiver.Delivery{}
	for _, d := range recv.Deliveries() {
		p := productOf(t, d.Body)
		byRow[p.ID] = append(byRow[p.ID], d)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ds := byRow[c.id]
			if len(ds) != 2 {
				t.Fatalf("%d attempts, want 2 (one refused, one accepted)", len(ds))
			}
			if ds[0].Status != c.code || ds[1].Status != http.StatusOK || ds[0].DeliveryID != ds[1].DeliveryID {
				t.Errorf("attempts answered %d then %d with ids %s / %s", ds[0].Status, ds[1].Status, ds[0].DeliveryID, ds[1].DeliveryID)
			}
			// A lower bound only: the retry must not come before the wait
			// asked for (the configured backoff is 10–50ms).
			if gap := ds[1].At.Sub(ds[0].At); gap < c.minDelay-100*time.Millisecond {
				t.Errorf("the retry came %s after the refusal, before the Retry-After wait of about %s", gap, c.minDelay)
			}
		})
	}
	if n := deliveries(t, in, 1, webhook.OutcomeParked) + deliveries(t, in, 1, webhook.OutcomeFailed); n != 0 {
		t.Errorf("%v deliveries failed or were parked", n)
	}
	if n := deliveries(t, in, 1, webhook.OutcomeRetried); n != float64(len(cases)) {
		t.Errorf(`walhook_deliveries_total{outcome="retried"} = %v, want %d`, n, len(cases))
	}
	if w := storedWebhook(t, st, 1); w.FailureCount != 0 || parkedRows(t, st, 1) != 0 {
		t.Errorf("failure_count %d, %d parked; want 0 and 0", w.FailureCount, parkedRows(t, st, 1))
	}
}

// pingRecorder answers pings (form-encoded requests) with a scripted status
// and passes deliveries to a receiver.
type pingRecorder struct {
	next   http.Handler
	mu     sync.Mutex
	status int
	pings  []recordedPing
}

type recordedPing struct {
	path   string
	body   string
	header http.Header
}

func (p *pingRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		p.next.ServeHTTP(w, r)
		return
	}
	body := make([]byte, 1024)
	n, _ := r.Body.Read(body)
	p.mu.Lock()
	p.pings = append(p.pings, recordedPing{path: r.URL.Path, body: string(body[:n]), header: r.Header.Clone()})
	status := p.status
	p.mu.Unlock()
	w.WriteHeader(status)
}

func (p *pingRecorder) setStatus(code int) {
	p.mu.Lock()
	p.status = code
	p.mu.Unlock()
}

func (p *pingRecorder) recorded() []recordedPing {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.pings)
}

// TestPing: the activation ping's shape; a failed ping leaves the ping
// pending without touching status or failure count and without blocking
// deliveries; a 200 on the next start clears it; a URL change pings again.
func TestPing(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, shop.Schema)
	st := openStore(t, db)
	recv := receiver.New(secrets(1))
	pr := &pingRecorder{next: recv, status: http.StatusInternalServerError}
	srv := httptest.NewServer(pr)
	t.Cleanup(srv.Close)
	config := func(path string) string {
		return baseConfig(t, db, "") + "webhooks:\n" + hookYAML(1, "product.created", srv.URL+path)
	}
	cfg := parseConfig(t, config("/hooks"))

	in := start(t, cfg)
	eventually(t, "the first ping's result to be recorded", func() bool {
		return storedWebhook(t, st, 1).LastPingResult != ""
	})
	pings := pr.recorded()
	if len(pings) != 1 {
		t.Fatalf("%d pings at first activation, want 1", len(pings))
	}
	p := pings[0]
	if p.body != "webhook_id=1" || p.path != "/hooks" {
		t.Errorf("ping body %q to %s, want webhook_id=1 to /hooks", p.body, p.path)
	}
	for k := range p.header {
		if strings.HasPrefix(strings.ToLower(k), "x-wc-") || strings.HasPrefix(strings.ToLower(k), "webhook-") {
			t.Errorf("the ping carries %s", k)
		}
	}
	w := storedWebhook(t, st, 1)
	if !w.PendingPing || w.Status != webhook.StatusActive || w.FailureCount != 0 {
		t.Errorf("after a ping answered 500: pending_ping %v, status %q, failure_count %d; want true, active, 0", w.PendingPing, w.Status, w.FailureCount)
	}
	if n := metricValue(t, in.reg, "walhook_pings_total", map[string]string{"webhook": "1", "result": "failed"}); n != 1 {
		t.Errorf(`walhook_pings_total{result="failed"} = %v, want 1`, n)
	}
	if len(logRecords(t, in, "webhook ping failed")) != 1 {
		t.Error("the failed ping was not logged once")
	}
	// The failed ping does not block deliveries.
	pgtest.Exec(t, db, `INSERT INTO products (id, name, sku, price) VALUES (1, 'p', 'sku1', 1)`)
	if !recv.Wait(walhooktest.Patience(), func(r *receiver.Receiver) bool { return len(r.Accepted()) == 1 }) {
		t.Fatal("a delivery did not arrive while the ping was pending")
	}
	in.stop(t)

	// The next start pings again; a 200 clears it.
	pr.setStatus(http.StatusOK)
	in = start(t, cfg)
	eventually(t, "pending_ping to clear", func() bool { return !storedWebhook(t, st, 1).PendingPing })
	if n := len(pr.recorded()); n != 2 {
		t.Errorf("%d pings after the second start, want 2", n)
	}
	in.stop(t)

	// Nothing pending: a restart does not ping.
	in = start(t, cfg)
	walhooktest.Quiet(1200 * time.Millisecond) // a ping at this start would show
	if n := len(pr.recorded()); n != 2 {
		t.Errorf("a restart with no ping pending pinged (%d pings)", n)
	}
	in.stop(t)

	// A new delivery URL while active pings the new URL.
	start(t, parseConfig(t, config("/moved")))
	eventually(t, "a ping to the new URL", func() bool {
		ps := pr.recorded()
		return len(ps) == 3 && ps[2].path == "/moved"
	})
	eventually(t, "pending_ping to clear", func() bool { return !storedWebhook(t, st, 1).PendingPing })
}

// faultServer misbehaves per path, counting the deliveries (not pings) it sees.
type faultServer struct {
	mu       sync.Mutex
	requests map[string]int
	big      chan bigResult
	stop     chan struct{}
}

type bigResult struct {
	written int64
	err     error
}

const bigBody = 50 << 20

func (f *faultServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Content-Type") == "application/x-www-form-urlencoded" {
		w.WriteHeader(http.StatusOK) // pings succeed everywhere
		return
	}
	f.mu.Lock()
	f.requests[r.URL.Path]++
	f.mu.Unlock()
	switch r.URL.Path {
	case "/hang":
		select {
		case <-r.Context().Done():
		case <-f.stop:
		}
	case "/slow":
		time.Sleep(200 * time.Millisecond)
	case "/big":
		w.Header().Set("Content-Length", strconv.Itoa(bigBody))
		w.WriteHeader(http.StatusOK)
		chunk := make([]byte, 64<<10)
		var res bigResult
		for res.written < bigBody {
			n, err := w.Write(chunk)
			res.written += int64(n)
			if err != nil {
				res.err = err
				break
			}
		}
		f.big <- res
	case "/reset":
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			_ = conn.Close()
		}
	case "/302":
		http.Redirect(w, r, "/target", http.StatusFound)
	case "/307":
		http.Redirect(w, r, "/target", http.StatusTemporaryRedirect)
	case "/404":
		http.NotFound(w, r)
	case "/400":
		http.Error(w, "bad request", http.StatusBadRequest)
	}
}

func (f *faultServer) count(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[path]
}

// TestReceiverFaults: hangs, slow answers, huge bodies, reset connections,
// redirects and client errors are each handled as SPEC §5 says, in bounded
// time and memory, one log line per attempt, and a healthy webhook beside
// them is unaffected.
func TestReceiverFaults(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, shop.Schema)
	st := openStore(t, db)
	fs := &faultServer{requests: map[string]int{}, big: make(chan bigResult, 4), stop: make(chan struct{})}
	srv := httptest.NewServer(fs)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(fs.stop) })
	healthy, healthyURL := newReceiver(t, secrets(1))

	const attempts = 2
	faults := []struct {
		id       int64
		path     string
		ok       bool
		requests int // quick attempts only: parked retries are an hour away here
	}{
		{2, "/hang", false, attempts},  // timed out: retried, then parked
		{3, "/slow", true, 1},          // within the timeout
		{4, "/big", true, 1},           // 200 with 50 MB that is not read
		{5, "/reset", false, attempts}, // connection error: retried, then parked
		{6, "/302", true, 1},           // success, not followed
		{7, "/307", false, attempts},   // other 3xx fail and are retried
		{8, "/404", false, 1},          // client errors are not retried quickly
		{9, "/400", false, 1},
	}
	yaml := "webhooks:\n" + hookYAML(1, "product.created", healthyURL)
	for _, f := range faults {
		yaml += hookYAML(f.id, "product.created", srv.URL+f.path)
	}
	cfg := parseConfig(t, baseConfig(t, db, "")+yaml)
	cfg.Delivery.Timeout = 3 * time.Second // /hang times out; /slow answers well within it
	cfg.Delivery.Retry.Attempts = attempts
	cfg.Delivery.Retry.ParkedBackoff = time.Hour
	cfg.Delivery.Retry.ParkedMaxBackoff = time.Hour
	in := start(t, cfg)

	pgtest.Exec(t, db, `INSERT INTO products (id, name, sku, price) VALUES (1, 'p', 'sku1', 1)`)
	if !healthy.Wait(walhooktest.Patience(), func(r *receiver.Receiver) bool { return len(r.Accepted()) == 1 }) {
		t.Fatal("the healthy webhook did not get its delivery")
	}
	select {
	case res := <-fs.big:
		if res.err == nil || res.written >= bigBody {
			t.Errorf("walhook read the whole 50 MB body (%d bytes written, error %v)", res.written, res.err)
		} else {
			t.Logf("50 MB response: walhook closed the connection after %d bytes had been written", res.written)
		}
	case <-time.After(walhooktest.Patience()):
		t.Fatalf("the 50 MB response was still being read after %s", walhooktest.Patience())
	}
	eventually(t, "every fault to be settled", func() bool {
		for _, f := range faults {
			done := deliveries(t, in, f.id, webhook.OutcomeSuccess) == 1
			if !f.ok {
				done = parkedRows(t, st, f.id) == 1
			}
			if !done || fs.count(f.path) < f.requests {
				return false
			}
		}
		return true
	})
	in.stop(t) // every attempt has finished and logged

	if n := fs.count("/target"); n != 0 {
		t.Errorf("a redirect was followed: the target got %d requests", n)
	}
	if n := len(healthy.Deliveries()); n != 1 {
		t.Errorf("the healthy webhook got %d requests, want 1", n)
	}
	for _, f := range faults {
		t.Run(strings.TrimPrefix(f.path, "/"), func(t *testing.T) {
			logs := attemptLogs(t, in, f.id)
			if n := fs.count(f.path); n != f.requests {
				t.Errorf("%d requests, want %d; attempts logged: %v", n, f.requests, logs)
			}
			if n := len(logs); n != fs.count(f.path) {
				t.Errorf("%d delivery log lines for %d attempts: %v", n, fs.count(f.path), logs)
			}
			w := storedWebhook(t, st, f.id)
			wantFailures, wantParked := 0, int64(0)
			if !f.ok {
				wantFailures, wantParked = 1, 1
			}
			if w.FailureCount != wantFailures || parkedRows(t, st, f.id) != wantParked || w.Status != webhook.StatusActive {
				t.Errorf("failure_count %d, %d parked, status %q; want %d, %d, active; attempts logged: %v",
					w.FailureCount, parkedRows(t, st, f.id), w.Status, wantFailures, wantParked, logs)
			}
		})
	}
	if logs := attemptLogs(t, in, 2); len(logs) > 0 && logs[0]["error"] != "timed out" {
		t.Errorf("the hanging receiver's attempt logged error %v, want \"timed out\"", logs[0]["error"])
	}
}

// TestParkLimit: a disabled webhook keeps at most park_limit.rows
// deliveries; the oldest are dropped, counted and logged; re-enabling
// delivers the newest in order.
func TestParkLimit(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, shop.Schema)
	st := openStore(t, db)
	recv, url := newReceiver(t, secrets(1))
	cfg := parseConfig(t, baseConfig(t, db, "")+fmt.Sprintf("webhooks:\n  - { id: 1, topic: product.created, delivery_url: %q, secret: %q, status: disabled }\n", url, secret))
	cfg.Delivery.ParkLimit.Rows = 5
	in := start(t, cfg)
	var sqls []string
	for i := 1; i <= 10; i++ {
		sqls = append(sqls, fmt.Sprintf(`INSERT INTO products (id, name, sku, price, stock) VALUES (%d, 'p', 'sku%d', 1, %d)`, i, i, i))
	}
	pgtest.Exec(t, db, sqls...)
	end := walLSN(t, db)
	eventually(t, "5 deliveries dropped", func() bool { return deliveries(t, in, 1, webhook.OutcomeDropped) == 5 })
	waitSlotPasses(t, db, cfg.Postgres.Slot, end)
	if n := parkedRows(t, st, 1); n != 5 {
		t.Errorf("%d parked, want 5", n)
	}
	if n := deliveries(t, in, 1, webhook.OutcomeDropped); n != 5 {
		t.Errorf(`walhook_deliveries_total{outcome="dropped"} = %v, want 5`, n)
	}
	dropped := 0.0
	for _, rec := range logRecords(t, in, "park limit reached: oldest parked deliveries dropped") {
		if rec["level"] != "WARN" {
			t.Errorf("the drop was logged at %v", rec["level"])
		}
		n, _ := rec["dropped"].(float64)
		dropped += n
	}
	if dropped != 5 {
		t.Errorf("the log lines name %v dropped deliveries, want 5", dropped)
	}
	if n := len(recv.Deliveries()) + len(recv.Pings()); n != 0 {
		t.Fatalf("a disabled webhook got %d requests", n)
	}

	setStatus(t, st, 1, webhook.StatusActive)
	if !recv.Wait(walhooktest.Patience(), func(r *receiver.Receiver) bool { return len(r.Accepted()) >= 5 }) {
		t.Fatalf("after re-enabling %d of 5 kept deliveries arrived", len(recv.Accepted()))
	}
	eventually(t, "the parked table to empty", func() bool { return parkedRows(t, st, 1) == 0 })
	waitSettled(t, db, cfg.Postgres.Slot)
	// Different rows: their relative order is not promised (SPEC §5).
	var ids []int
	for _, d := range recv.Deliveries() {
		ids = append(ids, productOf(t, d.Body).ID)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []int{6, 7, 8, 9, 10}) {
		t.Errorf("after re-enabling products %v arrived, want the five newest changes once each: [6 7 8 9 10]", ids)
	}
}

// TestFailingWebhookIsolation: a webhook whose receiver always fails does
// not slow a healthy one on the same topic. The figures are logged for the
// record, not asserted.
func TestFailingWebhookIsolation(t *testing.T) {
	const changes = 2000
	run := func(t *testing.T, withFailing bool) {
		db := pgtest.NewDatabase(t)
		pgtest.Exec(t, db, shop.Schema)
		healthy, healthyURL := newReceiver(t, secrets(2))
		failing, failingURL := newReceiver(t, secrets(2))
		failing.Respond(answer(http.StatusInternalServerError))
		yaml := "webhooks:\n" + hookYAML(1, "product.created", healthyURL)
		if withFailing {
			yaml += hookYAML(2, "product.created", failingURL)
		}
		cfg := parseConfig(t, baseConfig(t, db, "")+yaml)
		start(t, cfg)
		eventually(t, "the activation ping", func() bool { return len(healthy.Pings()) == 1 })

		var sqls []string
		for tx := 0; tx < changes/100; tx++ {
			sqls = append(sqls, fmt.Sprintf(`INSERT INTO products (id, name, sku, price)
				SELECT i, 'p', 'sku' || i, 1 FROM generate_series(%d, %d) i`, tx*100+1, tx*100+100))
		}
		before := walLSN(t, db)
		began := time.Now()
		pgtest.Exec(t, db, sqls...)
		end := walLSN(t, db)
		if !healthy.Wait(walhooktest.Patience(), func(r *receiver.Receiver) bool { return len(r.Accepted()) >= changes }) {
			t.Fatalf("the healthy webhook got %d of %d deliveries", len(healthy.Accepted()), changes)
		}
		took := time.Since(began)
		var retained, pretty string
		queryRow(t, db, `SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint::text,
				pg_size_pretty(pg_current_wal_lsn() - confirmed_flush_lsn)
			FROM pg_replication_slots WHERE slot_name = $1`, []any{cfg.Postgres.Slot}, &retained, &pretty)
		waitSlotPasses(t, db, cfg.Postgres.Slot, end)
		settled := time.Since(began)
		if n := len(distinctIDs(healthy.Accepted())); n != changes {
			t.Errorf("the healthy webhook got %d distinct deliveries, want %d", n, changes)
		}
		t.Logf("FIGURES withFailing=%v: healthy webhook received %d deliveries in %s; "+
			"retained WAL then %s (%s bytes; the changes wrote %d bytes); slot confirmed past the changes after %s; failing receiver saw %d requests",
			withFailing, changes, took.Round(time.Millisecond), pretty, retained, uint64(end-before), settled.Round(time.Millisecond), len(failing.Deliveries()))
	}
	t.Run("alone", func(t *testing.T) { run(t, false) })
	t.Run("with_failing", func(t *testing.T) { run(t, true) })
}

// TestDiscardWhileRetrying: parked deliveries discarded by the operator
// while one of them is being retried leave the parked count right (the
// retry's success must not take it out a second time), and the breaker
// closes on that success.
func TestDiscardWhileRetrying(t *testing.T) {
	db := pgtest.NewDatabase(t)
	seedProducts(t, db, 1)
	st := openStore(t, db)
	recv := receiver.New(secrets(1))
	held, gate := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Content-Type") == "application/x-www-form-urlencoded" {
			w.WriteHeader(http.StatusOK)
			return
		}
		mu.Lock()
		n++
		k := n
		mu.Unlock()
		switch {
		case k <= 2: // the quick attempts fail: parked
			w.WriteHeader(http.StatusInternalServerError)
			return
		case k == 3: // the first parked retry waits for the discard
			close(held)
			<-gate
		}
		recv.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	cfg := parseConfig(t, baseConfig(t, db, "")+"webhooks:\n"+hookYAML(1, "product.updated", srv.URL))
	cfg.Delivery.Timeout = walhooktest.Patience() // the held retry waits for the test, however slow
	cfg.Delivery.Concurrency = 1
	in := start(t, cfg)
	parkedGauge := func() float64 {
		return metricValue(t, in.reg, "walhook_parked_deliveries", map[string]string{"webhook": "1"})
	}

	pgtest.Exec(t, db, updates([2]int{1, 1})...)
	select {
	case <-held:
	case <-time.After(walhooktest.Patience()):
		t.Fatal("the parked delivery was not retried")
	}
	if got, err := st.DiscardParked(context.Background(), 1); err != nil || got != 1 {
		t.Fatalf("DiscardParked = %d, %v; want 1", got, err)
	}
	eventually(t, "walhook to notice the discard", func() bool { return parkedGauge() == 0 })
	close(gate)
	eventually(t, "the held retry to succeed", func() bool { return deliveries(t, in, 1, webhook.OutcomeSuccess) == 1 })
	pgtest.Exec(t, db, updates([2]int{1, 2})...)
	if !recv.Wait(walhooktest.Patience(), func(r *receiver.Receiver) bool { return len(r.Accepted()) == 2 }) {
		t.Fatal("a later change was not delivered after the breaker closed")
	}
	if g := parkedGauge(); g != 0 {
		t.Errorf("walhook_parked_deliveries = %v after the discard and a delivered retry, want 0", g)
	}
	if d := deliveries(t, in, 1, webhook.OutcomeParked); d != 1 {
		t.Errorf("%v deliveries parked, want 1 (the later change goes straight out)", d)
	}
}

// TestShutdownGraceCutsHangingDeliveries: a receiver that never answers
// holds walhook's shutdown for delivery.shutdown_grace, not for the
// attempt's far longer timeout; the delivery cut short is not settled, so
// it goes out again, with the same delivery id, after the restart.
func TestShutdownGraceCutsHangingDeliveries(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, shop.Schema)
	arrived := make(chan string, 1)
	release := make(chan struct{})
	var mu sync.Mutex
	var answered []string
	hanging := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-WC-Webhook-Delivery-ID")
		mu.Lock()
		hang := hanging
		mu.Unlock()
		if hang {
			select {
			case arrived <- id:
			default:
			}
			<-release
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		mu.Lock()
		answered = append(answered, id)
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })

	cfg := parseConfig(t, baseConfig(t, db, "")+"webhooks:\n"+hookYAML(1, "product.created", srv.URL))
	cfg.Delivery.Timeout = 10 * time.Minute
	cfg.Delivery.ShutdownGrace = 100 * time.Millisecond
	in := start(t, cfg)
	pgtest.Exec(t, db, `INSERT INTO products (id, name, sku, price) VALUES (1, 'p', 'sku1', 1)`)
	var cut string
	select {
	case cut = <-arrived:
	case <-time.After(walhooktest.Patience()):
		t.Fatal("the delivery did not reach the receiver")
	}

	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		in.stop(t)
	}()
	select {
	case <-stopped:
	case <-time.After(walhooktest.Patience()):
		t.Fatalf("walhook still stopping %s after the stop, with a shutdown grace of %s", walhooktest.Patience(), cfg.Delivery.ShutdownGrace)
	}

	mu.Lock()
	hanging = false
	mu.Unlock()
	start(t, cfg)
	eventually(t, "the cut delivery to be delivered after the restart", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(answered) > 0
	})
	mu.Lock()
	defer mu.Unlock()
	if answered[0] != cut {
		t.Errorf("delivered %s after the restart, want the cut delivery %s", answered[0], cut)
	}
}
