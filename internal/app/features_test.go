package app_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/walhook/walhook/internal/pgtest"
	"github.com/walhook/walhook/internal/receiver"
	"github.com/walhook/walhook/internal/shop"
	"github.com/walhook/walhook/internal/walhooktest"
)

// TestStandardWebhooksSignature verifies deliveries with the Standard
// Webhooks specification's own Go library.
func TestStandardWebhooksSignature(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, shop.Schema)
	recv, url := newReceiver(t, map[int64]string{2: secret})
	swSecret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("a standard webhooks key of 32 b."))
	cfg := parseConfig(t, baseConfig(t, db, "")+fmt.Sprintf(`webhooks:
  - { id: 1, topic: product.created, delivery_url: %q, secret: %q, signature: standard-webhooks }
  - { id: 2, topic: product.created, delivery_url: %q, secret: %q, signature: both }
`, url+"/sw", swSecret, url+"/both", swSecret))
	recv.SetSecret(1, swSecret)
	recv.SetSecret(2, swSecret)
	start(t, cfg)
	pgtest.Exec(t, db, `INSERT INTO products (id, name, sku, price) VALUES (1, 'Mug', 'MUG', 12.50)`)
	if !recv.Wait(walhooktest.Patience(), func(r *receiver.Receiver) bool { return len(r.Deliveries()) >= 2 }) {
		t.Fatalf("got %d deliveries, want 2", len(recv.Deliveries()))
	}
	wh, err := standardwebhooks.NewWebhook(swSecret)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range recv.Deliveries() {
		if err := wh.Verify(d.Body, d.Header); err != nil {
			t.Errorf("%s: Standard Webhooks verification failed: %v", d.Header.Get("Webhook-Id"), err)
		}
		// Standard Webhooks headers are added to WooCommerce's, never
		// instead of them: a WooCommerce receiver keeps working.
		if !d.SignatureOK || d.Header.Get("X-WC-Webhook-Delivery-ID") != d.Header.Get("Webhook-Id") {
			t.Errorf("webhook %d: WooCommerce signature ok=%v, ids %q / %q", d.WebhookID, d.SignatureOK,
				d.Header.Get("X-WC-Webhook-Delivery-ID"), d.Header.Get("Webhook-Id"))
		}
		// A tampered body must not verify: the check can fail.
		if err := wh.Verify(append([]byte(" "), d.Body...), d.Header); err == nil {
			t.Error("a tampered body verified")
		}
	}
}

// TestPrivateNetworkGuard: a delivery URL whose host name resolves to a
// loopback address is refused at dial time unless allowed.
func TestPrivateNetworkGuard(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, shop.Schema)
	recv, url := newReceiver(t, secrets(2))
	port := url[strings.LastIndex(url, ":")+1:]
	base := strings.Replace(baseConfig(t, db, ""), "allow_private_networks: true", "allow_private_networks: false", 1)
	// localhost resolves to 127.0.0.1; 127.0.0.0/8 is allowed for webhook 2 only by listing… the
	// allow list is global, so run two instances one after the other.
	blocked := parseConfig(t, base+fmt.Sprintf(`webhooks:
  - { id: 1, topic: product.created, delivery_url: "http://localhost:%s/blocked", secret: %q }
`, port, secret))
	in := start(t, blocked)
	pgtest.Exec(t, db, `INSERT INTO products (id, name, sku, price) VALUES (1, 'Mug', 'MUG', 12.50)`)
	walhooktest.Holds(func() bool { return strings.Contains(in.logs.String(), "private-network guard") })
	logs := in.logs.String()
	if !strings.Contains(logs, "private-network guard") || !strings.Contains(logs, "loopback") {
		t.Fatalf("no refusal naming the private-network guard and loopback in the logs:\n%s", logs)
	}
	in.stop(t)
	if n := len(recv.Deliveries()); n != 0 {
		t.Fatalf("the receiver on a loopback address got %d deliveries while private networks were refused", n)
	}

	// Allowed through delivery.allow_cidrs: the parked delivery goes out.
	allowed := parseConfig(t, strings.Replace(base, "allow_private_networks: false", "allow_private_networks: false\n  allow_cidrs: [127.0.0.0/8, \"::1/128\"]", 1)+
		fmt.Sprintf(`webhooks:
  - { id: 1, topic: product.created, delivery_url: "http://localhost:%s/blocked", secret: %q }
`, port, secret))
	start(t, allowed)
	if !recv.Wait(walhooktest.Patience(), func(r *receiver.Receiver) bool { return len(r.Accepted()) >= 1 }) {
		t.Fatal("with 127.0.0.0/8 in allow_cidrs the delivery did not arrive")
	}
}

// TestCoalescing: several changes to one row in one transaction give each
// webhook at most one delivery per topic with the row's last state.
func TestCoalescing(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, shop.Schema)
	recv, url := newReceiver(t, secrets(3))
	cfg := parseConfig(t, baseConfig(t, db, "")+fmt.Sprintf(`webhooks:
  - { id: 1, topic: product.created, delivery_url: %q, secret: %q }
  - { id: 2, topic: product.updated, delivery_url: %q, secret: %q }
  - { id: 3, topic: product.deleted, delivery_url: %q, secret: %q }
`, url, secret, url, secret, url, secret))
	start(t, cfg)
	pgtest.Exec(t, db,
		// insert + updates → one created and one updated, both with the final row
		`BEGIN;
		 INSERT INTO products (id, name, sku, price, stock) VALUES (1, 'Mug', 'MUG', 12.50, 1);
		 UPDATE products SET stock = 2 WHERE id = 1;
		 UPDATE products SET stock = 3 WHERE id = 1;
		 COMMIT;`,
		// updates + delete → deleted only
		`BEGIN;
		 INSERT INTO products (id, name, sku, price, stock) VALUES (2, 'Cup', 'CUP', 5, 1);
		 COMMIT;`,
		`BEGIN;
		 UPDATE products SET stock = 7 WHERE id = 2;
		 UPDATE products SET stock = 8 WHERE id = 2;
		 DELETE FROM products WHERE id = 2;
		 COMMIT;`,
		// two rows in one transaction stay apart
		`BEGIN;
		 UPDATE products SET stock = 10 WHERE id = 1;
		 INSERT INTO products (id, name, sku, price, stock) VALUES (3, 'Bowl', 'BOWL', 9, 4);
		 UPDATE products SET stock = 11 WHERE id = 1;
		 UPDATE products SET stock = 5 WHERE id = 3;
		 COMMIT;`)
	want := []string{
		`product.created {"id":1,"stock":3}`,
		`product.updated {"id":1,"stock":3}`,
		`product.created {"id":2,"stock":1}`,
		`product.updated {"id":2,"stock":8}`,
		`product.deleted {"id":2}`,
		`product.updated {"id":1,"stock":11}`,
		`product.created {"id":3,"stock":5}`,
		`product.updated {"id":3,"stock":5}`,
	}
	if !recv.Wait(walhooktest.Patience(), func(r *receiver.Receiver) bool { return len(r.Deliveries()) >= len(want) }) {
		t.Fatalf("got %d deliveries, want %d", len(recv.Deliveries()), len(want))
	}
	waitSettled(t, db, cfg.Postgres.Slot) // nothing more may arrive
	got := map[string]int{}
	for _, d := range recv.Deliveries() {
		got[d.Topic+" "+summary(string(d.Body))]++
	}
	for _, w := range want {
		if got[w] != 1 {
			t.Errorf("%s: %d deliveries, want 1", w, got[w])
		}
		delete(got, w)
	}
	for k, n := range got {
		t.Errorf("unexpected delivery %s (×%d)", k, n)
	}
}

// summary keeps a product body's id and stock.
func summary(body string) string {
	var id, stock string
	for _, part := range strings.Split(strings.Trim(body, "{}"), ",") {
		switch {
		case strings.HasPrefix(part, `"id":`):
			id = part
		case strings.HasPrefix(part, `"stock":`):
			stock = part
		}
	}
	if stock == "" {
		return "{" + id + "}"
	}
	return "{" + id + "," + stock + "}"
}

// TestIdleSlotAdvances: with heavy writes only to a table outside the
// publication, the slot's confirmed position keeps up with the server.
func TestIdleSlotAdvances(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, shop.Schema, `CREATE TABLE audit_log (id bigserial PRIMARY KEY, entry text NOT NULL)`)
	_, url := newReceiver(t, secrets(1))
	cfg := parseConfig(t, baseConfig(t, db, "")+fmt.Sprintf(`webhooks:
  - { id: 1, topic: product.created, delivery_url: %q, secret: %q }
`, url, secret))
	start(t, cfg)
	conn, err := pgx.Connect(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for i := 0; i < 20; i++ {
		if _, err := conn.Exec(t.Context(), `INSERT INTO audit_log (entry) SELECT repeat(md5(i::text), 4) FROM generate_series(1, 5000) i`); err != nil {
			t.Fatal(err)
		}
	}
	var written string
	if err := conn.QueryRow(t.Context(), `SELECT pg_current_wal_insert_lsn()::text`).Scan(&written); err != nil {
		t.Fatal(err)
	}
	var retained int64
	var confirmedPast bool
	// Progress is the slot's confirmed position moving up.
	walhooktest.WaitProgress(t, fmt.Sprintf("the slot's confirmed position to pass %s after 100,000 rows written to an unpublished table", written),
		walhooktest.Patience(), func() (bool, int) {
			var confirmed int64
			err := conn.QueryRow(t.Context(), `SELECT confirmed_flush_lsn >= $2::pg_lsn, pg_wal_lsn_diff(pg_current_wal_insert_lsn(), confirmed_flush_lsn)::bigint,
					pg_wal_lsn_diff(confirmed_flush_lsn, '0/0')::bigint
				FROM pg_replication_slots WHERE slot_name = $1`, cfg.Postgres.Slot, written).Scan(&confirmedPast, &retained, &confirmed)
			if err != nil {
				t.Fatal(err)
			}
			return confirmedPast, int(confirmed)
		})
	t.Logf("idle slot: confirmed position passed the end of ~%d MB of writes to an unpublished table; %d bytes of WAL retained", 20*5000*150/1000000, retained)
}
