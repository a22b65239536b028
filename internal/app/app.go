// Package app wires walhook's pipeline: the replication reader (cdc), the
// change mapper (topics), the dispatcher and the state schema, with the
// HTTP endpoints for metrics, health and the management API. cmd/walhook
// and the end-to-end tests run walhook through it.
//
// Run reads as its steps, one file each:
//
//   - start.go: check everything that can refuse a start (tables and
//     resources, the state schema, the HTTP listener and its TLS key
//     pair), and only then create the publication and the slot;
//   - pipeline.go: build the reader, the dispatcher and the API, and run
//     the reader and the dispatcher joined by the batches channel;
//   - http.go: serve /metrics, /healthz, /readyz and the API;
//   - loop.go: wait for the end, a failed stage or a reload, then shut
//     down in order.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/walhook/walhook/api"
	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/dispatch"
	"github.com/walhook/walhook/payload"
	"github.com/walhook/walhook/route"
	"github.com/walhook/walhook/state"
	"github.com/walhook/walhook/topics"
)

// Options are what the caller adds to the configuration.
type Options struct {
	Version string
	Logger  *slog.Logger
	// LogLevel is the level of Logger's handler; a reload sets it to the
	// new log.level. Nil means a log.level change needs a restart.
	LogLevel *slog.LevelVar
	// Registry receives every collector; nil makes a new one.
	Registry *prometheus.Registry
	// ConfigFile is the configuration's file name, named in API errors
	// about webhooks declared there.
	ConfigFile string
	// Reload asks for the configuration to be read again (SIGHUP) with
	// Load; a configuration with problems is refused and counted.
	Reload <-chan struct{}
	// Load reads the configuration for a reload.
	Load func() (*config.Config, error)
	// Listening, if set, is told the HTTP listener's address once it listens.
	Listening func(addr net.Addr)
	// PublicationCheckInterval is how often the publication is checked
	// for mapped tables that were dropped and created again. Zero means
	// 30s.
	PublicationCheckInterval time.Duration
}

// Run runs walhook until ctx is done, then shuts down gracefully: it stops
// routing, lets in-flight deliveries finish within delivery.shutdown_grace,
// saves positions, confirms what is settled and returns nil.
//
// A start that is refused returns the reason and leaves no replication
// slot or publication behind that it created.
func Run(ctx context.Context, cfg *config.Config, opts Options) error {
	w := newWalhook(cfg, opts)
	if err := w.inspect(ctx); err != nil {
		return startFailed(ctx, err)
	}
	if err := w.openPayload(ctx); err != nil {
		return startFailed(ctx, err)
	}
	defer w.payload.Close()
	if err := w.openState(ctx); err != nil {
		return startFailed(ctx, err)
	}
	defer w.store.Close()
	if err := w.listen(); err != nil {
		return err
	}
	defer w.ln.Close()
	if err := w.prepareReplication(ctx); err != nil {
		return startFailed(ctx, err)
	}
	if err := w.buildPipeline(ctx); err != nil {
		return startFailed(ctx, w.undoReplication(ctx, err))
	}
	serveErr := w.serve()
	p := w.startPipeline(ctx)
	return w.shutdown(p, w.runLoop(ctx, p, serveErr))
}

// ErrStartCancelled is returned (wrapped) by Run when ctx ended while
// walhook was starting and that cut the start short: a stop asked for
// early, not a failure.
var ErrStartCancelled = errors.New("start cancelled")

// startFailed returns the error of a start step, marked with
// ErrStartCancelled when it is ctx's ending.
func startFailed(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return fmt.Errorf("%w: %w", ErrStartCancelled, err)
	}
	return err
}

// walhook is one run of walhook: the configuration, the parts Run builds
// in its steps, and what the run loop and the HTTP handlers share. The
// fields below metrics are set by the steps in the order they appear.
type walhook struct {
	cfg  *config.Config
	opts Options
	log  *slog.Logger
	reg  *prometheus.Registry

	reloads         *prometheus.CounterVec
	cdcMetrics      *cdc.Metrics
	routeMetrics    *route.Metrics
	dispatchMetrics *dispatch.Metrics
	payloadMetrics  *payload.Metrics

	// inspect
	cdcCfg    cdc.Config
	tables    []cdc.TableInfo
	resources []topics.Resource
	// openPayload
	payload *payload.Builder
	// openState
	store         *state.Store
	serverVersion string
	// listen
	ln  net.Listener
	srv *http.Server
	// prepareReplication
	prepared *cdc.Prepared
	// buildPipeline
	reader     *cdc.Reader
	mapper     *topics.Mapper
	router     *route.Router
	watch      *cdc.PublicationWatch
	d          *dispatch.Dispatcher
	management *api.API
	// down is closed when shutdown begins; /readyz then answers 503.
	down chan struct{}
}

// newWalhook sets up logging and metrics for a run: the logger, the
// registry with the Go and process collectors, the reload counter and the
// stages' metrics.
func newWalhook(cfg *config.Config, opts Options) *walhook {
	w := &walhook{cfg: cfg, opts: opts, log: opts.Logger, reg: opts.Registry, down: make(chan struct{})}
	if w.log == nil {
		w.log = slog.Default()
	}
	if w.reg == nil {
		w.reg = prometheus.NewRegistry()
	}
	w.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	w.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "walhook_config_reloads_total",
		Help: "Configuration reloads by result (success, failure).",
	}, []string{"result"})
	w.reloads.WithLabelValues("success")
	w.reloads.WithLabelValues("failure")
	w.reg.MustRegister(w.reloads)
	w.cdcMetrics = cdc.NewMetrics(w.reg)
	w.routeMetrics = route.NewMetrics(w.reg)
	w.dispatchMetrics = dispatch.NewMetrics(w.reg)
	w.payloadMetrics = payload.NewMetrics(w.reg)
	return w
}
