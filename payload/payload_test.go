package payload

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/walhook/walhook/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const schema = `
CREATE TABLE orders (id bigint PRIMARY KEY, status text NOT NULL, total numeric(12,2) NOT NULL);
CREATE TABLE order_items (id bigint PRIMARY KEY, order_id bigint NOT NULL REFERENCES orders, name text NOT NULL);
CREATE TABLE tags (name text PRIMARY KEY, info jsonb NOT NULL);
CREATE TABLE sessions (id uuid PRIMARY KEY, data json NOT NULL);
INSERT INTO orders VALUES (1, 'pending', 10.50), (2, 'processing', 7), (3, 'completed', 0.10);
INSERT INTO order_items VALUES (11, 1, 'Mug'), (12, 1, 'Cup'), (21, 2, 'Hoodie');
INSERT INTO tags VALUES ('a,b', '{"k": 1}'), ('quote"d', '{"k": 2}'), ('back\slash', '{"k": 3}'), ('\N', '{"k": 4}');
INSERT INTO sessions VALUES ('6f1c2d1e-57a3-4c43-9d0e-6b8f1a0c9e11', '{ "spaced" :  [1, 2] }');
`

const orderQuery = `SELECT o.id, jsonb_build_object('id', o.id, 'status', o.status, 'total', o.total::text,
  'line_items', COALESCE((SELECT jsonb_agg(jsonb_build_object('id', i.id, 'name', i.name) ORDER BY i.id)
                          FROM order_items i WHERE i.order_id = o.id), '[]'))
FROM orders o WHERE o.id = ANY($1)`

func open(t *testing.T, db string, timeout time.Duration, qs ...Query) (*Builder, *Metrics) {
	t.Helper()
	m := NewMetrics(prometheus.NewRegistry())
	b, err := Open(context.Background(), Options{ConnString: db, Queries: qs, Timeout: timeout, Metrics: m})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(b.Close)
	return b, m
}

// rendered returns PostgreSQL's text of the document query returns for key.
func rendered(t *testing.T, db, query string, key any) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, "SELECT d::text FROM ("+query+") AS q(k, d)", key).Scan(&s); err != nil {
		t.Fatalf("render: %v", err)
	}
	return s
}

// TestBuild: documents come back by event key, byte for byte as
// PostgreSQL renders them, for integer, text (with the characters event
// keys escape) and uuid keys; a key without a row is a counted fallback.
func TestBuild(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, schema)
	tagQuery := `SELECT t.name, t.info FROM tags t WHERE t.name = ANY($1)`
	sessionQuery := `SELECT s.id, s.data FROM sessions s WHERE s.id = ANY($1)`
	b, m := open(t, db, 0,
		Query{Resource: "order", SQL: orderQuery},
		Query{Resource: "tag", SQL: tagQuery},
		Query{Resource: "session", SQL: sessionQuery})

	tests := []struct {
		resource  string
		keys      []string       // event keys
		want      map[string]any // event key -> the key value to render the document with
		fallbacks float64
	}{
		{"order", []string{"1", "2", "1", "99"}, map[string]any{"1": int64(1), "2": int64(2)}, 1},
		{"tag", []string{`a\,b`, `quote"d`, `back\\slash`, `\\N`, `\N`}, map[string]any{`a\,b`: "a,b", `quote"d`: `quote"d`, `back\\slash`: `back\slash`, `\\N`: `\N`}, 1},
		{"session", []string{"6f1c2d1e-57a3-4c43-9d0e-6b8f1a0c9e11"}, map[string]any{"6f1c2d1e-57a3-4c43-9d0e-6b8f1a0c9e11": "6f1c2d1e-57a3-4c43-9d0e-6b8f1a0c9e11"}, 0},
	}
	queries := map[string]string{"order": orderQuery, "tag": tagQuery, "session": sessionQuery}
	for _, tc := range tests {
		t.Run(tc.resource, func(t *testing.T) {
			docs, err := b.Build(context.Background(), tc.resource, tc.keys)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if len(docs) != len(tc.want) {
				t.Errorf("got documents for %d keys, want %d: %q", len(docs), len(tc.want), docs)
			}
			for k, v := range tc.want {
				want := rendered(t, db, strings.Replace(queries[tc.resource], "= ANY($1)", "= $1", 1), v)
				if string(docs[k]) != want {
					t.Errorf("key %q: document %q, want PostgreSQL's text %q", k, docs[k], want)
				}
			}
			if got := testutil.ToFloat64(m.Fallbacks.WithLabelValues(tc.resource)); got != tc.fallbacks {
				t.Errorf("fallbacks = %v, want %v", got, tc.fallbacks)
			}
		})
	}
	// The json column keeps its spacing: the bytes are PostgreSQL's, not re-encoded.
	docs, _ := b.Build(context.Background(), "session", []string{"6f1c2d1e-57a3-4c43-9d0e-6b8f1a0c9e11"})
	if got := string(docs["6f1c2d1e-57a3-4c43-9d0e-6b8f1a0c9e11"]); got != `{ "spaced" :  [1, 2] }` {
		t.Errorf("json document = %q, want it as stored", got)
	}
	if n := testutil.CollectAndCount(m.Duration); n != 3 {
		t.Errorf("duration histogram has %d series, want 3", n)
	}
}

// TestBuildManyKeys: a batch bigger than one query's share of keys still
// gets every document.
func TestBuildManyKeys(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, schema, `INSERT INTO orders SELECT g, 'pending', g FROM generate_series(100, 2600) g`)
	b, m := open(t, db, 0, Query{Resource: "order", SQL: orderQuery})
	var keys []string
	for i := 100; i <= 2600; i++ {
		keys = append(keys, strconv.Itoa(i))
	}
	docs, err := b.Build(context.Background(), "order", keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != len(keys) {
		t.Fatalf("got %d documents, want %d", len(docs), len(keys))
	}
	if got := testutil.ToFloat64(m.Fallbacks.WithLabelValues("order")); got != 0 {
		t.Errorf("fallbacks = %v", got)
	}
}

// TestBuildErrors: a statement timeout and a write attempted on the
// read-only pool are errors, counted; nothing is returned in part.
func TestBuildErrors(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, schema, `CREATE FUNCTION touch(bigint) RETURNS bigint LANGUAGE sql VOLATILE AS
		'INSERT INTO orders VALUES ($1 + 1000, ''x'', 0) RETURNING id'`)
	b, m := open(t, db, 200*time.Millisecond,
		Query{Resource: "slow", SQL: `SELECT o.id, to_jsonb(o) FROM orders o, pg_sleep(5) WHERE o.id = ANY($1)`},
		Query{Resource: "writer", SQL: `SELECT touch(o.id), to_jsonb(o) FROM orders o WHERE o.id = ANY($1)`})
	for _, tc := range []struct{ resource, want string }{
		{"slow", "statement timeout"},
		{"writer", "read-only transaction"},
	} {
		docs, err := b.Build(context.Background(), tc.resource, []string{"1", "2"})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.resource) {
			t.Errorf("%s: Build = %q, %v; want an error naming the resource and %q", tc.resource, docs, err, tc.want)
		}
		if got := testutil.ToFloat64(m.Errors.WithLabelValues(tc.resource)); got != 1 {
			t.Errorf("%s: errors = %v, want 1", tc.resource, got)
		}
	}
}

// TestOpenRefuses: queries PostgreSQL refuses, or of the wrong shape, are
// start errors naming the resource and what is wrong.
func TestOpenRefuses(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, schema)
	for _, tc := range []struct {
		name, sql string
		want      []string
	}{
		{"syntax", `SELEC o.id, to_jsonb(o) FROM orders o WHERE o.id = ANY($1)`, []string{`syntax error at or near "SELEC"`, "42601"}},
		{"unknown column", `SELECT o.id, to_jsonb(o.nope) FROM orders o WHERE o.id = ANY($1)`, []string{`column o.nope does not exist`}},
		{"one column", `SELECT to_jsonb(o) FROM orders o WHERE o.id = ANY($1)`, []string{"returns 1 columns", "two"}},
		{"three columns", `SELECT o.id, to_jsonb(o), o.status FROM orders o WHERE o.id = ANY($1)`, []string{"returns 3 columns"}},
		{"text document", `SELECT o.id, o.status FROM orders o WHERE o.id = ANY($1)`, []string{`second column "status" is text`, "json or jsonb"}},
		{"scalar parameter", `SELECT o.id, to_jsonb(o) FROM orders o WHERE o.id = $1`, []string{"$1 is used as bigint, not as an array", "ANY($1)"}},
		{"two parameters", `SELECT o.id, to_jsonb(o) FROM orders o WHERE o.id = ANY($1) AND o.status = $2`, []string{"takes 2 parameters"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Open(context.Background(), Options{ConnString: db, Queries: []Query{
				{Resource: "order", SQL: orderQuery},
				{Resource: "bad_one", SQL: tc.sql},
			}})
			if err == nil {
				b.Close()
				t.Fatal("Open accepted the query")
			}
			msg := err.Error()
			for _, w := range append(tc.want, `resource "bad_one": payload_query`) {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if strings.Contains(msg, `"order"`) {
				t.Errorf("error %q names the good resource", msg)
			}
		})
	}
}

// TestPool: the pool's sessions are read-only and named walhook-payload.
func TestPool(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, schema)
	b, _ := open(t, db, 1500*time.Millisecond, Query{Resource: "settings", SQL: `SELECT k, jsonb_build_object(
		'ro', current_setting('default_transaction_read_only'), 'app', current_setting('application_name'),
		'timeout', current_setting('statement_timeout')) FROM unnest($1::int[]) k`})
	docs, err := b.Build(context.Background(), "settings", []string{"1"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(docs["1"]), `{"ro": "on", "app": "walhook-payload", "timeout": "1500ms"}`; got != want {
		t.Errorf("session settings = %s, want %s", got, want)
	}
	if got := b.pool.Config().MaxConns; got != MaxConns {
		t.Errorf("MaxConns = %d", got)
	}
}

func TestKeyValue(t *testing.T) {
	for _, tc := range []struct {
		key, want string
		ok        bool
	}{
		{"123", "123", true},
		{`a\,b`, "a,b", true},
		{`a\\b`, `a\b`, true},
		{`\\N`, `\N`, true},
		{`\N`, "", false},
		{`\?`, "", false},
		{"", "", false},
	} {
		got, ok := keyValue(tc.key)
		if got != tc.want || ok != tc.ok {
			t.Errorf("keyValue(%q) = %q, %v; want %q, %v", tc.key, got, ok, tc.want, tc.ok)
		}
	}
	if got := string(arrayLiteral([]string{"1", `a"b`, `c\d`, "e,f"})); got != `{"1","a\"b","c\\d","e,f"}` {
		t.Errorf("arrayLiteral = %s", got)
	}
}
