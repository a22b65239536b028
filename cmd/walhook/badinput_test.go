package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walhook/walhook/internal/pgtest"
	"github.com/walhook/walhook/internal/walhooktest"
)

// TestBadInputExitsWithClearError runs the binary against set-ups it must
// refuse: each gets one clear error naming the thing and the fix, and a
// non-zero exit, without a panic. A refused start leaves no replication
// slot or publication behind that it created: before the fix, a start
// refused for a busy port, the state schema or a table's replica identity
// left a new slot retaining WAL, and an unreadable TLS certificate served
// a dead listener instead of exiting.
func TestBadInputExitsWithClearError(t *testing.T) {
	bin := walhooktest.Binary(t)
	const orders = `CREATE TABLE orders (id bigint PRIMARY KEY, status text); ALTER TABLE orders REPLICA IDENTITY FULL;`
	freePort := func() int {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().(*net.TCPAddr).Port
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, db, slot string) (url string) // returns the URL walhook uses
		http  func(t *testing.T) string                        // the http section; listen on any port when nil
		yaml  string                                           // replaces the whole config when set
		want  []string
	}{
		{
			name: "malformed config",
			yaml: "postgres:\n  url: [not, a, string]\nsource: https://shop.example.com/\nwebhookz: []\n",
			want: []string{"walhook.yaml:2: postgres.url", "walhook.yaml:4: webhookz"},
		},
		{
			name: "unreachable database",
			setup: func(t *testing.T, db, slot string) string {
				return fmt.Sprintf("postgres://postgres:pw-never-shown@127.0.0.1:%d/x", freePort())
			},
			want: []string{"127.0.0.1"},
		},
		{
			name: "role without REPLICATION",
			setup: func(t *testing.T, db, slot string) string {
				pgtest.Exec(t, db, orders, `DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'norepl') THEN CREATE ROLE norepl LOGIN; END IF; END $$;`,
					`GRANT SELECT ON orders TO norepl`)
				u, _ := url.Parse(db)
				u.User = url.User("norepl")
				return u.String()
			},
			want: []string{"norepl", "REPLICATION"},
		},
		{
			name:  "missing table",
			setup: func(t *testing.T, db, slot string) string { return db },
			want:  []string{"public.orders does not exist"},
		},
		{
			name: "publication with other tables",
			setup: func(t *testing.T, db, slot string) string {
				pgtest.Exec(t, db, orders, `CREATE TABLE other (id int PRIMARY KEY)`, `CREATE PUBLICATION `+slot+` FOR TABLE other`)
				return db
			},
			want: []string{"does not include public.orders", "ALTER PUBLICATION"},
		},
		{
			name: "slot with another plugin",
			setup: func(t *testing.T, db, slot string) string {
				pgtest.Exec(t, db, orders, `SELECT pg_create_logical_replication_slot('`+slot+`', 'test_decoding')`)
				return db
			},
			want: []string{"test_decoding", "pgoutput"},
		},
		{
			name: "large columns without REPLICA IDENTITY FULL",
			setup: func(t *testing.T, db, slot string) string {
				pgtest.Exec(t, db, `CREATE TABLE orders (id bigint PRIMARY KEY, note text)`)
				return db
			},
			want: []string{"REPLICA IDENTITY FULL", "public.orders"},
		},
		{
			name:  "busy listen port",
			setup: func(t *testing.T, db, slot string) string { pgtest.Exec(t, db, orders); return db },
			http: func(t *testing.T) string {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { ln.Close() })
				return fmt.Sprintf("{ listen: %q }", ln.Addr().String())
			},
			want: []string{"http: listen on 127.0.0.1:", "http.listen", "address already in use"},
		},
		{
			name: "state schema of a newer walhook",
			setup: func(t *testing.T, db, slot string) string {
				pgtest.Exec(t, db, orders, `CREATE SCHEMA walhook; CREATE TABLE walhook.schema_version (version integer NOT NULL); INSERT INTO walhook.schema_version VALUES (9999)`)
				return db
			},
			want: []string{"state: schema walhook is at version 9999", "upgrade walhook"},
		},
		{
			name:  "missing TLS certificate",
			setup: func(t *testing.T, db, slot string) string { pgtest.Exec(t, db, orders); return db },
			http: func(t *testing.T) string {
				dir := t.TempDir()
				return fmt.Sprintf("{ listen: \"127.0.0.1:0\", tls_cert: %q, tls_key: %q }", filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
			},
			want: []string{"cert.pem", "no such file"},
		},
		{
			name:  "TLS certificate that is not PEM",
			setup: func(t *testing.T, db, slot string) string { pgtest.Exec(t, db, orders); return db },
			http: func(t *testing.T) string {
				dir := t.TempDir()
				cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
				for _, f := range []string{cert, key} {
					if err := os.WriteFile(f, []byte("not a certificate\n"), 0o600); err != nil {
						t.Fatal(err)
					}
				}
				return fmt.Sprintf("{ listen: \"127.0.0.1:0\", tls_cert: %q, tls_key: %q }", cert, key)
			},
			want: []string{"http.tls_cert", "PEM"},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := pgtest.NewDatabase(t)
			slot := fmt.Sprintf("bad_%d_%d", i, time.Now().UnixNano()%1e6)
			cfg := tt.yaml
			if cfg == "" {
				dbURL := tt.setup(t, db, slot)
				http := `{ listen: "127.0.0.1:0" }`
				if tt.http != nil {
					http = tt.http(t)
				}
				cfg = fmt.Sprintf(`postgres: { url: %q, slot: %s, publication: %s }
source: https://shop.example.com/
resources: { order: { table: public.orders } }
delivery: { allow_private_networks: true }
http: %s
webhooks:
  - { id: 1, topic: order.created, delivery_url: "http://127.0.0.1:9/", secret: s }
`, dbURL, slot, slot, http)
			}
			slotBefore, pubBefore := slotAndPublication(t, db, slot)
			path := filepath.Join(t.TempDir(), "walhook.yaml")
			if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), walhooktest.Patience()) // a hang guard: each exits at once
			defer cancel()
			var out bytes.Buffer
			cmd := exec.CommandContext(ctx, bin, "run", "--config", path)
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() == 0 {
				t.Fatalf("walhook run: %v, want a non-zero exit\n%s", err, out.String())
			}
			text := out.String()
			for _, w := range tt.want {
				if !strings.Contains(text, w) {
					t.Errorf("output lacks %q:\n%s", w, text)
				}
			}
			if strings.Contains(text, "panic") || strings.Contains(text, "goroutine ") || strings.Contains(text, "pw-never-shown") {
				t.Errorf("a panic or a password in the output:\n%s", text)
			}
			slotAfter, pubAfter := slotAndPublication(t, db, slot)
			if slotAfter != slotBefore || pubAfter != pubBefore {
				t.Errorf("the refused start changed the database: slot %q existed %v, now %v; publication existed %v, now %v",
					slot, slotBefore, slotAfter, pubBefore, pubAfter)
			}
		})
	}
}

// slotAndPublication reports whether the slot and the publication named
// name exist in db.
func slotAndPublication(t *testing.T, db, name string) (slot, publication bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	err = conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1),
		EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)`, name).Scan(&slot, &publication)
	if err != nil {
		t.Fatal(err)
	}
	return slot, publication
}
