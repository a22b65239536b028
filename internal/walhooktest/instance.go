package walhooktest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/app"
	"github.com/walhook/walhook/internal/jsonlog"
)

// Instance is walhook running in the test's process through app.Run, the
// same path `walhook run` takes.
type Instance struct {
	// Addr is the HTTP listener's address.
	Addr net.Addr
	// Registry holds every collector of this instance.
	Registry *prometheus.Registry
	// Logs holds walhook's JSON log lines (all levels the configuration
	// lets through).
	Logs *Logs

	cancel context.CancelFunc
	done   chan error
	err    error
	ended  bool
}

// Start runs walhook with cfg until Stop is called or the test ends (a
// graceful stop whose error fails the test). set, when not nil, adjusts
// the options before the start. Start returns once walhook listens, that
// is after its webhooks are loaded; it does not wait for streaming.
// Setting WALHOOK_TEST_LOG=1 also passes walhook's log to t.Log.
func Start(t testing.TB, cfg *config.Config, set func(*app.Options)) *Instance {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	in := &Instance{cancel: cancel, done: make(chan error, 1), Registry: prometheus.NewRegistry(), Logs: &Logs{}}
	var w io.Writer = in.Logs
	if os.Getenv("WALHOOK_TEST_LOG") != "" {
		w = io.MultiWriter(in.Logs, testWriter{t})
	}
	listening := make(chan net.Addr, 1)
	opts := app.Options{
		Version:   "test",
		Logger:    slog.New(jsonlog.New(w, &slog.HandlerOptions{Level: cfg.Log.Level})),
		Registry:  in.Registry,
		Listening: func(a net.Addr) { listening <- a },
	}
	if set != nil {
		set(&opts)
	}
	go func() { in.done <- app.Run(ctx, cfg, opts) }()
	patience := Patience()
	select {
	case in.Addr = <-listening:
	case err := <-in.done:
		cancel()
		t.Fatalf("walhook stopped at start: %v", err)
	case <-time.After(patience):
		cancel()
		t.Fatalf("walhook did not listen after %s", patience)
	}
	t.Cleanup(func() { in.Stop(t) })
	return in
}

// URL returns the base URL of the instance's HTTP listener.
func (in *Instance) URL() string { return "http://" + in.Addr.String() }

// Shutdown asks walhook to stop, as SIGTERM does, without waiting.
func (in *Instance) Shutdown() { in.cancel() }

// Wait waits for app.Run to return after Shutdown and returns its error.
// It fails the test when Run has not returned after Patience.
func (in *Instance) Wait(t testing.TB) error {
	t.Helper()
	if in.ended {
		return in.err
	}
	patience := Patience()
	select {
	case in.err = <-in.done:
		in.ended = true
		return in.err
	case <-time.After(patience):
		t.Fatalf("walhook did not stop %s after it was asked to", patience)
		return nil
	}
}

// Stop shuts walhook down gracefully and fails the test if Run returned
// an error. Stopping a stopped instance does nothing.
func (in *Instance) Stop(t testing.TB) {
	t.Helper()
	if in.ended {
		return
	}
	in.Shutdown()
	if err := in.Wait(t); err != nil {
		t.Errorf("walhook returned %v", err)
	}
}

// Metric reads the instance's registry like Metric.
func (in *Instance) Metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	return Metric(t, in.Registry, name, labels...)
}

// Logs is a concurrency-safe buffer of log output.
type Logs struct {
	mu sync.Mutex
	b  strings.Builder
}

// Write appends p.
func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testWriter passes each write to t.Log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
