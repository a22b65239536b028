package woocommerce

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/walhook/walhook/internal/pgtest"
	"github.com/walhook/walhook/payload"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// env is the environment the profile is loaded with in tests.
func env(db string) map[string]string {
	return map[string]string{"DATABASE_URL": db, "WEBHOOK_URL": "https://hooks.example.com/woo", "WEBHOOK_SECRET": "s3cret"}
}

// TestProfileConfig: the shipped configuration loads, with a payload
// query for each of the four core resources and a webhook per core topic.
func TestProfileConfig(t *testing.T) {
	cfg, err := Load(env("postgres://walhook@localhost/shop"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"order", "product", "customer", "coupon"} {
		r, ok := cfg.Resource(name)
		if !ok || r.PayloadQuery == "" {
			t.Errorf("resource %s: configured %v, payload_query %q", name, ok, r.PayloadQuery)
		}
	}
	if len(cfg.Webhooks) != 12 {
		t.Errorf("%d webhooks, want 12", len(cfg.Webhooks))
	}
	if cfg.Source != "https://shop.example.com/" {
		t.Errorf("source = %q", cfg.Source)
	}
}

// TestShapes builds each resource's document for the sample shop with the
// profile's queries (through the payload package, as walhook does) and
// compares its keys and JSON types, recursively, with WooCommerce's
// documented REST API v3 example in testdata/<resource>.json.
func TestShapes(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, Schema)
	pgtest.Exec(t, db, "BEGIN; "+strings.Join(Sample(1), ";\n")+"; COMMIT;")
	pgtest.Exec(t, db, "BEGIN; "+strings.Join(Paid(1), ";\n")+"; COMMIT;")
	b := openProfile(t, db)

	for _, resource := range []string{"order", "product", "customer", "coupon"} {
		t.Run(resource, func(t *testing.T) {
			docs, err := b.Build(context.Background(), resource, []string{"1"})
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			doc, ok := docs["1"]
			if !ok {
				t.Fatal("no document for id 1")
			}
			var got, want any
			if err := json.Unmarshal(doc, &got); err != nil {
				t.Fatalf("document is not JSON: %v\n%s", err, doc)
			}
			example, err := os.ReadFile(filepath.Join("testdata", resource+".json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(example, &want); err != nil {
				t.Fatal(err)
			}
			for _, p := range shapeDiff("", want, got) {
				t.Error(p)
			}
			if t.Failed() || testing.Verbose() {
				t.Logf("document:\n%s", doc)
			}
		})
	}

	// The values, not only the shapes: the order has its three line
	// items and the state after Paid; money is a string with two decimals.
	docs, err := b.Build(context.Background(), "order", []string{"1"})
	if err != nil {
		t.Fatal(err)
	}
	var order struct {
		Status    string `json:"status"`
		Total     string `json:"total"`
		DatePaid  *string
		LineItems []struct {
			ProductID int64  `json:"product_id"`
			Quantity  int    `json:"quantity"`
			Subtotal  string `json:"subtotal"`
			MetaData  []struct {
				Key string `json:"key"`
			} `json:"meta_data"`
		} `json:"line_items"`
		Links struct {
			Self []struct {
				Href string `json:"href"`
			} `json:"self"`
		} `json:"_links"`
	}
	if err := json.Unmarshal(docs["1"], &order); err != nil {
		t.Fatal(err)
	}
	if order.Status != "processing" || order.Total != "74.05" || len(order.LineItems) != 3 {
		t.Errorf("order: status %q total %q, %d line items; want processing, 74.05, 3", order.Status, order.Total, len(order.LineItems))
	}
	if len(order.LineItems) == 3 && (order.LineItems[0].ProductID != 1 || order.LineItems[0].Quantity != 2 ||
		order.LineItems[0].Subtotal != "43.98" || len(order.LineItems[1].MetaData) != 1) {
		t.Errorf("line items = %+v", order.LineItems)
	}
	if len(order.Links.Self) != 1 || order.Links.Self[0].Href != "https://shop.example.com/wp-json/wc/v3/orders/1" {
		t.Errorf("_links = %+v", order.Links)
	}
}

// openProfile opens a payload builder with the profile's queries.
func openProfile(t *testing.T, db string) *payload.Builder {
	t.Helper()
	cfg, err := Load(env(db))
	if err != nil {
		t.Fatal(err)
	}
	var qs []payload.Query
	for _, r := range cfg.Resources {
		qs = append(qs, payload.Query{Resource: r.Name, SQL: r.PayloadQuery})
	}
	b, err := payload.Open(context.Background(), payload.Options{ConnString: db, Queries: qs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// TestSiteSettings: dates follow the site's time zone (date_created) and
// UTC (date_created_gmt), and links the site's URL, from shop_options.
func TestSiteSettings(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, Schema)
	pgtest.Exec(t, db, "BEGIN; "+strings.Join(Sample(1), ";\n")+"; COMMIT;",
		`UPDATE shop_options SET value = 'https://store.example.org/' WHERE name = 'siteurl'`,
		`UPDATE coupons SET date_created = '2017-03-21 18:23:00+00' WHERE id = 1`)
	b := openProfile(t, db)
	docs, err := b.Build(context.Background(), "coupon", []string{"1"})
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(docs["1"], &c); err != nil {
		t.Fatal(err)
	}
	// America/Sao_Paulo is UTC-3, as in WooCommerce's documented example.
	if c["date_created"] != "2017-03-21T15:23:00" || c["date_created_gmt"] != "2017-03-21T18:23:00" {
		t.Errorf("dates = %v / %v", c["date_created"], c["date_created_gmt"])
	}
	if got := fmt.Sprint(c["_links"]); !strings.Contains(got, "https://store.example.org/wp-json/wc/v3/coupons/1") {
		t.Errorf("_links = %s", got)
	}
}

// shapeDiff lists where got's shape differs from want's: a key missing
// or extra, or a value of another JSON type. Arrays compare their first
// elements when both have one. A null on either side matches any type:
// WooCommerce documents such fields as nullable (date_paid, stock_quantity,
// usage_limit…).
func shapeDiff(path string, want, got any) []string {
	if want == nil || got == nil {
		return nil
	}
	if jsonType(want) != jsonType(got) {
		return []string{fmt.Sprintf("%s: %s, want %s (as WooCommerce's example)", orRoot(path), jsonType(got), jsonType(want))}
	}
	var out []string
	switch w := want.(type) {
	case map[string]any:
		g := got.(map[string]any)
		keys := make([]string, 0, len(w)+len(g))
		for k := range w {
			keys = append(keys, k)
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			wv, inW := w[k]
			gv, inG := g[k]
			switch {
			case !inG:
				out = append(out, fmt.Sprintf("%s.%s: missing", path, k))
			case !inW:
				out = append(out, fmt.Sprintf("%s.%s: not in WooCommerce's example", path, k))
			default:
				out = append(out, shapeDiff(path+"."+k, wv, gv)...)
			}
		}
	case []any:
		g := got.([]any)
		if len(w) > 0 && len(g) > 0 {
			out = append(out, shapeDiff(path+"[0]", w[0], g[0])...)
		}
	}
	return out
}

func orRoot(path string) string {
	if path == "" {
		return "the document"
	}
	return path
}

// jsonType names the JSON type of a value decoded by encoding/json.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// TestShapeDiff: the comparison finds what it must, so TestShapes can fail.
func TestShapeDiff(t *testing.T) {
	want := map[string]any{"id": 1.0, "total": "1.00", "items": []any{map[string]any{"qty": 1.0}}, "paid": nil}
	for _, tc := range []struct {
		name string
		got  string
		diff []string
	}{
		{"same", `{"id": 2, "total": "3.00", "items": [{"qty": 3}], "paid": "2017-01-01T00:00:00"}`, nil},
		{"empty array", `{"id": 2, "total": "3.00", "items": [], "paid": null}`, nil},
		{"money as a number", `{"id": 2, "total": 3.00, "items": [], "paid": null}`, []string{".total: number, want string (as WooCommerce's example)"}},
		{"missing and extra", `{"id": 2, "totals": "3.00", "items": [], "paid": null}`, []string{".total: missing", ".totals: not in WooCommerce's example"}},
		{"nested", `{"id": 2, "total": "3.00", "items": [{"qty": "3"}], "paid": null}`, []string{".items[0].qty: string, want number (as WooCommerce's example)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got any
			if err := json.Unmarshal([]byte(tc.got), &got); err != nil {
				t.Fatal(err)
			}
			if d := shapeDiff("", want, got); !slices.Equal(d, tc.diff) {
				t.Errorf("shapeDiff = %q, want %q", d, tc.diff)
			}
		})
	}
}
