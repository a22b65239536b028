// Package pgcluster runs a private PostgreSQL server from the local server
// binaries: a fresh data directory, a loopback port and logical
// replication turned on. Tests, the demo command and the bench command
// use it; it does not depend on package testing.
package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// installHint tells a user how to get the server binaries.
const installHint = "install PostgreSQL server binaries, e.g. apt-get install -y postgresql, or put initdb on PATH"

// Superuser is the name of the superuser role initdb creates.
const Superuser = "postgres"

const (
	dataSubdir  = "data"
	logFileName = "postgres.log"
	confName    = "walhook.conf"
	// startTimeout bounds pg_ctl's own wait for the server to come up. It
	// only guards against a hang: a loaded machine, or crash recovery
	// after an immediate restart, may take far longer than the usual
	// second.
	startTimeout = 5 * time.Minute
	// logTailBytes is how much of the server log an error quotes.
	logTailBytes = 2048
)

// BinDir finds the directory holding the PostgreSQL server binaries:
// `pg_config --bindir` if that directory has initdb, then the directory of
// initdb on PATH, then the newest /usr/lib/postgresql/*/bin. Its error says
// how to install them.
func BinDir() (string, error) {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if isExecutable(filepath.Join(dir, "initdb")) {
			return dir, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if resolved, err := filepath.EvalSymlinks(p); err == nil {
			p = resolved
		}
		return filepath.Dir(p), nil
	}
	if dir := newestVersionedBinDir("/usr/lib/postgresql"); dir != "" {
		return dir, nil
	}
	return "", errors.New("pgcluster: no PostgreSQL server binaries found (initdb): " + installHint)
}

// newestVersionedBinDir returns root/<newest version>/bin when it holds
// initdb, or "".
func newestVersionedBinDir(root string) string {
	entries, err := os.ReadDir(root)
	if err != nil {
		return ""
	}
	type candidate struct {
		dir     string
		version []int
	}
	var found []candidate
	for _, e := range entries {
		v, ok := parseVersion(e.Name())
		if !ok {
			continue
		}
		dir := filepath.Join(root, e.Name(), "bin")
		if isExecutable(filepath.Join(dir, "initdb")) {
			found = append(found, candidate{dir, v})
		}
	}
	if len(found) == 0 {
		return ""
	}
	sort.Slice(found, func(i, j int) bool { return lessVersion(found[j].version, found[i].version) })
	return found[0].dir
}

// parseVersion parses "15" or "9.6" into its numeric parts.
func parseVersion(s string) ([]int, bool) {
	var v []int
	for _, part := range strings.Split(s, ".") {
		n, err := strconv.Atoi(part)
		if err != nil || n < 0 {
			return nil, false
		}
		v = append(v, n)
	}
	return v, len(v) > 0
}

// lessVersion reports whether version a sorts before b.
func lessVersion(a, b []int) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return len(a) < len(b)
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// Options configures Start.
type Options struct {
	// BinDir holds initdb, pg_ctl and postgres. Empty means BinDir().
	BinDir string
	// Dir is the directory for the data directory, the socket and the
	// server log. Empty means a new temporary directory, removed by Stop.
	// A Dir that already holds a data directory is started as it is.
	// When the process runs as root, Dir is given to the server's user.
	Dir string
	// Port is the TCP port on 127.0.0.1. Zero means a free port.
	Port int
	// Settings are extra postgresql.conf settings; they override the
	// defaults Start writes.
	Settings map[string]string
	// Logger receives lifecycle messages. Nil means no logging.
	Logger *slog.Logger
}

// Cluster is a running PostgreSQL server started by Start.
type Cluster struct {
	binDir  string
	dir     string
	dataDir string
	logPath string
	port    int
	ownDir  bool
	runAs   *runAs // nil: run as the current user
	logger  *slog.Logger

	mu      sync.Mutex
	stopped bool
}

// Start creates (initdb) and starts a PostgreSQL server: superuser
// "postgres", trust authentication for local and 127.0.0.1 connections,
// wal_level=logical, and settings that favour speed over durability. It
// returns once the server accepts connections. When the process runs as
// root, the server runs as the "postgres" user (or "nobody"), because
// PostgreSQL refuses to run as root.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	c := &Cluster{binDir: opts.BinDir, logger: opts.Logger}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	if c.binDir == "" {
		if c.binDir, err = BinDir(); err != nil {
			return nil, err
		}
	}
	if !isExecutable(filepath.Join(c.binDir, "initdb")) || !isExecutable(filepath.Join(c.binDir, "pg_ctl")) {
		return nil, fmt.Errorf("pgcluster: %s has no initdb or pg_ctl: %s", c.binDir, installHint)
	}
	if c.runAs, err = unprivilegedUser(); err != nil {
		return nil, err
	}

	c.dir = opts.Dir
	if c.dir == "" {
		if c.dir, err = os.MkdirTemp("", "walhook-pg-"); err != nil {
			return nil, fmt.Errorf("pgcluster: create temp dir: %w", err)
		}
		c.ownDir = true
	} else if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return nil, fmt.Errorf("pgcluster: create %s: %w", c.dir, err)
	}
	if c.dir, err = filepath.Abs(c.dir); err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	defer func() {
		if err == nil {
			return
		}
		// A server that came up after all (say ctx ended while pg_ctl
		// waited) must not outlive the failed Start.
		if _, statErr := os.Stat(filepath.Join(c.dataDir, "postmaster.pid")); c.dataDir != "" && statErr == nil {
			sctx, cancel := context.WithTimeout(context.Background(), startTimeout)
			_, _ = c.run(sctx, c.bin("pg_ctl"), "stop", "-D", c.dataDir, "-m", "immediate", "-w")
			cancel()
		}
		if c.ownDir {
			_ = os.RemoveAll(c.dir)
		}
	}()
	c.dataDir = filepath.Join(c.dir, dataSubdir)
	c.logPath = filepath.Join(c.dir, logFileName)

	if err := c.chown(c.dir); err != nil {
		return nil, err
	}
	if _, statErr := os.Stat(filepath.Join(c.dataDir, "PG_VERSION")); statErr != nil {
		if err := c.initdb(ctx); err != nil {
			return nil, err
		}
	}

	// A free port found by listening can be taken by someone else before
	// the server binds it; pick another and try again.
	attempts := 1
	if opts.Port == 0 {
		attempts = 3
	}
	for i := 0; ; i++ {
		c.port = opts.Port
		if c.port == 0 {
			if c.port, err = freePort(); err != nil {
				return nil, err
			}
		}
		if err = c.writeConf(opts.Settings); err != nil {
			return nil, err
		}
		err = c.start(ctx)
		if err == nil || i+1 >= attempts || !strings.Contains(c.logTail(), "could not bind") {
			break
		}
		c.logger.Warn("postgresql port taken, retrying", "port", c.port)
	}
	if err != nil {
		return nil, err
	}
	c.logger.Info("postgresql started", "port", c.port, "dir", c.dir, "bin_dir", c.binDir)
	return c, nil
}

// Port returns the server's TCP port on 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// BinDir returns the directory of the server binaries in use.
func (c *Cluster) BinDir() string { return c.binDir }

// Dir returns the cluster's directory (data directory, socket, log).
func (c *Cluster) Dir() string { return c.dir }

// LogPath returns the path of the server log file.
func (c *Cluster) LogPath() string { return c.logPath }

// URL returns a connection URL for database as the superuser over TCP.
func (c *Cluster) URL(database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(Superuser),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// CreateDatabase creates database name and returns its URL.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) (string, error) {
	conn, err := pgconn.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return "", fmt.Errorf("pgcluster: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()).ReadAll(); err != nil {
		return "", fmt.Errorf("pgcluster: create database %q: %w", name, err)
	}
	return c.URL(name), nil
}

// Restart restarts the server with pg_ctl restart -m mode ("immediate",
// "fast" or "smart") and waits until it accepts connections again. An
// immediate restart is a crash as far as the server is concerned: it runs
// recovery on the way up.
func (c *Cluster) Restart(ctx context.Context, mode string) error {
	switch mode {
	case "immediate", "fast", "smart":
	default:
		return fmt.Errorf("pgcluster: restart mode %q must be immediate, fast or smart", mode)
	}
	if out, err := c.run(ctx, c.bin("pg_ctl"), "restart", "-D", c.dataDir, "-m", mode, "-w",
		"-t", strconv.Itoa(int(startTimeout/time.Second)), "-l", c.logPath); err != nil {
		return fmt.Errorf("pgcluster: restart (-m %s): %w\n%s%s", mode, err, out, c.logTailSection())
	}
	if err := c.waitReady(ctx); err != nil {
		return err
	}
	c.logger.Info("postgresql restarted", "port", c.port, "mode", mode)
	return nil
}

// Stop stops the server (pg_ctl stop -m fast) and removes the directory if
// Start created it. Calling Stop again does nothing.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil
	}
	c.stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	var errs []error
	if out, err := c.run(ctx, c.bin("pg_ctl"), "stop", "-D", c.dataDir, "-m", "fast", "-w"); err != nil {
		errs = append(errs, fmt.Errorf("pgcluster: stop: %w\n%s", err, out))
	}
	if c.ownDir {
		if err := os.RemoveAll(c.dir); err != nil {
			errs = append(errs, fmt.Errorf("pgcluster: remove %s: %w", c.dir, err))
		}
	}
	c.logger.Info("postgresql stopped", "port", c.port)
	return errors.Join(errs...)
}

func (c *Cluster) bin(name string) string { return filepath.Join(c.binDir, name) }

// initdb creates the data directory.
func (c *Cluster) initdb(ctx context.Context) error {
	if err := os.MkdirAll(c.dataDir, 0o700); err != nil {
		return fmt.Errorf("pgcluster: create data dir: %w", err)
	}
	if err := c.chown(c.dataDir); err != nil {
		return err
	}
	out, err := c.run(ctx, c.bin("initdb"),
		"-D", c.dataDir,
		"-U", Superuser,
		"--auth-local=trust", "--auth-host=trust",
		"--encoding=UTF8", "--locale=C",
		"--no-sync")
	if err != nil {
		return fmt.Errorf("pgcluster: initdb: %w\n%s", err, out)
	}
	f, err := os.OpenFile(filepath.Join(c.dataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	_, err = fmt.Fprintf(f, "\n# Settings written by pgcluster on every start.\ninclude_if_exists = '%s'\n", confName)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pgcluster: write postgresql.conf: %w", err)
	}
	return nil
}

// writeConf writes the settings file included by postgresql.conf.
func (c *Cluster) writeConf(extra map[string]string) error {
	settings := map[string]string{
		"port":                    strconv.Itoa(c.port),
		"listen_addresses":        "127.0.0.1",
		"unix_socket_directories": c.dir,
		"wal_level":               "logical",
		"max_replication_slots":   "20",
		"max_wal_senders":         "20",
		"fsync":                   "off",
		"synchronous_commit":      "on",
		"full_page_writes":        "off",
	}
	for k, v := range extra {
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = '%s'\n", k, strings.ReplaceAll(settings[k], "'", "''"))
	}
	path := filepath.Join(c.dataDir, confName)
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		return fmt.Errorf("pgcluster: write %s: %w", confName, err)
	}
	return c.chown(path)
}

// start runs pg_ctl start and waits for the server.
func (c *Cluster) start(ctx context.Context) error {
	// Drop the log of an earlier failed attempt so the tail is this one's.
	_ = os.Remove(c.logPath)
	out, err := c.run(ctx, c.bin("pg_ctl"), "start", "-D", c.dataDir, "-l", c.logPath, "-w",
		"-t", strconv.Itoa(int(startTimeout/time.Second)))
	if err != nil {
		return fmt.Errorf("pgcluster: start: %w\n%s%s", err, out, c.logTailSection())
	}
	return c.waitReady(ctx)
}

// waitReady waits until the server accepts a connection over TCP.
func (c *Cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		conn, err := pgconn.Connect(ctx, c.URL("postgres"))
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pgcluster: server on port %d does not accept connections: %w%s", c.port, err, c.logTailSection())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// run runs a server binary, as the unprivileged user when needed, and
// returns its combined output.
func (c *Cluster) run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = c.dir // the server user must be able to read its working directory
	cmd.Env = childEnv()
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.WaitDelay = 5 * time.Second
	c.runAs.apply(cmd)
	err := cmd.Run()
	return out.String(), err
}

// childEnv is the environment without PG* variables (which could point
// the tools elsewhere) and with the C locale.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C", "LANG=C")
}

// logTail returns the end of the server log.
func (c *Cluster) logTail() string {
	f, err := os.Open(c.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > logTailBytes {
		if _, err := f.Seek(-logTailBytes, io.SeekEnd); err != nil {
			return ""
		}
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

func (c *Cluster) logTailSection() string {
	tail := strings.TrimSpace(c.logTail())
	if tail == "" {
		return ""
	}
	return "\nserver log (" + c.logPath + "):\n" + tail
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgcluster: find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("pgcluster: find a free port: %w", err)
	}
	return port, nil
}
