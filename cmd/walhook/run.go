package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/app"
	"github.com/walhook/walhook/internal/jsonlog"
	"github.com/walhook/walhook/internal/logwriter"
)

// configFlag parses --config (or WALHOOK_CONFIG) from args.
func configFlag(name string, args []string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("walhook "+name, flag.ContinueOnError)
	path := fs.String("config", os.Getenv("WALHOOK_CONFIG"), "the configuration file (default $WALHOOK_CONFIG)")
	return fs, path
}

func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return nil, errors.New("no configuration: pass --config FILE or set WALHOOK_CONFIG")
	}
	return config.Load(path, os.LookupEnv)
}

// newLogger builds the process logger from the configuration.
func newLogger(w io.Writer, c config.Log) *slog.Logger {
	level := new(slog.LevelVar)
	level.Set(c.Level)
	return newLoggerAt(w, c.Format, level)
}

// newLoggerAt builds a logger in format ("json" or "text") whose level is
// level, which a reload sets.
func newLoggerAt(w io.Writer, format string, level *slog.LevelVar) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	// jsonlog writes slog.JSONHandler's lines, the delivery log's faster.
	return slog.New(jsonlog.New(w, opts))
}

func cmdRun(ctx context.Context, stopSignals func(), args []string, stderr io.Writer) error {
	fs, path := configFlag("run", args)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return exitError{2}
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		var ps config.Problems
		if errors.As(err, &ps) {
			fmt.Fprintln(stderr, ps.Error())
			return exitError{1}
		}
		return err
	}
	// The log (a line per delivery attempt at info) goes through a writer
	// that gathers the lines written during one write into the next.
	logOut := logwriter.New(stderr)
	logCtx, stopLog := context.WithCancel(context.Background())
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		logOut.Run(logCtx)
	}()
	defer func() {
		stopLog()
		<-logDone
	}()
	level := new(slog.LevelVar)
	level.Set(cfg.Log.Level)
	log := newLoggerAt(logOut, cfg.Log.Format, level)
	for _, w := range cfg.Warnings() {
		log.Warn(w)
	}
	if err := checkTLSFiles(cfg.HTTP); err != nil {
		return err
	}

	// A second SIGINT/SIGTERM exits at once, without waiting for deliveries.
	// The second channel is registered before the first is stopped, so a
	// signal in between never meets the default action.
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		select {
		case <-ctx.Done():
		case <-finished:
			return
		}
		again := make(chan os.Signal, 1)
		signal.Notify(again, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(again)
		stopSignals()
		select {
		case <-again:
			log.Warn("second signal: exiting at once")
			logOut.Flush()
			os.Exit(1)
		case <-finished:
		}
	}()

	reloads := make(chan struct{}, 1)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				select {
				case reloads <- struct{}{}:
				default: // a reload is already waiting
				}
			}
		}
	}()

	log.Info("walhook starting", "version", version, "slot", cfg.Postgres.Slot, "webhooks", len(cfg.Webhooks))
	err = app.Run(ctx, cfg, app.Options{
		Version:    version,
		Logger:     log,
		LogLevel:   level,
		ConfigFile: *path,
		Reload:     reloads,
		Load:       func() (*config.Config, error) { return loadConfig(*path) },
	})
	switch {
	case errors.Is(err, app.ErrStartCancelled):
		// SIGINT or SIGTERM came while walhook was starting: the start
		// was cut short, as asked, and nothing is wrong.
		log.Info("walhook stopped before it had started", "step", err.Error())
	case err != nil:
		log.Error("walhook stopped", "error", err.Error())
		return exitError{1}
	default:
		log.Info("walhook stopped")
	}
	return nil
}

func cmdCheck(args []string, stdout, stderr io.Writer) error {
	fs, path := configFlag("check", args)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return exitError{2}
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		var ps config.Problems
		if errors.As(err, &ps) {
			for _, p := range ps {
				fmt.Fprintln(stdout, p.Error())
			}
			fmt.Fprintf(stdout, "%d problem(s) found\n", len(ps))
			return exitError{1}
		}
		return err
	}
	if err := checkTLSFiles(cfg.HTTP); err != nil {
		fmt.Fprintf(stdout, "%s: %v\n1 problem(s) found\n", *path, err)
		return exitError{1}
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(stdout, "%s: warning: %s\n", *path, w)
	}
	fmt.Fprintf(stdout, "%s: OK (%d resources, %d webhooks)\n", *path, len(cfg.Resources), len(cfg.Webhooks))
	return nil
}

// maxPEMBytes bounds a TLS certificate or key file.
const maxPEMBytes = 1 << 20

// checkTLSFiles reads the files of http.tls_cert and http.tls_key, which
// must be regular files of at most 1 MiB holding a matching certificate
// and key, so that a wrong file stops the start with a clear error
// instead of leaving walhook without its HTTP endpoints (or reading
// /dev/zero until memory runs out).
func checkTLSFiles(h config.HTTP) error {
	if h.TLSCert == "" {
		return nil
	}
	cert, err := config.ReadRegularFile(h.TLSCert, maxPEMBytes)
	if err != nil {
		return fmt.Errorf("http.tls_cert: %w", err)
	}
	key, err := config.ReadRegularFile(h.TLSKey, maxPEMBytes)
	if err != nil {
		return fmt.Errorf("http.tls_key: %w", err)
	}
	if _, err := tls.X509KeyPair(cert, key); err != nil {
		return fmt.Errorf("http.tls_cert and http.tls_key: %s and %s are no matching PEM certificate and key: %w", h.TLSCert, h.TLSKey, err)
	}
	return nil
}
