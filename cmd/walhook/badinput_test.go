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

	"github.com/walhook/walhook/internal/pgtest"
	"github.com/walhook/walhook/internal/walhooktest"
)

// TestBadInputExitsWithClearError runs the binary against set-ups it must
// refuse: each gets one clear error naming the thing and the fix, and a
// non-zero exit, without a panic.
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
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := pgtest.NewDatabase(t)
			slot := fmt.Sprintf("bad_%d_%d", i, time.Now().UnixNano()%1e6)
			cfg := tt.yaml
			if cfg == "" {
				dbURL := tt.setup(t, db, slot)
				cfg = fmt.Sprintf(`postgres: { url: %q, slot: %s, publication: %s }
source: https://shop.example.com/
resources: { order: { table: public.orders } }
delivery: { allow_private_networks: true }
http: { listen: "127.0.0.1:0" }
webhooks:
  - { id: 1, topic: order.created, delivery_url: "http://127.0.0.1:9/", secret: s }
`, dbURL, slot, slot)
			}
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
		})
	}
}
