// Package app wires walhook's pipeline: the replication reader (cdc), the
// change mapper (topics), the dispatcher and the state schema, with the
// HTTP endpoints for metrics and health. cmd/walhook and the end-to-end
// tests run walhook through it.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"reflect"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/walhook/walhook/api"
	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/dispatch"
	"github.com/walhook/walhook/route"
	"github.com/walhook/walhook/state"
	"github.com/walhook/walhook/topics"
)

// Options are what the caller adds to the configuration.
type Options struct {
	Version string
	Logger  *slog.Logger
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
	// Client overrides the delivery HTTP client (tests).
	Client *http.Client
}

// Run runs walhook until ctx is done, then shuts down gracefully: it stops
// routing, lets in-flight deliveries finish within delivery.shutdown_grace,
// saves positions, confirms what is settled and returns nil.
func Run(ctx context.Context, cfg *config.Config, opts Options) error {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "walhook_config_reloads_total",
		Help: "Configuration reloads by result (success, failure).",
	}, []string{"result"})
	reloads.WithLabelValues("success")
	reloads.WithLabelValues("failure")
	reg.MustRegister(reloads)
	cdcMetrics := cdc.NewMetrics(reg)
	routeMetrics := route.NewMetrics(reg)
	metrics := dispatch.NewMetrics(reg)

	tables := make([]cdc.Table, len(cfg.Resources))
	for i, r := range cfg.Resources {
		tables[i] = cdc.Table{Schema: r.Schema, Name: r.Table}
	}
	cdcCfg := cdc.Config{
		ConnString:     cfg.Postgres.URL.Reveal(),
		Slot:           cfg.Postgres.Slot,
		Publication:    cfg.Postgres.Publication,
		Tables:         tables,
		StatusInterval: cfg.Postgres.StatusInterval,
		Logger:         log.With("component", "cdc"),
		Metrics:        cdcMetrics,
	}
	infos, err := cdc.Setup(ctx, cdcCfg)
	if err != nil {
		return err
	}
	resources, err := resourcesFor(cfg.Resources, infos)
	if err != nil {
		return err
	}
	store, err := state.Open(ctx, cfg.Postgres.URL.Reveal(), cfg.Postgres.StateSchema)
	if err != nil {
		return err
	}
	defer store.Close()
	if err := checkExcludedColumns(ctx, store.Pool(), cfg.Resources, infos); err != nil {
		return err
	}
	serverVersion := serverVersion(ctx, store)

	cdcCfg.StartLSN = func(ctx context.Context) (pglogrepl.LSN, error) {
		lsn, err := store.SettledLSN(ctx, cfg.Postgres.Slot)
		return pglogrepl.LSN(lsn), err
	}
	reader := cdc.NewReader(cdcCfg)
	d := dispatch.New(dispatch.Options{
		Source:         cfg.Source,
		Version:        opts.Version,
		Server:         serverVersion,
		Slot:           cfg.Postgres.Slot,
		Delivery:       cfg.Delivery,
		Store:          store,
		Confirm:        func(end state.LSN) { reader.Confirm(pglogrepl.LSN(end)) },
		Client:         opts.Client,
		Logger:         log.With("component", "dispatch"),
		DeliveryLogger: log.With("source", "webhooks-delivery"),
		Metrics:        metrics,
	})
	if err := d.SetConfigWebhooks(ctx, definitions(cfg), statuses(cfg)); err != nil {
		return err
	}

	var shuttingDown sync.Once
	var down = make(chan struct{})
	management := api.New(api.Options{
		Store:      store,
		Keys:       apiKeys(cfg.API.Keys),
		Timezone:   cfg.API.Timezone,
		ConfigFile: opts.ConfigFile,
		Resources:  func(name string) bool { _, ok := cfg.Resource(name); return ok },
		CheckURL: func(ctx context.Context, rawURL string) error {
			return dispatch.CheckDestination(ctx, rawURL, cfg.Delivery.AllowPrivateNetworks, cfg.Delivery.AllowCIDRs)
		},
		Apply:  d.Refresh,
		Logger: log.With("component", "api"),
	})
	srv, ln, err := serveHTTP(cfg.HTTP, reg, reader, management.Handler(), down, log)
	if err != nil {
		return err
	}
	if opts.Listening != nil {
		opts.Listening(ln.Addr())
	}

	batches := make(chan *cdc.Batch, 4)
	readCtx, stopReading := context.WithCancel(context.WithoutCancel(ctx))
	defer stopReading()
	readErr := make(chan error, 1)
	go func() { readErr <- reader.Run(readCtx, batches) }()

	router := route.New(route.Options{
		Mapper:      topics.NewMapper(resources),
		Coalesce:    cfg.Delivery.Coalesce != config.CoalesceNone,
		CoalesceMax: cfg.Delivery.CoalesceMax,
		Logger:      log.With("component", "route"),
		Metrics:     routeMetrics,
	})
	events := make(chan *dispatch.Batch, 4)
	routeCtx, stopRouting := context.WithCancel(ctx)
	defer stopRouting()
	routeErr := make(chan error, 1)
	go func() {
		rerr := make(chan error, 1)
		go func() { rerr <- router.Run(routeCtx, batches, events) }()
		err := d.Run(routeCtx, events)
		stopRouting()
		if e := <-rerr; err == nil {
			err = e
		}
		routeErr <- err
	}()

	var runErr error
	reloadC := opts.Reload
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-readErr:
			runErr = err
			readErr = nil
			break loop
		case err := <-routeErr:
			runErr = err
			routeErr = nil
			break loop
		case <-reloadC:
			next, err := opts.Load()
			if err == nil {
				err = reload(ctx, cfg, next, d)
			}
			if err != nil {
				reloads.WithLabelValues("failure").Inc()
				log.Error("configuration reload refused; keeping the running configuration", "error", err)
				continue
			}
			cfg.Webhooks = next.Webhooks
			reloads.WithLabelValues("success").Inc()
			log.Info("configuration reloaded", "webhooks", len(next.Webhooks))
		}
	}
	shuttingDown.Do(func() { close(down) })
	log.Info("shutting down: finishing in-flight deliveries", "grace", cfg.Delivery.ShutdownGrace)
	stopRouting()
	if routeErr != nil {
		if err := <-routeErr; err != nil && runErr == nil {
			runErr = err
		}
	}
	// The reader confirms the last settled position as it stops.
	stopReading()
	if readErr != nil {
		if err := <-readErr; err != nil && runErr == nil {
			runErr = err
		}
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx)
	return runErr
}

// resourcesFor joins the configured resources with what the catalog says
// about their tables, and refuses set-ups that would send wrong payloads.
func resourcesFor(rs []config.Resource, infos []cdc.TableInfo) ([]topics.Resource, error) {
	byName := make(map[string]cdc.TableInfo, len(infos))
	for _, ti := range infos {
		byName[ti.Schema+"."+ti.Name] = ti
	}
	var problems []error
	out := make([]topics.Resource, 0, len(rs))
	for _, r := range rs {
		qn := r.Schema + "." + r.Table
		ti, ok := byName[qn]
		if !ok {
			problems = append(problems, fmt.Errorf("resource %q: table %s was not inspected", r.Name, qn))
			continue
		}
		if len(ti.KeyColumns) == 0 {
			problems = append(problems, fmt.Errorf("resource %q: table %s has no primary key or replica identity index, so its rows cannot be told apart: add a primary key", r.Name, qn))
		}
		if r.DeletedPayload == "old_row" && ti.ReplicaIdentity != 'f' {
			problems = append(problems, fmt.Errorf("resource %q: deleted_payload old_row needs the whole old row: ALTER TABLE %s REPLICA IDENTITY FULL", r.Name, qn))
		}
		if len(ti.ToastableColumns) > 0 && ti.ReplicaIdentity != 'f' {
			problems = append(problems, fmt.Errorf("resource %q: table %s has columns that PostgreSQL may store out of line (%v); an update that leaves them unchanged would not carry their values: ALTER TABLE %s REPLICA IDENTITY FULL",
				r.Name, qn, ti.ToastableColumns, qn))
		}
		out = append(out, topics.Resource{
			Name: r.Name, Schema: r.Schema, Table: r.Table, KeyColumns: ti.KeyColumns,
			ExcludeColumns: r.ExcludeColumns, DeletedPayload: r.DeletedPayload,
		})
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	return out, nil
}

func apiKeys(keys []config.APIKey) []api.Key {
	out := make([]api.Key, len(keys))
	for i, k := range keys {
		out[i] = api.Key{ConsumerKey: k.ConsumerKey, ConsumerSecret: k.ConsumerSecret.Reveal(), Permissions: k.Permissions}
	}
	return out
}

func definitions(cfg *config.Config) []dispatch.Definition {
	out := make([]dispatch.Definition, len(cfg.Webhooks))
	for i, w := range cfg.Webhooks {
		name := w.Name
		if name == "" {
			name = fmt.Sprintf("Webhook %d (%s)", w.ID, w.Topic)
		}
		out[i] = dispatch.Definition{
			ID: w.ID, Name: name, Topic: w.Topic, DeliveryURL: w.DeliveryURL,
			Secret: w.Secret.Reveal(), Signature: w.Signature,
		}
	}
	return out
}

func statuses(cfg *config.Config) map[int64]string {
	out := make(map[int64]string, len(cfg.Webhooks))
	for _, w := range cfg.Webhooks {
		out[w.ID] = w.Status
	}
	return out
}

// reload applies a re-read configuration's webhooks; changes elsewhere
// need a restart and are refused.
func reload(ctx context.Context, cur, next *config.Config, d *dispatch.Dispatcher) error {
	var refused []string
	if !reflect.DeepEqual(cur.Postgres, next.Postgres) {
		refused = append(refused, "postgres")
	}
	if !reflect.DeepEqual(cur.Resources, next.Resources) {
		refused = append(refused, "resources")
	}
	if !reflect.DeepEqual(cur.Delivery, next.Delivery) {
		refused = append(refused, "delivery")
	}
	if !reflect.DeepEqual(cur.HTTP, next.HTTP) {
		refused = append(refused, "http")
	}
	if cur.Source != next.Source {
		refused = append(refused, "source")
	}
	if len(refused) > 0 {
		return fmt.Errorf("changes to %v need a restart; only webhooks (and their default secret) change on reload", refused)
	}
	return d.SetConfigWebhooks(ctx, definitions(next), statuses(next))
}

func serverVersion(ctx context.Context, store *state.Store) string {
	var v string
	if err := store.Pool().QueryRow(ctx, `SELECT current_setting('server_version')`).Scan(&v); err != nil {
		return ""
	}
	// "15.8 (Debian 15.8-1)" → "15.8"
	for i, r := range v {
		if r == ' ' {
			return v[:i]
		}
	}
	return v
}

// serveHTTP serves /metrics, /healthz, /readyz (and /debug/pprof/ when
// enabled) on the configured address.
func serveHTTP(cfg config.HTTP, reg *prometheus.Registry, reader *cdc.Reader, management http.Handler, down <-chan struct{}, log *slog.Logger) (*http.Server, net.Listener, error) {
	mux := http.NewServeMux()
	mux.Handle("/wp-json/", management)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		st := reader.State()
		select {
		case <-down:
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"status":"shutting_down","reason":"walhook is shutting down"}` + "\n"))
			return
		default:
		}
		switch st {
		case cdc.Streaming:
			_, _ = w.Write([]byte(`{"status":"streaming"}` + "\n"))
		case cdc.Standby:
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"status":"standby","reason":"the replication slot is active in another walhook instance"}` + "\n"))
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(w, `{"status":"%s","reason":"not streaming from PostgreSQL yet"}`+"\n", st)
		}
	})
	if cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, nil, fmt.Errorf("http: listen on %s: %w", cfg.Listen, err)
	}
	srv := &http.Server{
		Handler:           mux,
		MaxHeaderBytes:    64 << 10,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	go func() {
		var err error
		if cfg.TLSCert != "" {
			err = srv.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey)
		} else {
			err = srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "error", err)
		}
	}()
	return srv, ln, nil
}
