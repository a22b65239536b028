package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat;
// it is 100 on every Linux architecture Go supports.
const clockTicks = 100

// buildWalhook builds ./cmd/walhook of the module the bench runs in.
func buildWalhook(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("bench: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("bench: not inside the walhook module; run from its tree or give --walhook PATH")
	}
	bin := filepath.Join(dir, "walhook")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/walhook")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("bench: go build ./cmd/walhook: %w\n%s", err, out)
	}
	return bin, nil
}

// walhookConfig is what the bench writes into walhook's configuration.
type walhookConfig struct {
	dbURL, slot, publication, listen, receiver string
	concurrency                                int
	logLevel                                   string
	// orderPayloadQuery, when set, is the order resource's payload_query.
	orderPayloadQuery string
	// perResource configures one <resource>.* webhook per resource
	// instead of one webhook per core topic.
	perResource bool
}

func (c walhookConfig) yaml() string {
	var b strings.Builder
	fmt.Fprintf(&b, `postgres:
  url: %q
  slot: %s
  publication: %s
  status_interval: 2s
source: https://shop.example.com/
resources:
  coupon:   { table: public.coupons }
  customer: { table: public.customers }
  order:    { table: public.orders%s }
  product:  { table: public.products }
delivery:
  allow_private_networks: true
  concurrency: %d
  shutdown_grace: 5s
http:
  listen: %s
  pprof: true
log:
  format: json
  level: %s
webhooks:
`, c.dbURL, c.slot, c.publication, c.orderOptions(), c.concurrency, c.listen, c.logLevel)
	if c.perResource {
		for r := range resources {
			wh := resourceHookID(r)
			fmt.Fprintf(&b, "  - { id: %d, topic: %s.*, delivery_url: %q, secret: %q }\n",
				wh, resources[r], c.receiver+"/hook/"+strconv.Itoa(wh), secretOf(wh))
		}
		return b.String()
	}
	for r := range resources {
		for e := range events {
			wh := webhookID(r, e)
			fmt.Fprintf(&b, "  - { id: %d, topic: %s, delivery_url: %q, secret: %q }\n",
				wh, topicOf(wh), c.receiver+"/hook/"+strconv.Itoa(wh), secretOf(wh))
		}
	}
	return b.String()
}

// orderOptions returns what the order resource adds to its table.
func (c walhookConfig) orderOptions() string {
	if c.orderPayloadQuery == "" {
		return ""
	}
	return ", payload_query: " + strconv.Quote(c.orderPayloadQuery)
}

// freeAddr returns a free loopback address for walhook's HTTP server.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("bench: find a free port: %w", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		return "", fmt.Errorf("bench: find a free port: %w", err)
	}
	return addr, nil
}

// proc is a running walhook process with its resource sampler.
type proc struct {
	cmd     *exec.Cmd
	addr    string
	started time.Duration // since the bench's epoch
	logPath string
	done    chan struct{} // closed when the process has exited
	waitErr error

	mu      sync.Mutex
	peakRSS int64 // bytes, the highest VmRSS sampled
	hwm     int64 // bytes, the last VmHWM read
	cpu     time.Duration
	stopS   context.CancelFunc
	samplWG sync.WaitGroup
}

// startWalhook runs bin with the configuration at cfgPath, logging to
// logPath, and samples its memory every 50 ms.
func startWalhook(ctx context.Context, bin, cfgPath, logPath, addr string, epoch time.Time) (*proc, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("bench: walhook log: %w", err)
	}
	cmd := exec.Command(bin, "run", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &proc{cmd: cmd, addr: addr, logPath: logPath, done: make(chan struct{})}
	p.started = time.Since(epoch)
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("bench: start walhook: %w", err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	sctx, cancel := context.WithCancel(ctx)
	p.stopS = cancel
	p.samplWG.Add(1)
	go p.sample(sctx)
	return p, nil
}

func (p *proc) sample(ctx context.Context) {
	defer p.samplWG.Done()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		p.readStatus()
		select {
		case <-ctx.Done():
			return
		case <-p.done:
			return
		case <-t.C:
		}
	}
}

// readStatus samples VmRSS and VmHWM.
func (p *proc) readStatus() {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/status")
	if err != nil {
		return
	}
	rss, hwm := statusKB(b, "VmRSS:"), statusKB(b, "VmHWM:")
	p.mu.Lock()
	p.peakRSS = max(p.peakRSS, rss<<10)
	if hwm > 0 {
		p.hwm = hwm << 10
	}
	p.mu.Unlock()
}

func statusKB(b []byte, field string) int64 {
	i := bytes.Index(b, []byte(field))
	if i < 0 {
		return 0
	}
	line := b[i+len(field):]
	if j := bytes.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(string(line)), " kB"), 10, 64)
	return n
}

// cpuTime returns the process's utime+stime so far.
func (p *proc) cpuTime() time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/stat")
	if err != nil {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.cpu
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64) // field 14
	st, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	d := time.Duration(ut+st) * time.Second / clockTicks
	p.mu.Lock()
	p.cpu = d
	p.mu.Unlock()
	return d
}

// peak returns the highest resident set size seen.
func (p *proc) peak() int64 {
	p.readStatus()
	p.mu.Lock()
	defer p.mu.Unlock()
	return max(p.peakRSS, p.hwm)
}

// waitReady polls /readyz until it answers 200.
func (p *proc) waitReady(ctx context.Context) error {
	client := &http.Client{Timeout: time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.addr+"/readyz", nil)
		if err != nil {
			return fmt.Errorf("bench: readyz: %w", err)
		}
		if resp, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench: walhook not ready: %w%s", ctx.Err(), p.logTail())
		case <-p.done:
			return fmt.Errorf("bench: walhook exited before it was ready (%v)%s", p.waitErr, p.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM, waits for a clean exit and kills the process when it
// takes longer than 30 s.
func (p *proc) stop() error {
	defer func() {
		p.stopS()
		p.samplWG.Wait()
	}()
	select {
	case <-p.done:
		return fmt.Errorf("bench: walhook exited early (%v)%s", p.waitErr, p.logTail())
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.waitErr != nil {
			return fmt.Errorf("bench: walhook exit: %w%s", p.waitErr, p.logTail())
		}
		return nil
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return errors.New("bench: walhook did not stop within 30s of SIGTERM; killed")
	}
}

// logTail quotes the end of walhook's log for an error message.
func (p *proc) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 2048 {
		b = b[len(b)-2048:]
	}
	return "\nwalhook log (end):\n" + string(b)
}
