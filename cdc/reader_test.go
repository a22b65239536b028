package cdc

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/walhook/walhook/internal/pgtest"
)

func TestReaderInsertUpdateDelete(t *testing.T) {
	url := pgtest.NewDatabase(t)
	pgtest.Exec(t, url, shopSchema)
	h := startReader(t, testConfig(url))

	pgtest.Exec(t, url,
		`INSERT INTO orders VALUES (1, 'pending', 12.50, false, '2024-01-02 03:04:05+02', '{a,"b c"}', '{"k": [1, 2.5]}', NULL)`,
		`UPDATE orders SET status = 'completed', paid = true WHERE id = 1`,
		`DELETE FROM orders WHERE id = 1`)

	type row map[string]string
	tests := []struct {
		op  Op
		new row
		old row
	}{
		{op: OpInsert, new: row{"id": "1", "status": "pending", "total": "12.50", "paid": "f",
			"placed_at": "2024-01-02 01:04:05+00", "tags": `{a,"b c"}`, "meta": `{"k": [1, 2.5]}`, "note": "NULL"}},
		{op: OpUpdate, new: row{"id": "1", "status": "completed", "paid": "t", "note": "NULL"}},
		{op: OpDelete, old: row{"id": "1", "status": "NULL", "total": "NULL"}},
	}
	var prev *Batch
	for i, tt := range tests {
		tx := h.nextTx()
		if len(tx) != 1 {
			t.Fatalf("transaction %d: %d batches, want 1", i, len(tx))
		}
		b := tx[0]
		if !b.Last || b.EndLSN <= b.CommitLSN || b.Xid == 0 || b.CommitTime.IsZero() {
			t.Errorf("transaction %d: Last=%v CommitLSN=%s EndLSN=%s Xid=%d CommitTime=%v", i, b.Last, b.CommitLSN, b.EndLSN, b.Xid, b.CommitTime)
		}
		if prev != nil && b.CommitLSN <= prev.EndLSN {
			t.Errorf("transaction %d: CommitLSN %s not after the previous EndLSN %s", i, b.CommitLSN, prev.EndLSN)
		}
		prev = b
		if len(b.Changes) != 1 {
			t.Fatalf("transaction %d: %d changes, want 1", i, len(b.Changes))
		}
		c := b.Changes[0]
		if c.Op != tt.op || c.Index != 0 {
			t.Errorf("transaction %d: Op %s Index %d, want %s 0", i, c.Op, c.Index, tt.op)
		}
		if c.Rel == nil || c.Rel.QualifiedName() != "public.orders" || c.Rel.ReplicaIdentity != 'd' || len(c.Rel.Columns) != 8 {
			t.Fatalf("transaction %d: relation %+v", i, c.Rel)
		}
		for _, column := range c.Rel.Columns {
			if column.Key != (column.Name == "id") {
				t.Errorf("column %s: Key = %v", column.Name, column.Key)
			}
		}
		if c.Rel.Columns[col(t, c.Rel, "id")].TypeOID != 20 {
			t.Errorf("id type OID = %d, want 20 (int8)", c.Rel.Columns[0].TypeOID)
		}
		check := func(what string, vals []Value, want row) {
			t.Helper()
			if want == nil {
				if vals != nil {
					t.Errorf("transaction %d: %s = %v, want nil", i, what, vals)
				}
				return
			}
			if len(vals) != len(c.Rel.Columns) {
				t.Fatalf("transaction %d: %s has %d values", i, what, len(vals))
			}
			for name, v := range want {
				if got := text(vals, col(t, c.Rel, name)); got != v {
					t.Errorf("transaction %d: %s %s = %q, want %q", i, what, name, got, v)
				}
			}
		}
		check("New", c.New, tt.new)
		check("Old", c.Old, tt.old)
		h.reader.Confirm(b.EndLSN)
	}

	eventually(t, "the slot confirms the last transaction", func() bool {
		return slotConfirmed(t, url, "walhook") >= prev.EndLSN
	})
	if got := testutil.ToFloat64(h.metrics.transactions); got != 3 {
		t.Errorf("transactions_total = %v, want 3", got)
	}
	if got := testutil.ToFloat64(h.metrics.changes); got != 3 {
		t.Errorf("changes_total = %v, want 3", got)
	}
	if testutil.ToFloat64(h.metrics.bytesRead) == 0 || testutil.ToFloat64(h.metrics.streaming) != 1 || testutil.ToFloat64(h.metrics.connected) != 1 {
		t.Errorf("bytes_read_total, streaming, connected = %v, %v, %v", testutil.ToFloat64(h.metrics.bytesRead),
			testutil.ToFloat64(h.metrics.streaming), testutil.ToFloat64(h.metrics.connected))
	}
	problems, err := testutil.GatherAndLint(h.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
}

func TestReaderTransactionShape(t *testing.T) {
	url := pgtest.NewDatabase(t)
	pgtest.Exec(t, url, shopSchema)
	cfg := testConfig(url)
	cfg.BatchSize = 512
	h := startReader(t, cfg)

	t.Run("several statements are one transaction", func(t *testing.T) {
		pgtest.Exec(t, url, `BEGIN;
			INSERT INTO orders (id, status) VALUES (10, 'a'), (11, 'b');
			UPDATE orders SET status = 'c' WHERE id = 10;
			INSERT INTO other (v) VALUES ('not published');
			SELECT pg_logical_emit_message(true, 'order.note', '{"id": 10}');
			DELETE FROM orders WHERE id = 11;
			COMMIT`)
		tx := h.nextTx()
		if len(tx) != 1 {
			t.Fatalf("%d batches, want 1", len(tx))
		}
		cs := changes(tx)
		wantOps := []Op{OpInsert, OpInsert, OpUpdate, OpMessage, OpDelete}
		if len(cs) != len(wantOps) {
			t.Fatalf("%d changes, want %d", len(cs), len(wantOps))
		}
		for i, c := range cs {
			if c.Op != wantOps[i] || c.Index != uint32(i) {
				t.Errorf("change %d: %s index %d, want %s index %d", i, c.Op, c.Index, wantOps[i], i)
			}
		}
		if m := cs[3]; m.Prefix != "order.note" || string(m.Content) != `{"id": 10}` || m.Rel != nil {
			t.Errorf("message = %+v", m)
		}
		h.reader.Confirm(tx[0].EndLSN)
	})

	t.Run("a large transaction comes in batches", func(t *testing.T) {
		pgtest.Exec(t, url, `INSERT INTO orders (id, status) SELECT g, 'bulk' FROM generate_series(1000, 3999) g`)
		tx := h.nextTx()
		if len(tx) != 6 {
			t.Fatalf("%d batches, want 6 (3000 changes by 512)", len(tx))
		}
		next := uint32(0)
		for i, b := range tx {
			wantLen := 512
			if i == 5 {
				wantLen = 3000 - 5*512
			}
			if len(b.Changes) != wantLen || b.Last != (i == 5) || b.CommitLSN != tx[0].CommitLSN || (b.EndLSN != 0) != b.Last {
				t.Errorf("batch %d: %d changes, Last %v, CommitLSN %s, EndLSN %s", i, len(b.Changes), b.Last, b.CommitLSN, b.EndLSN)
			}
			for _, c := range b.Changes {
				if c.Index != next || text(c.New, 0) != strconv.Itoa(1000+int(next)) {
					t.Fatalf("change %d: index %d id %s", next, c.Index, text(c.New, 0))
				}
				next++
			}
		}
		h.reader.Confirm(tx[5].EndLSN)
	})

	t.Run("a rolled-back transaction yields nothing", func(t *testing.T) {
		pgtest.Exec(t, url, `BEGIN; INSERT INTO orders (id, status) VALUES (20, 'rolled back'); ROLLBACK`)
		pgtest.Exec(t, url, `INSERT INTO orders (id, status) VALUES (21, 'committed')`)
		cs := changes(h.nextTx())
		if len(cs) != 1 || text(cs[0].New, 0) != "21" {
			t.Fatalf("after a rollback got %d changes, first id %s; want only id 21", len(cs), text(cs[0].New, 0))
		}
	})

	t.Run("only transactional messages arrive", func(t *testing.T) {
		pgtest.Exec(t, url,
			`SELECT pg_logical_emit_message(false, 'ignored', 'not transactional')`,
			`SELECT pg_logical_emit_message(true, 'action.sync', 'content')`)
		cs := changes(h.nextTx())
		if len(cs) != 1 || cs[0].Op != OpMessage || cs[0].Prefix != "action.sync" || string(cs[0].Content) != "content" {
			t.Fatalf("changes = %+v, want the one transactional message", cs)
		}
	})

	t.Run("ALTER TABLE mid-stream", func(t *testing.T) {
		pgtest.Exec(t, url,
			`INSERT INTO orders (id, status) VALUES (30, 'before')`,
			`ALTER TABLE orders ADD COLUMN currency text NOT NULL DEFAULT 'EUR'`,
			`INSERT INTO orders (id, status, currency) VALUES (31, 'after', 'USD')`)
		before := changes(h.nextTx())[0]
		after := changes(h.nextTx())[0]
		if len(before.Rel.Columns) != 8 || len(before.New) != 8 {
			t.Errorf("before: %d columns, %d values; want 8", len(before.Rel.Columns), len(before.New))
		}
		if before.Rel == after.Rel || len(after.Rel.Columns) != 9 || len(after.New) != 9 {
			t.Fatalf("after: %d columns, %d values; want 9 in a new Relation", len(after.Rel.Columns), len(after.New))
		}
		if got := text(after.New, col(t, after.Rel, "currency")); got != "USD" {
			t.Errorf("currency = %q, want USD", got)
		}
	})
}

func TestReaderUnchangedToast(t *testing.T) {
	url := pgtest.NewDatabase(t)
	pgtest.Exec(t, url, `
		CREATE TABLE docs (id int PRIMARY KEY, n int, body text);
		ALTER TABLE docs REPLICA IDENTITY FULL;
		CREATE TABLE plain_docs (id int PRIMARY KEY, n int, body text);
		CREATE TABLE big (body text);
		-- md5 of random data does not compress: the value really is TOASTed.
		INSERT INTO big SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 700);`)
	cfg := testConfig(url)
	cfg.Tables = []Table{{"public", "docs"}, {"public", "plain_docs"}}
	h := startReader(t, cfg)

	pgtest.Exec(t, url,
		`INSERT INTO docs SELECT 1, 1, body FROM big`,
		`INSERT INTO plain_docs SELECT 1, 1, body FROM big`,
		`UPDATE docs SET n = 2`,
		`UPDATE plain_docs SET n = 2`)
	body := queryString(t, url, "SELECT body FROM big")
	if len(body) < 20000 {
		t.Fatalf("body is %d bytes", len(body))
	}
	if ext := queryString(t, url, "SELECT pg_column_size(body)::text FROM docs"); ext == "" {
		t.Fatal("no docs row")
	}

	for _, table := range []string{"docs", "plain_docs"} {
		if c := changes(h.nextTx())[0]; c.Op != OpInsert || text(c.New, 2) != body {
			t.Fatalf("%s insert: %s with a body of %d bytes", table, c.Op, len(c.New[2].Data))
		}
	}
	full := changes(h.nextTx())[0]
	if full.Op != OpUpdate || text(full.New, 1) != "2" {
		t.Fatalf("docs update: %s n=%s", full.Op, text(full.New, 1))
	}
	if full.New[2].Kind != KindText || string(full.New[2].Data) != body {
		t.Errorf("REPLICA IDENTITY FULL update: unchanged body arrived as kind %d with %d bytes, want the full %d bytes",
			full.New[2].Kind, len(full.New[2].Data), len(body))
	}
	if text(full.Old, 1) != "1" || text(full.Old, 2) != body {
		t.Errorf("REPLICA IDENTITY FULL update: old row n=%s, body of %d bytes", text(full.Old, 1), len(full.Old[2].Data))
	}

	plain := changes(h.nextTx())[0]
	if plain.New[2].Kind != KindUnchanged || plain.Old != nil {
		t.Errorf("default identity update: body kind %d, old row %v; want KindUnchanged and no old row", plain.New[2].Kind, plain.Old)
	}
}

func TestReaderIdleSlotAdvances(t *testing.T) {
	url := pgtest.NewDatabase(t)
	pgtest.Exec(t, url, shopSchema)
	startReader(t, testConfig(url))

	for i := 0; i < 5; i++ {
		pgtest.Exec(t, url, fmt.Sprintf(`INSERT INTO other (v) VALUES ('%d')`, i))
	}
	target := queryLSN(t, url, "SELECT pg_current_wal_insert_lsn()::text")
	eventually(t, "the idle slot's confirmed position passes the unpublished writes", func() bool {
		return slotConfirmed(t, url, "walhook") >= target
	})
}

func TestReaderConfirm(t *testing.T) {
	url := pgtest.NewDatabase(t)
	pgtest.Exec(t, url, shopSchema)
	h := startReader(t, testConfig(url))

	pgtest.Exec(t, url, `INSERT INTO orders (id, status) VALUES (1, 'pending')`)
	tx := h.nextTx()
	end := tx[len(tx)-1].EndLSN

	// Unpublished writes after it: the idle rule must not pass the
	// transaction that is handed out but not confirmed.
	pgtest.Exec(t, url, `INSERT INTO other (v) VALUES ('x')`)
	replies := func() string {
		return queryString(t, url, "SELECT reply_time::text FROM pg_stat_replication WHERE application_name = 'walhook'")
	}
	first := replies()
	eventually(t, "the reader sends two more status updates", func() bool { return replies() != first })
	second := replies()
	eventually(t, "the reader sends one more status update", func() bool { return replies() != second })
	if got := slotConfirmed(t, url, "walhook"); got >= end {
		t.Fatalf("slot confirmed %s before the transaction ending at %s was confirmed", got, end)
	}

	h.reader.Confirm(end)
	h.reader.Confirm(end - 1) // ignored: positions only move forward
	eventually(t, "Confirm reaches the slot", func() bool { return slotConfirmed(t, url, "walhook") >= end })
	if got := testutil.ToFloat64(h.metrics.confirmedLSN); got < float64(end) {
		t.Errorf("confirmed_lsn = %v, want at least %v", got, float64(end))
	}
}

func TestReaderSurvivesServerRestart(t *testing.T) {
	url := pgtest.NewDatabase(t)
	pgtest.Exec(t, url, shopSchema)
	h := startReader(t, testConfig(url))

	pgtest.Exec(t, url, `INSERT INTO orders (id, status) VALUES (1, 'before restart')`)
	tx := h.nextTx()
	h.reader.Confirm(tx[len(tx)-1].EndLSN)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pgtest.Cluster().Restart(ctx, "immediate"); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, url, `INSERT INTO orders (id, status) VALUES (2, 'after restart')`)

	// The server may resend the first transaction (its confirmation may
	// not have reached the slot before the crash): that is allowed.
	for {
		cs := changes(h.nextTx())
		id := text(cs[0].New, 0)
		if id == "2" {
			break
		}
		if id != "1" {
			t.Fatalf("unexpected change for id %s", id)
		}
	}
	if got := testutil.ToFloat64(h.metrics.reconnects); got < 1 {
		t.Errorf("reconnects_total = %v, want at least 1", got)
	}
	if s := h.reader.State(); s != Streaming {
		t.Errorf("state = %s, want streaming", s)
	}
}

func TestReaderStandbyTakeover(t *testing.T) {
	url := pgtest.NewDatabase(t)
	pgtest.Exec(t, url, shopSchema)
	cfg := testConfig(url)
	first := startReader(t, cfg)
	eventually(t, "the first reader streams", func() bool { return first.reader.State() == Streaming })

	second := runReader(t, cfg)
	eventually(t, "the second reader waits as standby", func() bool { return second.reader.State() == Standby })
	if got := testutil.ToFloat64(second.metrics.standby); got != 1 {
		t.Errorf("standby gauge = %v, want 1", got)
	}

	pgtest.Exec(t, url, `INSERT INTO orders (id, status) VALUES (1, 'to the first')`)
	tx := first.nextTx()
	first.reader.Confirm(tx[len(tx)-1].EndLSN)
	if err := first.stop(); err != nil {
		t.Fatalf("first Run: %v", err)
	}
	if s := first.reader.State(); s != Stopped {
		t.Errorf("first reader state after Run = %s", s)
	}

	eventually(t, "the second reader takes over", func() bool { return second.reader.State() == Streaming })
	pgtest.Exec(t, url, `INSERT INTO orders (id, status) VALUES (2, 'to the second')`)
	// The first transaction was confirmed on the way out, so it is not
	// delivered again.
	cs := changes(second.nextTx())
	if id := text(cs[0].New, 0); id != "2" {
		t.Errorf("second reader got id %s first, want 2", id)
	}
	if got := testutil.ToFloat64(second.metrics.standby); got != 0 {
		t.Errorf("standby gauge = %v after takeover, want 0", got)
	}
}

func TestReaderBackpressureKeepsStatusUpdates(t *testing.T) {
	url := pgtest.NewDatabase(t)
	pgtest.Exec(t, url, shopSchema)
	h := startReader(t, testConfig(url))

	// Fill the channel (capacity 4) and one more, then read nothing: the
	// reader is blocked sending, and must still answer the server.
	for i := 0; i < 6; i++ {
		pgtest.Exec(t, url, fmt.Sprintf(`INSERT INTO orders (id, status) VALUES (%d, 'x')`, i))
	}
	eventually(t, "the channel is full", func() bool { return len(h.out) == cap(h.out) })
	replies := func() string {
		return queryString(t, url, "SELECT reply_time::text FROM pg_stat_replication WHERE application_name = 'walhook'")
	}
	before := replies()
	eventually(t, "a status update arrives while the reader is blocked", func() bool { return replies() != before })

	// Confirming while blocked reaches the server too.
	b := <-h.out
	h.reader.Confirm(b.EndLSN)
	eventually(t, "the confirmation arrives", func() bool { return slotConfirmed(t, url, "walhook") >= b.EndLSN })
	for i := 1; i < 6; i++ {
		if got := text(h.next().Changes[0].New, 0); got != strconv.Itoa(i) {
			t.Fatalf("batch %d has id %s", i, got)
		}
	}
}

func TestReaderStopsOnDroppedSlot(t *testing.T) {
	url := pgtest.NewDatabase(t)
	pgtest.Exec(t, url, shopSchema)
	cfg := testConfig(url)
	if _, err := Setup(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, url, `SELECT pg_drop_replication_slot('walhook')`)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	err := NewReader(cfg).Run(ctx, make(chan *Batch, 1))
	if err == nil || !strings.Contains(err.Error(), `replication slot "walhook" does not exist`) {
		t.Fatalf("Run = %v, want the missing slot error", err)
	}
}

func TestReaderStartLSN(t *testing.T) {
	url := pgtest.NewDatabase(t)
	pgtest.Exec(t, url, shopSchema)
	cfg := testConfig(url)
	if _, err := Setup(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	// Two transactions while no reader runs; the caller has settled the
	// first one already.
	pgtest.Exec(t, url, `INSERT INTO orders (id, status) VALUES (1, 'settled')`)
	settled := queryLSN(t, url, "SELECT pg_current_wal_insert_lsn()::text")
	pgtest.Exec(t, url, `INSERT INTO orders (id, status) VALUES (2, 'new')`)

	calls := 0
	cfg.StartLSN = func(context.Context) (pglogrepl.LSN, error) { calls++; return settled, nil }
	h := runReader(t, cfg)
	cs := changes(h.nextTx())
	if id := text(cs[0].New, 0); id != "2" {
		t.Fatalf("first change has id %s, want 2 (id 1 was settled)", id)
	}
	eventually(t, "the settled position reaches the slot", func() bool { return slotConfirmed(t, url, "walhook") >= settled })
	if calls == 0 {
		t.Error("StartLSN was not called")
	}
}
