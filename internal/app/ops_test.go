package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/app"
	"github.com/walhook/walhook/internal/pgtest"
	"github.com/walhook/walhook/internal/receiver"
	"github.com/walhook/walhook/internal/shop"
	"github.com/walhook/walhook/internal/walhooktest"
)

// series returns the value of the series name{labels...} in g: a counter's
// or a gauge's value, a histogram's sample count. labels are name, value
// pairs that must all match; ok is false when no series matches. A
// missing metric family fails the test.
func series(t testing.TB, g prometheus.Gatherer, name string, labels ...string) (v float64, ok bool) {
	t.Helper()
	return walhooktest.Series(t, g, name, labels...)
}

// get fetches path from walhook's HTTP listener.
func get(t testing.TB, addr net.Addr, path string) (int, []byte) {
	t.Helper()
	resp, err := http.Get("http://" + addr.String() + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", path, err)
	}
	return resp.StatusCode, body
}

// readyz returns /readyz's status code and decoded body.
func readyz(t testing.TB, addr net.Addr) (int, map[string]string) {
	t.Helper()
	code, body := get(t, addr, "/readyz")
	var m map[string]string
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("/readyz answered %d with a body that is not a JSON object: %q", code, body)
	}
	return code, m
}

// waitStreaming waits until the instance's /readyz says it streams.
func waitStreaming(t testing.TB, in *instance) {
	t.Helper()
	if !walhooktest.Holds(func() bool { code, _ := get(t, in.addr, "/readyz"); return code == http.StatusOK }) {
		_, body := get(t, in.addr, "/readyz")
		t.Fatalf("walhook did not stream after %s: /readyz says %s", walhooktest.Patience(), body)
	}
}

func insertProducts(t testing.TB, db string, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		pgtest.Exec(t, db, fmt.Sprintf(`INSERT INTO products (id, name, sku, price) VALUES (%d, 'p%d', 'sku%d', 1)`, i, i, i))
	}
}

func countFor(ds []receiver.Delivery, id int64) int {
	n := 0
	for _, d := range ds {
		if d.WebhookID == id {
			n++
		}
	}
	return n
}

// TestMetrics checks the values of walhook's metrics after real
// deliveries and failures, that every label is bounded, and that the
// scrape passes the client library's lint and promtool check metrics.
func TestMetrics(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, shop.Schema)
	recv, url := newReceiver(t, secrets(3))
	recv.Respond(func(d *receiver.Delivery) (int, http.Header) {
		if d.WebhookID == 2 {
			return http.StatusInternalServerError, nil
		}
		return http.StatusOK, nil
	})
	cfg := parseConfig(t, baseConfig(t, db, "")+fmt.Sprintf(`webhooks:
  - { id: 1, topic: product.created, delivery_url: %q, secret: %q }
  - { id: 2, topic: product.created, delivery_url: %q, secret: %q }
  - { id: 3, topic: product.created, delivery_url: %q, secret: %q, status: paused }
`, url+"/ok?token=query-secret", secret, url+"/fail", secret, url+"/paused", secret))
	in := start(t, cfg)
	waitStreaming(t, in)
	insertProducts(t, db, 1, 3)

	if !recv.Wait(walhooktest.Patience(), func(r *receiver.Receiver) bool {
		return countFor(r.Accepted(), 1) >= 3 && countFor(r.Deliveries(), 2) >= 6
	}) {
		t.Fatalf("webhook 1 got %d deliveries (want 3), webhook 2 %d attempts (want ≥ 6)",
			countFor(recv.Accepted(), 1), countFor(recv.Deliveries(), 2))
	}
	// Metrics settle shortly after the receiver answered.
	type want struct {
		name   string
		labels []string
		ok     func(v float64) bool
		desc   string
	}
	eq := func(x float64) func(float64) bool { return func(v float64) bool { return v == x } }
	ge := func(x float64) func(float64) bool { return func(v float64) bool { return v >= x } }
	wants := []want{
		{"walhook_deliveries_total", []string{"webhook", "1", "topic", "product.created", "outcome", "success"}, eq(3), "3"},
		{"walhook_deliveries_total", []string{"webhook", "2", "topic", "product.created", "outcome", "retried"}, ge(1), "≥ 1"},
		{"walhook_deliveries_total", []string{"webhook", "2", "topic", "product.created", "outcome", "failed"}, ge(1), "≥ 1"},
		{"walhook_deliveries_total", []string{"webhook", "2", "topic", "product.created", "outcome", "parked"}, ge(3), "≥ 3"},
		{"walhook_deliveries_total", []string{"webhook", "3", "topic", "product.created", "outcome", "skipped"}, eq(3), "3"},
		{"walhook_deliveries_total", []string{"webhook", "1", "outcome", "failed"}, eq(0), "0"},
		{"walhook_delivery_attempts_total", []string{"webhook", "1", "code", "2xx"}, eq(3), "3"},
		{"walhook_delivery_attempts_total", []string{"webhook", "2", "code", "5xx"}, ge(6), "≥ 6"},
		{"walhook_delivery_attempt_duration_seconds", []string{"webhook", "1"}, eq(3), "count 3"},
		{"walhook_delivery_attempt_duration_seconds", []string{"webhook", "2"}, ge(6), "count ≥ 6"},
		{"walhook_webhook_consecutive_failures", []string{"webhook", "1"}, eq(0), "0"},
		{"walhook_webhook_consecutive_failures", []string{"webhook", "2"}, ge(1), "≥ 1"},
		{"walhook_webhook_status", []string{"webhook", "1", "status", "active"}, eq(1), "1"},
		{"walhook_webhook_status", []string{"webhook", "1", "status", "paused"}, eq(0), "0"},
		{"walhook_webhook_status", []string{"webhook", "3", "status", "paused"}, eq(1), "1"},
		{"walhook_webhook_status", []string{"webhook", "3", "status", "active"}, eq(0), "0"},
		{"walhook_webhook_status", []string{"webhook", "3", "status", "disabled"}, eq(0), "0"},
		{"walhook_parked_deliveries", []string{"webhook", "2"}, ge(1), "≥ 1"},
		{"walhook_events_total", []string{"topic", "product.created"}, eq(3), "3"},
		{"walhook_transactions_routed_total", nil, ge(3), "≥ 3"},
		{"walhook_replication_transactions_total", nil, ge(3), "≥ 3"},
		{"walhook_replication_changes_total", nil, ge(3), "≥ 3"},
		{"walhook_replication_bytes_read_total", nil, ge(1), "> 0"},
		{"walhook_replication_confirmed_lsn", nil, ge(1), "> 0"},
		{"walhook_replication_server_lsn", nil, ge(1), "> 0"},
		{"walhook_settled_lsn", nil, ge(1), "> 0"},
		{"walhook_replication_lag_bytes", nil, ge(0), "present"},
		{"walhook_replication_lag_seconds", nil, ge(0), "present"},
		{"walhook_queue_depth", []string{"webhook", "1"}, eq(0), "0"},
		{"walhook_deliveries_in_flight", nil, ge(0), "present"},
		{"walhook_replication_connected", nil, eq(1), "1"},
		{"walhook_replication_streaming", nil, eq(1), "1"},
		{"walhook_replication_standby", nil, eq(0), "0"},
		{"walhook_replication_reconnects_total", nil, eq(0), "0"},
		{"walhook_config_reloads_total", []string{"result", "success"}, eq(0), "0"},
		{"walhook_config_reloads_total", []string{"result", "failure"}, eq(0), "0"},
		{"walhook_webhook_disables_total", []string{"webhook", "2"}, ge(0), "present"},
		{"walhook_pings_total", []string{"webhook", "1", "result", "success"}, eq(1), "1"},
		{"go_goroutines", nil, ge(1), "> 0"},
		{"process_cpu_seconds_total", nil, ge(0), "present"},
		{"process_resident_memory_bytes", nil, ge(1), "> 0"},
	}
	check := func() []string {
		var bad []string
		for _, w := range wants {
			v, ok := series(t, in.reg, w.name, w.labels...)
			if !ok || !w.ok(v) {
				bad = append(bad, fmt.Sprintf("%s%v = %v (present %v), want %s", w.name, w.labels, v, ok, w.desc))
			}
		}
		return bad
	}
	if !walhooktest.Holds(func() bool { return len(check()) == 0 }) {
		for _, b := range check() {
			t.Error(b)
		}
	}

	// Labels are bounded: never a URL, a delivery id or a row key.
	allowed := map[string]bool{"webhook": true, "topic": true, "outcome": true, "code": true, "status": true, "result": true, "resource": true, "version": true}
	idPattern := regexp.MustCompile(`^[0-9a-f]{32}$|://|^/|token|secret`)
	mfs, err := in.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		// promhttp_metric_handler_errors_total counts failed scrapes.
		if !regexp.MustCompile(`^(walhook|go|process|promhttp_metric_handler)_`).MatchString(mf.GetName()) {
			t.Errorf("metric %s has neither the walhook_ prefix nor comes from the Go, process or promhttp collectors", mf.GetName())
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if strings.HasPrefix(mf.GetName(), "walhook_") && !allowed[lp.GetName()] {
					t.Errorf("%s has label %s=%q: not a bounded label", mf.GetName(), lp.GetName(), lp.GetValue())
				}
				if idPattern.MatchString(lp.GetValue()) {
					t.Errorf("%s has label %s=%q: a URL, secret or delivery id", mf.GetName(), lp.GetName(), lp.GetValue())
				}
			}
		}
	}
	problems, err := testutil.GatherAndLint(in.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}

	// The scrape over HTTP is the same registry: it parses as the text
	// format, holds the same families and passes the same lint, which is
	// what promtool check metrics runs on a scrape.
	code, scrape := get(t, in.addr, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics answered %d", code)
	}
	for _, s := range []string{`walhook_deliveries_total{outcome="success",topic="product.created",webhook="1"} 3`, "go_goroutines ", "process_cpu_seconds_total "} {
		if !bytes.Contains(scrape, []byte(s)) {
			t.Errorf("/metrics lacks %q", s)
		}
	}
	scraped, err := walhooktest.ParseText(bytes.NewReader(scrape))
	if err != nil {
		t.Fatalf("/metrics is not valid text exposition: %v", err)
	}
	inScrape := map[string]bool{}
	for _, mf := range scraped {
		inScrape[mf.GetName()] = true
	}
	for _, mf := range mfs {
		if !inScrape[mf.GetName()] {
			t.Errorf("/metrics lacks the family %s", mf.GetName())
		}
	}
	problems, err = testutil.GatherAndLint(prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return scraped, nil }))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint of /metrics: %s: %s", p.Metric, p.Text)
	}
	if v := walhooktest.Metric(t, walhooktest.Scrape(in.URL()+"/metrics"), "walhook_deliveries_total",
		"webhook", "1", "outcome", "success"); v != 3 {
		t.Errorf(`walhook_deliveries_total{webhook="1",outcome="success"} read from /metrics = %v, want 3`, v)
	}
	if code, body := get(t, in.addr, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz answered %d %s while streaming", code, body)
	}
	t.Run("promtool", func(t *testing.T) { promtoolCheck(t, scrape) })
}

// promtoolCheck runs promtool check metrics on a scrape and fails on any
// complaint. promtool is not needed to run the tests (.ci/run installs it
// and checks the alert rules with it): without it this check is skipped,
// the lint above having made the same checks.
func promtoolCheck(t *testing.T, scrape []byte) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not on PATH: promtool check metrics skipped (the scrape was parsed and linted without it)")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(scrape)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestLagRisesAndFalls: while a slow receiver holds one delivery at a
// time, the queue and the replication lag in seconds rise; once every
// delivery is through, both fall back to 0.
func TestLagRisesAndFalls(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, shop.Schema)
	recv := receiver.New(secrets(1))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		recv.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	base := strings.Replace(baseConfig(t, db, ""), "delivery:\n", "delivery:\n  concurrency: 1\n", 1)
	cfg := parseConfig(t, base+fmt.Sprintf(`webhooks:
  - { id: 1, topic: product.created, delivery_url: %q, secret: %q }
`, srv.URL, secret))
	in := start(t, cfg)
	waitStreaming(t, in)
	const n = 12
	insertProducts(t, db, 1, n)

	var maxLag, maxQueue float64
	walhooktest.WaitProgress(t, fmt.Sprintf("%d deliveries through the slow receiver", n), walhooktest.Patience(), func() (bool, int) {
		lag, _ := series(t, in.reg, "walhook_replication_lag_seconds")
		queue, _ := series(t, in.reg, "walhook_queue_depth", "webhook", "1")
		maxLag, maxQueue = max(maxLag, lag), max(maxQueue, queue)
		got := len(recv.Accepted())
		return got >= n, got
	})
	if maxLag <= 0 {
		t.Error("walhook_replication_lag_seconds stayed 0 while the receiver was slow")
	}
	if maxQueue <= 0 {
		t.Error("walhook_queue_depth stayed 0 while the receiver was slow")
	}
	if !walhooktest.Holds(func() bool {
		lag, _ := series(t, in.reg, "walhook_replication_lag_seconds")
		queue, _ := series(t, in.reg, "walhook_queue_depth", "webhook", "1")
		inflight, _ := series(t, in.reg, "walhook_deliveries_in_flight")
		return lag == 0 && queue == 0 && inflight == 0
	}) {
		lag, _ := series(t, in.reg, "walhook_replication_lag_seconds")
		queue, _ := series(t, in.reg, "walhook_queue_depth", "webhook", "1")
		t.Errorf("after draining: lag %vs, queue %v; want both 0", lag, queue)
	}
	t.Logf("peak lag %.2fs, peak queue depth %v", maxLag, maxQueue)
}

// TestReadinessAndTakeover walks /readyz through streaming, standby,
// shutting down and a standby's takeover, with /healthz answering 200
// throughout.
func TestReadinessAndTakeover(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, shop.Schema)
	recv := receiver.New(secrets(1))
	var holdFirst atomic.Bool
	holdFirst.Store(true)
	entered, release := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-WC-Webhook-Topic") != "" && holdFirst.CompareAndSwap(true, false) {
			close(entered)
			<-release
		}
		recv.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		if holdFirst.Load() {
			return
		}
		select {
		case <-release:
		default:
			close(release)
		}
	})
	// The held delivery waits for the test, however slow: neither its
	// timeout nor the shutdown grace may end it first.
	base := strings.NewReplacer("timeout: 30s", "timeout: 5m", "shutdown_grace: 30s", "shutdown_grace: 10m").Replace(baseConfig(t, db, ""))
	yaml := base + fmt.Sprintf(`webhooks:
  - { id: 1, topic: product.created, delivery_url: %q, secret: %q }
`, srv.URL, secret)

	first := start(t, parseConfig(t, yaml))
	// Before streaming, /readyz is 503 with a reason; then 200 streaming.
	if !walhooktest.Holds(func() bool {
		code, body := readyz(t, first.addr)
		if code != http.StatusOK && (code != http.StatusServiceUnavailable || body["reason"] == "") {
			t.Fatalf("/readyz answered %d %v before streaming, want 503 with a reason", code, body)
		}
		return code == http.StatusOK
	}) {
		t.Fatalf("the first instance did not stream after %s", walhooktest.Patience())
	}
	if _, body := readyz(t, first.addr); body["status"] != "streaming" {
		t.Errorf("/readyz status %q, want streaming", body["status"])
	}

	second := start(t, parseConfig(t, yaml))
	if !walhooktest.Holds(func() bool {
		code, body := readyz(t, second.addr)
		return code == http.StatusServiceUnavailable && body["status"] == "standby"
	}) {
		code, body := readyz(t, second.addr)
		t.Fatalf("the second instance's /readyz says %d %v, want 503 standby", code, body)
	}
	if _, body := readyz(t, second.addr); body["reason"] == "" {
		t.Error("standby /readyz gives no reason")
	}
	if !walhooktest.Holds(func() bool {
		v, _ := series(t, second.reg, "walhook_replication_standby")
		s, _ := series(t, second.reg, "walhook_replication_streaming")
		return v == 1 && s == 0
	}) {
		t.Error("walhook_replication_standby is not 1 (or streaming not 0) on the standby")
	}
	for _, in := range []*instance{first, second} {
		if code, _ := get(t, in.addr, "/healthz"); code != http.StatusOK {
			t.Errorf("/healthz answered %d", code)
		}
	}

	// A delivery in flight holds the first instance's shutdown: meanwhile
	// /readyz says it is shutting down.
	insertProducts(t, db, 1, 1)
	select {
	case <-entered:
	case <-time.After(walhooktest.Patience()):
		t.Fatal("the first delivery did not reach the receiver")
	}
	first.Shutdown()
	if !walhooktest.Holds(func() bool {
		code, body := readyz(t, first.addr)
		return code == http.StatusServiceUnavailable && body["status"] == "shutting_down" && body["reason"] != ""
	}) {
		t.Error("/readyz did not say shutting_down while an in-flight delivery finished")
	}
	if code, _ := get(t, first.addr, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz answered %d while shutting down", code)
	}
	close(release)
	if err := first.Wait(t); err != nil {
		t.Errorf("the first instance returned %v", err)
	}

	// The standby takes over and delivers later changes.
	if !walhooktest.Holds(func() bool { code, _ := readyz(t, second.addr); return code == http.StatusOK }) {
		t.Fatalf("the standby did not take over after %s", walhooktest.Patience())
	}
	insertProducts(t, db, 2, 3)
	if !recv.Wait(walhooktest.Patience(), func(r *receiver.Receiver) bool { return len(r.Accepted()) >= 3 }) {
		t.Fatalf("after the takeover %d of 3 deliveries arrived", len(recv.Accepted()))
	}
	waitSettled(t, db, uniqueName(t))
	if got := len(recv.Accepted()); got != 3 {
		t.Errorf("%d deliveries, want 3: the in-flight one finished by the first instance was sent again", got)
	}
	if v, _ := series(t, second.reg, "walhook_replication_standby"); v != 0 {
		t.Error("walhook_replication_standby still 1 after the takeover")
	}
}

// TestDeliveryLogs checks the one-line-per-attempt delivery log and that
// no secret or excluded value reaches the logs, at debug level, on
// success and on failure.
func TestDeliveryLogs(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, shop.Schema)
	const (
		hookSecret  = "hook-secret-4d1f"
		dbPassword  = "db-password-8c2e"
		apiSecret   = "cs_5a5b5c5d5e5f5a5b5c5d5e5f5a5b5c5d5e5f5a5b"
		queryToken  = "query-token-77aa"
		basicPass   = "basic-pass-99bb"
		excludedVal = "excluded-hash-31cc"
	)
	recv := receiver.New(map[int64]string{1: hookSecret, 2: hookSecret})
	bigBody := "failure-detail:" + strings.Repeat("x", 10000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/fail") && r.Header.Get("X-WC-Webhook-Topic") != "" {
			recv.ServeHTTP(httptest.NewRecorder(), r)
			w.WriteHeader(http.StatusBadGateway)
			_, _ = io.WriteString(w, bigBody)
			return
		}
		recv.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close() // connections to it are refused

	dbURL := strings.Replace(db, "postgres@", "postgres:"+dbPassword+"@", 1)
	if dbURL == db {
		t.Fatalf("cannot add a password to %s", db)
	}
	withCreds := func(base, path string) string {
		return strings.Replace(base, "http://", "http://hookuser:"+basicPass+"@", 1) + path + "?token=" + queryToken
	}
	yaml := baseConfig(t, dbURL, fmt.Sprintf(`api:
  keys:
    - { consumer_key: ck_0123456789abcdef0123456789abcdef01234567, consumer_secret: %s, permissions: read }
`, apiSecret)) + fmt.Sprintf(`resources:
  customer: { table: public.customers, exclude_columns: [password_hash] }
webhooks:
  - { id: 1, topic: customer.created, delivery_url: %q, secret: %q }
  - { id: 2, topic: customer.created, delivery_url: %q, secret: %q }
  - { id: 3, topic: customer.created, delivery_url: %q, secret: %q }
`, withCreds(srv.URL, "/ok"), hookSecret, withCreds(srv.URL, "/fail"), hookSecret, withCreds(closedURL, "/refused"), hookSecret)
	cfg := parseConfig(t, yaml)
	if cfg.Log.Level != slog.LevelDebug {
		t.Fatalf("log level %v, want debug", cfg.Log.Level)
	}
	in := start(t, cfg)
	waitStreaming(t, in)
	pgtest.Exec(t, db, fmt.Sprintf(`INSERT INTO customers (id, email, first_name, last_name, password_hash) VALUES (1, 'a@example.com', 'Ann', 'Lee', '%s')`, excludedVal))

	if !recv.Wait(walhooktest.Patience(), func(r *receiver.Receiver) bool {
		return countFor(r.Accepted(), 1) >= 1 && countFor(r.Deliveries(), 2) >= 2
	}) {
		t.Fatal("the deliveries did not reach the receiver")
	}
	// Webhook 3's attempts are refused at connect: wait for its log lines.
	type line struct {
		Level        string  `json:"level"`
		Msg          string  `json:"msg"`
		Source       string  `json:"source"`
		WebhookID    int64   `json:"webhook_id"`
		Topic        string  `json:"topic"`
		DeliveryID   string  `json:"delivery_id"`
		URL          string  `json:"url"`
		Attempt      int     `json:"attempt"`
		Duration     float64 `json:"duration_seconds"`
		ResponseCode *int    `json:"response_code"`
		ResponseBody string  `json:"response_body"`
		Error        string  `json:"error"`
	}
	parse := func() (byHook map[int64][]line) {
		byHook = map[int64][]line{}
		for _, s := range strings.Split(strings.TrimSpace(in.logs.String()), "\n") {
			var l line
			if err := json.Unmarshal([]byte(s), &l); err != nil {
				t.Fatalf("a log line is not JSON: %q", s)
			}
			if l.Source == "webhooks-delivery" {
				byHook[l.WebhookID] = append(byHook[l.WebhookID], l)
			}
		}
		return byHook
	}
	if !walhooktest.Holds(func() bool { b := parse(); return len(b[2]) >= 2 && len(b[3]) >= 2 }) {
		t.Fatal("no delivery log lines for the failing webhooks")
	}
	in.stop(t) // no more attempts: lines and receiver are final

	byHook := parse()
	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	for id, path := range map[int64]string{1: "/ok", 2: "/fail", 3: "/refused"} {
		lines := byHook[id]
		host := srv.URL
		if id == 3 {
			host = closedURL
			if len(lines) == 0 {
				t.Errorf("webhook 3: no delivery log line")
			}
		} else if got := countFor(recv.Deliveries(), id); len(lines) != got {
			t.Errorf("webhook %d: %d delivery log lines for %d attempts, want one per attempt", id, len(lines), got)
		}
		for i, l := range lines {
			if l.Msg != "webhook delivery" || l.Topic != "customer.created" || !hex32.MatchString(l.DeliveryID) ||
				l.Attempt < 1 || l.Duration <= 0 || l.ResponseCode == nil {
				t.Errorf("webhook %d line %d lacks fields: %+v", id, i, l)
			}
			if want := host + path + "?redacted"; l.URL != want {
				t.Errorf("webhook %d: url %q, want %q", id, l.URL, want)
			}
			switch id {
			case 1:
				if l.Level != "INFO" || *l.ResponseCode != 200 {
					t.Errorf("webhook 1: %+v, want INFO 200", l)
				}
			case 2:
				if l.Level != "WARN" || *l.ResponseCode != http.StatusBadGateway || !strings.HasPrefix(l.ResponseBody, "failure-detail:") {
					t.Errorf("webhook 2: level %s code %v body %.40q, want WARN 502 and the body's start", l.Level, *l.ResponseCode, l.ResponseBody)
				}
				if len(l.ResponseBody) > 1024 {
					t.Errorf("webhook 2: response body excerpt of %d bytes is not bounded", len(l.ResponseBody))
				}
			case 3:
				if l.Level != "WARN" || l.Error == "" {
					t.Errorf("webhook 3: %+v, want WARN with an error", l)
				}
			}
		}
	}
	// Attempts number up per delivery.
	if ls := byHook[2]; len(ls) >= 2 && (ls[0].Attempt != 1 || ls[1].Attempt != 2 || ls[0].DeliveryID != ls[1].DeliveryID) {
		t.Errorf("webhook 2: attempts %d, %d of deliveries %s, %s; want 1, 2 of one delivery", ls[0].Attempt, ls[1].Attempt, ls[0].DeliveryID, ls[1].DeliveryID)
	}
	logs := in.logs.String()
	if !strings.Contains(logs, `"level":"DEBUG"`) {
		t.Error("no debug line: the test did not cover debug level")
	}
	for name, s := range map[string]string{
		"webhook secret": hookSecret, "database password": dbPassword, "API consumer secret": apiSecret,
		"query token": queryToken, "basic-auth password": basicPass, "basic-auth user": "hookuser", "excluded column value": excludedVal,
	} {
		if strings.Contains(logs, s) {
			t.Errorf("the %s reached the logs", name)
		}
	}
	for _, d := range recv.Deliveries() {
		if strings.Contains(string(d.Body), excludedVal) {
			t.Error("an excluded column was delivered")
		}
	}
}

// TestReload: a reload adds a webhook, refuses a broken configuration
// (counted, the running one kept) and a postgres change (restart needed),
// and accepts a fixed one.
func TestReload(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, shop.Schema)
	recv, url := newReceiver(t, secrets(2))
	base := baseConfig(t, db, "")
	hook1 := fmt.Sprintf("  - { id: 1, topic: product.created, delivery_url: %q, secret: %q }\n", url+"/one", secret)
	hook2 := fmt.Sprintf("  - { id: 2, topic: product.created, delivery_url: %q, secret: %q }\n", url+"/two", secret)

	var mu sync.Mutex
	next := ""
	reloadC := make(chan struct{})
	in := startWith(t, parseConfig(t, base+"webhooks:\n"+hook1), func(o *app.Options) {
		o.Reload = reloadC
		o.Load = func() (*config.Config, error) {
			mu.Lock()
			defer mu.Unlock()
			return config.Parse("reload.yaml", []byte(next), func(string) (string, bool) { return "", false })
		}
	})
	waitStreaming(t, in)
	reload := func(yaml string) {
		t.Helper()
		mu.Lock()
		next = yaml
		mu.Unlock()
		select {
		case reloadC <- struct{}{}:
		case <-time.After(walhooktest.Patience()):
			t.Fatal("walhook did not take the reload request")
		}
	}
	waitReloads := func(success, failure float64) {
		t.Helper()
		if !walhooktest.Holds(func() bool {
			s, _ := series(t, in.reg, "walhook_config_reloads_total", "result", "success")
			f, _ := series(t, in.reg, "walhook_config_reloads_total", "result", "failure")
			return s == success && f == failure
		}) {
			s, _ := series(t, in.reg, "walhook_config_reloads_total", "result", "success")
			f, _ := series(t, in.reg, "walhook_config_reloads_total", "result", "failure")
			t.Fatalf("reloads success=%v failure=%v, want %v and %v", s, f, success, failure)
		}
	}
	row := 0
	// deliver inserts a product and waits until exactly the webhooks in
	// want have received it.
	deliver := func(step string, want ...int64) {
		t.Helper()
		row++
		before := map[int64]int{1: countFor(recv.Accepted(), 1), 2: countFor(recv.Accepted(), 2)}
		insertProducts(t, db, row, row)
		if !recv.Wait(walhooktest.Patience(), func(r *receiver.Receiver) bool {
			for _, id := range want {
				if countFor(r.Accepted(), id) <= before[id] {
					return false
				}
			}
			return true
		}) {
			t.Fatalf("%s: the change did not reach webhooks %v", step, want)
		}
		waitSettled(t, db, uniqueName(t)) // a delivery to a webhook not in want would have been made
		for id := int64(1); id <= 2; id++ {
			got := countFor(recv.Accepted(), id) - before[id]
			exp := 0
			for _, w := range want {
				if w == id {
					exp = 1
				}
			}
			if got != exp {
				t.Errorf("%s: webhook %d got %d deliveries, want %d", step, id, got, exp)
			}
		}
	}
	deliver("before any reload", 1)

	reload(base + "webhooks:\n" + hook1 + hook2)
	waitReloads(1, 0)
	deliver("after adding webhook 2", 1, 2)

	reload(base + "webhooks:\n" + hook1 + hook2 + "  - { id: 3, topic: no.such_event, delivery_url: ftp://x }\n")
	waitReloads(1, 1)
	deliver("after a broken configuration", 1, 2)

	reload(base + "webhooks:\n" + hook2)
	waitReloads(2, 1)
	deliver("after the fixed configuration removed webhook 1", 2)

	changed := strings.Replace(base, "status_interval: 1s", "status_interval: 2s", 1)
	reload(changed + "webhooks:\n" + hook1 + hook2)
	waitReloads(2, 2)
	if !strings.Contains(in.logs.String(), "need a restart") || !strings.Contains(in.logs.String(), "postgres") {
		t.Error("a refused postgres change was not logged with the restart message")
	}
	deliver("after a refused postgres change", 2)
}
