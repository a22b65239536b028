package cdc

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/walhook/walhook/internal/pgtest"
)

// lockedBuffer is a log sink safe for the goroutines of a test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startWatch runs a PublicationWatch checking every 50ms until the test
// ends.
func startWatch(t *testing.T, cfg Config, m *Metrics) (*PublicationWatch, *lockedBuffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	infos, err := Inspect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	cfg.Metrics = m
	cfg.PublicationCheckInterval = 50 * time.Millisecond
	w := NewPublicationWatch(cfg, infos)
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("PublicationWatch.Run: %v", err)
			}
		case <-time.After(waitTimeout):
			t.Error("PublicationWatch.Run did not return after its context was cancelled")
		}
	})
	return w, logs
}

// published reports whether the publication includes public.orders.
func published(t *testing.T, url, pub string) bool {
	return queryString(t, url, `SELECT count(*)::text FROM pg_publication_tables
		WHERE pubname = $1 AND schemaname = 'public' AND tablename = 'orders'`, pub) == "1"
}

// recreateOrders drops public.orders (if it exists) and creates it again, empty.
func recreateOrders(t *testing.T, url string) {
	pgtest.Exec(t, url, `DROP TABLE IF EXISTS public.orders;
		CREATE TABLE public.orders (id bigint PRIMARY KEY, status text NOT NULL, total numeric(10,2), paid boolean,
			placed_at timestamptz, tags text[], meta jsonb, note text)`)
}

// insertedIDs returns the ids inserted by the transaction tx.
func insertedIDs(t *testing.T, tx []*Batch) []string {
	var ids []string
	for _, c := range changes(tx) {
		if c.Op == OpInsert {
			ids = append(ids, text(c.New, col(t, c.Rel, "id")))
		}
	}
	return ids
}

// TestWatchReaddsDroppedTable pins the bug: a mapped table dropped and
// created again left walhook's publication, and its inserts were neither
// delivered nor logged. The watch adds it back; later inserts arrive.
func TestWatchReaddsDroppedTable(t *testing.T) {
	url := pgtest.NewDatabase(t)
	pgtest.Exec(t, url, shopSchema)
	cfg := testConfig(url)
	h := startReader(t, cfg)
	if got := queryString(t, url, `SELECT obj_description(oid, 'pg_publication') FROM pg_publication WHERE pubname = 'walhook'`); got != PublicationComment {
		t.Fatalf("the publication Setup created has comment %q, want %q", got, PublicationComment)
	}
	w, logs := startWatch(t, cfg, h.metrics)

	pgtest.Exec(t, url, `INSERT INTO public.orders (id, status) VALUES (1, 'before')`)
	if ids := insertedIDs(t, h.nextTx()); len(ids) != 1 || ids[0] != "1" {
		t.Fatalf("before the drop: inserted ids %v, want [1]", ids)
	}

	recreateOrders(t, url)
	eventually(t, "the watch adds public.orders back to the publication", func() bool { return published(t, url, "walhook") })
	pgtest.Exec(t, url, `INSERT INTO public.orders (id, status) VALUES (2, 'after')`)
	if ids := insertedIDs(t, h.nextTx()); len(ids) != 1 || ids[0] != "2" {
		t.Fatalf("after the re-add: inserted ids %v, want [2]", ids)
	}

	if p := w.Problem(); p != "" {
		t.Errorf("Problem() = %q after the re-add, want none", p)
	}
	if got := testutil.ToFloat64(h.metrics.readded); got != 1 {
		t.Errorf("walhook_publication_tables_readded_total = %v, want 1", got)
	}
	if got := testutil.ToFloat64(h.metrics.missingTables); got != 0 {
		t.Errorf("walhook_publication_missing_tables = %v, want 0", got)
	}
	if l := logs.String(); !strings.Contains(l, "added it back") || !strings.Contains(l, "cannot be recovered") || !strings.Contains(l, "public.orders") {
		t.Errorf("no warning naming the table and the lost changes:\n%s", l)
	}
}

// TestWatchReportsForeignPublication: in a publication walhook does not
// own, the watch does not touch it but reports the missing table with the
// fix, and clears the report once the table is back.
func TestWatchReportsForeignPublication(t *testing.T) {
	url := pgtest.NewDatabase(t)
	pgtest.Exec(t, url, shopSchema, `CREATE PUBLICATION walhook FOR TABLE public.orders`)
	cfg := testConfig(url)
	h := startReader(t, cfg)
	w, logs := startWatch(t, cfg, h.metrics)

	recreateOrders(t, url)
	eventually(t, "the watch reports the missing table", func() bool { return w.Problem() != "" })
	p := w.Problem()
	for _, want := range []string{`publication "walhook" does not include public.orders`, `ALTER PUBLICATION "walhook" ADD TABLE "public"."orders"`} {
		if !strings.Contains(p, want) {
			t.Errorf("Problem() = %q\nlacks %q", p, want)
		}
	}
	if got := testutil.ToFloat64(h.metrics.missingTables); got != 1 {
		t.Errorf("walhook_publication_missing_tables = %v, want 1", got)
	}
	if published(t, url, "walhook") {
		t.Error("the watch changed a publication walhook does not own")
	}
	if l := logs.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "ALTER PUBLICATION") {
		t.Errorf("no error line naming the fix:\n%s", l)
	}

	pgtest.Exec(t, url, `ALTER PUBLICATION walhook ADD TABLE public.orders`)
	eventually(t, "the report clears", func() bool { return w.Problem() == "" })
	if got := testutil.ToFloat64(h.metrics.missingTables); got != 0 {
		t.Errorf("walhook_publication_missing_tables = %v after the fix, want 0", got)
	}
	pgtest.Exec(t, url, `INSERT INTO public.orders (id, status) VALUES (3, 'fixed')`)
	if ids := insertedIDs(t, h.nextTx()); len(ids) != 1 || ids[0] != "3" {
		t.Fatalf("after the fix: inserted ids %v, want [3]", ids)
	}
}

// TestWatchReportsDroppedTable: a mapped table that is gone cannot be
// re-added; the watch says so, and re-adds it once it is created again.
func TestWatchReportsDroppedTable(t *testing.T) {
	url := pgtest.NewDatabase(t)
	pgtest.Exec(t, url, shopSchema)
	cfg := testConfig(url)
	ctx := context.Background()
	if _, err := Setup(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(prometheus.NewRegistry())
	w, _ := startWatch(t, cfg, m)

	pgtest.Exec(t, url, `DROP TABLE public.orders`)
	eventually(t, "the watch reports the dropped table", func() bool { return w.Problem() != "" })
	if p := w.Problem(); !strings.Contains(p, "table public.orders does not exist") || !strings.Contains(p, "create it again") {
		t.Errorf("Problem() = %q", p)
	}
	if got := testutil.ToFloat64(m.missingTables); got != 1 {
		t.Errorf("walhook_publication_missing_tables = %v, want 1", got)
	}
	recreateOrders(t, url)
	eventually(t, "the watch re-adds the re-created table", func() bool { return w.Problem() == "" && published(t, url, "walhook") })
}

// TestPrepareUndo: Undo drops exactly what Prepare created.
func TestPrepareUndo(t *testing.T) {
	url := pgtest.NewDatabase(t)
	pgtest.Exec(t, url, shopSchema)
	cfg := testConfig(url)
	ctx := context.Background()
	count := func(sql string) string { return queryString(t, url, sql) }
	const slots = `SELECT count(*)::text FROM pg_replication_slots WHERE slot_name = 'walhook'`
	const pubs = `SELECT count(*)::text FROM pg_publication WHERE pubname = 'walhook'`

	p, err := Prepare(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !p.CreatedSlot || !p.CreatedPublication {
		t.Fatalf("Prepare on an empty database: %+v, want both created", *p)
	}
	if err := p.Undo(ctx); err != nil {
		t.Fatal(err)
	}
	if count(slots) != "0" || count(pubs) != "0" {
		t.Fatalf("after Undo: %s slots, %s publications, want none", count(slots), count(pubs))
	}

	// What was there before is left alone.
	pgtest.Exec(t, url, `CREATE PUBLICATION walhook FOR TABLE public.orders`,
		`SELECT pg_create_logical_replication_slot('walhook', 'pgoutput')`)
	if p, err = Prepare(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if p.CreatedSlot || p.CreatedPublication {
		t.Fatalf("Prepare with both present: %+v, want nothing created", *p)
	}
	if err := p.Undo(ctx); err != nil {
		t.Fatal(err)
	}
	if count(slots) != "1" || count(pubs) != "1" {
		t.Fatalf("Undo removed what it had not created: %s slots, %s publications", count(slots), count(pubs))
	}
}

// TestPrepareAddsTablesToOwnPublication: at start, walhook adds newly
// mapped tables to its own publication, and refuses a foreign one.
func TestPrepareAddsTablesToOwnPublication(t *testing.T) {
	url := pgtest.NewDatabase(t)
	pgtest.Exec(t, url, shopSchema)
	cfg := testConfig(url)
	ctx := context.Background()
	if _, err := Setup(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Tables = append(cfg.Tables, Table{"public", "other"})
	if _, err := Setup(ctx, cfg); err != nil {
		t.Fatalf("Setup with a newly mapped table: %v", err)
	}
	if got := queryString(t, url, `SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_publication_tables WHERE pubname = 'walhook'`); got != "orders,other" {
		t.Errorf("published tables = %q, want orders,other", got)
	}
}

// TestRecreateWithPublicationInOneTransaction: the README's advice holds:
// a table dropped, created again and added back to the publication in one
// transaction loses none of the rows written after it is added back.
func TestRecreateWithPublicationInOneTransaction(t *testing.T) {
	url := pgtest.NewDatabase(t)
	pgtest.Exec(t, url, shopSchema, `CREATE PUBLICATION walhook FOR TABLE public.orders`)
	h := startReader(t, testConfig(url))
	pgtest.Exec(t, url, `BEGIN;
		DROP TABLE public.orders;
		CREATE TABLE public.orders (id bigint PRIMARY KEY, status text NOT NULL);
		ALTER PUBLICATION walhook ADD TABLE public.orders;
		INSERT INTO public.orders VALUES (7, 'same transaction');
		COMMIT;`)
	pgtest.Exec(t, url, `INSERT INTO public.orders VALUES (8, 'next transaction')`)
	var ids []string
	for len(ids) < 2 {
		ids = append(ids, insertedIDs(t, h.nextTx())...)
	}
	if strings.Join(ids, ",") != "7,8" {
		t.Errorf("inserted ids %v, want [7 8]", ids)
	}
}
