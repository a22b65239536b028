package api

import (
	"net/http"
	"testing"
)

// TestSetKeysRevokes pins the reload bug: a key removed from the
// configuration kept working until a restart. After SetKeys a removed key
// is refused over Basic and OAuth, a kept key still works, an added key
// works, and an empty set turns the API off.
func TestSetKeysRevokes(t *testing.T) {
	e := newEnv(t)
	const path = "/wp-json/wc/v3/webhooks"
	if r := e.doAs(keyR, http.MethodGet, path, nil); r.status != http.StatusOK {
		t.Fatalf("before SetKeys: keyR answered %d", r.status)
	}

	e.api.SetKeys([]Key{keyRW, keyW})
	tests := []struct {
		name   string
		send   func() response
		status int
		code   string
	}{
		// An unknown Basic key is a request without credentials, as on WooCommerce.
		{"removed key over Basic", func() response { return e.doAs(keyR, http.MethodGet, path, nil) }, http.StatusUnauthorized, "woocommerce_rest_cannot_view"},
		{"removed key over OAuth", func() response {
			return e.signed(oauthRequest{key: keyR, method: http.MethodGet, path: path})
		}, http.StatusUnauthorized, "woocommerce_rest_authentication_error"},
		{"kept key over Basic", func() response { return e.doAs(keyRW, http.MethodGet, path, nil) }, http.StatusOK, ""},
		{"kept key over OAuth", func() response {
			return e.signed(oauthRequest{key: keyRW, method: http.MethodGet, path: path})
		}, http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.send()
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			if tt.code != "" {
				if code, _ := r.errCode(t); code != tt.code {
					t.Errorf("code %q, want %q", code, tt.code)
				}
			}
		})
	}

	e.api.SetKeys([]Key{keyR})
	if r := e.doAs(keyR, http.MethodGet, path, nil); r.status != http.StatusOK {
		t.Errorf("a key added back answered %d", r.status)
	}
	e.api.SetKeys(nil)
	if r := e.doAs(keyR, http.MethodGet, path, nil); r.status != http.StatusNotFound {
		t.Errorf("with no keys the API answered %d, want 404 (off)", r.status)
	}
}
