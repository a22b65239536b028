package walhooktest

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metric returns the sum of the series of family name in g whose labels
// include labels (name, value pairs): a counter's or a gauge's value, a
// histogram's or a summary's sample count. Series that do not match add
// nothing, so a labelled series not yet created reads 0; a family that g
// does not have at all fails the test, so a renamed or unregistered metric
// cannot pass for a zero.
func Metric(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	sum, _ := read(t, g, name, labels)
	return sum
}

// Series is Metric that also reports whether any series matched, for
// checks that a series exists.
func Series(t testing.TB, g prometheus.Gatherer, name string, labels ...string) (v float64, ok bool) {
	t.Helper()
	sum, n := read(t, g, name, labels)
	return sum, n > 0
}

func read(t testing.TB, g prometheus.Gatherer, name string, labels []string) (sum float64, matched int) {
	t.Helper()
	if len(labels)%2 != 0 {
		t.Fatalf("metric %s: labels %q are not name, value pairs", name, labels)
	}
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather metrics for %s: %v", name, err)
	}
	i := slices.IndexFunc(mfs, func(mf *dto.MetricFamily) bool { return mf.GetName() == name })
	if i < 0 {
		names := make([]string, len(mfs))
		for j, mf := range mfs {
			names[j] = mf.GetName()
		}
		t.Fatalf("metric family %s is missing; the registry has %v", name, names)
	}
series:
	for _, m := range mfs[i].GetMetric() {
		for k := 0; k < len(labels); k += 2 {
			if !hasLabel(m, labels[k], labels[k+1]) {
				continue series
			}
		}
		matched++
		switch {
		case m.GetCounter() != nil:
			sum += m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			sum += m.GetGauge().GetValue()
		case m.GetUntyped() != nil:
			sum += m.GetUntyped().GetValue()
		case m.GetHistogram() != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		case m.GetSummary() != nil:
			sum += float64(m.GetSummary().GetSampleCount())
		}
	}
	return sum, matched
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue() == value
		}
	}
	return false
}

// Scrape returns a Gatherer that fetches url (a /metrics endpoint) and
// parses the Prometheus text format, so a walhook running as a separate
// process is read the same way as an in-process registry.
func Scrape(url string) prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		resp, err := http.Get(url)
		if err != nil {
			return nil, fmt.Errorf("walhooktest: scrape %s: %w", url, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("walhooktest: scrape %s: status %s", url, resp.Status)
		}
		return ParseText(resp.Body)
	})
}

// ParseText parses a scrape in the Prometheus text format into metric
// families sorted by name.
func ParseText(r io.Reader) ([]*dto.MetricFamily, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	byName, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("walhooktest: parse metrics: %w", err)
	}
	out := make([]*dto.MetricFamily, 0, len(byName))
	for _, mf := range byName {
		out = append(out, mf)
	}
	slices.SortFunc(out, func(a, b *dto.MetricFamily) int {
		switch {
		case a.GetName() < b.GetName():
			return -1
		case a.GetName() > b.GetName():
			return 1
		}
		return 0
	})
	return out, nil
}
