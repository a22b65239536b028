package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// TestWooCommerceJSClient runs clienttest/client.test.mjs, which drives
// the API with WooCommerce's official JavaScript client, once with OAuth
// 1.0a over plain HTTP and once with HTTP Basic over TLS. It needs node
// and npm; node_modules is installed with "npm ci" when missing.
func TestWooCommerceJSClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node (Node.js 20 or newer) is needed to run WooCommerce's JavaScript client: %v", err)
	}
	const dir = "clienttest"
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@woocommerce", "woocommerce-rest-api", "package.json")); err != nil {
		npm, err := exec.LookPath("npm")
		if err != nil {
			t.Fatalf("npm is needed to install WooCommerce's JavaScript client into %s: %v", dir, err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
		}
	}

	e := newEnv(t, func(o *Options) { o.CheckURL = nil })
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	t.Cleanup(receiver.Close)
	// node --test passes the script's own output on as TAP comments
	// ("# WEBHOOK_ID=<n>"); run directly, the script prints the bare line.
	webhookID := regexp.MustCompile(`(?m)^\s*(?:#\s*)?WEBHOOK_ID=(\d+)\s*$`)

	for _, mode := range []struct{ name, url string }{{"oauth", e.plain.URL}, {"basic", e.tls.URL}} {
		t.Run(mode.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, "--test", "client.test.mjs")
			cmd.Dir = dir
			cmd.Env = append(os.Environ(),
				"WALHOOK_URL="+mode.url, "WC_KEY="+keyRW.ConsumerKey, "WC_SECRET="+keyRW.ConsumerSecret,
				"WC_MODE="+mode.name, "RECEIVER_URL="+receiver.URL)
			out, err := cmd.CombinedOutput()
			t.Logf("node --test client.test.mjs (%s):\n%s", mode.name, out)
			if err != nil {
				t.Fatalf("node --test failed: %v", err)
			}
			m := webhookID.FindSubmatch(out)
			if m == nil {
				t.Fatal("no WEBHOOK_ID=<n> line in the output")
			}
			id, _ := strconv.ParseInt(string(m[1]), 10, 64)
			w, err := e.store.Webhook(t.Context(), id)
			if err != nil {
				t.Fatalf("webhook %d: %v", id, err)
			}
			if w.Topic != "order.created" || w.Status != "active" || w.DeliveryURL != receiver.URL || w.Origin != "api" {
				t.Errorf("webhook left by the client: %+v", w)
			}
		})
	}
}
