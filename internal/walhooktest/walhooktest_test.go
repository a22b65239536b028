package walhooktest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// fatalRecorder is a testing.TB whose Fatalf records the message and ends
// the goroutine, as the real one does.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// fatal runs f with a recorder in its own goroutine and returns the Fatalf
// message, "" if f returned normally.
func fatal(t *testing.T, f func(tb testing.TB)) string {
	r := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r.msg
}

func registry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "walhook_things_total", Help: "Things."}, []string{"webhook", "outcome"})
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "walhook_seconds", Help: "Durations."}, []string{"webhook"})
	reg.MustRegister(c, h)
	c.WithLabelValues("1", "success").Add(3)
	c.WithLabelValues("1", "failed").Add(1)
	c.WithLabelValues("2", "success").Add(5)
	h.WithLabelValues("1").Observe(0.5)
	h.WithLabelValues("1").Observe(1.5)
	return reg
}

func TestMetric(t *testing.T) {
	reg := registry()
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	gatherers := map[string]prometheus.Gatherer{"registry": reg, "scrape": Scrape(srv.URL)}
	tests := []struct {
		name    string
		metric  string
		labels  []string
		want    float64
		present bool
		fatal   string // part of the failure message; "" for none
	}{
		{"one series", "walhook_things_total", []string{"webhook", "1", "outcome", "success"}, 3, true, ""},
		{"sum over a label", "walhook_things_total", []string{"webhook", "1"}, 4, true, ""},
		{"sum of all", "walhook_things_total", nil, 9, true, ""},
		{"series not created", "walhook_things_total", []string{"webhook", "3"}, 0, false, ""},
		{"histogram count", "walhook_seconds", []string{"webhook", "1"}, 2, true, ""},
		{"missing family", "walhook_renamed_total", nil, 0, false, "metric family walhook_renamed_total is missing"},
		{"odd labels", "walhook_things_total", []string{"webhook"}, 0, false, "not name, value pairs"},
	}
	for gname, g := range gatherers {
		for _, tc := range tests {
			t.Run(gname+"/"+tc.name, func(t *testing.T) {
				var v float64
				var ok bool
				msg := fatal(t, func(tb testing.TB) { v, ok = Series(tb, g, tc.metric, tc.labels...) })
				if tc.fatal != "" {
					if !strings.Contains(msg, tc.fatal) {
						t.Fatalf("failure %q, want one containing %q", msg, tc.fatal)
					}
					return
				}
				if msg != "" {
					t.Fatalf("unexpected failure: %s", msg)
				}
				if v != tc.want || ok != tc.present {
					t.Errorf("Series = %v, %v; want %v, %v", v, ok, tc.want, tc.present)
				}
				if m := Metric(t, g, tc.metric, tc.labels...); m != tc.want {
					t.Errorf("Metric = %v, want %v", m, tc.want)
				}
			})
		}
	}
}

func TestScrapeErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "walhook_x{ 1")
	}))
	t.Cleanup(srv.Close)
	if _, err := Scrape(srv.URL).Gather(); err == nil || !strings.Contains(err.Error(), "parse metrics") {
		t.Errorf("a malformed scrape gave %v, want a parse error", err)
	}
	down := httptest.NewServer(http.NotFoundHandler())
	if _, err := Scrape(down.URL).Gather(); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("a 404 scrape gave %v, want an error naming the status", err)
	}
	down.Close()
}

func TestWaitProgress(t *testing.T) {
	t.Run("progress keeps it going past noProgress", func(t *testing.T) {
		n := 0
		began := time.Now()
		msg := fatal(t, func(tb testing.TB) {
			WaitProgress(tb, "counting", 200*time.Millisecond, func() (bool, int) {
				if time.Since(began) > time.Duration(n+1)*100*time.Millisecond {
					n++
				}
				return n >= 5, n
			})
		})
		if msg != "" {
			t.Fatalf("failed although progress was steady: %s", msg)
		}
		if elapsed := time.Since(began); elapsed < 400*time.Millisecond {
			t.Fatalf("returned after %s, before the work was done", elapsed)
		}
	})
	t.Run("no progress fails naming the wait", func(t *testing.T) {
		msg := fatal(t, func(tb testing.TB) {
			WaitProgress(tb, "a stuck count", 100*time.Millisecond, func() (bool, int) { return false, 7 })
		})
		if !strings.Contains(msg, "a stuck count") || !strings.Contains(msg, "stayed at 7") {
			t.Fatalf("failure %q, want one naming the wait and its progress", msg)
		}
	})
}

func TestPatience(t *testing.T) {
	tests := []struct {
		env  string
		want time.Duration
	}{
		{"", defaultPatience},
		{"5m", 5 * time.Minute},
		{"soon", defaultPatience},
		{"-1s", defaultPatience},
	}
	for _, tc := range tests {
		t.Setenv("WALHOOK_TEST_PATIENCE", tc.env)
		if got := Patience(); got != tc.want {
			t.Errorf("WALHOOK_TEST_PATIENCE=%q: Patience() = %s, want %s", tc.env, got, tc.want)
		}
	}
}
