package app

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/walhook/walhook/cdc"
)

// serve serves /metrics, /healthz, /readyz, the management API under
// /wp-json/ (and /debug/pprof/ when enabled) on the listener bound by
// listen. The returned channel reports the end of serving: nil after a
// shutdown, or the error that stopped it.
func (w *walhook) serve() <-chan error {
	mux := http.NewServeMux()
	mux.Handle("/wp-json/", w.management.Handler())
	mux.Handle("GET /metrics", promhttp.HandlerFor(w.reg, promhttp.HandlerOpts{Registry: w.reg}))
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) {
		writeStatus(rw, http.StatusOK, "ok", "")
	})
	mux.HandleFunc("GET /readyz", w.readyz)
	if w.cfg.HTTP.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	w.srv.Handler = mux
	if w.opts.Listening != nil {
		w.opts.Listening(w.ln.Addr())
	}
	serveErr := make(chan error, 1)
	go func() {
		var err error
		if w.srv.TLSConfig != nil {
			err = w.srv.ServeTLS(w.ln, "", "") // the key pair is in TLSConfig
		} else {
			err = w.srv.Serve(w.ln)
		}
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		serveErr <- err
	}()
	return serveErr
}

// readyz answers 200 while streaming with every mapped table in the
// publication, and 503 with a reason otherwise: shutting down, tables
// missing from the publication, standby, not streaming yet, or routing
// held up by a failing payload_query.
func (w *walhook) readyz(rw http.ResponseWriter, _ *http.Request) {
	select {
	case <-w.down:
		writeStatus(rw, http.StatusServiceUnavailable, "shutting_down", "walhook is shutting down")
		return
	default:
	}
	if problem := w.watch.Problem(); problem != "" {
		writeStatus(rw, http.StatusServiceUnavailable, "publication_incomplete", problem)
		return
	}
	switch st := w.reader.State(); st {
	case cdc.Streaming:
		if reason, bad := w.router.Degraded(); bad {
			writeStatus(rw, http.StatusServiceUnavailable, "payload_query_failing", reason)
			return
		}
		writeStatus(rw, http.StatusOK, "streaming", "")
	case cdc.Standby:
		writeStatus(rw, http.StatusServiceUnavailable, "standby", "the replication slot is active in another walhook instance")
	default:
		writeStatus(rw, http.StatusServiceUnavailable, st.String(), "not streaming from PostgreSQL yet")
	}
}

// writeStatus answers {"status": status, "reason": reason}, without the
// reason when it is empty.
func writeStatus(rw http.ResponseWriter, code int, status, reason string) {
	body := map[string]string{"status": status}
	if reason != "" {
		body["reason"] = reason
	}
	b, _ := json.Marshal(body)
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(code)
	_, _ = rw.Write(append(b, '\n'))
}
