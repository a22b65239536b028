package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walhook/walhook/internal/pgtest"
	"github.com/walhook/walhook/internal/receiver"
	"github.com/walhook/walhook/internal/walhooktest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// itemsWorld is the schema and webhooks shared by the durability tests:
// rows whose version goes up by one with every update, so the expected
// deliveries and their per-row order are known exactly.
type itemsWorld struct {
	db, slot, cfgPath, logPath string
	recv                       *receiver.Receiver
	rows                       int
}

func newItemsWorld(t *testing.T, rows int, extraDelivery string) *itemsWorld {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, `CREATE TABLE items (id int PRIMARY KEY, version int NOT NULL, note text NOT NULL DEFAULT '');
		ALTER TABLE items REPLICA IDENTITY FULL;`)
	recv := receiver.New(map[int64]string{1: "s1", 2: "s2"})
	srv := httptest.NewServer(recv)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	slot := fmt.Sprintf("crash_%d", time.Now().UnixNano()%1e9)
	cfg := fmt.Sprintf(`postgres:
  url: %q
  slot: %s
  publication: %s
  status_interval: 1s
source: https://shop.example.com/
resources:
  item: { table: public.items }
delivery:
  allow_private_networks: true
  timeout: 2s
  concurrency: 4
  shutdown_grace: 5s
  retry: { attempts: 3, backoff: 10ms, max_backoff: 100ms, parked_backoff: 100ms, parked_max_backoff: 500ms,
           probe_interval: 50ms, probe_max_interval: 500ms }
%s
http:
  listen: 127.0.0.1:0
log:
  level: %s
webhooks:
  - { id: 1, topic: item.updated, delivery_url: %q, secret: s1 }
  - { id: 2, topic: item.updated, delivery_url: %q, secret: s2 }
`, db, slot, slot, extraDelivery, logLevel(), srv.URL+"/one", srv.URL+"/two")
	cfgPath := filepath.Join(dir, "walhook.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var values []string
	for i := 1; i <= rows; i++ {
		values = append(values, fmt.Sprintf("(%d, 0)", i))
	}
	pgtest.Exec(t, db, "INSERT INTO items (id, version) VALUES "+strings.Join(values, ","))
	return &itemsWorld{db: db, slot: slot, cfgPath: cfgPath, logPath: filepath.Join(dir, "walhook.log"), recv: recv, rows: rows}
}

// logLevel is the durability tests' walhook log level: warn, or
// WALHOOK_TEST_LOG_LEVEL to see more of what happened around a failure.
func logLevel() string {
	if l := os.Getenv("WALHOOK_TEST_LOG_LEVEL"); l != "" {
		return l
	}
	return "warn"
}

// waitStreaming waits until a walhook streams from the world's slot:
// changes committed before the slot exists are not walhook's to deliver.
// A slot is also active while it is being created (its creation waits for
// a consistent point, and a walhook killed then leaves no slot), so the
// test waits for the walsender to have started replication.
func (w *itemsWorld) waitStreaming(t testing.TB) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), w.db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	walhooktest.WaitFor(t, "walhook to stream from slot "+w.slot, func() bool {
		var streaming bool
		err := conn.QueryRow(t.Context(), `SELECT EXISTS (SELECT 1 FROM pg_replication_slots s
			JOIN pg_stat_replication r ON r.pid = s.active_pid
			WHERE s.slot_name = $1 AND r.state IN ('catchup', 'streaming'))`, w.slot).Scan(&streaming)
		return err == nil && streaming
	})
}

// load commits txs transactions, each updating 1–3 distinct rows, and
// returns the final version of every row.
func (w *itemsWorld) load(ctx context.Context, t *testing.T, txs int, pause time.Duration) map[int]int {
	return w.loadWhile(ctx, t, func(i int) bool { return i < txs }, pause)
}

// loadWhile commits transactions while more(i) holds for the i-th, each
// updating 1–3 distinct rows in one statement (one round trip, so the
// load generator is not what a busy machine waits on), and returns the
// final version of every row.
func (w *itemsWorld) loadWhile(ctx context.Context, t *testing.T, more func(i int) bool, pause time.Duration) map[int]int {
	conn, err := pgx.Connect(ctx, w.db)
	if err != nil {
		t.Error(err)
		return nil
	}
	defer conn.Close(context.Background())
	final := make(map[int]int)
	ids := make([]int32, 0, 3)
	for i := 0; more(i); i++ {
		ids = ids[:0]
		for _, id := range rand.Perm(w.rows)[:1+rand.IntN(3)] {
			ids = append(ids, int32(id+1))
		}
		rows, err := conn.Query(ctx, `UPDATE items SET version = version + 1 WHERE id = ANY($1) RETURNING id, version`, ids)
		if err != nil {
			t.Errorf("update: %v", err)
			return nil
		}
		var id, v int
		if _, err := pgx.ForEachRow(rows, []any{&id, &v}, func() error { final[id] = v; return nil }); err != nil {
			t.Errorf("update: %v", err)
			return nil
		}
		if pause > 0 {
			time.Sleep(pause)
		}
	}
	return final
}

// check asserts every (row, version) arrived for both webhooks in per-row
// order, and returns the number of duplicate deliveries.
func (w *itemsWorld) check(t *testing.T, final map[int]int) (expected, missing, dups int) {
	t.Helper()
	type key struct{ hook, row int64 }
	seen := map[string]bool{}
	last := map[key]int{}
	got := map[key]map[int]bool{}
	for _, d := range w.recv.Accepted() {
		if !d.SignatureOK {
			t.Errorf("bad signature on delivery %s", d.DeliveryID)
		}
		if seen[d.DeliveryID] {
			dups++
			continue
		}
		seen[d.DeliveryID] = true
		var row struct{ ID, Version int }
		if err := json.Unmarshal(d.Body, &row); err != nil {
			t.Fatalf("body %s: %v", d.Body, err)
		}
		k := key{d.WebhookID, int64(row.ID)}
		if row.Version <= last[k] {
			t.Errorf("webhook %d row %d: version %d arrived after %d", d.WebhookID, row.ID, row.Version, last[k])
		}
		last[k] = row.Version
		if got[k] == nil {
			got[k] = map[int]bool{}
		}
		got[k][row.Version] = true
	}
	var examples []string
	missingBy := map[int64]int{}
	for _, hook := range []int64{1, 2} {
		for row, v := range final {
			for version := 1; version <= v; version++ {
				expected++
				if !got[key{hook, int64(row)}][version] {
					missing++
					missingBy[hook]++
					if len(examples) < 10 {
						examples = append(examples, fmt.Sprintf("webhook %d row %d version %d", hook, row, version))
					}
				}
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d expected deliveries missing (by webhook: %v), e.g. %v", missing, expected, missingBy, examples)
		w.logState(t)
		w.keepLog(t)
	}
	return expected, missing, dups
}

// keepLog logs the last lines of walhook's log and keeps the whole of it
// in a file that outlives the test.
func (w *itemsWorld) keepLog(t *testing.T) {
	logs, err := os.ReadFile(w.logPath)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimSpace(string(logs)), "\n")
	if len(lines) > 60 {
		lines = lines[len(lines)-60:]
	}
	t.Logf("walhook's log (last lines):\n%s", strings.Join(lines, "\n"))
	if kept, err := os.CreateTemp("", "walhook-failed-*.log"); err == nil {
		_, _ = kept.Write(logs)
		kept.Close()
		t.Logf("walhook's whole log is kept in %s", kept.Name())
	}
}

// logState logs walhook's stored webhooks and parked deliveries, to tell
// a delivery still parked from one that was skipped.
func (w *itemsWorld) logState(t *testing.T) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, w.db)
	if err != nil {
		t.Logf("state: %v", err)
		return
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		`SELECT id, status, failure_count, delivered_through::text FROM walhook.webhooks ORDER BY id`,
		`SELECT webhook_id, count(*), min(next_attempt_at)::text, max(attempts), max(last_error) FROM walhook.parked GROUP BY webhook_id`,
		`SELECT webhook_id, row_key, commit_lsn::text, attempts, next_attempt_at::text FROM walhook.parked ORDER BY id LIMIT 10`,
	} {
		rows, err := conn.Query(ctx, q)
		if err != nil {
			t.Logf("%s: %v", q, err)
			continue
		}
		for rows.Next() {
			vals, _ := rows.Values()
			t.Logf("state: %v", vals)
		}
		rows.Close()
	}
}

func (w *itemsWorld) complete(final map[int]int) func(*receiver.Receiver) bool {
	want := 0
	for _, v := range final {
		want += 2 * v
	}
	return func(r *receiver.Receiver) bool {
		ids := map[string]bool{}
		for _, d := range r.Accepted() {
			ids[d.DeliveryID] = true
		}
		return len(ids) >= want
	}
}

// TestKillNineLosesNothing applies a few thousand changes while walhook
// is killed with SIGKILL at random moments and restarted each time.
func TestKillNineLosesNothing(t *testing.T) {
	bin := walhooktest.Binary(t)
	w := newItemsWorld(t, 200, "")
	first := walhooktest.StartProcess(t, bin, w.cfgPath, w.logPath)
	w.waitStreaming(t)
	first.Kill()
	ctx := t.Context()
	finalC := make(chan map[int]int, 1)
	go func() { finalC <- w.load(ctx, t, 3000, 3*time.Millisecond) }()

	// walhook is killed at random moments while the load runs, and, if
	// the load ends first, while it catches up, until it has been killed
	// minKills times; then one instance finishes the work.
	const minKills = 15
	kills := 0
	var final map[int]int
	for {
		p := walhooktest.StartProcess(t, bin, w.cfgPath, w.logPath)
		if final == nil {
			select {
			case final = <-finalC:
			case <-time.After(time.Duration(300+rand.IntN(1200)) * time.Millisecond):
				p.Kill()
				kills++
				continue
			}
		}
		if kills < minKills {
			time.Sleep(time.Duration(300+rand.IntN(1200)) * time.Millisecond) // the moment of the kill
			p.Kill()
			kills++
			continue
		}
		if !w.recv.Wait(walhooktest.Patience(), w.complete(final)) {
			t.Errorf("deliveries incomplete after the load ended: no delivery for %s", walhooktest.Patience())
		}
		if err := p.Terminate(t); err != nil {
			t.Errorf("walhook exited with %v after SIGTERM, want 0", err)
			w.keepLog(t)
		}
		break
	}
	expected, missing, dups := w.check(t, final)
	t.Logf("kill -9: %d kills, %d expected deliveries, %d missing, %d duplicates (%.2f%%)", kills, expected, missing, dups, 100*float64(dups)/float64(expected))
}

// TestPostgresRestartLosesNothing restarts PostgreSQL with -m immediate
// (a crash: the slot's position is only durable at checkpoints) while
// walhook streams.
func TestPostgresRestartLosesNothing(t *testing.T) {
	bin := walhooktest.Binary(t)
	w := newItemsWorld(t, 200, "")
	p := walhooktest.StartProcess(t, bin, w.cfgPath, w.logPath)
	defer p.Kill()
	w.waitStreaming(t)
	ctx := t.Context()

	final := map[int]int{}
	restarts := 0
	for round := 0; round < 4; round++ {
		part := w.load(ctx, t, 500, 0)
		for k, v := range part {
			final[k] = v
		}
		// Let walhook deliver part of it, then crash the server.
		time.Sleep(time.Duration(200+rand.IntN(500)) * time.Millisecond)
		if err := pgtest.Cluster().Restart(ctx, "immediate"); err != nil {
			t.Fatalf("restart PostgreSQL: %v", err)
		}
		restarts++
	}
	if !w.recv.Wait(walhooktest.Patience(), w.complete(final)) {
		t.Errorf("deliveries incomplete after the last restart: no delivery for %s", walhooktest.Patience())
	}
	if err := p.Terminate(t); err != nil {
		t.Errorf("walhook exited with %v after SIGTERM, want 0", err)
	}
	expected, missing, dups := w.check(t, final)
	t.Logf("PostgreSQL restarts (-m immediate): %d restarts, %d expected deliveries, %d missing, %d duplicates (%.2f%%)", restarts, expected, missing, dups, 100*float64(dups)/float64(expected))
}

// TestStandbyTakesOver runs two instances on one slot: the second waits as
// a standby and takes over after the first is killed with SIGKILL, with
// nothing lost.
func TestStandbyTakesOver(t *testing.T) {
	bin := walhooktest.Binary(t)
	w := newItemsWorld(t, 50, "")
	active := walhooktest.StartProcess(t, bin, w.cfgPath, w.logPath)
	defer active.Kill()
	w.waitStreaming(t)
	standby := walhooktest.StartProcess(t, bin, w.cfgPath, w.logPath+".standby")
	defer standby.Kill()

	ctx := t.Context()
	final := w.load(ctx, t, 200, 0)
	if !w.recv.Wait(walhooktest.Patience(), w.complete(final)) {
		t.Fatal("the active instance did not deliver the first changes")
	}
	if pid := w.slotPID(t); pid == 0 {
		t.Fatal("the slot is not active")
	}
	active.Kill()
	killed := time.Now()
	more := w.load(ctx, t, 200, 0)
	for k, v := range more {
		final[k] = v
	}
	if !w.recv.Wait(walhooktest.Patience(), w.complete(final)) {
		t.Error("the standby did not deliver the changes made after the active instance was killed")
	}
	t.Logf("standby takeover: the changes made after kill -9 were all delivered %.1fs after the kill", time.Since(killed).Seconds())
	if err := standby.Terminate(t); err != nil {
		t.Errorf("standby exited with %v after SIGTERM, want 0", err)
	}
	w.check(t, final)
}

// slotPID returns the pid of the walsender holding the slot, 0 if none.
func (w *itemsWorld) slotPID(t *testing.T) int {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), w.db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var pid *int32
	if err := conn.QueryRow(context.Background(), `SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1`, w.slot).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if pid == nil {
		return 0
	}
	return int(*pid)
}
