package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/payload"
	"github.com/walhook/walhook/state"
	"github.com/walhook/walhook/topics"
)

// The start steps, in Run's order. Everything that can refuse a start
// runs before prepareReplication, the first step that creates something
// in the database; a step after it that fails calls undoReplication.

// inspect describes the mapped tables and checks the database without
// changing anything (cdc.Inspect), then checks the resources against the
// tables (resourcesFor).
func (w *walhook) inspect(ctx context.Context) error {
	tables := make([]cdc.Table, len(w.cfg.Resources))
	for i, r := range w.cfg.Resources {
		tables[i] = cdc.Table{Schema: r.Schema, Name: r.Table}
	}
	w.cdcCfg = cdc.Config{
		ConnString:               w.cfg.Postgres.URL.Reveal(),
		Slot:                     w.cfg.Postgres.Slot,
		Publication:              w.cfg.Postgres.Publication,
		Tables:                   tables,
		StatusInterval:           w.cfg.Postgres.StatusInterval,
		PublicationCheckInterval: w.opts.PublicationCheckInterval,
		Logger:                   w.log.With("component", "cdc"),
		Metrics:                  w.cdcMetrics,
	}
	infos, err := cdc.Inspect(ctx, w.cdcCfg)
	if err != nil {
		return err
	}
	w.tables = infos
	w.resources, err = resourcesFor(w.cfg.Resources, infos)
	return err
}

// openPayload checks and prepares each resource's payload_query
// (payload.Open) on the payload pool; a query PostgreSQL refuses, or one
// of the wrong shape, refuses the start with the resource's name.
func (w *walhook) openPayload(ctx context.Context) error {
	var queries []payload.Query
	for _, r := range w.cfg.Resources {
		if r.PayloadQuery != "" {
			queries = append(queries, payload.Query{Resource: r.Name, SQL: r.PayloadQuery})
		}
	}
	b, err := payload.Open(ctx, payload.Options{
		ConnString: w.cfg.Postgres.URL.Reveal(),
		Queries:    queries,
		Timeout:    w.cfg.Delivery.PayloadQueryTimeout,
		Logger:     w.log.With("component", "payload"),
		Metrics:    w.payloadMetrics,
	})
	if err != nil {
		return err
	}
	w.payload = b
	return nil
}

// openState opens the state schema, creating or migrating it, and reads
// the server's version for the payloads' headers.
func (w *walhook) openState(ctx context.Context) error {
	store, err := state.Open(ctx, w.cfg.Postgres.URL.Reveal(), w.cfg.Postgres.StateSchema)
	if err != nil {
		return err
	}
	w.store = store
	w.serverVersion = serverVersion(ctx, store)
	if err := checkExcludedColumns(ctx, store.Pool(), w.cfg.Resources, w.tables); err != nil {
		store.Close()
		return err
	}
	return nil
}

// listen binds the HTTP listener and, with http.tls_cert, loads the TLS
// key pair, so that a busy port or an unreadable certificate refuses the
// start instead of leaving a dead listener. serve serves it later.
func (w *walhook) listen() error {
	var tlsCfg *tls.Config
	if w.cfg.HTTP.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(w.cfg.HTTP.TLSCert, w.cfg.HTTP.TLSKey)
		if err != nil {
			return fmt.Errorf("http: load the TLS certificate %s and key %s (http.tls_cert, http.tls_key): %w",
				w.cfg.HTTP.TLSCert, w.cfg.HTTP.TLSKey, err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	ln, err := net.Listen("tcp", w.cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("http: listen on %s (http.listen): %w", w.cfg.HTTP.Listen, err)
	}
	w.ln = ln
	w.srv = &http.Server{
		TLSConfig:         tlsCfg,
		MaxHeaderBytes:    64 << 10,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	return nil
}

// prepareReplication creates the publication and the slot when they are
// missing (cdc.Prepare), remembering what it created for undoReplication.
func (w *walhook) prepareReplication(ctx context.Context) error {
	prepared, err := cdc.Prepare(ctx, w.cdcCfg)
	if err != nil {
		return err
	}
	w.prepared = prepared
	return nil
}

// undoReplication drops what prepareReplication created, for a start
// refused after it with cause, and returns cause (with any failure to
// drop).
func (w *walhook) undoReplication(ctx context.Context, cause error) error {
	if err := w.prepared.Undo(context.WithoutCancel(ctx)); err != nil {
		return errors.Join(cause, err)
	}
	return cause
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
		if r.PayloadQuery != "" && len(ti.KeyColumns) > 1 {
			problems = append(problems, fmt.Errorf("resource %q: payload_query needs a one-column key, and table %s's key has %d columns (%v): give the table a one-column primary key, or leave payload_query out",
				r.Name, qn, len(ti.KeyColumns), ti.KeyColumns))
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

// serverVersion returns the server's version, e.g. "15.8", or "" when it
// cannot be read.
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
