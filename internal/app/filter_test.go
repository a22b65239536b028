package app_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/walhook/walhook/internal/pgtest"
	"github.com/walhook/walhook/internal/shop"
	"github.com/walhook/walhook/internal/walhooktest"
)

// TestFilterDeliversExactlyTheCompletions runs the README's filter,
// `row.status == "completed" && old.status != "completed"`, on a real
// PostgreSQL (orders has REPLICA IDENTITY FULL, so old is the old row):
// of orders moving through their statuses, touched while completed,
// refunded, completed twice inside one transaction, and deleted, exactly
// the updates that complete an order arrive, once each. An order.*
// webhook next to it gets every event, with its real topic in the headers.
func TestFilterDeliversExactlyTheCompletions(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, shop.Schema)
	recv, url := newReceiver(t, secrets(3))
	cfg := parseConfig(t, baseConfig(t, db, "")+fmt.Sprintf(`webhooks:
  - id: 1
    topic: order.updated
    filter: 'row.status == "completed" && old.status != "completed"'
    delivery_url: %q
    secret: %q
  - { id: 2, topic: order.*, delivery_url: %q, secret: %q }
  - id: 3
    topic: order.*
    filter: 'row.colour == "red"'
    delivery_url: %q
    secret: %q
`, url+"/completed", secret, url+"/all", secret, url+"/failing", secret))
	in := start(t, cfg)

	pgtest.Exec(t, db,
		// Orders 1 to 6 are placed; 7 is placed already completed (a
		// created event, which an order.updated webhook never sees).
		`INSERT INTO orders (id, total) SELECT g, 10 * g FROM generate_series(1, 6) g`,
		`INSERT INTO orders (id, total, status) VALUES (7, 70, 'completed')`,
		`UPDATE orders SET status = 'processing' WHERE id <= 5`,
		// 1 and 2 complete; 3 is cancelled.
		`UPDATE orders SET status = 'completed', date_paid = now() WHERE id IN (1, 2)`,
		`UPDATE orders SET status = 'cancelled' WHERE id = 3`,
		// Touching a completed order is no completion, nor is a refund.
		`UPDATE orders SET total = total + 1 WHERE id IN (1, 7)`,
		`UPDATE orders SET status = 'refunded' WHERE id = 2`,
		// 4 completes and is touched again in the same transaction: one
		// coalesced update whose old row is the one before the
		// transaction, so it is a completion.
		`BEGIN;
		 UPDATE orders SET status = 'completed' WHERE id = 4;
		 UPDATE orders SET total = 99 WHERE id = 4;
		 COMMIT;`,
		// 2 completes again after its refund: a second completion.
		`UPDATE orders SET status = 'completed' WHERE id = 2`,
		// 5 completes and is deleted; 6 is deleted while pending.
		`UPDATE orders SET status = 'completed' WHERE id = 5`,
		`DELETE FROM orders WHERE id IN (5, 6)`,
	)
	waitSettled(t, db, cfg.Postgres.Slot)

	var completed []string
	all := map[string]int{}
	for _, d := range recv.Deliveries() {
		switch d.WebhookID {
		case 1:
			var row struct {
				ID     int64  `json:"id"`
				Status string `json:"status"`
			}
			if err := json.Unmarshal(d.Body, &row); err != nil {
				t.Fatalf("webhook 1 body %s: %v", d.Body, err)
			}
			if d.Topic != "order.updated" || row.Status != "completed" {
				t.Errorf("webhook 1 received %s %s", d.Topic, d.Body)
			}
			completed = append(completed, fmt.Sprint(row.ID))
		case 2:
			all[d.Topic]++
			if !strings.HasPrefix(d.Topic, "order.") || d.Resource != "order" || d.Event != strings.TrimPrefix(d.Topic, "order.") {
				t.Errorf("webhook 2 headers: topic %q resource %q event %q", d.Topic, d.Resource, d.Event)
			}
		case 3:
			t.Errorf("webhook 3 (a filter that always fails) received %s %s", d.Topic, d.Body)
		}
		if !d.SignatureOK {
			t.Errorf("webhook %d: signature does not verify", d.WebhookID)
		}
	}
	slices.Sort(completed)
	if got, want := strings.Join(completed, ","), "1,2,2,4,5"; got != want {
		t.Errorf("completions delivered for orders %s, want %s", got, want)
	}
	// 7 created; updates: 5 + 2 + 1 + 2 + 1 + 1 (coalesced) + 1 + 1; 2 deleted.
	if all["order.created"] != 7 || all["order.updated"] != 14 || all["order.deleted"] != 2 {
		t.Errorf("webhook 2 (order.*) received %v, want 7 created, 14 updated, 2 deleted", all)
	}
	// Every order event webhook 1 and 3 matched by topic and left out is
	// counted as filtered: 14 - 5 for webhook 1, all 23 for webhook 3.
	if got := in.Metric(t, "walhook_events_filtered_total", "webhook", "1"); got != 9 {
		t.Errorf("walhook_events_filtered_total{webhook=1} = %v, want 9", got)
	}
	if got := in.Metric(t, "walhook_events_filtered_total", "webhook", "3"); got != 23 {
		t.Errorf("walhook_events_filtered_total{webhook=3} = %v, want 23", got)
	}
	if got := in.Metric(t, "walhook_filter_errors_total", "webhook", "3"); got != 23 {
		t.Errorf("walhook_filter_errors_total{webhook=3} = %v, want 23", got)
	}
	if n := strings.Count(in.logs.String(), "webhook filter failed"); n != 1 {
		t.Errorf("the failing filter was logged %d times, want once (once a minute)", n)
	}
	// Filtered events are no deliveries: none is logged or counted as one.
	if got := in.Metric(t, "walhook_deliveries_total", "webhook", "3"); got != 0 {
		t.Errorf("walhook_deliveries_total{webhook=3} = %v, want 0", got)
	}
}

// TestFilterWithPayloadQuery: with a payload_query on orders, a filter
// still reads the row as replication sent it (not the built document),
// the webhook receives the document, and an event no webhook wants costs
// no query.
func TestFilterWithPayloadQuery(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, shop.Schema)
	recv, url := newReceiver(t, secrets(1))
	cfg := parseConfig(t, baseConfig(t, db, `resources:
  order:
    table: public.orders
    payload_query: SELECT o.id, jsonb_build_object('document', true, 'id', o.id, 'state', o.status) FROM orders o WHERE o.id = ANY($1)
`)+fmt.Sprintf(`webhooks:
  - id: 1
    topic: order.updated
    filter: 'row.status == "completed"'
    delivery_url: %q
    secret: %q
`, url+"/completed", secret))
	in := start(t, cfg)

	pgtest.Exec(t, db,
		`INSERT INTO orders (id, total) VALUES (1, 10), (2, 20)`,
		`UPDATE orders SET status = 'processing' WHERE id = 1`,
		`UPDATE orders SET status = 'completed' WHERE id = 2`,
	)
	waitSettled(t, db, cfg.Postgres.Slot)
	got := recv.Deliveries()
	if len(got) != 1 || string(got[0].Body) != `{"id": 2, "state": "completed", "document": true}` {
		var bodies []string
		for _, d := range got {
			bodies = append(bodies, string(d.Body))
		}
		t.Fatalf("deliveries %q, want the document of order 2 only", bodies)
	}
	if !got[0].SignatureOK {
		t.Error("the document's signature does not verify")
	}
	// Only the completed order's update was wanted: one query, for it.
	if n := walhooktest.Metric(t, in.reg, "walhook_payload_query_duration_seconds", "resource", "order"); n != 1 {
		t.Errorf("%v payload queries, want 1 (the filtered events cost none)", n)
	}
}
