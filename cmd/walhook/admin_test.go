package main

import (
	"bytes"
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
	"syscall"
	"testing"
	"time"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/app"
	"github.com/walhook/walhook/internal/pgtest"
	"github.com/walhook/walhook/internal/receiver"
	"github.com/walhook/walhook/internal/shop"
	"github.com/walhook/walhook/internal/walhooktest"
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
  timeout: 2m
  concurrency: 2
  shutdown_grace: 5m
  retry: { attempts: 2, backoff: 10ms, max_backoff: 50ms, parked_backoff: 100ms, parked_max_backoff: 500ms,
           probe_interval: 50ms, probe_max_interval: 500ms }
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

// settled waits until the walhook configured at path has settled every
// change committed so far; checks that nothing more arrives follow it.
func settled(t *testing.T, path string) {
	t.Helper()
	cfg, err := config.Load(path, os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	walhooktest.WaitSettled(t, cfg.Postgres.URL.Reveal(), cfg.Postgres.Slot)
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

// inProcess is walhook run from a configuration file in this process.
type inProcess struct{ *walhooktest.Instance }

func runInProcess(t *testing.T, path string) *inProcess {
	t.Helper()
	cfg, err := config.Load(path, os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	in := walhooktest.Start(t, cfg, func(o *app.Options) { o.ConfigFile = path })
	waitReadyz(t, in.URL())
	return &inProcess{in}
}

func (p *inProcess) stop(t *testing.T) { p.Stop(t) }

// gauge reads the sum of the series of name whose labels include labels;
// a missing metric family fails the test.
func (p *inProcess) gauge(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	var pairs []string
	for k, v := range labels {
		pairs = append(pairs, k, v)
	}
	return p.Metric(t, name, pairs...)
}

// waitReadyz polls base+"/readyz" until it answers 200.
func waitReadyz(t *testing.T, base string) {
	t.Helper()
	walhooktest.WaitFor(t, base+"/readyz to answer 200", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
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
	if !recv.Wait(walhooktest.Patience(), func(r *receiver.Receiver) bool { return len(accepted(r, 1)) == 1 && len(accepted(r, 2)) == 1 }) {
		t.Fatal("the first change was not delivered to both webhooks")
	}
	if !walhooktest.Holds(func() bool { return strings.HasSuffix(listRow(t, path, 1)[6], "HTTP 200") }) {
		t.Errorf("list does not show the last delivery: %q", listRow(t, path, 1))
	}

	// Paused while running: later changes are not delivered to it.
	if code, out, errs := cli(t, "webhooks", "pause", "1", "--config", path); code != 0 || out != "webhook 1 is now paused\n" {
		t.Fatalf("pause: exit %d, %q %q", code, out, errs)
	}
	if !walhooktest.Holds(func() bool {
		return run.gauge(t, "walhook_webhook_status", map[string]string{"webhook": "1", "status": "paused"}) == 1
	}) {
		t.Fatal("the running walhook did not pick up the pause")
	}
	insertProduct(t, db, 2)
	if !recv.Wait(walhooktest.Patience(), func(r *receiver.Receiver) bool { return len(accepted(r, 2)) == 2 }) {
		t.Fatal("webhook 2 did not get the second change")
	}
	if !walhooktest.Holds(func() bool {
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
	if !walhooktest.Holds(func() bool {
		return run.gauge(t, "walhook_webhook_status", map[string]string{"webhook": "1", "status": "active"}) == 1
	}) {
		t.Fatal("the running walhook did not pick up the enable")
	}
	insertProduct(t, db, 3)
	if !recv.Wait(walhooktest.Patience(), func(r *receiver.Receiver) bool { return len(accepted(r, 1)) == 2 && len(accepted(r, 2)) == 3 }) {
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
	if !recv.Wait(walhooktest.Patience(), func(r *receiver.Receiver) bool { return len(accepted(r, 1)) == 3 }) {
		t.Fatal("webhook 1 did not get the fourth change")
	}
	if !walhooktest.Holds(func() bool { return listRow(t, path, 2)[5] == "1" }) {
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
	if !walhooktest.Holds(func() bool {
		return run.gauge(t, "walhook_webhook_status", map[string]string{"webhook": "2", "status": "active"}) == 1
	}) {
		t.Fatal("the running walhook did not pick up the enable of webhook 2")
	}
	insertProduct(t, db, 5)
	if !recv.Wait(walhooktest.Patience(), func(r *receiver.Receiver) bool { return len(accepted(r, 2)) == 4 }) {
		t.Fatal("webhook 2 did not get the change made after it was enabled")
	}
	settled(t, path)
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
	bin := walhooktest.Binary(t)
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, shop.Schema)
	recv := receiver.New(map[int64]string{1: "s1", 2: "s2"})
	srv := httptest.NewServer(recv)
	t.Cleanup(srv.Close)
	addr := freeAddr(t)
	logSection := "log: { format: text, level: info }"
	path := opsConfig(t, db, addr, logSection, hookLine(1, "product.created", srv.URL+"/one"))
	logPath := filepath.Join(t.TempDir(), "walhook.log")
	p := walhooktest.StartProcess(t, bin, path, logPath)
	defer p.Kill()
	waitReadyz(t, "http://"+addr)

	yaml, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	added := string(yaml) + hookLine(2, "product.created", srv.URL+"/two")
	if err := os.WriteFile(path, []byte(added), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	metrics := walhooktest.Scrape("http://" + addr + "/metrics")
	reloads := func() float64 {
		return walhooktest.Metric(t, metrics, "walhook_config_reloads_total", "result", "success")
	}
	if !walhooktest.Holds(func() bool { return reloads() == 1 }) {
		t.Fatal("walhook_config_reloads_total{result=\"success\"} did not reach 1 after SIGHUP")
	}
	insertProduct(t, db, 1)
	if !recv.Wait(walhooktest.Patience(), func(r *receiver.Receiver) bool { return len(accepted(r, 1)) == 1 && len(accepted(r, 2)) == 1 }) {
		t.Fatal("the webhook added by SIGHUP did not get the change")
	}
	// Several SIGHUPs in a row neither stop walhook nor fail.
	for range 3 {
		_ = p.Signal(syscall.SIGHUP)
	}
	if !walhooktest.Holds(func() bool { return reloads() >= 2 }) {
		t.Error("repeated SIGHUPs were not reloaded")
	}
	if err := p.Terminate(t); err != nil {
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
	bin := walhooktest.Binary(t)
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, shop.Schema)
	recv := receiver.New(map[int64]string{1: "s1"})
	// Every delivery is held until the test lets it answer, so each step
	// happens while a delivery is in flight, however slow the machine.
	var (
		entered = make(chan struct{}, 16)
		release = make(chan struct{}, 16) // one value lets one held delivery answer
		stop    = make(chan struct{})     // closed at the end: held deliveries answer
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-WC-Webhook-Topic") != "" {
			entered <- struct{}{}
			select {
			case <-release:
			case <-stop:
			}
		}
		recv.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(stop) })
	addr := freeAddr(t)
	path := opsConfig(t, db, addr, "log: { level: info }", hookLine(1, "product.created", srv.URL+"/one"))
	logPath := filepath.Join(t.TempDir(), "walhook.log")
	waitEntered := func() {
		t.Helper()
		select {
		case <-entered:
		case <-time.After(walhooktest.Patience()):
			t.Fatalf("no delivery reached the receiver after %s", walhooktest.Patience())
		}
	}
	readyz := func() (int, string) { return httpGet(t, "http://"+addr+"/readyz") }

	p := walhooktest.StartProcess(t, bin, path, logPath)
	waitReadyz(t, "http://"+addr)
	insertProduct(t, db, 1)
	waitEntered()
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	walhooktest.WaitFor(t, "/readyz to answer 503 shutting_down while the in-flight delivery is held", func() bool {
		code, body := readyz()
		return code == http.StatusServiceUnavailable && strings.Contains(body, `"status":"shutting_down"`)
	})
	release <- struct{}{}
	if err := p.Exited(t, "SIGTERM"); err != nil {
		t.Errorf("walhook exited with %v after SIGTERM, want 0", err)
	}
	if n := len(recv.Accepted()); n != 1 {
		t.Fatalf("the in-flight delivery did not complete before exit: %d accepted", n)
	}
	first := recv.Accepted()[0].DeliveryID

	// The next start does not send it again.
	p = walhooktest.StartProcess(t, bin, path, logPath)
	waitReadyz(t, "http://"+addr)
	insertProduct(t, db, 2)
	waitEntered()
	release <- struct{}{}
	if !recv.Wait(walhooktest.Patience(), func(r *receiver.Receiver) bool { return len(r.Accepted()) >= 2 }) {
		t.Fatal("the change after the restart was not delivered")
	}
	settled(t, path)
	if ids := productIDs(t, recv.Accepted()); fmt.Sprint(ids) != "[1 2]" {
		t.Errorf("deliveries of products %v, want [1 2]: the delivery finished at shutdown (%s) was sent again", ids, first)
	}

	// A second signal exits at once, without waiting for the held delivery.
	insertProduct(t, db, 3)
	waitEntered()
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !walhooktest.Holds(func() bool {
		logs, _ := os.ReadFile(logPath)
		return strings.Count(string(logs), `"msg":"shutting down: finishing in-flight deliveries"`) == 2
	}) {
		t.Fatal("walhook did not start shutting down after the first SIGTERM")
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := p.Exited(t, "a second SIGTERM while a delivery was held")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("after a second signal walhook exited with %v, want exit status 1", err)
	}
	logs, _ := os.ReadFile(logPath)
	if !strings.Contains(string(logs), "second signal: exiting at once") {
		t.Error("the second signal was not logged")
	}
}
