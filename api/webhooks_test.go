package api

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walhook/walhook/webhook"
)

func TestCreate(t *testing.T) {
	now := time.Date(2026, 3, 4, 21, 5, 0, 0, time.UTC)
	e := newEnv(t, func(o *Options) { o.Now = func() time.Time { return now } })
	tests := []struct {
		name     string
		body     any
		status   int
		code     string
		check    func(t *testing.T, h hook, r response)
		notApply bool
	}{
		{name: "minimal, defaults", body: map[string]any{"topic": "order.created", "delivery_url": "https://hooks.example.com/a"},
			status: 201, check: func(t *testing.T, h hook, r response) {
				if h.Name != "Webhook created on Mar 05, 2026 @ 12:05 AM" {
					t.Errorf("name = %q", h.Name)
				}
				if h.Secret == nil || len(*h.Secret) != 50 {
					t.Errorf("secret = %v, want 50 generated characters", h.Secret)
				}
				if h.Status != "active" || h.Resource != "order" || h.Event != "created" || len(h.Hooks) != 1 || h.Hooks[0] != "walhook:order:insert" {
					t.Errorf("got %+v", h)
				}
				if want := fmt.Sprintf("%s/wp-json/wc/v3/webhooks/%d", e.tls.URL, h.ID); r.header.Get("Location") != want {
					t.Errorf("Location = %q, want %s", r.header.Get("Location"), want)
				}
				if h.Links.Self[0].Href != r.header.Get("Location") || !strings.HasPrefix(h.Links.Collection[0].Href, "https://127.0.0.1:") {
					t.Errorf("_links = %+v", h.Links)
				}
			}},
		{name: "sent status ignored, secret kept", body: map[string]any{"name": "Orders", "status": "paused", "secret": "s3cret", "topic": "order.updated", "delivery_url": "http://hooks.example.com/b"},
			status: 201, check: func(t *testing.T, h hook, _ response) {
				if h.Status != "active" || h.Name != "Orders" || h.Secret == nil || *h.Secret != "s3cret" {
					t.Errorf("got %+v", h)
				}
			}},
		{name: "action topic", body: map[string]any{"topic": "action.order_paid", "delivery_url": "https://hooks.example.com/c"},
			status: 201, check: func(t *testing.T, h hook, _ response) {
				if h.Resource != "action" || h.Event != "order_paid" || h.Hooks[0] != "order_paid" {
					t.Errorf("got %+v", h)
				}
			}},
		{name: "wildcard topic", body: map[string]any{"topic": "order.*", "delivery_url": "https://hooks.example.com/w"},
			status: 201, check: func(t *testing.T, h hook, _ response) {
				if h.Topic != "order.*" || h.Resource != "order" || h.Event != "*" ||
					strings.Join(h.Hooks, ",") != "walhook:order:insert,walhook:order:update,walhook:order:delete" {
					t.Errorf("got %+v", h)
				}
			}},
		{name: "wildcard of an unconfigured resource", body: map[string]any{"topic": "invoice.*", "delivery_url": "https://hooks.example.com/a"}, status: 400, code: "woocommerce_rest_shop_webhook_invalid_topic"},
		{name: "wildcard resource", body: map[string]any{"topic": "*.created", "delivery_url": "https://hooks.example.com/a"}, status: 400, code: "woocommerce_rest_shop_webhook_invalid_topic"},
		{name: "filter refused", body: map[string]any{"topic": "order.updated", "filter": `row.status == "completed"`, "delivery_url": "https://hooks.example.com/a"}, status: 400, code: "rest_invalid_param"},
		{name: "id sent", body: map[string]any{"id": 7, "topic": "order.created", "delivery_url": "https://hooks.example.com/a"}, status: 400, code: "woocommerce_rest_shop_webhook_exists"},
		{name: "bad event", body: map[string]any{"topic": "order.exploded", "delivery_url": "https://hooks.example.com/a"}, status: 400, code: "woocommerce_rest_shop_webhook_invalid_topic"},
		{name: "unconfigured resource", body: map[string]any{"topic": "invoice.created", "delivery_url": "https://hooks.example.com/a"}, status: 400, code: "woocommerce_rest_shop_webhook_invalid_topic"},
		{name: "empty topic", body: map[string]any{"topic": "", "delivery_url": "https://hooks.example.com/a"}, status: 400, code: "woocommerce_rest_shop_webhook_invalid_topic"},
		{name: "ftp url", body: map[string]any{"topic": "order.created", "delivery_url": "ftp://hooks.example.com/a"}, status: 400, code: "woocommerce_rest_shop_webhook_invalid_delivery_url"},
		{name: "upper-case scheme", body: map[string]any{"topic": "order.created", "delivery_url": "HTTPS://hooks.example.com/a"}, status: 400, code: "woocommerce_rest_shop_webhook_invalid_delivery_url"},
		{name: "no host", body: map[string]any{"topic": "order.created", "delivery_url": "http:///a"}, status: 400, code: "woocommerce_rest_shop_webhook_invalid_delivery_url"},
		{name: "space", body: map[string]any{"topic": "order.created", "delivery_url": "http://hooks.example.com/a b"}, status: 400, code: "woocommerce_rest_shop_webhook_invalid_delivery_url"},
		{name: "policy refuses", body: map[string]any{"topic": "order.created", "delivery_url": "https://blocked.example/a"}, status: 400, code: "woocommerce_rest_shop_webhook_invalid_delivery_url"},
		{name: "missing both", body: map[string]any{"name": "x"}, status: 400, code: "rest_missing_callback_param"},
		{name: "name not a string", body: map[string]any{"name": 5, "topic": "order.created", "delivery_url": "https://hooks.example.com/a"}, status: 400, code: "rest_invalid_param"},
		{name: "malformed JSON", body: `{"topic": "order.created",`, status: 400, code: "rest_invalid_json"},
		{name: "JSON array", body: `[1,2]`, status: 400, code: "rest_invalid_json"},
		{name: "trailing data", body: `{"topic": "order.created"} {}`, status: 400, code: "rest_invalid_json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, applied := e.count(), e.applied.Load()
			r := e.do("POST", "/wp-json/wc/v3/webhooks", tc.body)
			if r.status != tc.status {
				t.Fatalf("status = %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.code != "" {
				if code, _ := r.errCode(t); code != tc.code {
					t.Errorf("code = %s, want %s (%s)", code, tc.code, r.body)
				}
				if e.count() != before || e.applied.Load() != applied {
					t.Errorf("a refused create changed something")
				}
				return
			}
			if e.applied.Load() != applied+1 {
				t.Errorf("Apply called %d times, want 1", e.applied.Load()-applied)
			}
			var h hook
			r.json(t, &h)
			tc.check(t, h, r)
		})
	}
	t.Run("missing params listed", func(t *testing.T) {
		r := e.do("POST", "/wp-json/wc/v3/webhooks", map[string]any{})
		var body struct {
			Data struct {
				Params []string `json:"params"`
			} `json:"data"`
		}
		r.json(t, &body)
		if strings.Join(body.Data.Params, ",") != "topic,delivery_url" {
			t.Errorf("params = %v", body.Data.Params)
		}
	})
	t.Run("form body", func(t *testing.T) {
		req := e.newRequest(e.tls, "POST", "/wp-json/wc/v3/webhooks", "topic=product.deleted&delivery_url=https%3A%2F%2Fhooks.example.com%2Fform&name=From+form")
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(keyRW.ConsumerKey, keyRW.ConsumerSecret)
		r := e.send(e.tls.Client(), req)
		var h hook
		r.json(t, &h)
		if r.status != 201 || h.Name != "From form" || h.DeliveryURL != "https://hooks.example.com/form" {
			t.Errorf("%d %s", r.status, r.body)
		}
	})
}

func TestSecretsAreRandom(t *testing.T) {
	seen := map[string]bool{}
	for range 20 {
		s, err := newSecret()
		if err != nil {
			t.Fatal(err)
		}
		if len(s) != 50 || seen[s] || strings.Trim(s, secretChars) != "" {
			t.Fatalf("secret %q", s)
		}
		seen[s] = true
	}
}

func TestGet(t *testing.T) {
	e := newEnv(t)
	h := e.create("one", "order.created")
	tests := []struct {
		path       string
		status     int
		code, msg  string
		wantSecret bool
	}{
		{path: fmt.Sprintf("/wp-json/wc/v3/webhooks/%d", h.ID), status: 200},
		{path: fmt.Sprintf("/wp-json/wc/v3/webhooks/%d/", h.ID), status: 200},
		{path: fmt.Sprintf("/wp-json/wc/v3/webhooks/%d?context=edit", h.ID), status: 200, wantSecret: true},
		{path: fmt.Sprintf("/wp-json/wc/v3/webhooks/%d?context=embed", h.ID), status: 400, code: "rest_invalid_param"},
		{path: "/wp-json/wc/v3/webhooks/999", status: 400, code: "woocommerce_rest_shop_webhook_invalid_id", msg: "ID is invalid."},
		{path: "/wp-json/wc/v3/webhooks/99999999999999999999", status: 400, code: "woocommerce_rest_shop_webhook_invalid_id"},
		{path: "/wp-json/wc/v3/webhooks/0", status: 404, code: "woocommerce_rest_shop_webhook_invalid_id", msg: "Invalid ID."},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			r := e.do("GET", tc.path, nil)
			if r.status != tc.status {
				t.Fatalf("status = %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.code != "" {
				code, msg := r.errCode(t)
				if code != tc.code || (tc.msg != "" && msg != tc.msg) {
					t.Errorf("got %s %q", code, msg)
				}
				return
			}
			var got hook
			r.json(t, &got)
			if (got.Secret != nil) != tc.wantSecret || strings.Contains(string(r.body), `"secret"`) != tc.wantSecret {
				t.Errorf("secret shown = %v, want %v", got.Secret != nil, tc.wantSecret)
			}
			if got.ID != h.ID || got.Topic != "order.created" {
				t.Errorf("got %+v", got)
			}
		})
	}
	t.Run("dates", func(t *testing.T) {
		w, err := e.store.Webhook(context.Background(), h.ID)
		if err != nil {
			t.Fatal(err)
		}
		var got hook
		e.do("GET", fmt.Sprintf("/wp-json/wc/v3/webhooks/%d", h.ID), nil).json(t, &got)
		if got.DateCreatedGMT != w.DateCreated.UTC().Format("2006-01-02T15:04:05") ||
			got.DateCreated != w.DateCreated.In(siteTZ).Format("2006-01-02T15:04:05") ||
			got.DateModifiedGMT != w.DateModified.UTC().Format("2006-01-02T15:04:05") {
			t.Errorf("dates %+v, stored %v", got, w.DateCreated)
		}
	})
}

func TestUpdate(t *testing.T) {
	e := newEnv(t)
	h := e.create("upd", "order.created")
	path := fmt.Sprintf("/wp-json/wc/v3/webhooks/%d", h.ID)
	tests := []struct {
		name   string
		method string
		body   any
		status int
		code   string
		check  func(t *testing.T, got hook)
	}{
		{name: "pause", method: "PUT", body: map[string]any{"status": "paused"}, status: 200,
			check: func(t *testing.T, got hook) {
				if got.Status != "paused" || got.Secret == nil {
					t.Errorf("got %+v", got)
				}
			}},
		{name: "empty values ignored", method: "PATCH", body: map[string]any{"name": "", "topic": "", "delivery_url": "", "secret": "", "status": ""}, status: 200,
			check: func(t *testing.T, got hook) {
				if got.Name != "upd" || got.Topic != "order.created" || got.Status != "paused" {
					t.Errorf("got %+v", got)
				}
			}},
		{name: "change all", method: "POST", body: map[string]any{"name": "renamed", "topic": "product.updated", "delivery_url": "https://hooks.example.com/new", "secret": "new-secret", "status": "Active"}, status: 200,
			check: func(t *testing.T, got hook) {
				if got.Name != "renamed" || got.Topic != "product.updated" || got.DeliveryURL != "https://hooks.example.com/new" || *got.Secret != "new-secret" || got.Status != "active" {
					t.Errorf("got %+v", got)
				}
			}},
		{name: "status query parameter", method: "PUT", body: nil, status: 200},
		{name: "bad status", method: "PUT", body: map[string]any{"status": "sleeping"}, status: 400, code: "woocommerce_rest_shop_webhook_invalid_status"},
		{name: "bad topic", method: "PUT", body: map[string]any{"topic": "order"}, status: 400, code: "woocommerce_rest_shop_webhook_invalid_topic"},
		{name: "bad url", method: "PUT", body: map[string]any{"delivery_url": "mailto:x@example.com"}, status: 400, code: "woocommerce_rest_shop_webhook_invalid_delivery_url"},
		{name: "refused url", method: "PUT", body: map[string]any{"delivery_url": "https://blocked.example/"}, status: 400, code: "woocommerce_rest_shop_webhook_invalid_delivery_url"},
		{name: "wrong type", method: "PUT", body: map[string]any{"status": true}, status: 400, code: "rest_invalid_param"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := path
			if tc.body == nil {
				p += "?status=disabled"
			}
			r := e.do(tc.method, p, tc.body)
			if r.status != tc.status {
				t.Fatalf("status = %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.code != "" {
				if code, _ := r.errCode(t); code != tc.code {
					t.Errorf("code = %s, want %s", code, tc.code)
				}
				return
			}
			if tc.check != nil {
				var got hook
				r.json(t, &got)
				tc.check(t, got)
			}
		})
	}
	for _, p := range []string{"/wp-json/wc/v3/webhooks/999", "/wp-json/wc/v3/webhooks/0"} {
		r := e.do("PUT", p, map[string]any{"status": "paused"})
		if code, msg := r.errCode(t); r.status != 400 || code != "woocommerce_rest_shop_webhook_invalid_id" || msg != "ID is invalid." {
			t.Errorf("PUT %s: %d %s", p, r.status, r.body)
		}
	}
}

func TestConfigWebhooks(t *testing.T) {
	e := newEnv(t)
	e.configWebhook(1, "From YAML", webhook.StatusActive)
	path := "/wp-json/wc/v3/webhooks/1"
	var listed []hook
	e.do("GET", "/wp-json/wc/v3/webhooks?context=edit", nil).json(t, &listed)
	if len(listed) != 1 || listed[0].Name != "From YAML" || listed[0].Secret != nil {
		t.Fatalf("listed %+v", listed)
	}
	tests := []struct {
		name   string
		method string
		path   string
		body   any
		status int
		code   string
	}{
		{name: "disable", method: "PUT", path: path, body: map[string]any{"status": "disabled"}, status: 200},
		{name: "re-enable sending the object back", method: "PUT", path: path, body: map[string]any{"status": "active", "name": "From YAML", "topic": "order.updated", "delivery_url": "https://hooks.example.com/config"}, status: 200},
		{name: "rename", method: "PUT", path: path, body: map[string]any{"name": "Other"}, status: 400, code: "woocommerce_rest_shop_webhook_read_only"},
		{name: "new url", method: "PATCH", path: path, body: map[string]any{"delivery_url": "https://hooks.example.com/other", "status": "paused"}, status: 400, code: "woocommerce_rest_shop_webhook_read_only"},
		{name: "secret", method: "PUT", path: path, body: map[string]any{"secret": "x"}, status: 400, code: "woocommerce_rest_shop_webhook_read_only"},
		{name: "delete", method: "DELETE", path: path + "?force=true", status: 400, code: "woocommerce_rest_shop_webhook_read_only"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.method, tc.path, tc.body)
			if r.status != tc.status {
				t.Fatalf("status = %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.code != "" {
				code, msg := r.errCode(t)
				if code != tc.code || !strings.Contains(msg, "/etc/walhook/walhook.yaml") {
					t.Errorf("got %s %q", code, msg)
				}
			}
		})
	}
	w, err := e.store.Webhook(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if w.Status != webhook.StatusActive || w.Name != "From YAML" || w.DeliveryURL != "https://hooks.example.com/config" {
		t.Errorf("stored %+v", w)
	}
}

func TestDelete(t *testing.T) {
	e := newEnv(t)
	h := e.create("del", "coupon.deleted")
	path := fmt.Sprintf("/wp-json/wc/v3/webhooks/%d", h.ID)
	tests := []struct {
		name   string
		path   string
		status int
		code   string
	}{
		{name: "no force", path: path, status: 501, code: "woocommerce_rest_trash_not_supported"},
		{name: "force false", path: path + "?force=false", status: 501, code: "woocommerce_rest_trash_not_supported"},
		{name: "force not boolean", path: path + "?force=maybe", status: 400, code: "rest_invalid_param"},
		{name: "unknown", path: "/wp-json/wc/v3/webhooks/999?force=true", status: 404, code: "woocommerce_rest_shop_webhook_invalid_id"},
		{name: "force", path: path + "?force=true", status: 200},
		{name: "gone", path: path + "?force=true", status: 404, code: "woocommerce_rest_shop_webhook_invalid_id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("DELETE", tc.path, nil)
			if r.status != tc.status {
				t.Fatalf("status = %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.code != "" {
				if code, _ := r.errCode(t); code != tc.code {
					t.Errorf("code = %s, want %s", code, tc.code)
				}
				return
			}
			var got hook
			r.json(t, &got)
			if got.ID != h.ID || got.Secret == nil || *got.Secret != *h.Secret {
				t.Errorf("deleted object %+v", got)
			}
		})
	}
	if r := e.do("GET", path, nil); r.status != 400 {
		t.Errorf("GET after delete: %d", r.status)
	}
}

// batchItem is one result of a batch: a webhook or an error.
type batchItem struct {
	hook
	Error *struct {
		Code string `json:"code"`
		Data struct {
			Status int `json:"status"`
		} `json:"data"`
	} `json:"error"`
}

func TestBatch(t *testing.T) {
	e := newEnv(t)
	e.configWebhook(50, "yaml", webhook.StatusActive)
	a, b := e.create("a", "order.created"), e.create("b", "order.updated")
	applied := e.applied.Load()
	r := e.do("POST", "/wp-json/wc/v3/webhooks/batch", map[string]any{
		"create": []any{
			map[string]any{"name": "c", "topic": "customer.created", "delivery_url": "https://hooks.example.com/c"},
			map[string]any{"name": "bad", "topic": "customer.restored", "delivery_url": "https://hooks.example.com/c"},
		},
		"update": []any{
			map[string]any{"id": a.ID, "status": "paused"},
			map[string]any{"id": 999, "status": "paused"},
			map[string]any{"id": 50, "status": "disabled"},
		},
		"delete": []any{b.ID, 0, 50, 998},
	})
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var got struct{ Create, Update, Delete []batchItem }
	r.json(t, &got)
	summary := func(items []batchItem) string {
		var s []string
		for _, it := range items {
			if it.Error != nil {
				s = append(s, fmt.Sprintf("%d:%s/%d", it.ID, it.Error.Code, it.Error.Data.Status))
			} else {
				s = append(s, fmt.Sprintf("%d:%s", it.ID, it.Status))
			}
		}
		return strings.Join(s, " ")
	}
	want := []string{
		fmt.Sprintf("%d:active 0:woocommerce_rest_shop_webhook_invalid_topic/400", b.ID+1),
		fmt.Sprintf("%d:paused 999:woocommerce_rest_shop_webhook_invalid_id/400 50:disabled", a.ID),
		fmt.Sprintf("%d:active 50:woocommerce_rest_shop_webhook_read_only/400 998:woocommerce_rest_shop_webhook_invalid_id/404", b.ID),
	}
	for i, items := range [][]batchItem{got.Create, got.Update, got.Delete} {
		if s := summary(items); s != want[i] {
			t.Errorf("batch part %d = %q, want %q", i, s, want[i])
		}
	}
	if e.applied.Load() != applied+1 {
		t.Errorf("Apply called %d times, want once", e.applied.Load()-applied)
	}

	t.Run("only non-empty keys", func(t *testing.T) {
		r := e.do("PUT", "/wp-json/wc/v3/webhooks/batch", map[string]any{"update": []any{map[string]any{"id": a.ID, "status": "active"}}})
		if r.status != 200 || strings.Contains(string(r.body), `"create"`) || strings.Contains(string(r.body), `"delete"`) {
			t.Errorf("%d %s", r.status, r.body)
		}
	})
	t.Run("too many", func(t *testing.T) {
		ids := make([]any, 101)
		for i := range ids {
			ids[i] = i + 1000
		}
		before := e.count()
		r := e.do("POST", "/wp-json/wc/v3/webhooks/batch", map[string]any{"delete": ids[:60], "create": ids[60:]})
		code, msg := r.errCode(t)
		if r.status != 413 || code != "woocommerce_rest_request_entity_too_large" || msg != "Unable to accept more than 100 items for this request." || e.count() != before {
			t.Errorf("%d %s", r.status, r.body)
		}
	})
	t.Run("not a list", func(t *testing.T) {
		r := e.do("POST", "/wp-json/wc/v3/webhooks/batch", map[string]any{"create": "x"})
		if code, _ := r.errCode(t); r.status != 400 || code != "rest_invalid_param" {
			t.Errorf("%d %s", r.status, r.body)
		}
	})
}

// TestConcurrentWrites runs creates and updates in parallel: ids stay
// unique and every write lands.
func TestConcurrentWrites(t *testing.T) {
	e := newEnv(t)
	h := e.create("shared", "order.created")
	var wg sync.WaitGroup
	ids := make(chan int64, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				r := e.do("POST", "/wp-json/wc/v3/webhooks", map[string]any{"topic": "order.created", "delivery_url": "https://hooks.example.com/x"})
				var got hook
				if r.status == 201 && r.body != nil {
					_ = jsonUnmarshal(r.body, &got)
				}
				ids <- got.ID
				return
			}
			st := []string{"paused", "active"}[i%4/2]
			if r := e.do("PUT", fmt.Sprintf("/wp-json/wc/v3/webhooks/%d", h.ID), map[string]any{"status": st}); r.status != 200 {
				t.Errorf("update: %d %s", r.status, r.body)
			}
		}()
	}
	wg.Wait()
	close(ids)
	seen := map[int64]bool{}
	for id := range ids {
		if id == 0 || seen[id] {
			t.Errorf("create gave id %d twice or failed", id)
		}
		seen[id] = true
	}
	if n := e.count(); n != 5 {
		t.Errorf("%d webhooks stored, want 5", n)
	}
}

func TestRoutesAndLimits(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		method, path string
		body         any
		status       int
		code         string
	}{
		{"GET", "/wp-json/wc/v3/orders", nil, 404, "rest_no_route"},
		{"GET", "/wp-json/wc/v3/webhooks/abc", nil, 404, "rest_no_route"},
		{"DELETE", "/wp-json/wc/v3/webhooks", nil, 404, "rest_no_route"},
		{"PUT", "/wp-json/wc/v3/webhooks", nil, 404, "rest_no_route"},
		{"GET", "/wp-json/wc/v3/webhooks/batch", nil, 404, "rest_no_route"},
		{"DELETE", "/wp-json/wc/v3/webhooks/batch", nil, 404, "rest_no_route"},
		{"POST", "/wp-json/wc/v3/webhooks", `{"name":"` + strings.Repeat("x", maxBodyBytes) + `"}`, 413, "woocommerce_rest_request_entity_too_large"},
		{"GET", "/wp-json/", nil, 200, ""},
		{"GET", "/wp-json/wc/v3", nil, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			r := e.do(tc.method, tc.path, tc.body)
			if r.status != tc.status {
				t.Fatalf("status = %d, want %d: %.200s", r.status, tc.status, r.body)
			}
			if tc.code != "" {
				if code, _ := r.errCode(t); code != tc.code {
					t.Errorf("code = %s, want %s", code, tc.code)
				}
			}
		})
	}
	t.Run("namespace index", func(t *testing.T) {
		var idx struct {
			Namespace string                    `json:"namespace"`
			Routes    map[string]map[string]any `json:"routes"`
		}
		e.doAs(Key{}, "GET", "/wp-json/wc/v3", nil).json(t, &idx)
		if idx.Namespace != "wc/v3" || idx.Routes["/wc/v3/webhooks"] == nil || idx.Routes["/wc/v3/webhooks/batch"] == nil {
			t.Errorf("index %+v", idx)
		}
	})
	t.Run("no keys: API off", func(t *testing.T) {
		off := newEnv(t, func(o *Options) { o.Keys = nil })
		for _, p := range []string{"/wp-json/", "/wp-json/wc/v3", "/wp-json/wc/v3/webhooks"} {
			r := off.do("GET", p, nil)
			if code, _ := r.errCode(t); r.status != 404 || code != "rest_no_route" {
				t.Errorf("GET %s: %d %s", p, r.status, r.body)
			}
		}
	})
}
