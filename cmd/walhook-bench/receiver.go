package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// record is one delivery as the receiver saw it, kept compact so a million
// of them fit in a few tens of megabytes.
type record struct {
	at    time.Duration // arrival, since the bench's epoch
	id    int64         // the row id from the body
	rev   uint8         // bench_rev from the body (0 when absent)
	wh    uint8         // X-WC-Webhook-ID
	sigOK bool
	did   [16]byte // X-WC-Webhook-Delivery-ID
}

// recorder collects the records of one phase.
type recorder struct {
	mu    sync.Mutex
	recs  []record
	valid atomic.Int64 // records with a good signature
	total atomic.Int64
	bytes atomic.Int64 // body bytes of every record
}

func newRecorder(capacity int64) *recorder {
	return &recorder{recs: make([]record, 0, capacity)}
}

func (r *recorder) snapshot() []record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.recs[:len(r.recs):len(r.recs)]
}

// samplesPerWebhook is how many bodies per webhook the receiver keeps for
// the HTTP ceiling.
const samplesPerWebhook = 64

// receiver verifies the WooCommerce signature of every delivery and
// records it in the current recorder. Pings are answered 200.
type receiver struct {
	epoch   time.Time
	secrets [maxHookID + 1][]byte
	macs    [maxHookID + 1]sync.Pool
	rec     atomic.Pointer[recorder]
	bufs    sync.Pool
	pings   atomic.Int64
	conns   atomic.Int64 // connections accepted

	sampleMu sync.Mutex
	samples  [webhookCount + 1][][]byte
	sampling atomic.Bool
}

func newReceiver(epoch time.Time) *receiver {
	rv := &receiver{epoch: epoch}
	for wh := 1; wh <= maxHookID; wh++ {
		secret := []byte(secretOf(wh))
		rv.secrets[wh] = secret
		rv.macs[wh].New = func() any { return hmac.New(sha256.New, secret) }
	}
	rv.bufs.New = func() any { b := make([]byte, 0, 8<<10); return &b }
	rv.rec.Store(newRecorder(0))
	return rv
}

// secretOf returns the secret of webhook wh.
func secretOf(wh int) string { return "bench-secret-" + strconv.Itoa(wh) + "-k7Qp2x" }

// sample returns the bodies kept for webhook wh.
func (rv *receiver) sample(wh int) [][]byte {
	rv.sampleMu.Lock()
	defer rv.sampleMu.Unlock()
	return rv.samples[wh]
}

var (
	idPrefix  = []byte(`{"id":`)
	revMarker = []byte(`"bench_rev":`)
)

// skipSpace drops leading spaces, as PostgreSQL's jsonb text has after a colon.
func skipSpace(b []byte) []byte { return bytes.TrimLeft(b, " ") }

func (rv *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	bp := rv.bufs.Get().(*[]byte)
	defer rv.bufs.Put(bp)
	body, err := readAll(req.Body, (*bp)[:0])
	*bp = body[:0]
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	whText := req.Header["X-Wc-Webhook-Id"]
	if len(whText) == 0 {
		rv.pings.Add(1) // a ping: webhook_id=<id>, form-encoded, unsigned
		return
	}
	rc := record{}
	if wh, err := strconv.Atoi(whText[0]); err == nil && wh >= 1 && wh <= maxHookID {
		rc.sigOK = rv.verify(wh, body, req.Header["X-Wc-Webhook-Signature"])
		rc.wh = uint8(wh)
		if wh > webhookCount {
			// A <resource>.* webhook: filed under its event's webhook.
			rc.wh = 0
			if e := slices.Index(events[:], req.Header.Get("X-Wc-Webhook-Event")); e >= 0 {
				rc.wh = uint8(webhookID(wh-webhookCount-1, e))
			}
			rc.sigOK = rc.sigOK && rc.wh != 0
		}
	}
	if d := req.Header["X-Wc-Webhook-Delivery-Id"]; len(d) == 1 && len(d[0]) == 32 {
		_, _ = hex.Decode(rc.did[:], []byte(d[0]))
	}
	rc.id, rc.rev = parseBody(body)
	if rc.wh != 0 && rv.sampling.Load() {
		rv.keepSample(int(rc.wh), body)
	}
	rec := rv.rec.Load()
	rec.mu.Lock()
	rc.at = time.Since(rv.epoch)
	rec.recs = append(rec.recs, rc)
	rec.mu.Unlock()
	rec.total.Add(1)
	rec.bytes.Add(int64(len(body)))
	if rc.sigOK {
		rec.valid.Add(1)
	}
}

func (rv *receiver) keepSample(wh int, body []byte) {
	rv.sampleMu.Lock()
	defer rv.sampleMu.Unlock()
	if len(rv.samples[wh]) < samplesPerWebhook {
		rv.samples[wh] = append(rv.samples[wh], bytes.Clone(body))
	}
}

// verify checks base64(HMAC-SHA256(body, secret)) in constant time.
func (rv *receiver) verify(wh int, body []byte, sig []string) bool {
	if len(sig) != 1 {
		return false
	}
	mac := rv.macs[wh].Get().(hash.Hash)
	mac.Reset()
	mac.Write(body)
	var sum [sha256.Size]byte
	var want [44]byte
	base64.StdEncoding.Encode(want[:], mac.Sum(sum[:0]))
	rv.macs[wh].Put(mac)
	return hmac.Equal(want[:], []byte(sig[0]))
}

// parseBody extracts the row id (the body starts with {"id":N, or
// {"id": N as a jsonb document built by a payload_query does) and
// bench_rev (the table's last column) without decoding the JSON.
func parseBody(body []byte) (id int64, rev uint8) {
	if rest, ok := bytes.CutPrefix(body, idPrefix); ok {
		id = leadingInt(skipSpace(rest))
	}
	if i := bytes.LastIndex(body, revMarker); i >= 0 {
		rev = uint8(min(leadingInt(skipSpace(body[i+len(revMarker):])), 255))
	}
	return id, rev
}

func leadingInt(b []byte) int64 {
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// readAll reads r to the end into buf.
func readAll(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}
