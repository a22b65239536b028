package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// httpCeiling POSTs count signed bodies, sampled from what walhook sent
// (webhook mix in the order of order), to the receiver with workers
// requests in flight over as many keep-alive connections, and returns the
// time until the receiver had every one and how many failed verification.
func httpCeiling(ctx context.Context, rv *receiver, baseURL string, order []record, count int64, workers int) (time.Duration, outcome, error) {
	samples := make([][][]byte, webhookCount+1)
	for wh := 1; wh <= webhookCount; wh++ {
		samples[wh] = rv.sample(wh)
	}
	if len(order) == 0 {
		return 0, outcome{}, errors.New("bench: http ceiling: no deliveries to sample")
	}
	transport := &http.Transport{
		Proxy:               nil,
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: workers,
		MaxConnsPerHost:     workers,
		IdleConnTimeout:     90 * time.Second,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}
	rec := newRecorder(count)
	rv.rec.Store(rec)

	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			macs := make([]func([]byte) string, webhookCount+1)
			for wh := 1; wh <= webhookCount; wh++ {
				m := hmac.New(sha256.New, []byte(secretOf(wh)))
				var sum []byte
				macs[wh] = func(body []byte) string {
					m.Reset()
					m.Write(body)
					sum = m.Sum(sum[:0])
					return base64.StdEncoding.EncodeToString(sum)
				}
			}
			var did [16]byte
			for {
				j := next.Add(1) - 1
				if j >= count || ctx.Err() != nil {
					return
				}
				wh := int(order[j%int64(len(order))].wh)
				if wh == 0 || len(samples[wh]) == 0 {
					wh = 0
					for w := 1; w <= webhookCount && wh == 0; w++ {
						if len(samples[w]) > 0 {
							wh = w
						}
					}
				}
				body := samples[wh][j%int64(len(samples[wh]))]
				_, _ = rand.Read(did[:])
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/hook/"+strconv.Itoa(wh), bytes.NewReader(body))
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				topic := topicOf(wh)
				req.Header = http.Header{
					"Content-Type":             {"application/json"},
					"User-Agent":               {"walhook-bench"},
					"X-Wc-Webhook-Source":      {"https://shop.example.com/"},
					"X-Wc-Webhook-Topic":       {topic},
					"X-Wc-Webhook-Signature":   {macs[wh](body)},
					"X-Wc-Webhook-Id":          {strconv.Itoa(wh)},
					"X-Wc-Webhook-Delivery-Id": {hex.EncodeToString(did[:])},
				}
				resp, err := client.Do(req)
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	if firstErr != nil {
		return 0, outcome{}, fmt.Errorf("bench: http ceiling: %w", firstErr)
	}
	if err := ctx.Err(); err != nil {
		return 0, outcome{}, fmt.Errorf("bench: http ceiling: %w", err)
	}
	o := outcome{Received: rec.total.Load(), BadSig: rec.total.Load() - rec.valid.Load()}
	return took, o, nil
}

// decodeCeiling times pg_recvlogical reading slot from its position to
// endpos with pgoutput, writing nothing.
func decodeCeiling(ctx context.Context, binDir, dbURL, slot, publication, endpos string) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "pg_recvlogical"),
		"-d", dbURL, "--slot", slot, "--start",
		"-o", "proto_version=2", "-o", "publication_names="+publication,
		"--endpos", endpos, "--no-loop", "-f", "/dev/null")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("bench: pg_recvlogical: %w\n%s", err, out.Bytes())
	}
	return time.Since(start), nil
}

// createDecodeSlot creates the pgoutput slot pg_recvlogical reads.
func createDecodeSlot(ctx context.Context, conn *pgx.Conn, slot string) error {
	if _, err := conn.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", slot); err != nil {
		return fmt.Errorf("bench: create slot %q: %w", slot, err)
	}
	return nil
}
