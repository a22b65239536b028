package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/bad/*.err with the problems found")

// testEnv is the environment of the testdata cases.
func testEnv(name string) (string, bool) {
	v, ok := map[string]string{
		"EMPTY": "",
		"SET":   "value",
	}[name]
	return v, ok
}

// TestBadConfigs loads each testdata/bad/<name>.yaml and compares the
// problems reported with testdata/bad/<name>.err, one per line.
func TestBadConfigs(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "bad", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 30 {
		t.Fatalf("found %d bad configs, want at least 30", len(files))
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			c, err := Load(file, testEnv)
			if err == nil {
				t.Fatalf("Load succeeded: %+v", c)
			}
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("error %v is %T, want Problems", err, err)
			}
			if c != nil {
				t.Errorf("Load returned a config with its problems")
			}
			got := err.Error() + "\n"
			errFile := strings.TrimSuffix(file, ".yaml") + ".err"
			if *update {
				if err := os.WriteFile(errFile, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(errFile)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("problems differ from %s\ngot:\n%swant:\n%s", errFile, got, want)
			}
			for i, p := range ps {
				if i > 0 && p.Line < ps[i-1].Line {
					t.Errorf("problem %d (line %d) comes after line %d: not in file order", i, p.Line, ps[i-1].Line)
				}
			}
		})
	}
}
