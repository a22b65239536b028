package app_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/app"
	"github.com/walhook/walhook/internal/pgtest"
	"github.com/walhook/walhook/internal/receiver"
	"github.com/walhook/walhook/internal/walhooktest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// uniqueName turns the test's name into a slot/publication name.
func uniqueName(t testing.TB) string {
	n := strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "_"))
	if len(n) > 40 {
		n = n[:40]
	}
	return "wh_" + n
}

// baseConfig is the YAML shared by the tests, before webhooks.
func baseConfig(t testing.TB, dbURL, extra string) string {
	name := uniqueName(t)
	return fmt.Sprintf(`postgres:
  url: %q
  slot: %s
  publication: %s
  status_interval: 1s
source: https://shop.example.com
delivery:
  allow_private_networks: true
  timeout: 30s
  shutdown_grace: 30s
  retry: { attempts: 2, backoff: 10ms, max_backoff: 50ms, parked_backoff: 100ms, parked_max_backoff: 1s,
           probe_interval: 50ms, probe_max_interval: 500ms }
http:
  listen: 127.0.0.1:0
log:
  level: debug
%s`, dbURL, name, name, extra)
}

func parseConfig(t testing.TB, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yaml)
	}
	return cfg
}

// instance is walhook running in-process through the real run path,
// with the short names the tests use.
type instance struct {
	*walhooktest.Instance
	addr net.Addr
	reg  *prometheus.Registry
	logs *walhooktest.Logs
}

// start runs walhook with cfg until stop is called or the test ends.
func start(t testing.TB, cfg *config.Config) *instance {
	t.Helper()
	return startWith(t, cfg, nil)
}

// startWith runs walhook like start, with options adjusted by set.
func startWith(t testing.TB, cfg *config.Config, set func(*app.Options)) *instance {
	t.Helper()
	in := walhooktest.Start(t, cfg, set)
	return &instance{Instance: in, addr: in.Addr, reg: in.Registry, logs: in.Logs}
}

// stop shuts walhook down gracefully and checks it returned no error.
func (in *instance) stop(t testing.TB) {
	t.Helper()
	in.Stop(t)
}

// eventually waits until cond holds, failing the test when it has not for
// walhooktest.Patience.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	walhooktest.WaitFor(t, what, cond)
}

// waitSettled waits until walhook has settled (delivered or parked) every
// change committed so far: the slot's confirmed position passes the
// server's WAL position read now. Checks that nothing more arrives come
// after it instead of after a pause.
func waitSettled(t testing.TB, db, slot string) {
	t.Helper()
	walhooktest.WaitSettled(t, db, slot)
}

// newReceiver starts a real HTTP receiver on 127.0.0.1.
func newReceiver(t testing.TB, secrets map[int64]string) (*receiver.Receiver, string) {
	r := receiver.New(secrets)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return r, srv.URL
}

// verify recomputes a delivery's signature independently of the receiver.
func verify(secret string, body []byte, signature string) bool {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return base64.StdEncoding.EncodeToString(mac.Sum(nil)) == signature
}
