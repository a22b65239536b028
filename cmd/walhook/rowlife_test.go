package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
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

// rowLifeSteps is what each row goes through, one step per transaction:
// created (v 0), updated to v 1, 2 and 3, deleted.
const rowLifeSteps = 5

// lifeReceiver checks, as deliveries arrive, that each row's events reach
// its webhook in the order of the row's life: created, the updates by
// increasing version, deleted. It keeps a few bytes per row, so a drain of
// hundreds of thousands of changes costs little memory.
type lifeReceiver struct {
	secrets map[string][]byte // by webhook id

	mu         sync.Mutex
	next       map[string]int // webhook id + "/" + row id -> the step expected next
	seen       map[string]bool
	delivered  int
	dups       int
	violations []string
	nViolation int
	badHeaders int
	badSig     int
}

// step returns a delivery's place in its row's life.
func lifeStep(event string, version int) int {
	switch event {
	case "created":
		return 0
	case "updated":
		return version
	case "deleted":
		return rowLifeSteps - 1
	}
	return -1
}

func (r *lifeReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	h := req.Header
	if strings.HasPrefix(h.Get("Content-Type"), "application/x-www-form-urlencoded") {
		return // an activation ping
	}
	hook, topic, resource, event := h.Get("X-WC-Webhook-ID"), h.Get("X-WC-Webhook-Topic"), h.Get("X-WC-Webhook-Resource"), h.Get("X-WC-Webhook-Event")
	var row struct {
		ID int
		V  int
	}
	jsonErr := json.Unmarshal(body, &row)
	mac := hmac.New(sha256.New, r.secrets[hook])
	mac.Write(body)
	sigOK := hmac.Equal([]byte(base64.StdEncoding.EncodeToString(mac.Sum(nil))), []byte(h.Get("X-WC-Webhook-Signature")))

	r.mu.Lock()
	defer r.mu.Unlock()
	if !sigOK {
		r.badSig++
	}
	if jsonErr != nil || topic != resource+"."+event || resource != "r"+hook {
		r.badHeaders++
		return
	}
	id := h.Get("X-WC-Webhook-Delivery-ID")
	if r.seen[id] {
		r.dups++
		return
	}
	r.seen[id] = true
	r.delivered++
	key := hook + "/" + strconv.Itoa(row.ID)
	step := lifeStep(event, row.V)
	if want := r.next[key]; step != want {
		r.nViolation++
		if len(r.violations) < 10 {
			r.violations = append(r.violations, fmt.Sprintf("webhook %s row %d: %s (step %d) arrived when step %d was due", hook, row.ID, topic, step, want))
		}
	}
	r.next[key] = max(r.next[key], step+1)
}

func (r *lifeReceiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.delivered
}

// rowLifeChanges is the size of TestWildcardDrainKeepsRowOrder:
// WALHOOK_ROWLIFE_CHANGES when set, else 40000 (about 15 s on two busy
// cores), or 20000 with -short.
func rowLifeChanges(t *testing.T) int {
	if s := os.Getenv("WALHOOK_ROWLIFE_CHANGES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 4*rowLifeSteps {
			t.Fatalf("WALHOOK_ROWLIFE_CHANGES=%q: want a number of changes of at least %d", s, 4*rowLifeSteps)
		}
		return n
	}
	if testing.Short() {
		return 20000
	}
	return 40000
}

// TestWildcardDrainKeepsRowOrder drains a backlog of changes to four
// tables through four <resource>.* webhooks (the real binary, a real
// PostgreSQL and receiver): every row is created, updated three times and
// deleted, one step per transaction, with the steps of neighbouring rows
// in the same transactions so that a row's events are always in flight
// together. Every event must arrive, and each row's events in the order
// of its life: created before its updates, updates by version, deleted
// last. (With one webhook per topic these raced: SPEC orders events per
// webhook.)
func TestWildcardDrainKeepsRowOrder(t *testing.T) {
	changes := rowLifeChanges(t)
	const resources = 4
	rowsPer := changes / resources / rowLifeSteps
	const chunk = 250 // rows per step and transaction
	bin := walhooktest.Binary(t)
	db := pgtest.NewDatabase(t)
	var schema, resourcesYAML, hooksYAML strings.Builder
	recv := &lifeReceiver{secrets: map[string][]byte{}, next: map[string]int{}, seen: map[string]bool{}}
	srv := httptest.NewServer(recv)
	t.Cleanup(srv.Close)
	for k := 1; k <= resources; k++ {
		fmt.Fprintf(&schema, "CREATE TABLE t%d (id int PRIMARY KEY, v int NOT NULL);\n", k)
		fmt.Fprintf(&resourcesYAML, "  r%d: { table: public.t%d }\n", k, k)
		fmt.Fprintf(&hooksYAML, "  - { id: %d, topic: r%d.*, delivery_url: %q, secret: s%d }\n", k, k, srv.URL+"/"+strconv.Itoa(k), k)
		recv.secrets[strconv.Itoa(k)] = []byte("s" + strconv.Itoa(k))
	}
	pgtest.Exec(t, db, schema.String())
	slot := fmt.Sprintf("rowlife_%d", time.Now().UnixNano()%1e9)
	cfg := fmt.Sprintf(`postgres:
  url: %q
  slot: %s
  publication: %s
  status_interval: 1s
source: https://shop.example.com/
resources:
%sdelivery:
  allow_private_networks: true
  timeout: 10s
  shutdown_grace: 5s
  retry: { attempts: 3, backoff: 10ms, max_backoff: 100ms, parked_backoff: 100ms, parked_max_backoff: 500ms }
http:
  listen: 127.0.0.1:0
log:
  level: warn
webhooks:
%s`, db, slot, slot, resourcesYAML.String(), hooksYAML.String())
	dir := t.TempDir()
	cfgPath, logPath := filepath.Join(dir, "walhook.yaml"), filepath.Join(dir, "walhook.log")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	// A first run creates the slot; the changes are made while walhook
	// is stopped, and the second run drains them.
	p := walhooktest.StartProcess(t, bin, cfgPath, logPath)
	w := &itemsWorld{db: db, slot: slot}
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := os.ReadFile(logPath)
			t.Logf("walhook's log:\n%s", logs)
		}
	})
	w.waitStreaming(t)
	if err := p.Terminate(t); err != nil {
		t.Fatalf("walhook exited with %v after SIGTERM, want 0", err)
	}

	// Transaction j takes chunk j through step 0 (insert), chunk j-1
	// through step 1 (update to v 1), ... and chunk j-4 through step 4
	// (delete), on every table.
	chunks := (rowsPer + chunk - 1) / chunk
	var stmts []string
	for j := 0; j < chunks+rowLifeSteps-1; j++ {
		var tx strings.Builder
		tx.WriteString("BEGIN;\n")
		for k := 1; k <= resources; k++ {
			for step := 0; step < rowLifeSteps; step++ {
				c := j - step
				if c < 0 || c >= chunks {
					continue
				}
				lo, hi := c*chunk+1, min((c+1)*chunk, rowsPer)
				switch step {
				case 0:
					fmt.Fprintf(&tx, "INSERT INTO t%d (id, v) SELECT g, 0 FROM generate_series(%d, %d) g;\n", k, lo, hi)
				case rowLifeSteps - 1:
					fmt.Fprintf(&tx, "DELETE FROM t%d WHERE id BETWEEN %d AND %d;\n", k, lo, hi)
				default:
					fmt.Fprintf(&tx, "UPDATE t%d SET v = %d WHERE id BETWEEN %d AND %d;\n", k, step, lo, hi)
				}
			}
		}
		tx.WriteString("COMMIT;")
		stmts = append(stmts, tx.String())
	}
	pgtest.Exec(t, db, stmts...)
	want := resources * rowsPer * rowLifeSteps

	start := time.Now()
	p = walhooktest.StartProcess(t, bin, cfgPath, logPath)
	defer p.Kill()
	walhooktest.WaitCount(t, "deliveries of the backlog", want, recv.count)
	drain := time.Since(start)
	walhooktest.WaitSettled(t, db, slot)
	if err := p.Terminate(t); err != nil {
		t.Errorf("walhook exited with %v after SIGTERM, want 0", err)
	}

	recv.mu.Lock()
	defer recv.mu.Unlock()
	if recv.delivered != want {
		t.Errorf("%d distinct deliveries, want %d", recv.delivered, want)
	}
	for key, next := range recv.next {
		if next != rowLifeSteps {
			t.Errorf("webhook/row %s: life stopped before step %d", key, next)
			break
		}
	}
	if len(recv.next) != resources*rowsPer {
		t.Errorf("%d rows seen, want %d", len(recv.next), resources*rowsPer)
	}
	if recv.nViolation > 0 {
		t.Errorf("%d per-row order violations, e.g.:\n%s", recv.nViolation, strings.Join(recv.violations, "\n"))
	}
	if recv.badHeaders > 0 || recv.badSig > 0 {
		t.Errorf("%d deliveries with wrong topic headers or bodies, %d with bad signatures", recv.badHeaders, recv.badSig)
	}
	t.Logf("%d changes (%d rows × %d steps on %d tables) drained through %d <resource>.* webhooks in %.1fs (%.0f deliveries/s), %d per-row order violations, %d duplicates",
		want, rowsPer*resources, rowLifeSteps, resources, resources, drain.Seconds(), float64(want)/drain.Seconds(), recv.nViolation, recv.dups)
}
