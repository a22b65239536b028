package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/examples/woocommerce"
	"github.com/walhook/walhook/internal/app"
	"github.com/walhook/walhook/internal/pgtest"
	"github.com/walhook/walhook/internal/receiver"
	"github.com/walhook/walhook/internal/walhooktest"
)

// wooConfig is the WooCommerce profile (examples/woocommerce) for the
// test's database and receiver, with the test's slot and short retries.
func wooConfig(t *testing.T, db, url string) *config.Config {
	t.Helper()
	cfg, err := woocommerce.Load(map[string]string{
		"DATABASE_URL": db, "WEBHOOK_URL": url + "/woo", "WEBHOOK_SECRET": secret, "ALLOW_PRIVATE_NETWORKS": "true",
	})
	if err != nil {
		t.Fatal(err)
	}
	name := uniqueName(t)
	cfg.Postgres.Slot, cfg.Postgres.Publication = name, name
	cfg.Postgres.StatusInterval = time.Second
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Delivery.Timeout = 30 * time.Second
	cfg.Delivery.ShutdownGrace = 30 * time.Second
	cfg.Delivery.Retry.Attempts = 2
	cfg.Delivery.Retry.Backoff, cfg.Delivery.Retry.MaxBackoff = 10*time.Millisecond, 50*time.Millisecond
	cfg.Delivery.Retry.ParkedBackoff, cfg.Delivery.Retry.ParkedMaxBackoff = 100*time.Millisecond, time.Second
	cfg.Delivery.Retry.ProbeInterval, cfg.Delivery.Retry.ProbeMaxInterval = 50*time.Millisecond, 200*time.Millisecond
	cfg.Log.Level = slog.LevelDebug
	return cfg
}

// execTx runs statements in one transaction.
func execTx(t *testing.T, db string, stmts []string) {
	t.Helper()
	pgtest.Exec(t, db, "BEGIN;\n"+strings.Join(stmts, ";\n")+";\nCOMMIT;")
}

// byTopic returns the accepted deliveries of topic.
func byTopic(r *receiver.Receiver, topic string) []receiver.Delivery {
	var out []receiver.Delivery
	for _, d := range r.Accepted() {
		if d.Topic == topic {
			out = append(out, d)
		}
	}
	return out
}

// waitTopic waits for n accepted deliveries of topic and returns them.
func waitTopic(t *testing.T, r *receiver.Receiver, topic string, n int) []receiver.Delivery {
	t.Helper()
	if !r.Wait(walhooktest.Patience(), func(r *receiver.Receiver) bool { return len(byTopic(r, topic)) >= n }) {
		t.Fatalf("got %d %s deliveries, want %d", len(byTopic(r, topic)), topic, n)
	}
	return byTopic(r, topic)
}

// document returns PostgreSQL's text of resource's payload_query
// document for id, read now.
func document(t *testing.T, db string, cfg *config.Config, resource string, id int64) string {
	t.Helper()
	r, _ := cfg.Resource(resource)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var doc string
	if err := conn.QueryRow(ctx, "SELECT d::text FROM ("+r.PayloadQuery+") AS q(k, d)", []int64{id}).Scan(&doc); err != nil {
		t.Fatalf("run %s's payload_query: %v", resource, err)
	}
	return doc
}

// TestPayloadQueryWooCommerceOrder: an order inserted with three items in
// one transaction reaches order.created with those three line_items,
// signed over the exact bytes PostgreSQL renders for the document; its
// payment reaches order.updated with the new state; its deletion sends
// {"id": N} as WooCommerce does.
func TestPayloadQueryWooCommerceOrder(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, woocommerce.Schema)
	recv, url := newReceiver(t, secrets(12))
	cfg := wooConfig(t, db, url)
	in := start(t, cfg)

	execTx(t, db, woocommerce.Sample(1))
	created := waitTopic(t, recv, "order.created", 1)[0]
	if !created.SignatureOK || !verify(secret, created.Body, created.Header.Get("X-WC-Webhook-Signature")) {
		t.Errorf("order.created signature does not verify")
	}
	var order struct {
		ID        int64  `json:"id"`
		Status    string `json:"status"`
		Total     string `json:"total"`
		DatePaid  *string
		LineItems []struct {
			ProductID int64  `json:"product_id"`
			Quantity  int    `json:"quantity"`
			Total     string `json:"total"`
		} `json:"line_items"`
	}
	if err := json.Unmarshal(created.Body, &order); err != nil {
		t.Fatalf("order.created body: %v\n%s", err, created.Body)
	}
	if order.ID != 1 || order.Status != "pending" || order.Total != "74.05" || len(order.LineItems) != 3 {
		t.Fatalf("order.created: id %d status %q total %q with %d line_items; want 1, pending, 74.05 with 3\n%s",
			order.ID, order.Status, order.Total, len(order.LineItems), created.Body)
	}
	for i, want := range []int64{1, 2, 3} {
		if li := order.LineItems[i]; li.ProductID != want || li.Total == "" {
			t.Errorf("line_items[%d] = %+v, want product %d", i, li, want)
		}
	}
	// Byte for byte PostgreSQL's rendering of the document (nothing has
	// changed the order since).
	if want := document(t, db, cfg, "order", 1); string(created.Body) != want {
		t.Errorf("order.created body is not PostgreSQL's text of the document\ngot  %s\nwant %s", created.Body, want)
	}
	for _, topic := range []string{"product.created", "customer.created", "coupon.created"} {
		if d := waitTopic(t, recv, topic, 1)[0]; !strings.Contains(string(d.Body), `"_links": {`) {
			t.Errorf("%s body is not the WooCommerce object: %s", topic, d.Body)
		}
	}

	execTx(t, db, woocommerce.Paid(1))
	// The checkout itself may give an order.updated too (its transaction
	// updates the order it inserts): wait for the payment's.
	var updated receiver.Delivery
	walhooktest.WaitFor(t, "the payment's order.updated", func() bool {
		for _, d := range byTopic(recv, "order.updated") {
			if strings.Contains(string(d.Body), `"transaction_id": "tx-1"`) {
				updated = d
				return true
			}
		}
		return false
	})
	var paid map[string]any
	if err := json.Unmarshal(updated.Body, &paid); err != nil {
		t.Fatal(err)
	}
	if paid["status"] != "processing" || paid["transaction_id"] != "tx-1" || paid["date_paid"] == nil ||
		len(paid["line_items"].([]any)) != 3 || !updated.SignatureOK {
		t.Errorf("order.updated does not carry the paid order: %s", updated.Body)
	}

	pgtest.Exec(t, db, `DELETE FROM orders WHERE id = 1`)
	if d := waitTopic(t, recv, "order.deleted", 1)[0]; string(d.Body) != `{"id":1}` {
		t.Errorf("order.deleted body = %s, want {\"id\":1}", d.Body)
	}
	if n := in.Metric(t, "walhook_payload_query_duration_seconds", "resource", "order"); n < 2 {
		t.Errorf("order payload queries observed: %v, want at least 2", n)
	}
	if n := in.Metric(t, "walhook_payload_fallback_total"); n != 0 {
		t.Errorf("fallbacks = %v, want 0", n)
	}
}

// TestPayloadQueryFallback: a row deleted before its created event's
// query runs has no document; the event goes out with the row image from
// the WAL, counted.
func TestPayloadQueryFallback(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, woocommerce.Schema)
	recv, url := newReceiver(t, secrets(12))
	cfg := wooConfig(t, db, url)
	// A first run creates the slot; the changes are made while walhook is
	// stopped, so the order is gone when its transaction is routed.
	in := start(t, cfg)
	waitStreaming(t, in)
	in.stop(t)
	execTx(t, db, woocommerce.Sample(1))
	pgtest.Exec(t, db, `DELETE FROM orders WHERE id = 1`)
	in = start(t, cfg)

	created := waitTopic(t, recv, "order.created", 1)[0]
	var row map[string]any
	if err := json.Unmarshal(created.Body, &row); err != nil {
		t.Fatal(err)
	}
	// The row image: the table's columns (order_key, date_created in
	// RFC 3339 with its offset), not the WooCommerce object.
	if _, ok := row["line_items"]; ok || row["id"] != 1.0 || row["order_key"] == nil ||
		!strings.HasSuffix(fmt.Sprint(row["date_created"]), "Z") {
		t.Errorf("order.created body is not the row image: %s", created.Body)
	}
	if !created.SignatureOK {
		t.Error("fallback body signature does not verify")
	}
	waitTopic(t, recv, "order.deleted", 1)
	// The product of the same transaction still exists: its document is built.
	if d := waitTopic(t, recv, "product.created", 3); !strings.Contains(string(d[0].Body), `"permalink"`) {
		t.Errorf("product.created is not the WooCommerce object: %s", d[0].Body)
	}
	if n := in.Metric(t, "walhook_payload_fallback_total", "resource", "order"); n != 1 {
		t.Errorf("order fallbacks = %v, want 1", n)
	}
	if n := in.Metric(t, "walhook_payload_fallback_total", "resource", "product"); n != 0 {
		t.Errorf("product fallbacks = %v, want 0", n)
	}
	if !strings.Contains(in.logs.String(), "payload_query returned no document") {
		t.Error("no debug line for the fallback")
	}
}

const gatedSchema = `
CREATE TABLE orders (id bigint PRIMARY KEY, status text NOT NULL);
ALTER TABLE orders REPLICA IDENTITY FULL;
CREATE TABLE gate (closed boolean NOT NULL);
INSERT INTO gate VALUES (false);
`

// gatedConfig maps orders with a payload query that sleeps past its
// statement timeout while gate.closed is true.
func gatedConfig(t *testing.T, db, url string) *config.Config {
	base := strings.Replace(baseConfig(t, db, ""), "delivery:\n", "delivery:\n  payload_query_timeout: 300ms\n", 1)
	return parseConfig(t, base+fmt.Sprintf(`resources:
  order:
    table: public.orders
    payload_query: |
      SELECT o.id, jsonb_build_object('id', o.id, 'status', o.status, 'built', true)
      FROM orders o, pg_sleep(CASE WHEN (SELECT closed FROM gate) THEN 60 ELSE 0 END)
      WHERE o.id = ANY($1)
webhooks:
  - { id: 1, topic: order.created, delivery_url: %q, secret: %q }
`, url, secret))
}

// slotConfirmed returns the slot's confirmed_flush_lsn.
func slotConfirmed(t *testing.T, db, slot string) pglogrepl.LSN {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&s); err != nil {
		t.Fatal(err)
	}
	lsn, err := pglogrepl.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return lsn
}

// TestPayloadQueryFailure: while the payload query fails (here a
// statement timeout), routing waits and retries: nothing is delivered or
// lost, the slot does not move past the transaction, /readyz says why and
// the errors are counted; once the query works the event goes out with
// its document.
func TestPayloadQueryFailure(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, gatedSchema)
	recv, url := newReceiver(t, secrets(1))
	cfg := gatedConfig(t, db, url)
	in := start(t, cfg)
	waitStreaming(t, in)

	pgtest.Exec(t, db, `UPDATE gate SET closed = true`)
	before := walhooktest.WALPosition(t, db)
	pgtest.Exec(t, db, `INSERT INTO orders VALUES (1, 'pending')`)
	eventually(t, "two failed payload queries", func() bool {
		return in.Metric(t, "walhook_payload_query_errors_total", "resource", "order") >= 2
	})
	code, body := readyz(t, in.addr)
	if code != http.StatusServiceUnavailable || body["status"] != "payload_query_failing" ||
		!strings.Contains(body["reason"], "statement timeout") || !strings.Contains(body["reason"], "order") {
		t.Errorf("/readyz while the query fails = %d %v; want 503 payload_query_failing naming the resource and the statement timeout", code, body)
	}
	if n := len(recv.Deliveries()); n != 0 {
		t.Errorf("%d deliveries while the payload query fails, want none", n)
	}
	if got := slotConfirmed(t, db, cfg.Postgres.Slot); got > before {
		t.Errorf("the slot confirmed %s, past the stalled transaction (committed after %s)", got, before)
	}
	if !strings.Contains(in.logs.String(), "payload_query failed") {
		t.Error("no log line for the failing query")
	}

	pgtest.Exec(t, db, `UPDATE gate SET closed = false`)
	d := waitTopic(t, recv, "order.created", 1)[0]
	if string(d.Body) != `{"id": 1, "built": true, "status": "pending"}` || !d.SignatureOK {
		t.Errorf("order.created after recovery = %s (signature ok %v)", d.Body, d.SignatureOK)
	}
	eventually(t, "/readyz back to 200", func() bool { code, _ := readyz(t, in.addr); return code == http.StatusOK })
	waitSettled(t, db, cfg.Postgres.Slot)
	if n := len(recv.Deliveries()); n != 1 {
		t.Errorf("%d deliveries, want exactly 1", n)
	}
}

// TestPayloadQueryParkedBodyKept: a delivery that fails is parked with the
// body built for it; its retry sends the same bytes and signature even
// though the query would now build another document.
func TestPayloadQueryParkedBodyKept(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, gatedSchema)
	recv, url := newReceiver(t, secrets(1))
	recv.Respond(func(*receiver.Delivery) (int, http.Header) { return http.StatusInternalServerError, nil })
	cfg := gatedConfig(t, db, url)
	start(t, cfg)

	pgtest.Exec(t, db, `INSERT INTO orders VALUES (1, 'pending')`)
	eventually(t, "the failed delivery parked", func() bool { return len(recv.Deliveries()) >= 2 })
	waitSettled(t, db, cfg.Postgres.Slot)
	first := recv.Deliveries()[0]
	// The row changes without an event the webhook receives (order.updated
	// has no webhook): a new query would render "paid".
	pgtest.Exec(t, db, `UPDATE orders SET status = 'paid' WHERE id = 1`)
	waitSettled(t, db, cfg.Postgres.Slot)
	recv.Respond(nil)
	d := waitTopic(t, recv, "order.created", 1)[0]
	if string(d.Body) != string(first.Body) || d.Header.Get("X-WC-Webhook-Signature") != first.Header.Get("X-WC-Webhook-Signature") ||
		d.DeliveryID != first.DeliveryID {
		t.Errorf("retry sent %s (signature %s, id %s); the first attempt sent %s (signature %s, id %s)",
			d.Body, d.Header.Get("X-WC-Webhook-Signature"), d.DeliveryID,
			first.Body, first.Header.Get("X-WC-Webhook-Signature"), first.DeliveryID)
	}
	if !strings.Contains(string(d.Body), `"pending"`) {
		t.Errorf("retried body %s is not the document built at the first attempt", d.Body)
	}
}

// TestPayloadQueryStartErrors: a payload query PostgreSQL refuses, or of
// the wrong shape, and a resource with a composite key refuse the start
// with the resource's name and the reason, before any slot is created.
func TestPayloadQueryStartErrors(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, gatedSchema, `CREATE TABLE lines (order_id bigint, n int, PRIMARY KEY (order_id, n));
		ALTER TABLE lines REPLICA IDENTITY FULL;`)
	for _, tc := range []struct {
		name, resources string
		want            []string
	}{
		{"syntax", `order: { table: orders, payload_query: "SELECT o.id, to_jsonb(o) FROM orders o WHERE o.id = ANY($1) ORDER" }`,
			[]string{`resource "order": payload_query`, "syntax error at end of input"}},
		{"unknown table", `order: { table: orders, payload_query: "SELECT o.id, to_jsonb(o) FROM orderz o WHERE o.id = ANY($1)" }`,
			[]string{`resource "order": payload_query`, `relation "orderz" does not exist`}},
		{"column count", `order: { table: orders, payload_query: "SELECT to_jsonb(o) FROM orders o WHERE o.id = ANY($1)" }`,
			[]string{`resource "order": payload_query`, "returns 1 columns"}},
		{"document type", `order: { table: orders, payload_query: "SELECT o.id, o.status FROM orders o WHERE o.id = ANY($1)" }`,
			[]string{`resource "order": payload_query`, "json or jsonb"}},
		{"composite key", `line: { table: lines, payload_query: "SELECT l.order_id, to_jsonb(l) FROM lines l WHERE l.order_id = ANY($1)" }`,
			[]string{`resource "line": payload_query needs a one-column key`, "order_id n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := parseConfig(t, baseConfig(t, db, "")+"resources:\n  "+tc.resources+"\n")
			ctx, cancel := context.WithTimeout(context.Background(), walhooktest.Patience())
			defer cancel()
			err := app.Run(ctx, cfg, app.Options{Logger: slog.New(slog.DiscardHandler)})
			if err == nil {
				t.Fatal("walhook started")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("start error %q does not contain %q", err, w)
				}
			}
			conn, cerr := pgx.Connect(ctx, db)
			if cerr != nil {
				t.Fatal(cerr)
			}
			defer conn.Close(ctx)
			var slots int
			if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, cfg.Postgres.Slot).Scan(&slots); err != nil || slots != 0 {
				t.Errorf("refused start left %d slots (%v)", slots, err)
			}
		})
	}
}
