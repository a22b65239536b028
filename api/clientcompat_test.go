package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/walhook/walhook/internal/nodeclient"
)

// TestWooCommerceJSClient runs clienttest/client.test.mjs, which drives
// the API with WooCommerce's official JavaScript client, once with OAuth
// 1.0a over plain HTTP and once with HTTP Basic over TLS. It needs node
// and npm; node_modules is installed with "npm ci" when missing.
func TestWooCommerceJSClient(t *testing.T) {
	node, err := nodeclient.Ensure(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	const dir = "clienttest"

	e := newEnv(t, func(o *Options) { o.CheckURL = nil })
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	t.Cleanup(receiver.Close)
	// node --test passes the script's own output on as TAP comments
	// ("# WEBHOOK_ID=<n>"); run directly, the script prints the bare line.
	webhookID := regexp.MustCompile(`(?m)^\s*(?:#\s*)?WEBHOOK_ID=(\d+)\s*$`)

	for _, mode := range []struct{ name, url string }{{"oauth", e.plain.URL}, {"basic", e.tls.URL}} {
		t.Run(mode.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute) // a hang guard only
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
