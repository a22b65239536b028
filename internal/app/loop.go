package app

import (
	"context"
	"fmt"
	"reflect"
	"time"

	"github.com/walhook/walhook/config"
)

// runLoop waits until ctx is done or a stage fails, applying reloads
// meanwhile, and returns the failure (nil when ctx ended the run).
func (w *walhook) runLoop(ctx context.Context, p *pipeline, serveErr <-chan error) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-p.readErr:
			p.readErr = nil
			return err
		case err := <-p.routeErr:
			p.routeErr = nil
			return err
		case err := <-serveErr:
			if err != nil {
				return fmt.Errorf("http: serving on %s stopped: %w", w.ln.Addr(), err)
			}
		case <-w.opts.Reload:
			w.reload(ctx)
		}
	}
}

// shutdown stops the stages in order and returns runErr, or the first
// error a stage returned while stopping: routing stops first, letting
// in-flight deliveries finish within delivery.shutdown_grace; then the
// reader, which confirms the last settled position as it stops; then the
// publication watch and the HTTP server.
func (w *walhook) shutdown(p *pipeline, runErr error) error {
	close(w.down)
	w.log.Info("shutting down: finishing in-flight deliveries", "grace", w.cfg.Delivery.ShutdownGrace)
	keep := func(err error) {
		if err != nil && runErr == nil {
			runErr = err
		}
	}
	p.stopRouting()
	if p.routeErr != nil {
		keep(<-p.routeErr)
	}
	p.stopReading()
	if p.readErr != nil {
		keep(<-p.readErr)
	}
	p.stopWatching()
	keep(<-p.watchErr)

	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = w.srv.Shutdown(shutdownCtx)
	return runErr
}

// reload reads the configuration again and applies it, or refuses it and
// keeps the running one; either way it is logged and counted.
func (w *walhook) reload(ctx context.Context) {
	next, err := w.opts.Load()
	if err == nil {
		err = w.apply(ctx, next)
	}
	if err != nil {
		w.reloads.WithLabelValues("failure").Inc()
		w.log.Error("configuration reload refused; keeping the running configuration", "error", err)
		return
	}
	w.reloads.WithLabelValues("success").Inc()
	w.log.Info("configuration reloaded", "webhooks", len(next.Webhooks), "api_keys", len(next.API.Keys), "log_level", next.Log.Level)
}

// apply applies a re-read configuration: webhooks (and their default
// secret), api.keys and log.level take effect at once. Changes elsewhere
// need a restart and refuse the whole reload, so nothing of it applies.
func (w *walhook) apply(ctx context.Context, next *config.Config) error {
	if refused := w.restartNeeded(next); len(refused) > 0 {
		return fmt.Errorf("changes to %v need a restart; a reload applies webhooks (and their default secret), api.keys and log.level", refused)
	}
	if hasFilter(next) {
		w.mapper.KeepOld(true) // before the filters apply
	}
	if err := w.d.SetConfigWebhooks(ctx, definitions(next), statuses(next)); err != nil {
		return err
	}
	w.mapper.KeepOld(hasFilter(next))
	w.management.SetKeys(apiKeys(next.API.Keys))
	if w.opts.LogLevel != nil {
		w.opts.LogLevel.Set(next.Log.Level)
	}
	w.cfg.Webhooks = next.Webhooks
	w.cfg.DefaultSecret = next.DefaultSecret
	w.cfg.API.Keys = next.API.Keys
	w.cfg.Log.Level = next.Log.Level
	return nil
}

// restartNeeded lists the settings next changes that a reload cannot
// apply.
func (w *walhook) restartNeeded(next *config.Config) []string {
	cur := w.cfg
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
	if cur.API.Timezone.String() != next.API.Timezone.String() {
		refused = append(refused, "api.timezone")
	}
	if cur.Log.Format != next.Log.Format {
		refused = append(refused, "log.format")
	}
	if w.opts.LogLevel == nil && cur.Log.Level != next.Log.Level {
		refused = append(refused, "log.level")
	}
	return refused
}
