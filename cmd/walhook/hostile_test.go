package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/walhook/walhook/internal/pgtest"
	"github.com/walhook/walhook/internal/receiver"
	"github.com/walhook/walhook/internal/shop"
	"github.com/walhook/walhook/internal/walhooktest"
	"github.com/walhook/walhook/state"
)

// runBinary runs the walhook binary with args and returns its exit code
// and combined output. It fails the test if walhook does not exit within
// a minute (a blocked read, say).
func runBinary(t *testing.T, args ...string) (int, string) {
	t.Helper()
	bin := walhooktest.Binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("walhook %s did not exit within a minute:\n%s", strings.Join(args, " "), out.String())
	}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.ExitCode(), out.String()
	case err != nil:
		t.Fatal(err)
	}
	return 0, out.String()
}

// writeFile writes content to a new file named name and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// stackTrace matches the header of a goroutine in a Go stack trace.
var stackTrace = regexp.MustCompile(`goroutine \d+ \[`)

// hostileBase is a configuration that `check` accepts, before webhooks.
const hostileBase = `postgres:
  url: postgres://walhook@db.example.com/shop
source: https://shop.example.com/
default_secret: s3cret
`

// TestCheckRefusesHostileConfigs pins what `walhook check` used to accept
// or die on, each now one clear problem and exit 1: --config /dev/zero
// (read until out of memory), a FIFO (blocked for ever), a huge file,
// ${A:-${A:-…}} nested 150000 deep (stack overflow, exit 2), a secret
// fragment echoed, ports 0 and 65536, state_schema pg_catalog (and a hint
// to GRANT CREATE on it), a webhook id of 2^63-1 (which broke every later
// API create), and literal delivery addresses in refused ranges. pprof on
// every interface is accepted with a warning.
func TestCheckRefusesHostileConfigs(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "walhook.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	hook := func(id, url string) string {
		return fmt.Sprintf("  - { id: %s, topic: order.created, delivery_url: %q }\n", id, url)
	}
	tests := []struct {
		name   string
		path   string // the file to check; else yaml is written to one
		yaml   string
		code   int
		want   []string
		absent []string
	}{
		{name: "/dev/zero", path: "/dev/zero", code: 1, want: []string{"/dev/zero: is not a regular file (a character device)"}},
		{name: "FIFO", path: fifo, code: 1, want: []string{"walhook.fifo: is not a regular file (a named pipe)"}},
		{name: "directory", path: dir, code: 1, want: []string{"is not a regular file (a directory)"}},
		{name: "2 MiB", yaml: hostileBase + "# " + strings.Repeat("x", 2<<20) + "\n", code: 1, want: []string{"is larger than 1048576 bytes (1 MiB)"}},
		{
			name: "nested expansion",
			yaml: hostileBase + "webhooks:\n  - { id: 1, topic: order.created, delivery_url: https://hooks.example.com/, name: '" +
				strings.Repeat("${A:-", 150_000) + "x" + strings.Repeat("}", 150_000) + "' }\n",
			code: 1, want: []string{"webhooks[0].name: nests ${VAR:-default} more than 16 deep", "1 problem(s) found"},
		},
		{
			name:   "secret fragment",
			yaml:   strings.Replace(hostileBase, "s3cret", "'Zq9${PART_OF_SECRET_abc'", 1),
			code:   1,
			want:   []string{"default_secret: holds a malformed ${ reference (not shown"},
			absent: []string{"PART_OF_SECRET", "Zq9"},
		},
		{
			name: "ports",
			yaml: hostileBase + "webhooks:\n" + hook("1", "https://hooks.example.com:0/") + hook("2", "https://hooks.example.com:65536/"),
			code: 1, want: []string{"webhooks[0].delivery_url: must have a port from 1 to 65535", "webhooks[1].delivery_url: must have a port from 1 to 65535"},
		},
		{
			name:   "state_schema pg_catalog",
			yaml:   strings.Replace(hostileBase, "shop\n", "shop\n  state_schema: pg_catalog\n", 1),
			code:   1,
			want:   []string{`postgres.state_schema: "pg_catalog" is a schema PostgreSQL keeps for itself`},
			absent: []string{"GRANT"},
		},
		{
			name: "webhook id 2^63-1",
			yaml: hostileBase + "webhooks:\n" + hook("9223372036854775807", "https://hooks.example.com/"),
			code: 1, want: []string{"webhooks[0].id: must be between 1 and 2147483647, not 9223372036854775807"},
		},
		{
			name: "refused addresses",
			yaml: hostileBase + "webhooks:\n" + hook("1", "http://198.18.0.1/") + hook("2", "http://[64:ff9b::7f00:1]/") +
				hook("3", "http://[2002:7f00:1::1]/") + hook("4", "http://0.0.0.0:8080/") + hook("5", "http://240.0.0.1/"),
			code: 1,
			want: []string{
				"webhooks[0].delivery_url: host 198.18.0.1 is a benchmarking address (198.18.0.0/15), which deliveries refuse",
				"webhooks[1].delivery_url: host 64:ff9b::7f00:1 is a NAT64 form of a loopback address (127.0.0.0/8)",
				"webhooks[2].delivery_url: host 2002:7f00:1::1 is a 6to4 address (2002::/16)",
				"webhooks[3].delivery_url: host 0.0.0.0 is an unspecified address",
				"webhooks[4].delivery_url: host 240.0.0.1 is a reserved address (240.0.0.0/4)",
				"5 problem(s) found",
			},
		},
		{
			name: "pprof on every interface",
			yaml: hostileBase + "http: { listen: '0.0.0.0:9187', pprof: true }\n",
			code: 0, want: []string{"warning: http.pprof serves /debug/pprof/ on 0.0.0.0:9187, which is not a loopback address", "OK"},
		},
		{
			name: "TLS certificate /dev/zero",
			yaml: hostileBase + "http: { tls_cert: /dev/zero, tls_key: /dev/zero }\n",
			code: 1, want: []string{"http.tls_cert: config: /dev/zero: is not a regular file (a character device)"},
		},
		{
			name: "TLS key a FIFO",
			yaml: hostileBase + "http: { tls_cert: " + writeFile(t, "cert.pem", "not PEM") + ", tls_key: " + fifo + " }\n",
			code: 1, want: []string{"http.tls_key: config: " + fifo + ": is not a regular file (a named pipe)"},
		},
		{
			name: "TLS files no PEM",
			yaml: hostileBase + "http: { tls_cert: " + writeFile(t, "cert.pem", "not PEM") + ", tls_key: " + writeFile(t, "key.pem", "nor this") + " }\n",
			code: 1, want: []string{"are no matching PEM certificate and key"},
			absent: []string{"nor this"},
		},
		{
			name: "pprof on loopback",
			yaml: hostileBase + "http: { listen: '127.0.0.1:9187', pprof: true }\n",
			code: 0, want: []string{"OK"}, absent: []string{"warning"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path
			if path == "" {
				path = writeFile(t, "walhook.yaml", tc.yaml)
			}
			code, out := runBinary(t, "check", "--config", path)
			if code != tc.code {
				t.Errorf("exit %d, want %d:\n%.2000s", code, tc.code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%.2000s", w, out)
				}
			}
			for _, a := range append(tc.absent, "panic", "stack overflow") {
				if strings.Contains(out, a) {
					t.Errorf("output has %q:\n%.2000s", a, out)
				}
			}
			if stackTrace.MatchString(out) {
				t.Errorf("a stack trace in the output:\n%.2000s", out)
			}
			if len(out) > 4000 {
				t.Errorf("%d bytes of output for one problem", len(out))
			}
		})
	}
}

// TestRunWarnsOfPprofOnEveryInterface pins a silent start: listen:
// 0.0.0.0 with pprof: true started without a warning. The warning is
// logged before anything else happens, so a database that cannot be
// reached does not hide it.
func TestRunWarnsOfPprofOnEveryInterface(t *testing.T) {
	path := writeFile(t, "walhook.yaml", fmt.Sprintf(`postgres:
  url: postgres://walhook:pw@127.0.0.1:%s/x
source: https://shop.example.com/
http: { listen: '0.0.0.0:0', pprof: true }
`, freeAddr(t)[len("127.0.0.1:"):]))
	code, out := runBinary(t, "run", "--config", path)
	if code == 0 {
		t.Fatalf("run without a database exited 0:\n%s", out)
	}
	if !regexp.MustCompile(`"level":"WARN","msg":"http.pprof serves /debug/pprof/ on 0.0.0.0:0, which is not a loopback address`).MatchString(out) {
		t.Errorf("no pprof warning:\n%s", out)
	}
}

// TestSigtermDuringStartExitsCleanly pins a stop reported as a failure:
// SIGTERM while walhook was still connecting to PostgreSQL made it log an
// error and exit 1. A stop asked for during the start is a clean exit.
func TestSigtermDuringStartExitsCleanly(t *testing.T) {
	// A "database" that accepts connections and never answers: the start
	// waits on it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	path := writeFile(t, "walhook.yaml", fmt.Sprintf(`postgres:
  url: postgres://walhook:pw@%s/x?connect_timeout=600
source: https://shop.example.com/
http: { listen: '127.0.0.1:0' }
`, ln.Addr()))
	logPath := filepath.Join(t.TempDir(), "walhook.log")
	p := walhooktest.StartProcess(t, walhooktest.Binary(t), path, logPath)
	select {
	case c := <-accepted:
		defer c.Close()
	case <-p.Done():
		t.Fatalf("walhook exited before connecting: %v", p.Err())
	case <-time.After(walhooktest.Patience()):
		t.Fatal("walhook did not connect to the database")
	}
	err = p.Terminate(t)
	out, _ := os.ReadFile(logPath)
	if err != nil {
		t.Fatalf("SIGTERM while starting: %v, want exit 0:\n%s", err, out)
	}
	if !strings.Contains(string(out), `"msg":"walhook stopped before it had started"`) || strings.Contains(string(out), `"level":"ERROR"`) {
		t.Errorf("SIGTERM while starting: want an info line saying walhook stopped before it had started, and no error:\n%s", out)
	}
}

// TestReloadKeepsRunningOnHostileConfig pins a crash: a SIGHUP after the
// file was changed to nest ${A:-${A:-…}} deeply killed the running
// instance with a stack overflow. Every configuration that cannot be
// loaded — that one, /dev/zero, a FIFO, a file over 1 MiB — is refused
// and counted, and walhook keeps delivering with the configuration it had.
func TestReloadKeepsRunningOnHostileConfig(t *testing.T) {
	bin := walhooktest.Binary(t)
	db := pgtest.NewDatabase(t)
	pgtest.Exec(t, db, shop.Schema)
	recv := receiver.New(map[int64]string{1: "s1", 2: "s2"})
	srv := httptest.NewServer(recv)
	t.Cleanup(srv.Close)
	addr := freeAddr(t)
	path := opsConfig(t, db, addr, "", hookLine(1, "product.created", srv.URL+"/one"))
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "walhook.log")
	p := walhooktest.StartProcess(t, bin, path, logPath)
	defer p.Kill()
	waitReadyz(t, "http://"+addr)

	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	nested := string(good) + "  - { id: 2, topic: product.created, delivery_url: 'http://127.0.0.1:9/', secret: '" +
		strings.Repeat("${A:-", 150_000) + "x" + strings.Repeat("}", 150_000) + "' }\n"
	hostile := []struct {
		name    string
		install func() // replaces the file at path
	}{
		{"nested expansion", func() { writeOver(t, path, nested) }},
		{"/dev/zero", func() { symlinkOver(t, "/dev/zero", path) }},
		{"FIFO", func() { symlinkOver(t, fifo, path) }},
		{"2 MiB", func() { writeOver(t, path, string(good)+"# "+strings.Repeat("x", 2<<20)+"\n") }},
	}
	for i, h := range hostile {
		h.install()
		if err := p.Signal(syscall.SIGHUP); err != nil {
			t.Fatalf("%s: SIGHUP: %v (walhook gone?)", h.name, err)
		}
		want := fmt.Sprintf(`walhook_config_reloads_total{result="failure"} %d`, i+1)
		if !walhooktest.Holds(func() bool {
			_, body := httpGet(t, "http://"+addr+"/metrics")
			return strings.Contains(body, want)
		}) {
			logs, _ := os.ReadFile(logPath)
			t.Fatalf("%s: %s not reached after SIGHUP\n%s", h.name, want, logs)
		}
		select {
		case <-p.Done():
			t.Fatalf("%s: walhook exited after the reload: %v", h.name, p.Err())
		default:
		}
		// Still running the old configuration: webhook 1 delivers.
		insertProduct(t, db, 100+i)
		if !recv.Wait(30*time.Second, func(r *receiver.Receiver) bool { return len(accepted(r, 1)) == i+1 }) {
			t.Fatalf("%s: the running configuration no longer delivers", h.name)
		}
	}

	// A good file again: the reload succeeds and the new webhook delivers.
	writeOver(t, path, string(good)+hookLine(2, "product.created", srv.URL+"/two"))
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !walhooktest.Holds(func() bool {
		_, body := httpGet(t, "http://"+addr+"/metrics")
		return strings.Contains(body, `walhook_config_reloads_total{result="success"} 1`)
	}) {
		t.Fatal("the good configuration was not reloaded")
	}
	insertProduct(t, db, 200)
	if !recv.Wait(30*time.Second, func(r *receiver.Receiver) bool { return len(accepted(r, 2)) == 1 }) {
		t.Fatal("the webhook of the good reload got nothing")
	}
	if err := p.Terminate(t); err != nil {
		t.Errorf("walhook exited with %v after SIGTERM, want 0", err)
	}
	logs, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"nests ${VAR:-default} more than 16 deep", "is not a regular file (a character device)",
		"is not a regular file (a named pipe)", "is larger than 1048576 bytes"} {
		if !strings.Contains(string(logs), s) {
			t.Errorf("log lacks the refusal %q", s)
		}
	}
	if stackTrace.Match(logs) {
		t.Errorf("a stack trace in the log:\n%.4000s", logs)
	}
}

// writeOver replaces the file (or symlink) at path with a regular file.
func writeOver(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// symlinkOver replaces the file at path with a symbolic link to target.
func symlinkOver(t *testing.T, target, path string) {
	t.Helper()
	tmp := path + ".new"
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestStartRefusesUnusableExcludeColumns pins a silent leak: an
// exclude_columns entry naming no column (a typo of password_hash) was
// accepted, and the real column went out in every payload; one naming
// the key column emptied deleted payloads. Both stop the start with an
// error naming the column and the table.
func TestStartRefusesUnusableExcludeColumns(t *testing.T) {
	tests := []struct {
		name, exclude string
		want          []string
	}{
		{"typo", "passwrd_hash", []string{`resource \"customer\": exclude_columns names column \"passwrd_hash\", which table public.customers does not have`, "password_hash"}},
		{"key column", "id", []string{`resource \"customer\": exclude_columns names \"id\", a key column of table public.customers`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := pgtest.NewDatabase(t)
			pgtest.Exec(t, db, shop.Schema)
			resources := fmt.Sprintf("resources:\n  customer: { table: public.customers, exclude_columns: [email, %s] }\n", tc.exclude)
			path := opsConfig(t, db, "127.0.0.1:0", resources, "  - { id: 1, topic: customer.created, delivery_url: 'http://127.0.0.1:9/', secret: s }\n")
			code, out := runBinary(t, "run", "--config", path)
			if code != 1 {
				t.Fatalf("exit %d, want 1:\n%s", code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, `\"email\"`) {
				t.Errorf("the good exclusion is reported:\n%s", out)
			}
		})
	}
}

// TestWebhooksListEscapesNames pins terminal injection: `walhook webhooks
// list` printed names set through the API raw, so escape sequences
// reached the terminal and CR/LF forged rows. Names are escaped and every
// text column has a width.
func TestWebhooksListEscapesNames(t *testing.T) {
	db := pgtest.NewDatabase(t)
	path := opsConfig(t, db, "127.0.0.1:0", "", "  - { id: 1, topic: product.created, delivery_url: 'http://127.0.0.1:9/', secret: s }\n")
	store, err := state.Open(t.Context(), db, "walhook")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	names := []string{
		"\x1b[2J\x1b[31mred\x1b]0;title\x07",
		"ok\r\n99  forged row  product.created  active",
		"tab\there\u202eevil\u200b",
		strings.Repeat("long", 100),
		"back\\slash",
	}
	for _, n := range names {
		if _, err := store.CreateWebhook(t.Context(), state.Webhook{Name: n, Topic: "action.x\x1b[1m", DeliveryURL: "https://hooks.example.com/", Secret: "s", Signature: "woocommerce", Status: "active"}); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errs := cli(t, "webhooks", "list", "--config", path)
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, out, errs)
	}
	if strings.ContainsAny(out, "\x1b\r\t\x07\u202e\u200b") {
		t.Errorf("raw control characters in the list:\n%q", out)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 1+len(names) {
		t.Errorf("%d lines for %d webhooks and a header:\n%s", len(lines), len(names), out)
	}
	for _, want := range []string{`\x1b[2J\x1b[31mred\x1b]0;title\a`, `ok\r\n99`, `tab\there\u202eevil\u200b`, `back\\slash`, `action.x\x1b[1m`} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
	for _, l := range lines {
		if n := utf8.RuneCountInString(l); n > 250 {
			t.Errorf("a %d-character line: the columns have no width:\n%s", n, l)
		}
	}
	if !strings.Contains(out, strings.Repeat("long", 9)+"lon…") {
		t.Errorf("the long name is not cut at 40 characters:\n%s", out)
	}
}

func TestCell(t *testing.T) {
	tests := []struct {
		in    string
		width int
		want  string
	}{
		{"plain", 10, "plain"},
		{"exactly10!", 10, "exactly10!"},
		{"eleven char", 10, "eleven ch…"},
		{"\x1b[31m", 10, `\x1b[31m`},
		{"a\x1b[31mbcdef", 8, `a\x1b[3…`},
		{"\xff\xfe", 10, `\xff\xfe`},
		{"é ü", 10, "é ü"},
		{"\u00a0nbsp", 10, `\u00a0nbsp`},
		{"", 10, ""},
	}
	for _, tc := range tests {
		if got := cell(tc.in, tc.width); got != tc.want {
			t.Errorf("cell(%q, %d) = %q, want %q", tc.in, tc.width, got, tc.want)
		}
		if n := utf8.RuneCountInString(cell(tc.in, tc.width)); n > tc.width {
			t.Errorf("cell(%q, %d) has %d characters", tc.in, tc.width, n)
		}
	}
}
