package dispatch

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/state"
	"github.com/walhook/walhook/topics"
	"github.com/walhook/walhook/webhook"
)

// topicReceiver records each request's webhook, topic headers and body.
type topicReceiver struct {
	mu   sync.Mutex
	got  map[string][]string // webhook id -> "topic resource event body", in arrival order
	reqs int
}

func (r *topicReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	h := req.Header
	line := strings.Join([]string{h.Get("X-WC-Webhook-Topic"), h.Get("X-WC-Webhook-Resource"), h.Get("X-WC-Webhook-Event"), string(body)}, " ")
	r.mu.Lock()
	r.got[h.Get("X-WC-Webhook-ID")] = append(r.got[h.Get("X-WC-Webhook-ID")], line)
	r.reqs++
	r.mu.Unlock()
}

func (r *topicReceiver) of(id string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got[id]...)
}

// lockedBuffer is a log destination safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestWildcardAndFilters routes a resource's life through a <resource>.*
// webhook, an order.updated webhook with a filter, a wildcard webhook
// with a filter on event, and one whose filter fails at run time: each
// receives exactly what matches, with each event's own topic in the
// headers and each row's events in commit order; filtered-out events are
// settled without a delivery, counted, and never logged as deliveries;
// the failing filter is logged once a minute and counted.
func TestWildcardAndFilters(t *testing.T) {
	recv := &topicReceiver{got: make(map[string][]string)}
	srv := httptest.NewServer(recv)
	t.Cleanup(srv.Close)
	dl := config.Defaults().Delivery
	dl.AllowPrivateNetworks = true
	reg := prometheus.NewRegistry()
	metrics := NewMetrics(reg)
	var logs, deliveryLogs lockedBuffer
	clock := newFakeClock()
	var confirmed atomic.Uint64
	d := New(Options{
		Source: "https://shop.example/", Version: "test", Slot: "s", Delivery: dl, Store: newFakeStore(),
		Confirm: func(end state.LSN) { confirmed.Store(uint64(end)) },
		Metrics: metrics, Clock: clock,
		Logger:         slog.New(slog.NewTextHandler(&logs, nil)),
		DeliveryLogger: slog.New(slog.NewTextHandler(&deliveryLogs, nil)),
	})
	parse := func(s string) topics.Topic {
		tp, err := topics.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return tp
	}
	defs := []Definition{
		{ID: 1, Name: "all orders", Topic: parse("order.*"), DeliveryURL: srv.URL, Secret: "s"},
		{ID: 2, Name: "completed", Topic: parse("order.updated"), DeliveryURL: srv.URL, Secret: "s",
			Filter: `row.status == "completed" && old.status != "completed"`},
		{ID: 3, Name: "created or deleted", Topic: parse("order.*"), DeliveryURL: srv.URL, Secret: "s",
			Filter: `event != "updated"`},
		{ID: 4, Name: "failing", Topic: parse("order.*"), DeliveryURL: srv.URL, Secret: "s",
			Filter: `row.colour == "red"`},
		{ID: 5, Name: "products", Topic: parse("product.*"), DeliveryURL: srv.URL, Secret: "s"},
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := d.SetConfigWebhooks(ctx, defs, nil); err != nil {
		t.Fatal(err)
	}
	in := make(chan *Batch)
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, in) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	// Rows 1 to 3 of order: created pending, updated processing, then
	// completed, touched while completed, deleted; each in its own
	// transaction. Old rows are sent as REPLICA IDENTITY FULL would.
	var commit state.LSN
	send := func(events ...topics.Event) {
		commit += 10
		b := &Batch{Commit: commit, End: commit + 1, Last: true, CommitTime: clock.Now()}
		for i, e := range events {
			e.Index = uint32(i)
			b.Events = append(b.Events, &Event{Event: e, RowKey: RowKey(e.Topic.Resource, e.Key), Commit: commit})
		}
		in <- b
	}
	row := func(id int, status string) []byte { return fmt.Appendf(nil, `{"id":%d,"status":%q}`, id, status) }
	steps := []struct{ event, from, to string }{
		{"created", "", "pending"},
		{"updated", "pending", "processing"},
		{"updated", "processing", "completed"},
		{"updated", "completed", "completed"},
		{"deleted", "completed", ""},
	}
	for _, s := range steps {
		var evs []topics.Event
		for id := 1; id <= 3; id++ {
			e := topics.Event{Topic: parse("order." + s.event), Key: fmt.Sprint(id)}
			switch s.event {
			case "created":
				e.Body = row(id, s.to)
			case "updated":
				e.Body, e.Old = row(id, s.to), row(id, s.from)
			case "deleted":
				e.Body, e.Old = fmt.Appendf(nil, `{"id":%d}`, id), row(id, s.from)
			}
			evs = append(evs, e)
		}
		send(evs...)
	}
	send(topics.Event{Topic: parse("product.created"), Key: "9", Body: []byte(`{"id":9}`)})

	deadline := time.Now().Add(60 * time.Second)
	for confirmed.Load() != uint64(commit+1) {
		if time.Now().After(deadline) {
			t.Fatalf("transactions not settled: confirmed %d, want %d", confirmed.Load(), commit+1)
		}
		time.Sleep(2 * time.Millisecond)
	}

	for id := 1; id <= 3; id++ {
		// Webhook 1 (order.*) gets each row's whole life, in order, with
		// each event's own topic.
		var want1 []string
		for _, s := range steps {
			switch s.event {
			case "created":
				want1 = append(want1, fmt.Sprintf(`order.created order created {"id":%d,"status":%q}`, id, s.to))
			case "updated":
				want1 = append(want1, fmt.Sprintf(`order.updated order updated {"id":%d,"status":%q}`, id, s.to))
			case "deleted":
				want1 = append(want1, fmt.Sprintf(`order.deleted order deleted {"id":%d}`, id))
			}
		}
		checkRow(t, "webhook 1", recv.of("1"), id, want1)
		checkRow(t, "webhook 2", recv.of("2"), id, []string{fmt.Sprintf(`order.updated order updated {"id":%d,"status":"completed"}`, id)})
		checkRow(t, "webhook 3", recv.of("3"), id, []string{want1[0], want1[len(want1)-1]})
	}
	if got := recv.of("4"); len(got) != 0 {
		t.Errorf("webhook 4 (failing filter) received %v", got)
	}
	if got := recv.of("5"); len(got) != 1 || got[0] != `product.created product created {"id":9}` {
		t.Errorf("webhook 5 (product.*) received %v", got)
	}

	for _, c := range []struct {
		id                        string
		delivered, filtered, errs float64
	}{{"1", 15, 0, 0}, {"2", 3, 6, 0}, {"3", 6, 9, 0}, {"4", 0, 15, 15}, {"5", 1, 0, 0}} {
		if got := testutil.ToFloat64(metrics.Filtered.WithLabelValues(c.id)); got != c.filtered {
			t.Errorf("webhook %s: walhook_events_filtered_total = %v, want %v", c.id, got, c.filtered)
		}
		if got := testutil.ToFloat64(metrics.FilterErrors.WithLabelValues(c.id)); got != c.errs {
			t.Errorf("webhook %s: walhook_filter_errors_total = %v, want %v", c.id, got, c.errs)
		}
		if got := strings.Count(deliveryLogs.String(), "webhook_id="+c.id+" "); float64(got) != c.delivered {
			t.Errorf("webhook %s: %d delivery log lines, want %v (filtered events are not deliveries)", c.id, got, c.delivered)
		}
	}
	// The webhook's topic label stays its configured topic.
	if got := testutil.ToFloat64(metrics.Deliveries.WithLabelValues("1", "order.*", string(webhook.OutcomeSuccess))); got != 15 {
		t.Errorf(`walhook_deliveries_total{webhook="1",topic="order.*",outcome="success"} = %v, want 15`, got)
	}
	if got := testutil.ToFloat64(metrics.Deliveries.WithLabelValues("2", "order.updated", string(webhook.OutcomeSuccess))); got != 3 {
		t.Errorf(`walhook_deliveries_total{webhook="2",topic="order.updated",outcome="success"} = %v, want 3`, got)
	}
	if n := strings.Count(logs.String(), "webhook filter failed"); n != 1 {
		t.Errorf("the failing filter was logged %d times, want once within a minute:\n%s", n, logs.String())
	}
	// A minute later it is logged again.
	clock.Advance(time.Minute)
	send(topics.Event{Topic: parse("order.created"), Key: "7", Body: row(7, "pending")})
	for confirmed.Load() != uint64(commit+1) {
		if time.Now().After(deadline) {
			t.Fatal("the last transaction was not settled")
		}
		time.Sleep(2 * time.Millisecond)
	}
	if n := strings.Count(logs.String(), "webhook filter failed"); n != 2 {
		t.Errorf("the failing filter was logged %d times, want twice a minute apart", n)
	}
	if !strings.Contains(logs.String(), "no such key: colour") {
		t.Errorf("the filter's log line does not say what failed:\n%s", logs.String())
	}
}

// checkRow compares the requests a webhook received for one row with want.
func checkRow(t *testing.T, name string, got []string, id int, want []string) {
	t.Helper()
	var row []string
	for _, g := range got {
		if strings.Contains(g, fmt.Sprintf(`{"id":%d,`, id)) || strings.HasSuffix(g, fmt.Sprintf(`{"id":%d}`, id)) {
			row = append(row, g)
		}
	}
	if strings.Join(row, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s, row %d received:\n%s\nwant:\n%s", name, id, strings.Join(row, "\n"), strings.Join(want, "\n"))
	}
}

// TestWanted checks the question a body-building stage asks before
// building a payload: does any webhook receive this event?
func TestWanted(t *testing.T) {
	d := New(Options{Source: "https://shop.example/", Delivery: config.Defaults().Delivery, Store: newFakeStore(),
		Metrics: NewMetrics(prometheus.NewRegistry()), Logger: discardLogger()})
	parse := func(s string) topics.Topic { tp, _ := topics.Parse(s); return tp }
	defs := []Definition{
		{ID: 1, Topic: parse("order.updated"), DeliveryURL: "https://h.example/1", Secret: "s", Filter: `row.total > 100`},
		{ID: 2, Topic: parse("product.*"), DeliveryURL: "https://h.example/2", Secret: "s"},
		{ID: 3, Topic: parse("coupon.*"), DeliveryURL: "https://h.example/3", Secret: "s"},
	}
	if err := d.SetConfigWebhooks(context.Background(), defs, map[int64]webhook.Status{3: webhook.StatusPaused}); err != nil {
		t.Fatal(err)
	}
	ev := func(topic, body string) *Event {
		return &Event{Event: topics.Event{Topic: parse(topic), Key: "1", Body: []byte(body)}}
	}
	tests := []struct {
		e    *Event
		want bool
	}{
		{ev("order.updated", `{"total":150}`), true},
		{ev("order.updated", `{"total":50}`), false},
		{ev("order.updated", `{}`), false}, // the filter fails: no match
		{ev("order.created", `{"total":150}`), false},
		{ev("product.deleted", `{"id":1}`), true},
		{ev("coupon.created", `{"id":1}`), false}, // paused
		{ev("customer.created", `{"id":1}`), false},
	}
	for _, tt := range tests {
		if got := d.Wanted(tt.e); got != tt.want {
			t.Errorf("Wanted(%s %s) = %v, want %v", tt.e.Topic, tt.e.Body, got, tt.want)
		}
	}
}
