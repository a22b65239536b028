package dispatch

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/state"
	"github.com/walhook/walhook/topics"
	"github.com/walhook/walhook/webhook"
)

// policyReceiver is a real HTTP receiver whose answer depends on the row.
type policyReceiver struct {
	mu       sync.Mutex
	answer   func(row int) int
	requests int
	byRow    map[int][]int // accepted versions of each row, in arrival order
	accepted int
}

func (r *policyReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	var ev struct{ Row, V int }
	if err := json.Unmarshal(body, &ev); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	code := r.answer(ev.Row)
	if code < 300 {
		r.byRow[ev.Row] = append(r.byRow[ev.Row], ev.V)
		r.accepted++
	}
	w.WriteHeader(code)
}

func (r *policyReceiver) setAnswer(f func(row int) int) {
	r.mu.Lock()
	r.answer = f
	r.mu.Unlock()
}

func (r *policyReceiver) counts() (requests, accepted int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests, r.accepted
}

// harness runs a Dispatcher with one webhook on a fake store and a fake
// clock, against a real receiver.
type harness struct {
	t         *testing.T
	d         *Dispatcher
	store     *fakeStore
	clock     *fakeClock
	recv      *policyReceiver
	in        chan *Batch
	commit    state.LSN
	confirmed atomic.Uint64
}

func newHarness(t *testing.T, tune func(*config.Delivery)) *harness {
	t.Helper()
	recv := &policyReceiver{answer: func(int) int { return http.StatusOK }, byRow: make(map[int][]int)}
	srv := httptest.NewServer(recv)
	t.Cleanup(srv.Close)
	h := startHarness(t, Definition{DeliveryURL: srv.URL}, tune)
	h.recv = recv
	return h
}

// startHarness runs a Dispatcher with webhook 1 (order.updated; the
// delivery URL and signature taken from def) on a fake store and clock.
func startHarness(t *testing.T, def Definition, tune func(*config.Delivery)) *harness {
	t.Helper()
	dl := config.Defaults().Delivery
	dl.AllowPrivateNetworks = true
	dl.Retry.Attempts = 1
	if tune != nil {
		tune(&dl)
	}
	h := &harness{t: t, store: newFakeStore(), clock: newFakeClock(), in: make(chan *Batch)}
	h.d = New(Options{
		Source: "https://shop.example/", Version: "test", Slot: "s", Delivery: dl, Store: h.store,
		Confirm: func(end state.LSN) { h.confirmed.Store(uint64(end)) },
		Metrics: NewMetrics(prometheus.NewRegistry()), Clock: h.clock,
		Logger: discardLogger(), DeliveryLogger: discardLogger(),
	})
	topic, _ := topics.Parse("order.updated")
	if def.Secret == "" {
		def.Secret = "s"
	}
	def = Definition{ID: 1, Name: "orders", Topic: topic, DeliveryURL: def.DeliveryURL, Secret: def.Secret, Signature: def.Signature}
	ctx, cancel := context.WithCancel(context.Background())
	if err := h.d.SetConfigWebhooks(ctx, []Definition{def}, nil); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- h.d.Run(ctx, h.in) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return h
}

// send routes one transaction with version v of each row.
func (h *harness) send(v int, rows ...int) {
	h.commit += 10
	b := &Batch{Commit: h.commit, End: h.commit + 1, Last: true, CommitTime: h.clock.Now()}
	topic, _ := topics.Parse("order.updated")
	for i, r := range rows {
		key := fmt.Sprint(r)
		b.Events = append(b.Events, &Event{
			Event:  topics.Event{Topic: topic, Key: key, Index: uint32(i), Body: []byte(fmt.Sprintf(`{"row":%d,"v":%d}`, r, v))},
			RowKey: RowKey("order", key), Commit: h.commit,
		})
	}
	h.in <- b
}

// settled waits until every transaction sent is settled.
func (h *harness) settled() {
	h.t.Helper()
	h.waitFor("every transaction settled", func() bool { return h.confirmed.Load() == uint64(h.commit+1) })
}

// waitFor waits for cond, failing only when nothing changes for a long
// while (progress is measured by the receiver's request count).
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	last, lastChange := -1, time.Now()
	for !cond() {
		n := 0
		if h.recv != nil {
			n, _ = h.recv.counts()
		}
		if n != last {
			last, lastChange = n, time.Now()
		}
		if time.Since(lastChange) > 30*time.Second {
			h.t.Fatalf("no progress for 30s waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// fire advances the clock to the drainer's next timer.
func (h *harness) fire() time.Duration {
	h.t.Helper()
	var d time.Duration
	h.waitFor("a timer to be armed", func() bool {
		var ok bool
		d, ok = h.clock.next()
		return ok
	})
	h.clock.Advance(d)
	return d
}

func (h *harness) breakerOpen() bool {
	h.d.mu.Lock()
	hk := h.d.hooks[1]
	h.d.mu.Unlock()
	return hk.breakerOpen()
}

// TestPoisonRowWaitsAlone: a receiver rejecting one row's deliveries holds
// back only that row; a thousand others are delivered live, in order; the
// breaker stays closed; the row goes out, in order, once it is accepted.
func TestPoisonRowWaitsAlone(t *testing.T) {
	h := newHarness(t, nil)
	const poison = 13
	h.recv.setAnswer(func(row int) int {
		if row == poison {
			return http.StatusBadRequest
		}
		return http.StatusOK
	})
	for v := 1; v <= 2; v++ {
		for start := 1; start <= 1000; start += 100 {
			rows := make([]int, 100)
			for i := range rows {
				rows[i] = start + i
			}
			h.send(v, rows...)
		}
	}
	h.settled()
	h.waitFor("every healthy row's two versions", func() bool { _, ok := h.recv.counts(); return ok == 999*2 })
	requests, _ := h.recv.counts()
	if requests != 999*2+1 {
		t.Errorf("%d requests, want %d: the poison row's first delivery once, its second waiting untried", requests, 999*2+1)
	}
	if h.breakerOpen() {
		t.Error("the breaker opened for one bad row")
	}
	if st, _ := h.store.status(1); st != webhook.StatusActive {
		t.Errorf("status %s, want active", st)
	}
	if n := h.store.parkedRows(1); n != 2 {
		t.Errorf("%d parked, want the poison row's 2", n)
	}
	for row, vs := range h.recv.byRow {
		if len(vs) != 2 || vs[0] != 1 || vs[1] != 2 {
			t.Fatalf("row %d received versions %v, want [1 2]", row, vs)
		}
	}

	// The parked schedule retries the row alone; it still fails.
	h.fire()
	h.waitFor("a parked retry of the poison row", func() bool { n, _ := h.recv.counts(); return n == requests+1 })
	// Accepted now: both versions arrive, in order.
	h.recv.setAnswer(func(int) int { return http.StatusOK })
	for n := 0; ; n++ {
		if _, ok := h.recv.counts(); ok == 999*2+2 {
			break
		}
		if n > 20 {
			t.Fatal("the poison row's deliveries did not go out once accepted")
		}
		h.fire()
		time.Sleep(5 * time.Millisecond)
	}
	if vs := h.recv.byRow[poison]; len(vs) != 2 || vs[0] != 1 || vs[1] != 2 {
		t.Errorf("poison row received %v, want [1 2]", vs)
	}
}

// TestBreakerOpensAcrossRowsAndProbes: failures of three distinct rows open
// the breaker; live events then park untried; one probe goes out on a
// doubling schedule; its first success drains everything in row order.
func TestBreakerOpensAcrossRowsAndProbes(t *testing.T) {
	h := newHarness(t, func(d *config.Delivery) { d.Concurrency = 1 })
	h.recv.setAnswer(func(int) int { return http.StatusServiceUnavailable })
	h.send(1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	h.settled()
	if n, _ := h.recv.counts(); n != breakerRows {
		t.Fatalf("%d requests before the breaker opened, want %d (one per failing row)", n, breakerRows)
	}
	if !h.breakerOpen() {
		t.Fatal("the breaker did not open after failures across rows")
	}
	// Probes: 1s, then 2s, then 4s.
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		if d := h.fire(); d != want {
			t.Errorf("probe %d after %v, want %v", i+1, d, want)
		}
		h.waitFor("a probe", func() bool { n, _ := h.recv.counts(); return n == breakerRows+i+1 })
	}
	h.send(2, 11, 12) // parks untried while the breaker is open
	h.settled()
	if n, _ := h.recv.counts(); n != breakerRows+3 {
		t.Errorf("live events were tried while the breaker was open: %d requests", n)
	}
	h.recv.setAnswer(func(int) int { return http.StatusOK })
	h.fire()
	h.waitFor("everything parked to drain", func() bool { _, ok := h.recv.counts(); return ok == 12 })
	h.waitFor("the parked table to empty", func() bool { return h.store.parkedRows(1) == 0 })
	if h.breakerOpen() {
		t.Error("the breaker is still open after a success")
	}
	if st, _ := h.store.status(1); st != webhook.StatusActive {
		t.Errorf("status %s, want active: an outage of seconds never disables", st)
	}
	h.send(3, 1)
	h.waitFor("a live delivery after recovery", func() bool { _, ok := h.recv.counts(); return ok == 13 })
}

// TestDisableRule: consecutive failures beyond max_failures disable only
// once nothing has succeeded for disable_after; 0 is WooCommerce's rule.
func TestDisableRule(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after time.Duration
	}{{"count alone", 0}, {"after an hour", time.Hour}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(d *config.Delivery) {
				d.Concurrency = 1
				d.MaxFailures = 2
				d.DisableAfter = tc.after
			})
			h.recv.setAnswer(func(int) int { return http.StatusInternalServerError })
			h.send(1, 1, 2, 3)
			h.settled()
			st, n := h.store.status(1)
			if n != 3 {
				t.Fatalf("failure count %d, want 3", n)
			}
			if tc.after == 0 {
				if st != webhook.StatusDisabled {
					t.Fatalf("status %s after 3 failures with max_failures 2, want disabled", st)
				}
				return
			}
			if st != webhook.StatusActive {
				t.Fatalf("status %s after 3 quick failures, want active until an hour without success", st)
			}
			// Probes fail for an hour: then the webhook is disabled.
			for h.clock.Now().Sub(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) < time.Hour {
				if st, _ := h.store.status(1); st != webhook.StatusActive {
					t.Fatalf("disabled after %v, before disable_after", h.clock.Now().Sub(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)))
				}
				before, _ := h.recv.counts()
				h.fire()
				h.waitFor("a probe", func() bool { n, _ := h.recv.counts(); return n > before })
			}
			h.waitFor("the webhook to be disabled", func() bool { st, _ := h.store.status(1); return st == webhook.StatusDisabled })
		})
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestPausedWebhooksHoldNoLanes pins a hostile-input finding: a thousand
// paused webhooks at concurrency 256 held 258,000 goroutines, one per
// lane. Lanes now start on first use, and a paused webhook's events are
// settled without reaching a lane.
func TestPausedWebhooksHoldNoLanes(t *testing.T) {
	h := newHarness(t, func(d *config.Delivery) { d.Concurrency = 256 })
	before := runtime.NumGoroutine()
	topic, _ := topics.Parse("order.updated")
	defs := []Definition{{ID: 1, Name: "orders", Topic: topic, DeliveryURL: "http://127.0.0.1:9/", Secret: "s"}}
	statuses := map[int64]webhook.Status{1: webhook.StatusActive}
	for id := int64(2); id <= 1001; id++ {
		defs = append(defs, Definition{ID: id, Name: "paused", Topic: topic, DeliveryURL: "http://127.0.0.1:9/", Secret: "s"})
		statuses[id] = webhook.StatusPaused
	}
	if err := h.d.SetConfigWebhooks(context.Background(), defs, statuses); err != nil {
		t.Fatal(err)
	}
	h.send(1, 1, 2, 3)
	h.settled()
	// Each webhook keeps its parker and drainer; no lane runs for a
	// paused one.
	if n := runtime.NumGoroutine() - before; n > 3*1000 {
		t.Errorf("%d goroutines for 1,000 paused webhooks at concurrency 256, want at most 3,000", n)
	}
	h.d.mu.Lock()
	defer h.d.mu.Unlock()
	for id, hk := range h.d.hooks {
		if id == 1 {
			continue
		}
		for i := range hk.lanes {
			if hk.lanes[i].Load() != nil {
				t.Fatalf("paused webhook %d started lane %d", id, i)
			}
		}
	}
}

// TestDrainIsBoundedByBytes pins a hostile-input finding: re-enabling a
// webhook with many large parked payloads read them all at once. A drain
// reads a page at a time, bounded by bytes.
func TestDrainIsBoundedByBytes(t *testing.T) {
	h := newHarness(t, func(d *config.Delivery) { d.Concurrency = 4 })
	h.store.setStatus(1, webhook.StatusDisabled)
	if err := h.d.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	const rows, size = 80, 256 << 10
	big := strings.Repeat("x", size)
	topic, _ := topics.Parse("order.updated")
	h.commit += 10
	b := &Batch{Commit: h.commit, End: h.commit + 1, Last: true}
	for r := 1; r <= rows; r++ {
		key := fmt.Sprint(r)
		b.Events = append(b.Events, &Event{
			Event:  topics.Event{Topic: topic, Key: key, Index: uint32(r), Body: []byte(fmt.Sprintf(`{"row":%d,"v":1,"pad":%q}`, r, big))},
			RowKey: RowKey("order", key), Commit: h.commit,
		})
	}
	h.in <- b
	h.settled()
	if n := h.store.parkedRows(1); n != rows {
		t.Fatalf("%d parked while disabled, want %d", n, rows)
	}
	h.store.maxPage.Store(0)
	h.store.setStatus(1, webhook.StatusActive)
	if err := h.d.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.waitFor("everything parked to drain", func() bool { _, ok := h.recv.counts(); return ok == rows })
	if max := h.store.maxPage.Load(); max > drainPageBytes+size+100 {
		t.Errorf("a drain read %d bytes of parked bodies at once, want at most %d", max, drainPageBytes+size+100)
	}
}

// TestHeadersOnTheWire reads a delivery's request head as bytes: header
// names are spelled as WooCommerce spells them (X-WC-…, not Go's
// canonical X-Wc-…), over HTTP/1.1, and Standard Webhooks headers are
// added to WooCommerce's, never instead of them.
func TestHeadersOnTheWire(t *testing.T) {
	for _, sig := range webhook.Signatures {
		t.Run(string(sig), func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			head := make(chan string, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				r := bufio.NewReader(c)
				var sb strings.Builder
				for {
					line, err := r.ReadString('\n')
					sb.WriteString(line)
					if err != nil || line == "\r\n" {
						break
					}
				}
				head <- sb.String()
				fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			}()
			secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("a standard webhooks key of 32 b."))
			h := startHarness(t, Definition{DeliveryURL: "http://" + ln.Addr().String() + "/hook", Signature: sig, Secret: secret}, nil)
			h.send(1, 7)
			got := <-head
			want := []string{"POST /hook HTTP/1.1\r\n", "\r\nX-WC-Webhook-Source: ", "\r\nX-WC-Webhook-Topic: order.updated\r\n",
				"\r\nX-WC-Webhook-Resource: order\r\n", "\r\nX-WC-Webhook-Event: updated\r\n", "\r\nX-WC-Webhook-Signature: ",
				"\r\nX-WC-Webhook-ID: 1\r\n", "\r\nX-WC-Webhook-Delivery-ID: ", "\r\nX-WC-Delivery-ID: ", "\r\nContent-Type: application/json\r\n"}
			if sig.StandardWebhooks() {
				want = append(want, "\r\nWebhook-Id: ", "\r\nWebhook-Timestamp: ", "\r\nWebhook-Signature: v1,")
			} else if strings.Contains(got, "Webhook-Signature: v1,") {
				t.Errorf("Standard Webhooks headers sent with signature %s", sig)
			}
			for _, w := range want {
				if !strings.Contains(got, w) {
					t.Errorf("request head lacks %q:\n%s", w, got)
				}
			}
			h.settled()
		})
	}
}

// TestBadRowsRetriedTogetherKeepTheBreakerClosed pins a bug found under
// load: five bad rows, retried together by the parked schedule, failed
// across five rows with no success between and opened the breaker, whose
// probe then kept trying a bad row: healthy rows waited forever. Failed
// retries of rows that had failed before are those rows' problem, and
// each probe tries the next row.
func TestBadRowsRetriedTogetherKeepTheBreakerClosed(t *testing.T) {
	h := newHarness(t, nil)
	bad := map[int]bool{1: true, 2: true, 3: true, 4: true, 5: true}
	h.recv.setAnswer(func(row int) int {
		if bad[row] {
			return http.StatusBadRequest
		}
		return http.StatusOK
	})
	for r := 1; r <= 5; r++ {
		// Each bad row's failure is next to a success: its transaction
		// settles before the next is sent, so at most two failures (of
		// neighbouring transactions, delivered in parallel lanes) come
		// without a success between them.
		h.send(1, r, 100+r)
		h.settled()
	}
	if n := h.store.parkedRows(1); n != 5 {
		t.Fatalf("%d parked, want the 5 bad rows", n)
	}
	for i := 0; i < 15; i++ { // each bad row retried a few times
		before, _ := h.recv.counts()
		h.fire()
		h.waitFor("a bad row's parked retry", func() bool { n, _ := h.recv.counts(); return n > before })
		if h.breakerOpen() {
			t.Fatal("retries of rows that had failed before opened the breaker")
		}
	}
	_, ok := h.recv.counts()
	h.send(2, 200, 201, 202)
	h.waitFor("healthy rows delivered live", func() bool { _, n := h.recv.counts(); return n == ok+3 })
}
