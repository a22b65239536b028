package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics nor hangs, and that what it
// returns is consistent: either a config that holds its invariants or
// Problems in file order, every one naming the file.
func FuzzParse(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "*", "*.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	seeds = append(seeds, filepath.Join("..", "config.example.yaml"))
	for _, name := range seeds {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("webhooks: &w [{<<: *w}]\n"))
	env := envOf(map[string]string{"SET": "value", "EMPTY": "", "DATABASE_URL": "postgres://u:p@h/db"})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data, env)
		if err == nil {
			if c == nil {
				t.Fatal("Parse returned neither a config nor an error")
			}
			if !strings.HasSuffix(c.Source, "/") || c.Postgres.URL == "" || c.API.Timezone == nil {
				t.Fatalf("config breaks its invariants: %+v", c)
			}
			for _, w := range c.Webhooks {
				if w.ID <= 0 || w.Secret == "" || w.Topic.Resource == "" {
					t.Fatalf("webhook breaks its invariants: %+v", w)
				}
			}
			return
		}
		var ps Problems
		if !errors.As(err, &ps) || len(ps) == 0 {
			t.Fatalf("error %v is no non-empty Problems", err)
		}
		if c != nil {
			t.Fatal("Parse returned a config with its problems")
		}
		if !slices.IsSortedFunc(ps, func(a, b Problem) int { return a.Line - b.Line }) {
			t.Fatalf("problems not in file order:\n%v", ps)
		}
		for _, p := range ps {
			if p.File != "fuzz.yaml" || p.Line < 0 || p.Message == "" {
				t.Fatalf("malformed problem %#v", p)
			}
		}
	})
}
