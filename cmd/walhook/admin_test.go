package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/app"
	"github.com/walhook/walhook/internal/pgtest"
	"github.com/walhook/walhook/internal/receiver"
	"github.com/walhook/walhook/internal/shop"
)

// opsConfig writes a configuration for the shop schema with the given
// webhooks section to a file and returns its path.
func opsConfig(t *testing.T, db, listen, logSection, webhooks string) string {
	t.Helper()
	slot := fmt.Sprintf("ops_%d", time.Now().UnixNano()%1e9)
	yaml := fmt.Sprintf(`postgres:
  url: %q
  slot: %s
  publication: %s
  status_interval: 1s
source: https://shop.example.com/
delivery:
  allow_private_networks: true
  timeout: 10s
  concurrency: 2
  shutdown_grace: 20s
  retry: { attempts: 2, backoff: 10ms, max_backoff: 50ms, parked_backoff: 100ms, parked_max_backoff: 500ms }
http:
  listen: %s
%s
webhooks:
%s`, db, slot, slot, listen, logSection, webhooks)
	path := filepath.Join(t.TempDir(), "walhook.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func hookLine(id int64, topic, url string) string {
	return fmt.Sprintf("  - { id: %d, topic: %s, delivery_url: %q, secret: s%d }\n", id, topic, url, id)
}

// cli runs walhook's command line in-process.
func cli(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = runMain(args, &out, &errb)
	return code, out.String(), errb.String()
}

// inProcess runs walhook from a configuration file in this process.
type inProcess struct {
	cancel context.CancelFunc
	done   chan error
	addr   net.Addr
	reg    *prometheus.Registry
}

func runInProcess(t *testing.T, path string) *inProcess {
	t.Helper()
	cfg, err := config.Load(path, os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &inProcess{cancel: cancel, done: make(chan error, 1), reg: prometheus.NewRegistry()}
	listening := make(chan net.Addr, 1)
	go func() {
		p.done <- app.Run(ctx, cfg, app.Options{
			Version: "test", Logger: slog.New(slog.DiscardHandler), Registry: p.reg, ConfigFile: path,
			Listening: func(a net.Addr) { listening <- a },
		})
	}()
	select {
	case p.addr = <-listening:
	case err := <-p.done:
		cancel()
		t.Fatalf("walhook stopped at start: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("walhook did not listen within 30s")
	}
	t.Cleanup(func() { p.stop(t) })
	waitReadyz(t, "http://"+p.addr.String())
	return p
}

func (p *inProcess) stop(t *testing.T) {
	t.Helper()
	if p.cancel == nil {
		return
	}
	p.cancel()
	p.cancel = nil
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("walhook returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("walhook did not stop within 30s")
	}
}

// gauge reads one series of the in-process registry.
func (p *inProcess) gauge(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := p.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

// waitReadyz polls base+"/readyz" until it answers 200.
func waitReadyz(t *testing.T, base string) {
	t.Helper()
	if !within(30*time.Second, func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}) {
		t.Fatalf("%s/readyz did not answer 200 within 30s", base)
	}
}

func within(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

func accepted(r *receiver.Receiver, id int64) []receiver.Delivery {
	var out []receiver.Delivery
	for _, d := range r.Accepted() {
		if d.WebhookID == id {
			out = append(out, d)
		}
	}
	return out
}

// productIDs returns the product ids in deliveries' bodies.
func productIDs(t *testing.T, ds []receiver.Delivery) []int {
	t.Helper()
	var ids []int
	for _, d := range ds {
		var row struct{ ID int }
		if err := json.Unmarshal(d.Body, &row); err != nil {
			t.Fatalf("body %s: %v", d.Body, err)
		}
		ids = append(ids, row.ID)
	}
	return ids
}

func insertProduct(t *testing.T, db string, id int) {
	t.Helper()
	pgtest.Exec(t, db, fmt.Sprintf(`INSERT INTO products (id, name, sku, price) VALUES (%d, 'p', 'sku%d', 1)`, id, id))
}

// listRow returns the `webhooks list` row of webhook id, split on runs
// of two or more spaces.
func listRow(t *testing.T, path string, id int64) []string {
	t.Helper()
	code, out, errs := cli(t, "webhooks", "list", "--config", path)
	if code != 0 {
		t.Fatalf("webhooks list: exit %d: %s%s", code, out, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	sep := regexp.MustCompile(`\s{2,}`)
	if h := sep.Split(lines[0], -1); strings.Join(h, "|") != "ID|NAME|TOPIC|STATUS|FAILURES|PARKED|LAST DELIVERY|ORIGIN" {
		t.Fatalf("webhooks list header %q", lines[0])
	}
	for _, l := range lines[1:] {
		f := sep.Split(strings.TrimSpace(l), -1)
		if f[0] == fmt.Sprint(id) {
			return f
		}
	}
	t.Fatalf("webhooks list has no row for webhook %d:\n%s", id, out)
	return nil
}

// TestWebhooksCommands changes webhooks through `walhook webhooks` while
// walhook runs and while it is stopped.
func TestWebhooksCommands(t *testing.T) {
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, shop.Schema)
	recv := receiver.New(map[int64]string{1: "s1", 2: "s2"})
	srv := httptest.NewServer(recv)
	t.Cleanup(srv.Close)
	path := opsConfig(t, db, "127.0.0.1:0", "log: { level: warn }",
		hookLine(1, "product.created", srv.URL+"/one")+hookLine(2, "product.created", srv.URL+"/two"))

	run := runInProcess(t, path)
	row := listRow(t, path, 1)
	if row[1] != "Webhook 1 (product.created)" || row[2] != "product.created" || row[3] != "active" || row[4] != "0" || row[5] != "0" || row[6] != "never" {
		t.Errorf("list row before any delivery: %q", row)
	}
	insertProduct(t, db, 1)
	if !recv.Wait(30*time.Second, func(r *receiver.Receiver) bool { return len(accepted(r, 1)) == 1 && len(accepted(r, 2)) == 1 }) {
		t.Fatal("the first change was not delivered to both webhooks")
	}
	if !within(10*time.Second, func() bool { return strings.HasSuffix(listRow(t, path, 1)[6], "HTTP 200") }) {
		t.Errorf("list does not show the last delivery: %q", listRow(t, path, 1))
	}

	// Paused while running: later changes are not delivered to it.
	if code, out, errs := cli(t, "webhooks", "pause", "1", "--config", path); code != 0 || out != "webhook 1 is now paused\n" {
		t.Fatalf("pause: exit %d, %q %q", code, out, errs)
	}
	if !within(10*time.Second, func() bool {
		return run.gauge(t, "walhook_webhook_status", map[string]string{"webhook": "1", "status": "paused"}) == 1
	}) {
		t.Fatal("the running walhook did not pick up the pause within 10s")
	}
	insertProduct(t, db, 2)
	if !recv.Wait(30*time.Second, func(r *receiver.Receiver) bool { return len(accepted(r, 2)) == 2 }) {
		t.Fatal("webhook 2 did not get the second change")
	}
	if !within(10*time.Second, func() bool {
		return run.gauge(t, "walhook_deliveries_total", map[string]string{"webhook": "1", "outcome": "skipped"}) == 1
	}) {
		t.Error("the paused webhook's delivery was not skipped")
	}
	if n := len(accepted(recv, 1)); n != 1 {
		t.Errorf("a paused webhook got %d deliveries, want 1 (from before the pause)", n)
	}
	if row := listRow(t, path, 1); row[3] != "paused" {
		t.Errorf("list shows status %q, want paused", row[3])
	}

	// Enabled again: later changes are delivered, the skipped one is not.
	if code, out, _ := cli(t, "webhooks", "enable", "--config", path, "1"); code != 0 || out != "webhook 1 is now active\n" {
		t.Fatalf("enable: exit %d, %q", code, out)
	}
	if !within(10*time.Second, func() bool {
		return run.gauge(t, "walhook_webhook_status", map[string]string{"webhook": "1", "status": "active"}) == 1
	}) {
		t.Fatal("the running walhook did not pick up the enable within 10s")
	}
	insertProduct(t, db, 3)
	if !recv.Wait(30*time.Second, func(r *receiver.Receiver) bool { return len(accepted(r, 1)) == 2 && len(accepted(r, 2)) == 3 }) {
		t.Fatal("the change after enable was not delivered")
	}
	if ids := productIDs(t, accepted(recv, 1)); fmt.Sprint(ids) != "[1 3]" {
		t.Errorf("webhook 1 got products %v, want [1 3]", ids)
	}
	run.stop(t)

	// Disabled while stopped: it stays disabled at the next start, and its
	// deliveries are parked until discarded.
	if code, out, _ := cli(t, "webhooks", "disable", "2", "--config", path); code != 0 || out != "webhook 2 is now disabled\n" {
		t.Fatalf("disable: exit %d, %q", code, out)
	}
	run = runInProcess(t, path)
	if row := listRow(t, path, 2); row[3] != "disabled" {
		t.Errorf("after a restart webhook 2 is %q, want disabled", row[3])
	}
	insertProduct(t, db, 4)
	if !recv.Wait(30*time.Second, func(r *receiver.Receiver) bool { return len(accepted(r, 1)) == 3 }) {
		t.Fatal("webhook 1 did not get the fourth change")
	}
	if !within(10*time.Second, func() bool { return listRow(t, path, 2)[5] == "1" }) {
		t.Errorf("list shows %q parked for the disabled webhook, want 1", listRow(t, path, 2)[5])
	}
	if n := len(accepted(recv, 2)); n != 3 {
		t.Errorf("the disabled webhook got %d deliveries, want 3", n)
	}
	if code, out, _ := cli(t, "webhooks", "discard", "2", "--config", path); code != 0 || out != "webhook 2: 1 parked deliveries discarded\n" {
		t.Errorf("discard: exit %d, %q", code, out)
	}
	if row := listRow(t, path, 2); row[5] != "0" {
		t.Errorf("after discard list shows %q parked, want 0", row[5])
	}
	if code, _, _ := cli(t, "webhooks", "enable", "2", "--config", path); code != 0 {
		t.Fatal("enable 2 failed")
	}
	if !within(10*time.Second, func() bool {
		return run.gauge(t, "walhook_webhook_status", map[string]string{"webhook": "2", "status": "active"}) == 1
	}) {
		t.Fatal("the running walhook did not pick up the enable of webhook 2 within 10s")
	}
	insertProduct(t, db, 5)
	if !recv.Wait(30*time.Second, func(r *receiver.Receiver) bool { return len(accepted(r, 2)) == 4 }) {
		t.Fatal("webhook 2 did not get the change made after it was enabled")
	}
	time.Sleep(300 * time.Millisecond)
	if ids := productIDs(t, accepted(recv, 2)); fmt.Sprint(ids) != "[1 2 3 5]" {
		t.Errorf("webhook 2 got products %v, want [1 2 3 5] (4 was discarded)", ids)
	}

	// Mistakes give exit 1 and a message.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"webhooks", "pause", "99", "--config", path}, "no webhook with ID 99"},
		{[]string{"webhooks", "pause", "abc", "--config", path}, `"abc" is not a webhook ID`},
		{[]string{"webhooks", "pause", "--config", path}, "want one webhook ID"},
		{[]string{"webhooks", "frobnicate", "1", "--config", path}, "unknown action"},
		{[]string{"webhooks"}, "want list"},
	} {
		code, _, errs := cli(t, tc.args...)
		if code != 1 || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 1 and %q", tc.args, code, errs, tc.want)
		}
	}
}

// TestCheckAndVersion covers `walhook check` and `walhook version`.
func TestCheckAndVersion(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(`postgres:
  url: postgres://localhost/x
source: https://shop.example.com/
delivery:
  timeout: soon
webhooks:
  - { id: 1, topic: order.exploded, delivery_url: https://hooks.example.com/ }
`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WALHOOK_CONFIG", "")
	tests := []struct {
		name     string
		args     []string
		env      string
		code     int
		stdout   []string
		stderr   string
		noStdout bool
	}{
		{name: "example", args: []string{"check", "--config", "../../config.example.yaml"}, code: 0, stdout: []string{"../../config.example.yaml: OK ("}},
		{name: "example from WALHOOK_CONFIG", args: []string{"check"}, env: "../../config.example.yaml", code: 0, stdout: []string{": OK ("}},
		{name: "problems", args: []string{"check", "--config", bad}, code: 1,
			stdout: []string{"bad.yaml:5: delivery.timeout", "bad.yaml:7: webhooks[0].topic", "bad.yaml:7: webhooks[0].secret", "3 problem(s) found"}},
		{name: "no config", args: []string{"check"}, code: 1, stderr: "no configuration", noStdout: true},
		{name: "missing file", args: []string{"check", "--config", filepath.Join(dir, "nope.yaml")}, code: 1, stderr: "nope.yaml", noStdout: true},
		{name: "bad flag", args: []string{"check", "--nope"}, code: 2, noStdout: true},
		{name: "version", args: []string{"version"}, code: 0, stdout: []string{"walhook dev (go", ", commit "}},
		{name: "help", args: []string{"help"}, code: 0, stdout: []string{"walhook webhooks list|enable|pause|disable|discard"}},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, stderr: `unknown command "frobnicate"`, noStdout: true},
		{name: "no command", args: nil, code: 2, stderr: "Usage:", noStdout: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("WALHOOK_CONFIG", tc.env)
			code, out, errs := cli(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errs)
			}
			for _, s := range tc.stdout {
				if !strings.Contains(out, s) {
					t.Errorf("stdout lacks %q:\n%s", s, out)
				}
			}
			if tc.noStdout && out != "" {
				t.Errorf("unexpected stdout %q", out)
			}
			if !strings.Contains(errs, tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, errs)
			}
		})
	}
}

// TestNewLogger: log.format and log.level shape the process logger.
func TestNewLogger(t *testing.T) {
	tests := []struct {
		format string
		level  slog.Level
		want   []string
		absent []string
	}{
		{"json", slog.LevelInfo, []string{`"level":"INFO","msg":"info line"`, `"level":"WARN"`}, []string{"debug line"}},
		{"text", slog.LevelWarn, []string{`level=WARN msg="warn line" k=v`}, []string{"info line", "debug line", `"msg"`}},
		{"text", slog.LevelDebug, []string{`level=DEBUG msg="debug line"`, `level=INFO msg="info line"`}, []string{`"msg"`}},
	}
	for _, tc := range tests {
		t.Run(tc.format+"/"+tc.level.String(), func(t *testing.T) {
			var b bytes.Buffer
			log := newLogger(&b, config.Log{Format: tc.format, Level: tc.level})
			log.Debug("debug line")
			log.Info("info line")
			log.Warn("warn line", "k", "v")
			for _, s := range tc.want {
				if !strings.Contains(b.String(), s) {
					t.Errorf("output lacks %q:\n%s", s, b.String())
				}
			}
			for _, s := range tc.absent {
				if strings.Contains(b.String(), s) {
					t.Errorf("output has %q:\n%s", s, b.String())
				}
			}
		})
	}
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestSIGHUPReloads: the binary re-reads its configuration on SIGHUP, with
// the text log format and the info level from the file.
func TestSIGHUPReloads(t *testing.T) {
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, shop.Schema)
	recv := receiver.New(map[int64]string{1: "s1", 2: "s2"})
	srv := httptest.NewServer(recv)
	t.Cleanup(srv.Close)
	addr := freeAddr(t)
	logSection := "log: { format: text, level: info }"
	path := opsConfig(t, db, addr, logSection, hookLine(1, "product.created", srv.URL+"/one"))
	logPath := filepath.Join(t.TempDir(), "walhook.log")
	p := startProc(t, bin, path, logPath)
	defer p.kill()
	waitReadyz(t, "http://"+addr)

	yaml, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	added := string(yaml) + hookLine(2, "product.created", srv.URL+"/two")
	if err := os.WriteFile(path, []byte(added), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !within(20*time.Second, func() bool {
		_, body := httpGet(t, "http://"+addr+"/metrics")
		return strings.Contains(body, `walhook_config_reloads_total{result="success"} 1`)
	}) {
		t.Fatal("walhook_config_reloads_total{result=\"success\"} did not reach 1 after SIGHUP")
	}
	insertProduct(t, db, 1)
	if !recv.Wait(30*time.Second, func(r *receiver.Receiver) bool { return len(accepted(r, 1)) == 1 && len(accepted(r, 2)) == 1 }) {
		t.Fatal("the webhook added by SIGHUP did not get the change")
	}
	// Several SIGHUPs in a row neither stop walhook nor fail.
	for range 3 {
		_ = p.cmd.Process.Signal(syscall.SIGHUP)
	}
	if !within(20*time.Second, func() bool {
		_, body := httpGet(t, "http://"+addr+"/metrics")
		return regexp.MustCompile(`walhook_config_reloads_total\{result="success"\} [2-4]\n`).MatchString(body)
	}) {
		t.Error("repeated SIGHUPs were not reloaded")
	}
	if err := p.terminate(t); err != nil {
		t.Errorf("walhook exited with %v after SIGTERM, want 0", err)
	}
	logs, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`level=INFO msg="walhook starting"`, `level=INFO msg="configuration reloaded" webhooks=2`, `msg="walhook stopped"`} {
		if !strings.Contains(string(logs), s) {
			t.Errorf("log lacks %q:\n%s", s, logs)
		}
	}
	for _, l := range strings.Split(strings.TrimSpace(string(logs)), "\n") {
		if !strings.HasPrefix(l, "time=") || strings.Contains(l, "level=DEBUG") {
			t.Errorf("not a text line at info level or above: %q", l)
		}
	}
}

// TestGracefulShutdown: SIGTERM lets the in-flight delivery finish and
// exits 0, and the delivery is not sent again at the next start; a second
// signal exits at once.
func TestGracefulShutdown(t *testing.T) {
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, shop.Schema)
	recv := receiver.New(map[int64]string{1: "s1"})
	var (
		delay    atomic.Int64 // how long the receiver takes to answer
		entered  = make(chan struct{}, 16)
		hold     = make(chan struct{}) // closed to release held requests
		holdNext atomic.Bool
	)
	delay.Store(int64(time.Second))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-WC-Webhook-Topic") != "" {
			entered <- struct{}{}
			if holdNext.Load() {
				<-hold
			} else {
				time.Sleep(time.Duration(delay.Load()))
			}
		}
		recv.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		select {
		case <-hold:
		default:
			close(hold)
		}
	})
	addr := freeAddr(t)
	path := opsConfig(t, db, addr, "log: { level: info }", hookLine(1, "product.created", srv.URL+"/one"))
	logPath := filepath.Join(t.TempDir(), "walhook.log")
	waitEntered := func() {
		t.Helper()
		select {
		case <-entered:
		case <-time.After(30 * time.Second):
			t.Fatal("no delivery reached the receiver within 30s")
		}
	}
	readyz := func() (int, string) { return httpGet(t, "http://"+addr+"/readyz") }

	p := startProc(t, bin, path, logPath)
	defer p.kill()
	waitReadyz(t, "http://"+addr)
	insertProduct(t, db, 1)
	waitEntered()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	sawShuttingDown := within(10*time.Second, func() bool {
		code, body := readyz()
		return code == http.StatusServiceUnavailable && strings.Contains(body, `"status":"shutting_down"`)
	})
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatal("walhook did not exit within 60s of SIGTERM")
	}
	if p.err != nil {
		t.Errorf("walhook exited with %v after SIGTERM, want 0", p.err)
	}
	if !sawShuttingDown {
		t.Error("/readyz did not answer 503 shutting_down while the in-flight delivery finished")
	}
	if n := len(recv.Accepted()); n != 1 {
		t.Fatalf("the in-flight delivery did not complete before exit: %d accepted", n)
	}
	first := recv.Accepted()[0].DeliveryID

	// The next start does not send it again.
	p = startProc(t, bin, path, logPath)
	defer p.kill()
	waitReadyz(t, "http://"+addr)
	insertProduct(t, db, 2)
	waitEntered()
	if !recv.Wait(30*time.Second, func(r *receiver.Receiver) bool { return len(r.Accepted()) >= 2 }) {
		t.Fatal("the change after the restart was not delivered")
	}
	time.Sleep(500 * time.Millisecond)
	if ids := productIDs(t, recv.Accepted()); fmt.Sprint(ids) != "[1 2]" {
		t.Errorf("deliveries of products %v, want [1 2]: the delivery finished at shutdown (%s) was sent again", ids, first)
	}

	// A second signal exits at once, without waiting for the held delivery.
	holdNext.Store(true)
	insertProduct(t, db, 3)
	waitEntered()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !within(10*time.Second, func() bool {
		logs, _ := os.ReadFile(logPath)
		return strings.Count(string(logs), `"msg":"shutting down: finishing in-flight deliveries"`) == 2
	}) {
		t.Fatal("walhook did not start shutting down after the first SIGTERM")
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatal("walhook did not exit after a second SIGTERM while a delivery was held")
	}
	var ee *exec.ExitError
	if !errors.As(p.err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("after a second signal walhook exited with %v, want exit status 1", p.err)
	}
	logs, _ := os.ReadFile(logPath)
	if !strings.Contains(string(logs), "second signal: exiting at once") {
		t.Error("the second signal was not logged")
	}
}
