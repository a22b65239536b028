package app_test

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/walhook/walhook/internal/pgtest"
	"github.com/walhook/walhook/internal/receiver"
	"github.com/walhook/walhook/internal/shop"
	"github.com/walhook/walhook/internal/walhooktest"
)

const secret = "test-secret"

var coreTopics = []string{
	"coupon.created", "coupon.updated", "coupon.deleted",
	"customer.created", "customer.updated", "customer.deleted",
	"order.created", "order.updated", "order.deleted",
	"product.created", "product.updated", "product.deleted",
}

// shopWebhooks declares one webhook per core topic (ids 1–12), one for
// action.order_note (13) and one for a mapped table that sees no writes (14).
func shopWebhooks(url string) string {
	var b strings.Builder
	b.WriteString("resources:\n")
	b.WriteString("  coupon:   { table: public.coupons }\n")
	b.WriteString("  customer: { table: public.customers, exclude_columns: [password_hash] }\n")
	b.WriteString("  order:    { table: public.orders }\n")
	b.WriteString("  product:  { table: public.products }\n")
	b.WriteString("  supplier: { table: public.suppliers }\n")
	b.WriteString("webhooks:\n")
	for i, tp := range coreTopics {
		fmt.Fprintf(&b, "  - { id: %d, topic: %s, delivery_url: %q, secret: %q }\n", i+1, tp, url+"/hooks?token=query-secret", secret)
	}
	fmt.Fprintf(&b, "  - { id: 13, topic: action.order_note, delivery_url: %q, secret: %q }\n", url+"/actions", secret)
	fmt.Fprintf(&b, "  - { id: 14, topic: supplier.created, delivery_url: %q, secret: %q }\n", url+"/suppliers", secret)
	return b.String()
}

const suppliers = `CREATE TABLE suppliers (id bigint PRIMARY KEY, name text NOT NULL); ALTER TABLE suppliers REPLICA IDENTITY FULL;`

func secrets(n int) map[int64]string {
	m := make(map[int64]string, n)
	for i := 1; i <= n; i++ {
		m[int64(i)] = secret
	}
	return m
}

func TestAllTopicsEndToEnd(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, shop.Schema, suppliers)
	recv, url := newReceiver(t, secrets(14))
	cfg := parseConfig(t, baseConfig(t, db, "")+shopWebhooks(url))
	cfg.Delivery.Coalesce = "none" // two updates of one row must both arrive, in order
	in := start(t, cfg)

	pgtest.Exec(t, db,
		`BEGIN;
		 INSERT INTO customers (id, email, first_name, last_name, password_hash) VALUES (1, 'a@example.com', 'Ann', 'Lee', 'never-sent-hash');
		 INSERT INTO products (id, name, sku, price) VALUES (1, 'Mug', 'MUG', 12.50);
		 INSERT INTO coupons (id, code, amount) VALUES (1, 'SAVE10', 10);
		 INSERT INTO orders (id, customer_id, total) VALUES (1, 1, 25.00);
		 COMMIT;`,
		`BEGIN;
		 UPDATE customers SET last_name = 'Lee-Smith' WHERE id = 1;
		 UPDATE products SET stock = 3 WHERE id = 1;
		 UPDATE coupons SET amount = 15 WHERE id = 1;
		 SELECT pg_logical_emit_message(true, 'order_note', '{"order_id": 1, "note": "gift"}');
		 UPDATE orders SET status = 'processing' WHERE id = 1;
		 UPDATE orders SET status = 'completed' WHERE id = 1;
		 COMMIT;`,
		`BEGIN;
		 INSERT INTO orders (id, customer_id, total) VALUES (99, 1, 1.00);
		 SELECT pg_logical_emit_message(true, 'order_note', 'rolled back');
		 ROLLBACK;`,
		`BEGIN;
		 DELETE FROM orders WHERE id = 1;
		 DELETE FROM coupons WHERE id = 1;
		 DELETE FROM products WHERE id = 1;
		 DELETE FROM customers WHERE id = 1;
		 COMMIT;`,
	)
	// 4 created + 3 updated + 2 order updates + 1 action + 4 deleted.
	const want = 14
	if !recv.Wait(walhooktest.Patience(), func(r *receiver.Receiver) bool { return len(r.Deliveries()) >= want }) {
		t.Fatalf("got %d deliveries, want %d", len(recv.Deliveries()), want)
	}
	waitSettled(t, db, cfg.Postgres.Slot) // nothing more may arrive
	got := recv.Deliveries()
	if len(got) != want {
		t.Fatalf("got %d deliveries, want exactly %d: %v", len(got), want, topicsOf(got))
	}
	byTopic := map[string][]receiver.Delivery{}
	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	for _, d := range got {
		byTopic[d.Topic] = append(byTopic[d.Topic], d)
		h := d.Header
		if !verify(secret, d.Body, h.Get("X-WC-Webhook-Signature")) || !d.SignatureOK {
			t.Errorf("%s: signature does not verify", d.Topic)
		}
		resource, event, _ := strings.Cut(d.Topic, ".")
		checks := map[string]string{
			"X-WC-Webhook-Source":   "https://shop.example.com/",
			"X-WC-Webhook-Resource": resource,
			"X-WC-Webhook-Event":    event,
			"Content-Type":          "application/json",
		}
		for k, v := range checks {
			if h.Get(k) != v {
				t.Errorf("%s: %s = %q, want %q", d.Topic, k, h.Get(k), v)
			}
		}
		if !hex32.MatchString(d.DeliveryID) || h.Get("X-WC-Delivery-ID") != d.DeliveryID {
			t.Errorf("%s: delivery ids %q / %q", d.Topic, d.DeliveryID, h.Get("X-WC-Delivery-ID"))
		}
		if ua := h.Get("User-Agent"); !strings.HasPrefix(ua, "walhook/test Hookshot (PostgreSQL/") {
			t.Errorf("%s: User-Agent %q", d.Topic, ua)
		}
		if !json.Valid(d.Body) {
			t.Errorf("%s: body is not JSON: %s", d.Topic, d.Body)
		}
		if strings.Contains(string(d.Body), "password_hash") || strings.Contains(string(d.Body), "never-sent-hash") {
			t.Errorf("%s: an excluded column left the process: %s", d.Topic, d.Body)
		}
		if strings.Contains(string(d.Body), "rolled back") || strings.Contains(string(d.Body), `"id":99`) {
			t.Errorf("%s: a rolled-back transaction was delivered: %s", d.Topic, d.Body)
		}
	}
	for i, tp := range coreTopics {
		n := 1
		if tp == "order.updated" {
			n = 2
		}
		if len(byTopic[tp]) != n {
			t.Errorf("%s: %d deliveries, want %d", tp, len(byTopic[tp]), n)
			continue
		}
		if id := byTopic[tp][0].WebhookID; id != int64(i+1) {
			t.Errorf("%s delivered as webhook %d, want %d", tp, id, i+1)
		}
	}
	// One row's events arrive in commit order.
	if ou := byTopic["order.updated"]; len(ou) == 2 {
		if !strings.Contains(string(ou[0].Body), `"processing"`) || !strings.Contains(string(ou[1].Body), `"completed"`) {
			t.Errorf("order updates out of order: %s then %s", ou[0].Body, ou[1].Body)
		}
	}
	if a := byTopic["action.order_note"]; len(a) != 1 || string(a[0].Body) != `{"action":"order_note","arg":{"order_id": 1, "note": "gift"}}` {
		t.Errorf("action deliveries: %v", bodies(a))
	} else if a[0].Resource != "action" || a[0].Event != "order_note" {
		t.Errorf("action headers: resource %q event %q", a[0].Resource, a[0].Event)
	}
	for _, tp := range []string{"order.deleted", "coupon.deleted", "product.deleted", "customer.deleted"} {
		if d := byTopic[tp]; len(d) == 1 && string(d[0].Body) != `{"id":1}` {
			t.Errorf("%s body = %s, want {\"id\":1}", tp, d[0].Body)
		}
	}
	if len(byTopic["supplier.created"]) != 0 {
		t.Error("a webhook whose topic matched nothing received deliveries")
	}
	// The query string of a delivery URL may carry a secret: never logged.
	if logs := in.logs.String(); strings.Contains(logs, "query-secret") || strings.Contains(logs, secret) || strings.Contains(logs, "never-sent-hash") {
		t.Error("a secret or an excluded value reached the logs")
	}
}

func topicsOf(ds []receiver.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Topic
	}
	return out
}

func bodies(ds []receiver.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = string(d.Body)
	}
	return out
}

// TestPayloadTypes checks SPEC §4's typing through a real server, with a
// TOASTed value larger than 8 kB that stays unchanged in an update.
func TestPayloadTypes(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, `
		CREATE TABLE typed (
			id bigint PRIMARY KEY, i2 smallint, i4 integer, f4 real, f8 double precision,
			num numeric(30,10), flag boolean, doc jsonb, raw json, label varchar(20), code char(3),
			at timestamptz, local timestamp, day date, tod time, blob bytea, ints integer[], words text[],
			nested integer[][], uid uuid, big text, note text);
		ALTER TABLE typed REPLICA IDENTITY FULL;`)
	recv, url := newReceiver(t, secrets(2))
	cfg := parseConfig(t, baseConfig(t, db, "")+fmt.Sprintf(`resources:
  typed: { table: public.typed }
webhooks:
  - { id: 1, topic: typed.created, delivery_url: %q, secret: %q }
  - { id: 2, topic: typed.updated, delivery_url: %q, secret: %q }
`, url, secret, url, secret))
	start(t, cfg)

	// A value PostgreSQL stores out of line: 40 kB that does not compress.
	pgtest.Exec(t, db,
		`INSERT INTO typed VALUES (1, -2, 40000, 1.5, 'NaN', 12345678901234567890.0000000001, true,
			'{"b": [1, 2, {"c": null}], "a": "x"}', '{"k" : 1}', 'lbl', 'EUR',
			'2026-11-23 10:53:34.123456+02', '2026-11-23 10:53:34', '2026-11-23', '10:53:34.5',
			'\x00ff10', '{1,NULL,3}', '{"a b",NULL,"c\"d"}', '{{1,2},{3,4}}',
			'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
			(SELECT string_agg(md5(i::text), '') FROM generate_series(1, 1250) i), 'first')`,
		`INSERT INTO typed (id) VALUES (2)`,
		`UPDATE typed SET note = 'second' WHERE id = 1`)
	if !recv.Wait(walhooktest.Patience(), func(r *receiver.Receiver) bool { return len(r.Deliveries()) >= 3 }) {
		t.Fatalf("got %d deliveries, want 3", len(recv.Deliveries()))
	}
	got := recv.Deliveries()
	var bigWant string
	for i := 1; i <= 1250; i++ {
		bigWant += md5hex(fmt.Sprint(i))
	}
	wantFirst := `{"id":1,"i2":-2,"i4":40000,"f4":1.5,"f8":"NaN","num":"12345678901234567890.0000000001","flag":true,` +
		`"doc":{"a": "x", "b": [1, 2, {"c": null}]},"raw":{"k" : 1},"label":"lbl","code":"EUR",` +
		`"at":"2026-11-23T08:53:34.123456Z","local":"2026-11-23T10:53:34","day":"2026-11-23","tod":"10:53:34.5",` +
		`"blob":"AP8Q","ints":[1,null,3],"words":["a b",null,"c\"d"],"nested":[[1,2],[3,4]],` +
		`"uid":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11","big":"` + bigWant + `","note":"%s"}`
	wantNull := `{"id":2,"i2":null,"i4":null,"f4":null,"f8":null,"num":null,"flag":null,"doc":null,"raw":null,"label":null,"code":null,` +
		`"at":null,"local":null,"day":null,"tod":null,"blob":null,"ints":null,"words":null,"nested":null,"uid":null,"big":null,"note":null}`
	want := map[string]string{
		"typed.created/1": fmt.Sprintf(wantFirst, "first"),
		"typed.created/2": wantNull,
		"typed.updated/1": fmt.Sprintf(wantFirst, "second"),
	}
	for _, d := range got {
		var id struct{ ID int }
		_ = json.Unmarshal(d.Body, &id)
		key := fmt.Sprintf("%s/%d", d.Topic, id.ID)
		if w, ok := want[key]; !ok {
			t.Errorf("unexpected delivery %s", key)
		} else if string(d.Body) != w {
			t.Errorf("%s body:\n got %s\nwant %s", key, abbreviate(string(d.Body)), abbreviate(w))
		}
		delete(want, key)
	}
	for k := range want {
		t.Errorf("missing delivery %s", k)
	}
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func abbreviate(s string) string {
	return regexp.MustCompile(`[0-9a-f]{200,}`).ReplaceAllStringFunc(s, func(m string) string {
		return fmt.Sprintf("%s…(%d hex chars)", m[:16], len(m))
	})
}

// TestRestartDeliversEverything: with the receiver failing, stop walhook,
// restart it against a receiver that succeeds, and every event arrives.
func TestRestartDeliversEverything(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, shop.Schema)
	recv, url := newReceiver(t, secrets(1))
	recv.Respond(func(*receiver.Delivery) (int, http.Header) { return http.StatusInternalServerError, nil })
	cfg := parseConfig(t, baseConfig(t, db, "")+fmt.Sprintf(`webhooks:
  - { id: 1, topic: product.created, delivery_url: %q, secret: %q }
`, url, secret))
	cfg.Delivery.MaxFailures = 1000 // however many attempts fail before the stop, the webhook stays active
	in := start(t, cfg)
	for i := 1; i <= 20; i++ {
		pgtest.Exec(t, db, fmt.Sprintf(`INSERT INTO products (id, name, sku, price) VALUES (%d, 'p', 'sku%d', 1)`, i, i))
	}
	if !recv.Wait(walhooktest.Patience(), func(r *receiver.Receiver) bool { return len(r.Deliveries()) >= 1 }) {
		t.Fatal("no delivery attempt reached the failing receiver")
	}
	in.stop(t)

	recv.Respond(nil)
	start(t, cfg)
	walhooktest.WaitCount(t, "the 20 events to arrive after the restart", 20, func() int { return len(distinctIDs(recv.Accepted())) })
}

func distinctIDs(ds []receiver.Delivery) []string {
	var ids []string
	for _, d := range ds {
		if !slices.Contains(ids, d.DeliveryID) {
			ids = append(ids, d.DeliveryID)
		}
	}
	return ids
}
