package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walhook/walhook/internal/pgtest"
	"github.com/walhook/walhook/internal/walhooktest"
)

// BenchmarkBigTransaction delivers one transaction of 100,000 and one of
// 1,000,000 inserted rows through the real binary and reports walhook's
// peak RSS for each (peak-rss-MB), to show memory does not grow with the
// transaction's size:
//
//	go test -run '^$' -bench BigTransaction -benchtime 1x -timeout 30m ./cmd/walhook
func BenchmarkBigTransaction(b *testing.B) {
	for _, rows := range []int{100_000, 1_000_000} {
		b.Run(strconv.Itoa(rows), func(b *testing.B) {
			for range b.N {
				peak, took := bigTransaction(b, rows)
				b.ReportMetric(float64(peak)/(1<<20), "peak-rss-MB")
				b.ReportMetric(float64(rows)/took.Seconds(), "events/s")
			}
		})
	}
}

func bigTransaction(b *testing.B, rows int) (peakRSS int64, took time.Duration) {
	bin := walhooktest.Binary(b)
	db := pgtest.NewDatabase(b)
	pgtest.Exec(b, db, `CREATE TABLE lines (id int PRIMARY KEY, order_id int NOT NULL, sku text NOT NULL, qty int NOT NULL, price numeric(12,2) NOT NULL);
		ALTER TABLE lines REPLICA IDENTITY FULL;`)
	var mu sync.Mutex
	seen := make(map[string]struct{}, rows)
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		id := r.Header.Get("X-WC-Webhook-Delivery-ID")
		if id == "" {
			return // a ping
		}
		mu.Lock()
		seen[id] = struct{}{}
		if len(seen) == rows {
			close(done)
		}
		mu.Unlock()
	}))
	defer srv.Close()
	dir := b.TempDir()
	slot := fmt.Sprintf("bigtx_%d", rows)
	cfg := fmt.Sprintf(`postgres: { url: %q, slot: %s, publication: %s }
source: https://shop.example.com/
resources: { line: { table: public.lines } }
delivery: { allow_private_networks: true }
http: { listen: "127.0.0.1:0" }
log: { level: warn }
webhooks:
  - { id: 1, topic: line.created, delivery_url: %q, secret: s }
`, db, slot, slot, srv.URL)
	cfgPath := filepath.Join(dir, "walhook.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	p := walhooktest.StartProcess(b, bin, cfgPath, filepath.Join(dir, "walhook.log"))
	defer p.Kill()
	w := &itemsWorld{db: db, slot: slot}
	w.waitStreaming(b)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	peakC := make(chan int64, 1)
	go func() {
		var peak int64
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if rss := readRSS(p.Pid()); rss > peak {
				peak = rss
			}
			select {
			case <-ctx.Done():
				peakC <- peak
				return
			case <-tick.C:
			}
		}
	}()
	b.ResetTimer()
	start := time.Now()
	pgtest.Exec(b, db, fmt.Sprintf(`INSERT INTO lines SELECT i, i / 5, 'SKU-' || i, 1 + i %% 4, (i %% 1000) / 10.0 FROM generate_series(1, %d) i`, rows))
	select {
	case <-done:
	case <-time.After(20 * time.Minute):
		b.Fatalf("only %d of %d rows delivered in 20 minutes", len(seen), rows)
	}
	took = time.Since(start)
	b.StopTimer()
	cancel()
	return <-peakC, took
}

// readRSS returns a process's resident set size in bytes (0 if unknown).
func readRSS(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:")); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(string(rest)), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
