package api

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/dispatch"
)

// TestNonceFloodIsBounded pins a memory exhaustion: a read-only key
// sending correctly signed requests with 1 MB nonces grew the heap by
// 1 MB a request, nonces were remembered before the permission check,
// and the one cap shared by all keys let a flood lock the write key out.
func TestNonceFloodIsBounded(t *testing.T) {
	e := newEnv(t)
	list := "/wp-json/wc/v3/webhooks"
	create := map[string]any{"topic": "order.deleted", "delivery_url": "https://hooks.example.com/o"}
	n := 0
	nonce := func(size int) string {
		n++
		s := fmt.Sprintf("n%d-", n)
		return s + strings.Repeat("x", size-len(s))
	}

	t.Run("nonce size", func(t *testing.T) {
		e.api.auth.nonces = newNonceCache(maxNoncesPerKey, maxNonceBytesPerKey)
		r := e.signed(oauthRequest{method: "GET", path: list, key: keyRW, nonce: nonce(maxNonceBytes + 1)})
		if code, msg := r.errCode(t); r.status != 401 || code != "woocommerce_rest_authentication_error" || msg != "Invalid nonce - nonce is longer than 128 bytes." {
			t.Errorf("a %d-byte nonce: %d %s", maxNonceBytes+1, r.status, r.body)
		}
		r = e.signed(oauthRequest{method: "GET", path: list, key: keyRW, nonce: nonce(1 << 20)})
		if r.status != 401 {
			t.Errorf("a 1 MiB nonce: %d %s", r.status, r.body)
		}
		if r := e.signed(oauthRequest{method: "GET", path: list, key: keyRW, nonce: nonce(maxNonceBytes)}); r.status != 200 {
			t.Errorf("a %d-byte nonce: %d %s", maxNonceBytes, r.status, r.body)
		}
		if count, bytes := e.api.auth.nonces.usage(keyRW.ConsumerKey); count != 1 || bytes != maxNonceBytes {
			t.Errorf("remembered %d nonces, %d bytes; want the one accepted", count, bytes)
		}
	})

	t.Run("refused requests cost nothing", func(t *testing.T) {
		e.api.auth.nonces = newNonceCache(5, maxNonceBytesPerKey)
		for range 20 {
			r := e.signed(oauthRequest{method: "POST", path: list, key: keyR, nonce: nonce(64), body: create})
			if _, msg := r.errCode(t); r.status != 401 || msg != "The API key provided does not have write permissions." {
				t.Fatalf("read key writes: %d %s", r.status, r.body)
			}
		}
		if count, _ := e.api.auth.nonces.usage(keyR.ConsumerKey); count != 0 {
			t.Errorf("%d nonces of refused requests remembered", count)
		}
		if r := e.signed(oauthRequest{method: "GET", path: list, key: keyR, nonce: nonce(64)}); r.status != 200 {
			t.Errorf("the read key, after its refused writes: %d %s", r.status, r.body)
		}
	})

	t.Run("one key's flood spares the others", func(t *testing.T) {
		e.api.auth.nonces = newNonceCache(5, maxNonceBytesPerKey)
		for i := range 5 {
			if r := e.signed(oauthRequest{method: "GET", path: list, key: keyR, nonce: nonce(64)}); r.status != 200 {
				t.Fatalf("request %d within the budget: %d %s", i, r.status, r.body)
			}
		}
		r := e.signed(oauthRequest{method: "GET", path: list, key: keyR, nonce: nonce(64)})
		if code, _ := r.errCode(t); r.status != 429 || code != "woocommerce_rest_too_many_requests" || r.header.Get("Retry-After") == "" {
			t.Errorf("past the read key's budget: %d %s", r.status, r.body)
		}
		if r := e.signed(oauthRequest{method: "POST", path: list, key: keyW, nonce: nonce(64), body: create}); r.status != 201 {
			t.Errorf("the write key during the read key's flood: %d %s", r.status, r.body)
		}
	})

	t.Run("bytes per key", func(t *testing.T) {
		e.api.auth.nonces = newNonceCache(maxNoncesPerKey, 3*maxNonceBytes-1)
		for i := range 2 {
			if r := e.signed(oauthRequest{method: "GET", path: list, key: keyRW, nonce: nonce(maxNonceBytes)}); r.status != 200 {
				t.Fatalf("request %d within the budget: %d %s", i, r.status, r.body)
			}
		}
		if r := e.signed(oauthRequest{method: "GET", path: list, key: keyRW, nonce: nonce(maxNonceBytes)}); r.status != 429 {
			t.Errorf("past the byte budget: %d %s", r.status, r.body)
		}
		if _, bytes := e.api.auth.nonces.usage(keyRW.ConsumerKey); bytes > 3*maxNonceBytes-1 {
			t.Errorf("%d bytes of nonces remembered, over the budget", bytes)
		}
	})
}

// TestAPIRefusesWhatItCannotStore pins 500 answers: a NUL in a topic (or
// any text field), invalid UTF-8 in a form body, and a configuration
// webhook id so large that the next id overflowed bigint. Each is a 4xx
// in WooCommerce's error shape, or no error at all.
func TestAPIRefusesWhatItCannotStore(t *testing.T) {
	e := newEnv(t)
	list := "/wp-json/wc/v3/webhooks"
	h := e.create("target", "order.created")
	item := fmt.Sprintf("%s/%d", list, h.ID)
	tests := []struct {
		name, method, path string
		body               any
		status             int
		code               string
	}{
		{"NUL in an action topic", "POST", list, map[string]any{"topic": "action.x\x00y", "delivery_url": "https://hooks.example.com/a"}, 400, "rest_invalid_param"},
		{"NUL in a name", "POST", list, map[string]any{"name": "a\x00b", "topic": "order.created", "delivery_url": "https://hooks.example.com/a"}, 400, "rest_invalid_param"},
		{"NUL in a secret", "POST", list, map[string]any{"secret": "s\x00", "topic": "order.created", "delivery_url": "https://hooks.example.com/a"}, 400, "rest_invalid_param"},
		{"NUL in a URL", "POST", list, map[string]any{"topic": "order.created", "delivery_url": "https://hooks.example.com/\x00"}, 400, "rest_invalid_param"},
		{"NUL in an updated name", "PUT", item, map[string]any{"name": "a\x00b"}, 400, "rest_invalid_param"},
		{"port 0", "POST", list, map[string]any{"topic": "order.created", "delivery_url": "https://hooks.example.com:0/a"}, 400, "woocommerce_rest_shop_webhook_invalid_delivery_url"},
		{"port 65536", "POST", list, map[string]any{"topic": "order.created", "delivery_url": "https://hooks.example.com:65536/a"}, 400, "woocommerce_rest_shop_webhook_invalid_delivery_url"},
		{"offset at the end of int64", "GET", list + "?offset=9223372036854775807&per_page=1", nil, 200, ""},
		{"page at the end of int64", "GET", list + "?page=9223372036854775807", nil, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := e.count()
			r := e.do(tc.method, tc.path, tc.body)
			if r.status != tc.status {
				t.Fatalf("status = %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.code == "" {
				return
			}
			if code, _ := r.errCode(t); code != tc.code {
				t.Errorf("code = %s, want %s", code, tc.code)
			}
			if e.count() != before {
				t.Error("a refused request changed the store")
			}
		})
	}
	t.Run("invalid UTF-8 in a form body", func(t *testing.T) {
		req := e.newRequest(e.tls, "POST", list, "topic=action.%FF&delivery_url="+url.QueryEscape("https://hooks.example.com/f")+"&name=%C3%28")
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(keyRW.ConsumerKey, keyRW.ConsumerSecret)
		r := e.send(e.tls.Client(), req)
		if code, _ := r.errCode(t); r.status != 400 || code != "rest_invalid_param" {
			t.Errorf("%d %s", r.status, r.body)
		}
	})
	t.Run("NUL in a batch create", func(t *testing.T) {
		r := e.do("POST", list+"/batch", map[string]any{"create": []any{map[string]any{"topic": "action.\x00", "delivery_url": "https://hooks.example.com/b"}}})
		var out struct {
			Create []struct {
				Error struct {
					Code string `json:"code"`
					Data struct {
						Status int `json:"status"`
					} `json:"data"`
				} `json:"error"`
			} `json:"create"`
		}
		r.json(t, &out)
		if r.status != 200 || len(out.Create) != 1 || out.Create[0].Error.Code != "rest_invalid_param" || out.Create[0].Error.Data.Status != 400 {
			t.Errorf("%d %s", r.status, r.body)
		}
	})
	t.Run("after the largest configuration id", func(t *testing.T) {
		e.configWebhook(config.MaxWebhookID, "largest", "active")
		h := e.create("after-largest", "order.created")
		if h.ID != config.MaxWebhookID+1 {
			t.Errorf("created id %d, want %d", h.ID, int64(config.MaxWebhookID)+1)
		}
	})
}

// TestAPIRefusalRevealsNoAddress pins an information leak: the refusal of
// a delivery URL named the address its host resolved to and quoted the
// resolver's error (with the resolver's address).
func TestAPIRefusalRevealsNoAddress(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.CheckURL = func(ctx context.Context, raw string) error { return dispatch.CheckDestination(ctx, raw, false, nil) }
	})
	for _, u := range []string{"http://localhost:9/hook", "http://no-such-host.invalid/hook"} {
		r := e.do("POST", "/wp-json/wc/v3/webhooks", map[string]any{"topic": "order.created", "delivery_url": u})
		code, msg := r.errCode(t)
		if r.status != 400 || code != "woocommerce_rest_shop_webhook_invalid_delivery_url" {
			t.Errorf("%s: %d %s", u, r.status, r.body)
		}
		for _, leak := range []string{"127.0.0.1", "::1", "lookup", ":53", "no such host", "loopback"} {
			if strings.Contains(msg, leak) {
				t.Errorf("%s: %q reveals %q", u, msg, leak)
			}
		}
	}
}
