package cdc

import (
	"context"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/walhook/walhook/internal/pgtest"
)

func TestSetupCreatesPublicationAndSlot(t *testing.T) {
	url := pgtest.NewDatabase(t)
	pgtest.Exec(t, url, shopSchema, `
		CREATE TABLE public.lines (order_id bigint, line int, sku text, PRIMARY KEY (line, order_id));
		CREATE TABLE public.notes (code text NOT NULL, body text);
		CREATE UNIQUE INDEX notes_code ON public.notes (code);
		ALTER TABLE public.notes REPLICA IDENTITY USING INDEX notes_code;
		CREATE TABLE public.logs (msg text);
		ALTER TABLE public.logs REPLICA IDENTITY FULL;`)
	cfg := testConfig(url)
	cfg.Tables = []Table{{"public", "orders"}, {"", "lines"}, {"public", "notes"}, {"public", "logs"}}
	ctx := context.Background()

	infos, err := Setup(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := []TableInfo{
		{Schema: "public", Name: "orders", KeyColumns: []string{"id"}, ReplicaIdentity: 'd',
			ToastableColumns: []string{"status", "total", "tags", "meta", "note"}},
		{Schema: "public", Name: "lines", KeyColumns: []string{"line", "order_id"}, ReplicaIdentity: 'd',
			ToastableColumns: []string{"sku"}},
		{Schema: "public", Name: "notes", KeyColumns: []string{"code"}, ReplicaIdentity: 'i',
			ToastableColumns: []string{"code", "body"}},
		{Schema: "public", Name: "logs", ReplicaIdentity: 'f', ToastableColumns: []string{"msg"}},
	}
	if !reflect.DeepEqual(infos, want) {
		t.Errorf("Setup tables =\n%+v\nwant\n%+v", infos, want)
	}

	if got := queryString(t, url, `SELECT string_agg(schemaname || '.' || tablename, ',' ORDER BY tablename)
		FROM pg_publication_tables WHERE pubname = 'walhook'`); got != "public.lines,public.logs,public.notes,public.orders" {
		t.Errorf("published tables = %q", got)
	}
	if got := queryString(t, url, `SELECT plugin || ' ' || slot_type || ' ' || database FROM pg_replication_slots WHERE slot_name = 'walhook'`); got != "pgoutput logical "+queryString(t, url, "SELECT current_database()::text") {
		t.Errorf("slot = %q", got)
	}

	// Running it again uses what is there.
	if _, err := Setup(ctx, cfg); err != nil {
		t.Fatalf("second Setup: %v", err)
	}
}

func TestSetupErrors(t *testing.T) {
	tests := []struct {
		name    string
		sql     string                        // run before Setup
		config  func(cfg *Config, url string) // adjusts the config
		wantErr []string
		notErr  []string
	}{
		{
			name: "slot with another plugin",
			sql:  `SELECT pg_create_logical_replication_slot('walhook', 'test_decoding')`,
			wantErr: []string{
				`cdc: replication slot "walhook" uses plugin test_decoding, not pgoutput`,
				`drop it (SELECT pg_drop_replication_slot('walhook')) or choose another postgres.slot`,
			},
		},
		{
			name: "publication without a mapped table",
			sql:  `CREATE TABLE public.customers (id int PRIMARY KEY); CREATE PUBLICATION walhook FOR TABLE public.orders`,
			config: func(cfg *Config, _ string) {
				cfg.Tables = []Table{{"public", "orders"}, {"public", "customers"}, {"public", "other"}}
			},
			wantErr: []string{
				`cdc: publication "walhook" does not include public.customers, public.other`,
				`ALTER PUBLICATION "walhook" ADD TABLE "public"."customers", "public"."other"`,
			},
		},
		{
			name:    "table missing",
			config:  func(cfg *Config, _ string) { cfg.Tables = append(cfg.Tables, Table{"public", "missing"}) },
			wantErr: []string{"cdc: table public.missing does not exist"},
		},
		{
			name:    "bad slot name",
			config:  func(cfg *Config, _ string) { cfg.Slot = "Wal-Hook" },
			wantErr: []string{`cdc: replication slot name "Wal-Hook" is invalid`},
		},
		{
			name: "unreachable port",
			config: func(cfg *Config, _ string) {
				cfg.ConnString = "postgres://walhook:s3cr3tpassw0rd@127.0.0.1:" + strconv.Itoa(freePort(t)) + "/shop?sslmode=disable&connect_timeout=5"
			},
			wantErr: []string{"cdc: cannot connect to 127.0.0.1:"},
			notErr:  []string{"s3cr3tpassw0rd"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := pgtest.NewDatabase(t)
			pgtest.Exec(t, url, shopSchema)
			if tt.sql != "" {
				pgtest.Exec(t, url, tt.sql)
			}
			cfg := testConfig(url)
			if tt.config != nil {
				tt.config(&cfg, url)
			}
			_, err := Setup(context.Background(), cfg)
			if err == nil {
				t.Fatal("Setup succeeded")
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q\ndoes not contain %q", err, want)
				}
			}
			for _, not := range tt.notErr {
				if strings.Contains(err.Error(), not) {
					t.Errorf("error %q contains %q", err, not)
				}
			}
		})
	}
}

func TestSetupRoleWithoutReplication(t *testing.T) {
	url := pgtest.NewDatabase(t)
	role := uniqueName("norepl")
	pgtest.Exec(t, url, shopSchema, "CREATE ROLE "+role+" LOGIN")
	t.Cleanup(func() { pgtest.Exec(t, url, "DROP ROLE "+role) })

	cfg := testConfig(withUser(url, role, ""))
	_, err := Setup(context.Background(), cfg)
	if err == nil {
		t.Fatal("Setup succeeded for a role without REPLICATION")
	}
	for _, want := range []string{
		`cdc: role "` + role + `" cannot open a replication connection`,
		`ALTER ROLE "` + role + `" REPLICATION`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q\ndoes not contain %q", err, want)
		}
	}
	// Nothing was created.
	if got := queryString(t, url, "SELECT count(*)::text FROM pg_publication"); got != "0" {
		t.Errorf("%s publications exist after the failed Setup", got)
	}

	// The reader gives up at once with the same advice.
	r := NewReader(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	err = r.Run(ctx, make(chan *Batch))
	if err == nil || !strings.Contains(err.Error(), "REPLICATION") {
		t.Errorf("Run = %v, want the replication privilege error", err)
	}
}
