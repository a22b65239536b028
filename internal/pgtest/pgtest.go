// Package pgtest is the glue between tests and a private PostgreSQL
// server: one cluster per test package, started by Main, and one fresh
// database per test.
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		url := pgtest.NewDatabase(t)
//		pgtest.Exec(t, url, "CREATE TABLE t (id int PRIMARY KEY)")
//		...
//	}
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/walhook/walhook/internal/pgcluster"
)

// cluster is the package's cluster while Main runs. It is the one piece
// of package state: TestMain owns the cluster for the whole test binary.
var cluster atomic.Pointer[pgcluster.Cluster]

// dbSeq makes database names unique within the test binary.
var dbSeq atomic.Uint64

// Hang guards only: a loaded machine may take far longer than usual.
const (
	startTimeout   = 5 * time.Minute
	cleanupTimeout = 2 * time.Minute
)

// Main starts one cluster for the test package, runs m, stops the cluster
// and exits with m's code. Use it as
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// If no PostgreSQL server binaries are found it prints how to install
// them and exits 1: tests that need a database never skip silently.
// Setting WALHOOK_PGTEST_LOG=1 logs the cluster's lifecycle to stderr.
func Main(m *testing.M) {
	os.Exit(run(m))
}

// run does Main's work and returns the exit code, so that every deferred
// call runs before os.Exit.
func run(m *testing.M) int {
	bin, err := pgcluster.BinDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
		return 1
	}
	logger := slog.New(slog.DiscardHandler)
	if os.Getenv("WALHOOK_PGTEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	c, err := pgcluster.Start(ctx, pgcluster.Options{BinDir: bin, Logger: logger})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
		return 1
	}
	cluster.Store(c)
	defer func() {
		cluster.Store(nil)
		if err := c.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest:", err)
		}
	}()
	return m.Run()
}

// Cluster returns the package's cluster. It is only valid under Main and
// panics otherwise.
func Cluster() *pgcluster.Cluster {
	c := cluster.Load()
	if c == nil {
		panic("pgtest: no cluster; call pgtest.Main(m) from TestMain")
	}
	return c
}

var nonName = regexp.MustCompile(`[^a-z0-9]+`)

// NewDatabase creates a fresh database named after the test and returns
// its URL. At cleanup it terminates the database's connections, drops its
// replication slots and drops the database.
func NewDatabase(t testing.TB) string {
	t.Helper()
	c := cluster.Load()
	if c == nil {
		t.Fatal("pgtest: NewDatabase needs pgtest.Main(m) in TestMain")
	}
	base := strings.Trim(nonName.ReplaceAllString(strings.ToLower(t.Name()), "_"), "_")
	if len(base) > 40 {
		base = base[:40]
	}
	name := fmt.Sprintf("t_%s_%d", base, dbSeq.Add(1))

	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	url, err := c.CreateDatabase(ctx, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := dropDatabase(c, name); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return url
}

// dropDatabase terminates name's connections, drops its replication
// slots, then drops it.
func dropDatabase(c *pgcluster.Cluster, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return fmt.Errorf("drop database %s: connect: %w", name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// A terminated walsender releases its slot a moment later, so repeat
	// until every slot of the database is gone.
	for {
		if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE datname = $1 AND pid <> pg_backend_pid()`, name); err != nil {
			return fmt.Errorf("drop database %s: terminate connections: %w", name, err)
		}
		rows, _ := conn.Query(ctx, `SELECT slot_name, active FROM pg_replication_slots WHERE database = $1`, name)
		type slot struct {
			Name   string
			Active bool
		}
		slots, err := pgx.CollectRows(rows, pgx.RowToStructByPos[slot])
		if err != nil {
			return fmt.Errorf("drop database %s: list replication slots: %w", name, err)
		}
		if len(slots) == 0 {
			break
		}
		for _, s := range slots {
			if s.Active {
				continue
			}
			_, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", s.Name)
			var pgErr *pgconn.PgError
			if err != nil && !(errors.As(err, &pgErr) && (pgErr.Code == "55006" || pgErr.Code == "42704")) {
				return fmt.Errorf("drop database %s: drop replication slot %s: %w", name, s.Name, err)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("drop database %s: replication slots stay in use: %w", name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// Exec runs SQL against the database at url, each argument as one simple
// query (which may hold several statements), failing the test on error.
func Exec(t testing.TB, url string, sql ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	conn, err := pgconn.Connect(ctx, url)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, s := range sql {
		if _, err := conn.Exec(ctx, s).ReadAll(); err != nil {
			t.Fatalf("pgtest: %s: %v", s, err)
		}
	}
}
