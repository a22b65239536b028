package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walhook/walhook/internal/pgtest"
	"github.com/walhook/walhook/internal/walhooktest"
)

// Test API keys for the reload test.
const (
	reloadKeyRW      = "ck_0123456789abcdef0123456789abcdef01234567"
	reloadSecretRW   = "cs_89abcdef0123456789abcdef0123456789abcdef"
	reloadKeyRead    = "ck_fedcba9876543210fedcba9876543210fedcba98"
	reloadSecretRead = "cs_76543210fedcba9876543210fedcba9876543210"
)

// TestSIGHUPReloadsKeysAndLogLevel pins the reload bug: SIGHUP applied
// webhooks only, so a revoked API key kept working and a log.level change
// did nothing until a restart. Through the real binary: after SIGHUP the
// removed key is refused, the kept one still works, debug lines appear
// once log.level is debug, and a log.format change is refused as needing
// a restart.
func TestSIGHUPReloadsKeysAndLogLevel(t *testing.T) {
	bin := walhooktest.Binary(t)
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, `CREATE TABLE items (id int PRIMARY KEY, n int NOT NULL)`)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	slot := fmt.Sprintf("reload_%d", time.Now().UnixNano()%1e9)
	config := func(level, format string, keys ...[2]string) string {
		var ks []string
		for _, k := range keys {
			ks = append(ks, fmt.Sprintf("    - { consumer_key: %s, consumer_secret: %s, permissions: read_write }", k[0], k[1]))
		}
		return fmt.Sprintf(`postgres: { url: %q, slot: %s, publication: %s, status_interval: 1s }
source: https://shop.example.com/
resources: { item: { table: public.items } }
delivery: { allow_private_networks: true }
http: { listen: %q }
api:
  keys:
%s
log: { level: %s, format: %s }
`, db, slot, slot, addr, strings.Join(ks, "\n"), level, format)
	}
	rw := [2]string{reloadKeyRW, reloadSecretRW}
	read := [2]string{reloadKeyRead, reloadSecretRead}
	cfgPath := filepath.Join(dir, "walhook.yaml")
	write := func(yaml string) {
		t.Helper()
		if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(config("info", "json", rw, read))
	logPath := filepath.Join(dir, "walhook.log")
	p := walhooktest.StartProcess(t, bin, cfgPath, logPath)
	t.Cleanup(func() {
		if err := p.Terminate(t); err != nil {
			t.Errorf("walhook exited with %v", err)
		}
	})
	logs := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			select {
			case <-p.Done():
				t.Fatalf("walhook exited while waiting for %s: %v\n%s", what, p.Err(), logs())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s\n%s", what, logs())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("streaming", func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	list := func(key [2]string) int {
		t.Helper()
		return oauthGet(t, "http://"+addr+"/wp-json/wc/v3/webhooks", key[0], key[1])
	}
	if got := list(read); got != http.StatusOK {
		t.Fatalf("before the reload the second key answered %d, want 200", got)
	}
	// A confirmed position is logged at debug: move it, and see no line.
	pgtest.Exec(t, db, `INSERT INTO items VALUES (1, 1)`)
	after := queryString(t, db, `SELECT pg_current_wal_lsn()::text`)
	waitFor("the insert's position to be confirmed", func() bool {
		return queryBool(t, db, `SELECT confirmed_flush_lsn >= $2::pg_lsn FROM pg_replication_slots WHERE slot_name = $1`, slot, after)
	})
	if strings.Contains(logs(), `"level":"DEBUG"`) {
		t.Fatal("debug lines logged at log.level info")
	}

	reloads := func() int { return strings.Count(logs(), `"msg":"configuration reloaded"`) }
	refusals := func() int {
		return strings.Count(logs(), `"msg":"configuration reload refused; keeping the running configuration"`)
	}

	write(config("debug", "json", rw))
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor("the reload", func() bool { return reloads() == 1 })
	if got := list(read); got != http.StatusUnauthorized {
		t.Errorf("after the reload the removed key answered %d, want 401", got)
	}
	if got := list(rw); got != http.StatusOK {
		t.Errorf("after the reload the kept key answered %d, want 200", got)
	}
	pgtest.Exec(t, db, `INSERT INTO items VALUES (2, 2)`)
	waitFor("a debug line at log.level debug", func() bool { return strings.Contains(logs(), `"level":"DEBUG"`) })

	write(config("debug", "text", rw, read))
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor("the refused reload", func() bool { return refusals() == 1 })
	if !strings.Contains(logs(), "log.format") {
		t.Errorf("the refusal does not name log.format:\n%s", logs())
	}
	if got := list(read); got != http.StatusUnauthorized {
		t.Errorf("a refused reload applied its keys: the removed key answered %d, want 401", got)
	}
}

// queryString runs a one-value query on db.
func queryString(t *testing.T, db, sql string, args ...any) string {
	t.Helper()
	var v string
	queryScan(t, db, sql, args, &v)
	return v
}

// queryBool runs a one-boolean query on db.
func queryBool(t *testing.T, db, sql string, args ...any) bool {
	t.Helper()
	var v bool
	queryScan(t, db, sql, args, &v)
	return v
}

// queryScan runs a one-row query on db into dest.
func queryScan(t *testing.T, db, sql string, args []any, dest ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(ctx, sql, args...).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// oauthGet sends a GET signed with OAuth 1.0a HMAC-SHA256 (one-legged, as
// WooCommerce's clients sign over plain HTTP) and returns the status.
func oauthGet(t *testing.T, rawURL, key, secret string) int {
	t.Helper()
	params := [][2]string{
		{"oauth_consumer_key", key},
		{"oauth_nonce", strconv.FormatInt(time.Now().UnixNano(), 36)},
		{"oauth_signature_method", "HMAC-SHA256"},
		{"oauth_timestamp", strconv.FormatInt(time.Now().Unix(), 10)},
	}
	// Sorted by key already; keys and values are RFC 3986 encoded, each
	// pair encoded again, pairs joined with an encoded "&".
	pairs := make([]string, len(params))
	for i, p := range params {
		pairs[i] = rfc3986(rfc3986(p[0]) + "=" + rfc3986(p[1]))
	}
	base := "GET&" + rfc3986(rawURL) + "&" + strings.Join(pairs, "%26")
	mac := hmac.New(sha256.New, []byte(secret+"&"))
	mac.Write([]byte(base))
	q := url.Values{}
	for _, p := range params {
		q.Set(p[0], p[1])
	}
	q.Set("oauth_signature", base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	resp, err := http.Get(rawURL + "?" + q.Encode())
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// rfc3986 percent-encodes all but A-Z a-z 0-9 - _ . ~.
func rfc3986(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}
