package cdc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// PublicationWatch checks, while walhook runs, that the publication still
// includes every mapped table.
//
// A mapped table that is dropped and created again leaves the
// publication, and pgoutput then sends none of its changes: nothing in
// the replication stream says so. When the publication is walhook's own
// (its comment starts with PublicationComment), the watch adds the table
// back and logs a warning. Otherwise it fails loudly: Problem names the
// tables and the fix (for readiness), the walhook_publication_missing_tables
// gauge counts them, and an error line is logged. Changes committed
// between the table's re-creation and its return to the publication are
// not in the stream and cannot be recovered; the log lines say so.
type PublicationWatch struct {
	cfg     Config
	logger  *slog.Logger
	metrics *Metrics
	// infos is what Inspect found at start, by table.
	infos map[Table]TableInfo

	// problem is the current problem, "" when none.
	problem atomic.Pointer[string]

	// Owned by the goroutine in Run.
	conn *pgx.Conn
	// oids is the last seen oid of each mapped table that exists.
	oids map[Table]uint32
}

// NewPublicationWatch returns a watch over cfg's publication and tables;
// infos are the tables as Inspect described them at start. Prepare
// should have run first.
func NewPublicationWatch(cfg Config, infos []TableInfo) *PublicationWatch {
	cfg = cfg.withDefaults()
	w := &PublicationWatch{cfg: cfg, logger: cfg.Logger, metrics: cfg.Metrics,
		infos: make(map[Table]TableInfo, len(infos)), oids: make(map[Table]uint32)}
	for _, ti := range infos {
		w.infos[Table{ti.Schema, ti.Name}] = ti
	}
	empty := ""
	w.problem.Store(&empty)
	return w
}

// Problem returns what is wrong with the publication, naming the tables
// and the fix, or "" when it includes every mapped table. It is safe from
// any goroutine.
func (w *PublicationWatch) Problem() string { return *w.problem.Load() }

// Run checks the publication at once and then every
// cfg.PublicationCheckInterval until ctx is done, and returns nil then. A
// check that cannot reach the database is logged and tried again at the
// next interval; the reader reports lost connections.
func (w *PublicationWatch) Run(ctx context.Context) error {
	defer func() {
		if w.conn != nil {
			cctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
			defer cancel()
			_ = w.conn.Close(cctx)
			w.conn = nil
		}
	}()
	t := time.NewTicker(w.cfg.PublicationCheckInterval)
	defer t.Stop()
	for {
		if err := w.check(ctx); err != nil && ctx.Err() == nil {
			w.logger.Warn("publication check failed; trying again later", "publication", w.cfg.Publication,
				"error", err, "retry_in", w.cfg.PublicationCheckInterval)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// check compares the publication with the mapped tables once, re-adds
// what it may, and records the problem that remains.
func (w *PublicationWatch) check(ctx context.Context) error {
	if w.conn == nil || w.conn.IsClosed() {
		conn, err := connect(ctx, w.cfg.ConnString)
		if err != nil {
			return err
		}
		w.conn = conn
	}
	err := w.compare(ctx)
	if err != nil {
		// Start the next check on a fresh connection.
		_ = w.conn.Close(context.WithoutCancel(ctx))
		w.conn = nil
	}
	return err
}

// compare does check's work on w.conn.
func (w *PublicationWatch) compare(ctx context.Context) error {
	oids, err := w.tableOIDs(ctx)
	if err != nil {
		return err
	}
	for _, t := range w.cfg.Tables {
		oid, exists := oids[t]
		if prev, seen := w.oids[t]; exists && seen && prev != oid {
			w.logger.Warn("a mapped table was dropped and created again; changes made to it before it was back in the publication were not captured and cannot be recovered",
				"table", t.String(), "publication", w.cfg.Publication)
		}
		if exists {
			w.oids[t] = oid
		} else {
			delete(w.oids, t)
		}
	}

	pub, err := lookupPublication(ctx, w.conn, w.cfg.Publication)
	if err != nil {
		return err
	}
	if !pub.exists {
		w.setProblem(len(w.cfg.Tables), fmt.Sprintf("publication %q does not exist: it was dropped while walhook ran, and no change is captured; restart walhook to create it again", w.cfg.Publication))
		return nil
	}
	var problems []string
	var absent, foreign []Table
	for _, t := range pub.missing(w.cfg.Tables) {
		if _, exists := oids[t]; !exists {
			absent = append(absent, t)
			continue
		}
		if !pub.owned {
			foreign = append(foreign, t)
			continue
		}
		if err := addTables(ctx, w.conn, w.cfg.Publication, []Table{t}); err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == codeUndefinedTable {
				absent = append(absent, t) // dropped a moment ago
				continue
			}
			problems = append(problems, err.Error())
			foreign = append(foreign, t)
			continue
		}
		w.metrics.tableReadded()
		w.logger.Warn("a mapped table was missing from walhook's publication (dropped and created again?); added it back. Changes made to it before now were not captured and cannot be recovered",
			"table", t.String(), "publication", w.cfg.Publication)
		w.checkShape(ctx, t)
	}
	if len(foreign) > 0 && !pub.owned {
		problems = append(problems, fmt.Sprintf("publication %q does not include %s (dropped and created again?), so its changes are not captured; add it with %s",
			w.cfg.Publication, tableNames(foreign), addTablesSQL(w.cfg.Publication, foreign)))
	}
	if len(absent) > 0 {
		fix := "create it again; walhook then adds it to its publication"
		if !pub.owned {
			fix = "create it again and run " + addTablesSQL(w.cfg.Publication, absent)
		}
		problems = append(problems, fmt.Sprintf("table %s does not exist (dropped?), so no change of it is captured; %s", tableNames(absent), fix))
	}
	w.setProblem(len(absent)+len(foreign), strings.Join(problems, "; "))
	return nil
}

// tableOIDs returns the oid of each mapped table that exists.
func (w *PublicationWatch) tableOIDs(ctx context.Context) (map[Table]uint32, error) {
	schemas := make([]string, len(w.cfg.Tables))
	names := make([]string, len(w.cfg.Tables))
	for i, t := range w.cfg.Tables {
		schemas[i], names[i] = t.Schema, t.Name
	}
	rows, _ := w.conn.Query(ctx, `
		SELECT n.nspname::text, c.relname::text, c.oid
		FROM unnest($1::text[], $2::text[]) AS t(s, n)
		JOIN pg_namespace n ON n.nspname = t.s
		JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.n AND c.relkind IN ('r', 'p')`, schemas, names)
	out := make(map[Table]uint32, len(w.cfg.Tables))
	var t Table
	var oid uint32
	_, err := pgx.ForEachRow(rows, []any{&t.Schema, &t.Name, &oid}, func() error {
		out[t] = oid
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cdc: look up the mapped tables: %w", err)
	}
	return out, nil
}

// checkShape warns when a re-created table's key or replica identity is
// not what walhook checked at start.
func (w *PublicationWatch) checkShape(ctx context.Context, t Table) {
	was, ok := w.infos[t]
	if !ok {
		return
	}
	now, err := describeTable(ctx, w.conn, t)
	if err != nil {
		w.logger.Warn("could not describe a re-created mapped table", "table", t.String(), "error", err)
		return
	}
	if !slices.Equal(was.KeyColumns, now.KeyColumns) || was.ReplicaIdentity != now.ReplicaIdentity {
		w.logger.Warn("a re-created mapped table differs from the one walhook checked at start; restart walhook so it checks the table again",
			"table", t.String(),
			"key_columns", now.KeyColumns, "key_columns_at_start", was.KeyColumns,
			"replica_identity", string(now.ReplicaIdentity), "replica_identity_at_start", string(was.ReplicaIdentity))
	}
}

// setProblem records the current problem and the number of mapped tables
// whose changes are not captured, logging when the problem changes.
func (w *PublicationWatch) setProblem(missing int, problem string) {
	w.metrics.setMissingTables(missing)
	prev := w.Problem()
	if problem == prev {
		return
	}
	w.problem.Store(&problem)
	if problem != "" {
		w.logger.Error("mapped tables are missing from the publication: their changes are not delivered",
			"publication", w.cfg.Publication, "problem", problem)
		return
	}
	w.logger.Info("the publication includes every mapped table again", "publication", w.cfg.Publication)
}
