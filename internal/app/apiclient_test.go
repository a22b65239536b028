package app_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/walhook/walhook/internal/nodeclient"
	"github.com/walhook/walhook/internal/pgtest"
	"github.com/walhook/walhook/internal/receiver"
	"github.com/walhook/walhook/internal/shop"
	"github.com/walhook/walhook/internal/walhooktest"
	"github.com/walhook/walhook/state"
)

// TestWooCommerceClientDelivers drives the management API of a running
// walhook with WooCommerce's official JavaScript client (OAuth 1.0a over
// plain HTTP); a webhook it created then receives a real signed delivery
// for a real row change.
func TestWooCommerceClientDelivers(t *testing.T) {
	node, err := nodeclient.Ensure(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, shop.Schema)
	recv, url := newReceiver(t, nil)
	const key = "ck_0123456789abcdef0123456789abcdef01234567"
	const keySecret = "cs_89abcdef0123456789abcdef0123456789abcdef"
	cfg := parseConfig(t, baseConfig(t, db, "")+fmt.Sprintf(`api:
  keys:
    - { consumer_key: %s, consumer_secret: %s, permissions: read_write }
webhooks:
  - { id: 1, topic: coupon.created, delivery_url: %q, secret: %q }
`, key, keySecret, url, secret))
	in := start(t, cfg)

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute) // a hang guard only
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "client.test.mjs")
	cmd.Dir = nodeclient.Dir()
	cmd.Env = append(os.Environ(), "WALHOOK_URL=http://"+in.addr.String(), "WC_KEY="+key, "WC_SECRET="+keySecret,
		"WC_MODE=oauth", "RECEIVER_URL="+url+"/from-api")
	out, err := cmd.CombinedOutput()
	t.Logf("node --test client.test.mjs:\n%s", out)
	if err != nil {
		t.Fatalf("WooCommerce's JavaScript client failed against walhook: %v", err)
	}
	m := regexp.MustCompile(`(?m)^\s*(?:#\s*)?WEBHOOK_ID=(\d+)\s*$`).FindSubmatch(out)
	if m == nil {
		t.Fatal("the client script printed no WEBHOOK_ID")
	}
	id, _ := strconv.ParseInt(string(m[1]), 10, 64)

	store, err := state.Open(ctx, db, cfg.Postgres.StateSchema)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	w, err := store.Webhook(ctx, id)
	if err != nil {
		t.Fatalf("webhook %d created by the client: %v", id, err)
	}
	if w.Origin != state.OriginAPI || w.Topic != "order.created" || len(w.Secret) != 50 {
		t.Fatalf("stored webhook: origin %s topic %s secret length %d", w.Origin, w.Topic, len(w.Secret))
	}
	recv.SetSecret(id, w.Secret)

	pgtest.Exec(t, db, `INSERT INTO customers (id, email, first_name, last_name, password_hash) VALUES (1, 'a@example.com', 'A', 'B', 'x');
		INSERT INTO orders (id, customer_id, total) VALUES (7, 1, 19.99)`)
	ok := recv.Wait(walhooktest.Patience(), func(r *receiver.Receiver) bool {
		for _, d := range r.Deliveries() {
			if d.WebhookID == id && d.Topic == "order.created" {
				return true
			}
		}
		return false
	})
	if !ok {
		t.Fatalf("webhook %d created through the API received no order.created delivery", id)
	}
	for _, d := range recv.Deliveries() {
		if d.WebhookID == id && !d.SignatureOK {
			t.Errorf("delivery %s of webhook %d: signature does not verify with the stored secret", d.DeliveryID, id)
		}
	}
	pinged := false
	for _, p := range recv.Pings() {
		pinged = pinged || p.WebhookID == strconv.FormatInt(id, 10)
	}
	if !pinged {
		t.Errorf("webhook %d created through the API was not pinged", id)
	}
}
