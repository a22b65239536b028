package pgcluster

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestClusterLifecycle(t *testing.T) {
	bin, err := BinDir()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // a hang guard only
	defer cancel()
	c, err := Start(ctx, Options{BinDir: bin, Settings: map[string]string{"application_name": "it's pgcluster"}})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = c.Stop()
		}
	}()

	url, err := c.CreateDatabase(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	if want := "postgres://postgres@127.0.0.1:" + strconv.Itoa(c.Port()) + "/shop?sslmode=disable"; url != want {
		t.Errorf("URL = %q, want %q", url, want)
	}
	query := func(sql string) string {
		t.Helper()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var v string
		if err := conn.QueryRow(ctx, sql).Scan(&v); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return v
	}
	for setting, want := range map[string]string{
		"wal_level":             "logical",
		"max_replication_slots": "20",
		"fsync":                 "off",
		"listen_addresses":      "127.0.0.1",
		"application_name":      "it's pgcluster",
	} {
		if got := query("SELECT current_setting('" + setting + "')"); got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}
	if got := query("SELECT current_user"); got != Superuser {
		t.Errorf("current_user = %q, want %q", got, Superuser)
	}

	if err := c.Restart(ctx, "immediate"); err != nil {
		t.Fatal(err)
	}
	if got := query("SELECT current_database()"); got != "shop" {
		t.Errorf("after restart current_database() = %q", got)
	}
	if err := c.Restart(ctx, "sideways"); err == nil {
		t.Error("Restart with a bad mode succeeded")
	}

	dir := c.Dir()
	if _, err := os.Stat(filepath.Join(dir, "data", "PG_VERSION")); err != nil {
		t.Errorf("data directory: %v", err)
	}
	stopped = true
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Stop left %s behind (stat: %v)", dir, err)
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestStartFailureQuotesServerLog(t *testing.T) {
	bin, err := BinDir()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // a hang guard only
	defer cancel()
	c, err := Start(ctx, Options{BinDir: bin, Settings: map[string]string{"wal_level": "sideways"}})
	if err == nil {
		_ = c.Stop()
		t.Fatal("Start with an invalid setting succeeded")
	}
	if got := err.Error(); !strings.Contains(got, "server log") || !strings.Contains(got, "wal_level") {
		t.Errorf("error does not quote the server log:\n%s", got)
	}
}

func TestBinDirMissingBinaries(t *testing.T) {
	_, err := Start(context.Background(), Options{BinDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "apt-get install -y postgresql") {
		t.Errorf("Start with an empty bin dir: %v", err)
	}
}

func TestNewestVersionedBinDir(t *testing.T) {
	root := t.TempDir()
	for _, v := range []string{"9.6", "13", "15", "notaversion"} {
		dir := filepath.Join(root, v, "bin")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "initdb"), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A newer version without initdb does not count.
	if err := os.MkdirAll(filepath.Join(root, "16", "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, want := newestVersionedBinDir(root), filepath.Join(root, "15", "bin"); got != want {
		t.Errorf("newestVersionedBinDir = %q, want %q", got, want)
	}
	if got := newestVersionedBinDir(filepath.Join(root, "missing")); got != "" {
		t.Errorf("newestVersionedBinDir(missing) = %q", got)
	}
}

func TestParseVersion(t *testing.T) {
	tests := []struct {
		in   string
		want []int
		ok   bool
	}{
		{"15", []int{15}, true},
		{"9.6", []int{9, 6}, true},
		{"15beta", nil, false},
		{"", nil, false},
	}
	for _, tt := range tests {
		got, ok := parseVersion(tt.in)
		if ok != tt.ok || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseVersion(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
