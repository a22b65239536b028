package walhooktest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// build builds the walhook binary once per test binary: every test of a
// package shares it. Under `go test -race` the binary is built with -race
// too: the build then reuses the packages the test build compiled (a
// plain build would compile every dependency a second time, minutes on a
// cold cache), and the race detector watches the real binary as well.
var build = sync.OnceValues(func() (string, error) { return buildWalhook(raceBuild) })

func buildWalhook(race bool) (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	dir, err := os.MkdirTemp("", "walhook-bin-")
	if err != nil {
		return "", fmt.Errorf("walhooktest: build walhook: %w", err)
	}
	bin := filepath.Join(dir, "walhook")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.Command(goTool, append(args, "github.com/walhook/walhook/cmd/walhook")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("walhooktest: go build walhook: %v\n%s", err, out)
	}
	return bin, nil
}

// Binary returns the path of the walhook binary built from this module,
// building it at the first call of the test binary.
func Binary(t testing.TB) string {
	t.Helper()
	bin, err := build()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// Process is walhook running as a separate process.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited; err is then set
	err  error
}

// StartProcess runs `bin run --config cfgPath`, appending its output to
// logPath. The process is killed at the end of the test if it still runs.
func StartProcess(t testing.TB, bin, cfgPath, logPath string) *Process {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start walhook: %v", err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = raceReport(cmd.Wait(), logPath)
		logf.Close()
		close(p.done)
	}()
	t.Cleanup(p.Kill)
	return p
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Done is closed when the process has exited; Err then returns how.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err returns the exit error once Done is closed (nil for exit 0).
func (p *Process) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Kill sends SIGKILL and waits for the process to be gone. Killing an
// exited process does nothing.
func (p *Process) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Exited waits for the process to exit and returns its exit error (nil
// for exit 0). It fails the test, killing the process, when it has not
// exited after Patience.
func (p *Process) Exited(t testing.TB, after string) error {
	t.Helper()
	patience := Patience()
	select {
	case <-p.done:
		return p.err
	case <-time.After(patience):
		p.Kill()
		t.Fatalf("walhook did not exit %s after %s", patience, after)
		return nil
	}
}

// Terminate sends SIGTERM and waits for the exit like Exited.
func (p *Process) Terminate(t testing.TB) error {
	t.Helper()
	_ = p.Signal(syscall.SIGTERM)
	return p.Exited(t, "SIGTERM")
}

// raceExitCode is how a binary built with -race exits after reporting a
// data race.
const raceExitCode = 66

// raceReport names the race detector in an exit error that comes from it.
func raceReport(err error, logPath string) error {
	var ee *exec.ExitError
	if raceBuild && errors.As(err, &ee) && ee.ExitCode() == raceExitCode {
		return fmt.Errorf("%w: the race detector found a data race in walhook (WARNING: DATA RACE in %s)", err, logPath)
	}
	return err
}
