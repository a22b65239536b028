package app

import (
	"context"
	"fmt"

	"github.com/jackc/pglogrepl"

	"github.com/walhook/walhook/api"
	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/dispatch"
	"github.com/walhook/walhook/route"
	"github.com/walhook/walhook/state"
	"github.com/walhook/walhook/topics"
	"github.com/walhook/walhook/webhook"
)

// The data path: the reader (cdc) hands out batches of committed changes
// on one bounded channel; the router (route) maps them to topic events
// (topics) and coalesces each transaction; the dispatcher delivers them and
// confirms settled positions back to the reader. buildPipeline wires it and startPipeline runs it; both are
// here, together, so the path reads in one place.

// buildPipeline builds the reader, the publication watch, the dispatcher
// (with the configuration's webhooks synchronised into the state schema)
// and the management API.
func (w *walhook) buildPipeline(ctx context.Context) error {
	cfg := w.cfg
	w.cdcCfg.StartLSN = func(ctx context.Context) (pglogrepl.LSN, error) {
		lsn, err := w.store.SettledLSN(ctx, cfg.Postgres.Slot)
		return pglogrepl.LSN(lsn), err
	}
	w.reader = cdc.NewReader(w.cdcCfg)
	w.mapper = topics.NewMapper(w.resources)
	w.mapper.KeepOld(hasFilter(cfg))
	ropts := route.Options{
		Mapper:      w.mapper,
		Coalesce:    cfg.Delivery.Coalesce != config.CoalesceNone,
		CoalesceMax: cfg.Delivery.CoalesceMax,
		Logger:      w.log.With("component", "route"),
		Metrics:     w.routeMetrics,
	}
	if w.payload != nil {
		ropts.Bodies = w.payload
		// The dispatcher is built below, before anything is routed.
		ropts.Wanted = func(e *dispatch.Event) bool { return w.d.Wanted(e) }
	}
	w.router = route.New(ropts)
	w.watch = cdc.NewPublicationWatch(w.cdcCfg, w.tables)

	w.d = dispatch.New(dispatch.Options{
		Source:         cfg.Source,
		Version:        w.opts.Version,
		Server:         w.serverVersion,
		Slot:           cfg.Postgres.Slot,
		Delivery:       cfg.Delivery,
		Store:          w.store,
		Confirm:        func(end state.LSN) { w.reader.Confirm(pglogrepl.LSN(end)) },
		Logger:         w.log.With("component", "dispatch"),
		DeliveryLogger: w.log.With("source", "webhooks-delivery"),
		Metrics:        w.dispatchMetrics,
	})
	if err := w.d.SetConfigWebhooks(ctx, definitions(cfg), statuses(cfg)); err != nil {
		return err
	}

	w.management = api.New(api.Options{
		Store:      w.store,
		Keys:       apiKeys(cfg.API.Keys),
		Timezone:   cfg.API.Timezone,
		ConfigFile: w.opts.ConfigFile,
		Resources:  func(name string) bool { _, ok := cfg.Resource(name); return ok },
		CheckURL: func(ctx context.Context, rawURL string) error {
			return dispatch.CheckDestination(ctx, rawURL, cfg.Delivery.AllowPrivateNetworks, cfg.Delivery.AllowCIDRs)
		},
		Apply:  w.d.Refresh,
		Logger: w.log.With("component", "api"),
	})
	return nil
}

// pipeline is the running stages. Each reports its end on its channel;
// the run loop sets a channel to nil once it has taken the result, so
// shutdown waits only for the stages still running.
type pipeline struct {
	readErr, routeErr, watchErr            chan error
	stopReading, stopRouting, stopWatching context.CancelFunc
}

// startPipeline runs the reader, the dispatcher and the publication
// watch, each in its own goroutine. The reader's context is not ctx:
// shutdown stops it only after routing has stopped, so its last status
// update confirms everything settled.
func (w *walhook) startPipeline(ctx context.Context) *pipeline {
	p := &pipeline{readErr: make(chan error, 1), routeErr: make(chan error, 1), watchErr: make(chan error, 1)}
	batches := make(chan *cdc.Batch, 4)

	readCtx, stopReading := context.WithCancel(context.WithoutCancel(ctx))
	p.stopReading = stopReading
	go func() { p.readErr <- w.reader.Run(readCtx, batches) }()

	// The router closes events when it ends, which ends the dispatcher's
	// routing; a router error (an event it cannot encode) is the stage's.
	events := make(chan *dispatch.Batch, 4)
	routeCtx, stopRouting := context.WithCancel(ctx)
	p.stopRouting = stopRouting
	go func() {
		mapErr := make(chan error, 1)
		go func() { mapErr <- w.router.Run(routeCtx, batches, events) }()
		err := w.d.Run(routeCtx, events)
		stopRouting()
		if merr := <-mapErr; err == nil {
			err = merr
		}
		p.routeErr <- err
	}()

	watchCtx, stopWatching := context.WithCancel(ctx)
	p.stopWatching = stopWatching
	go func() { p.watchErr <- w.watch.Run(watchCtx) }()
	return p
}

// apiKeys converts the configured API keys.
func apiKeys(keys []config.APIKey) []api.Key {
	out := make([]api.Key, len(keys))
	for i, k := range keys {
		out[i] = api.Key{ConsumerKey: k.ConsumerKey, ConsumerSecret: k.ConsumerSecret.Reveal(), Permissions: k.Permissions}
	}
	return out
}

// definitions converts the configured webhooks, naming those without a
// name.
func definitions(cfg *config.Config) []dispatch.Definition {
	out := make([]dispatch.Definition, len(cfg.Webhooks))
	for i, w := range cfg.Webhooks {
		name := w.Name
		if name == "" {
			name = fmt.Sprintf("Webhook %d (%s)", w.ID, w.Topic)
		}
		out[i] = dispatch.Definition{
			ID: w.ID, Name: name, Topic: w.Topic, DeliveryURL: w.DeliveryURL,
			Secret: w.Secret.Reveal(), Signature: w.Signature, Filter: w.Filter,
		}
	}
	return out
}

// hasFilter reports whether a configured webhook has a filter, which
// needs the old rows of updates and deletes (only configured webhooks can
// have one).
func hasFilter(cfg *config.Config) bool {
	for _, w := range cfg.Webhooks {
		if w.Filter != "" {
			return true
		}
	}
	return false
}

// statuses returns the configured status of each configured webhook.
func statuses(cfg *config.Config) map[int64]webhook.Status {
	out := make(map[int64]webhook.Status, len(cfg.Webhooks))
	for _, w := range cfg.Webhooks {
		out[w.ID] = w.Status
	}
	return out
}
