package app_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/walhook/walhook/internal/app"
	"github.com/walhook/walhook/internal/pgtest"
	"github.com/walhook/walhook/internal/receiver"
	"github.com/walhook/walhook/internal/shop"
)

// recreateProducts drops the products table and creates it again, as a
// migration tool that rebuilds a table would.
const recreateProducts = `DROP TABLE products;
CREATE TABLE products (
	id            bigserial PRIMARY KEY,
	name          text NOT NULL,
	sku           text NOT NULL UNIQUE,
	price         numeric(12,2) NOT NULL,
	stock         integer NOT NULL DEFAULT 0,
	tags          text[] NOT NULL DEFAULT '{}',
	attributes    jsonb NOT NULL DEFAULT '{}',
	on_sale       boolean NOT NULL DEFAULT false,
	date_modified timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE products REPLICA IDENTITY FULL;`

// productsPublished reports whether publication pub includes products.
func productsPublished(t testing.TB, db, pub string) bool {
	t.Helper()
	var n int
	queryRow(t, db, `SELECT count(*) FROM pg_publication_tables WHERE pubname = $1 AND schemaname = 'public' AND tablename = 'products'`,
		[]any{pub}, &n)
	return n == 1
}

// createdProducts returns the ids of the product.created deliveries
// webhook 1 received, sorted.
func createdProducts(t testing.TB, ds []receiver.Delivery) []int {
	var ids []int
	for _, d := range ds {
		if d.WebhookID == 1 && d.Topic == "product.created" {
			ids = append(ids, productOf(t, d.Body).ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// waitProducts waits until webhook 1 has received product.created for
// exactly want.
func waitProducts(t testing.TB, recv *receiver.Receiver, step string, want []int) {
	t.Helper()
	if !recv.Wait(30*time.Second, func(r *receiver.Receiver) bool {
		return slices.Equal(createdProducts(t, r.Accepted()), want)
	}) {
		t.Fatalf("%s: product.created deliveries for %v, want %v", step, createdProducts(t, recv.Accepted()), want)
	}
}

// withPublicationCheck makes walhook check its publication every 100ms.
func withPublicationCheck(o *app.Options) { o.PublicationCheckInterval = 100 * time.Millisecond }

// TestDroppedTableIsReadded pins the bug: a mapped table dropped and
// created again silently left the publication, and its inserts were never
// delivered nor logged. walhook re-adds it to its own publication, warns,
// and the rows inserted after that are delivered.
func TestDroppedTableIsReadded(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, shop.Schema)
	recv, url := newReceiver(t, secrets(1))
	cfg := parseConfig(t, baseConfig(t, db, "")+"webhooks:\n"+hookYAML(1, "product.created", url))
	in := startWith(t, cfg, withPublicationCheck)
	waitStreaming(t, in)

	insertProducts(t, db, 1, 3)
	waitProducts(t, recv, "before the drop", []int{1, 2, 3})

	pgtest.Exec(t, db, recreateProducts)
	eventually(t, "walhook adds products back to its publication", func() bool {
		return productsPublished(t, db, cfg.Postgres.Publication)
	})
	insertProducts(t, db, 10, 14)
	waitProducts(t, recv, "after the re-add", []int{1, 2, 3, 10, 11, 12, 13, 14})

	if v, ok := series(t, in.reg, "walhook_publication_tables_readded_total"); !ok || v != 1 {
		t.Errorf("walhook_publication_tables_readded_total = %v (present %v), want 1", v, ok)
	}
	if v, ok := series(t, in.reg, "walhook_publication_missing_tables"); !ok || v != 0 {
		t.Errorf("walhook_publication_missing_tables = %v (present %v), want 0", v, ok)
	}
	if code, body := readyz(t, in.addr); code != http.StatusOK {
		t.Errorf("/readyz = %d %v after the re-add, want 200", code, body)
	}
	warned := false
	for _, rec := range logRecords(t, in, "a mapped table was missing from walhook's publication (dropped and created again?); added it back. Changes made to it before now were not captured and cannot be recovered") {
		warned = warned || rec["level"] == "WARN" && rec["table"] == "public.products"
	}
	if !warned {
		t.Errorf("no warning naming public.products and the lost changes:\n%s", in.logs.String())
	}
}

// TestDroppedTableInForeignPublication: in a publication walhook did not
// create, walhook does not change it; readiness fails with the table and
// the fix, a gauge counts the table, an error line names the fix, and
// everything recovers once the administrator adds the table back.
func TestDroppedTableInForeignPublication(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, shop.Schema)
	recv, url := newReceiver(t, secrets(1))
	cfg := parseConfig(t, baseConfig(t, db, "")+"webhooks:\n"+hookYAML(1, "product.created", url))
	pub := cfg.Postgres.Publication
	pgtest.Exec(t, db, fmt.Sprintf(`CREATE PUBLICATION %s FOR TABLE coupons, customers, orders, products`, pub))
	in := startWith(t, cfg, withPublicationCheck)
	waitStreaming(t, in)
	insertProducts(t, db, 1, 1)
	waitProducts(t, recv, "before the drop", []int{1})

	pgtest.Exec(t, db, recreateProducts)
	var body map[string]string
	eventually(t, "/readyz to fail", func() bool {
		var code int
		code, body = readyz(t, in.addr)
		return code == http.StatusServiceUnavailable
	})
	fix := fmt.Sprintf(`ALTER PUBLICATION %q ADD TABLE "public"."products"`, pub)
	if body["status"] != "publication_incomplete" || !strings.Contains(body["reason"], "public.products") || !strings.Contains(body["reason"], fix) {
		t.Errorf("/readyz = %v, want status publication_incomplete and a reason naming public.products and %s", body, fix)
	}
	if v, ok := series(t, in.reg, "walhook_publication_missing_tables"); !ok || v != 1 {
		t.Errorf("walhook_publication_missing_tables = %v (present %v), want 1", v, ok)
	}
	logged := false
	for _, rec := range logRecords(t, in, "mapped tables are missing from the publication: their changes are not delivered") {
		p, _ := rec["problem"].(string)
		logged = logged || rec["level"] == "ERROR" && strings.Contains(p, fix)
	}
	if !logged {
		t.Errorf("no error line naming the fix:\n%s", in.logs.String())
	}
	if productsPublished(t, db, pub) {
		t.Fatal("walhook changed a publication it did not create")
	}

	pgtest.Exec(t, db, fix)
	eventually(t, "/readyz to recover", func() bool { code, _ := readyz(t, in.addr); return code == http.StatusOK })
	if v, _ := series(t, in.reg, "walhook_publication_missing_tables"); v != 0 {
		t.Errorf("walhook_publication_missing_tables = %v after the fix, want 0", v)
	}
	insertProducts(t, db, 2, 3)
	waitProducts(t, recv, "after the fix", []int{1, 2, 3})
}
