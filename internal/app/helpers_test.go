package app_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/app"
	"github.com/walhook/walhook/internal/pgtest"
	"github.com/walhook/walhook/internal/receiver"
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
  timeout: 2s
  shutdown_grace: 2s
  retry: { attempts: 2, backoff: 10ms, max_backoff: 50ms, parked_backoff: 100ms, parked_max_backoff: 1s }
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

// instance is walhook running in-process through the real run path.
type instance struct {
	cancel context.CancelFunc
	done   chan error
	addr   net.Addr
	reg    *prometheus.Registry
	logs   *syncBuffer
}

// start runs walhook with cfg until stop is called or the test ends.
func start(t testing.TB, cfg *config.Config) *instance {
	t.Helper()
	return startWith(t, cfg, nil)
}

// startWith runs walhook like start, with options adjusted by set.
func startWith(t testing.TB, cfg *config.Config, set func(*app.Options)) *instance {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{cancel: cancel, done: make(chan error, 1), reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	listening := make(chan net.Addr, 1)
	log := slog.New(slog.NewJSONHandler(io.MultiWriter(in.logs, testWriter{t}), &slog.HandlerOptions{Level: cfg.Log.Level}))
	opts := app.Options{
		Version:   "test",
		Logger:    log,
		Registry:  in.reg,
		Listening: func(a net.Addr) { listening <- a },
	}
	if set != nil {
		set(&opts)
	}
	go func() { in.done <- app.Run(ctx, cfg, opts) }()
	select {
	case in.addr = <-listening:
	case err := <-in.done:
		cancel()
		t.Fatalf("walhook stopped at start: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("walhook did not start listening within 30s")
	}
	t.Cleanup(func() { in.stop(t) })
	return in
}

// stop shuts walhook down gracefully and checks it returned no error.
func (in *instance) stop(t testing.TB) {
	t.Helper()
	if in.cancel == nil {
		return
	}
	in.cancel()
	in.cancel = nil
	select {
	case err := <-in.done:
		if err != nil {
			t.Errorf("walhook returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("walhook did not stop within 30s")
	}
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

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	if os.Getenv("WALHOOK_TEST_LOG") != "" {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
