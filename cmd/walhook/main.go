// Command walhook turns PostgreSQL row changes into WooCommerce-style
// webhooks. See the README for the commands and the configuration.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `walhook turns PostgreSQL row changes into signed WooCommerce-style webhooks.

Usage:
  walhook run     --config FILE   stream changes and deliver webhooks until SIGINT/SIGTERM
  walhook check   --config FILE   validate the configuration; print every problem
  walhook demo    [--for DURATION] [--profile shop|woocommerce]
                                  run against a private PostgreSQL with a built-in receiver
  walhook webhooks list|enable|pause|disable|discard [ID] --config FILE
                                  inspect or change webhooks in the state schema
  walhook version                 print the version

WALHOOK_CONFIG may stand in for --config.
`

func runMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "run":
		err = cmdRun(ctx, stop, args[1:], stderr)
	case "check":
		err = cmdCheck(args[1:], stdout, stderr)
	case "demo":
		err = cmdDemo(ctx, args[1:], stdout, stderr)
	case "webhooks":
		err = cmdWebhooks(ctx, args[1:], stdout)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, versionString())
		return 0
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "walhook: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		fmt.Fprintln(stderr, "walhook:", err)
		return 1
	}
	return 0
}

// exitError ends the process with code after the command printed its own
// message.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func versionString() string {
	commit := "unknown"
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				commit = s.Value
			}
		}
	}
	return fmt.Sprintf("walhook %s (%s, commit %s)", version, runtime.Version(), commit)
}
