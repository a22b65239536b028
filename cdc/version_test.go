package cdc

import (
	"strings"
	"testing"
)

func TestCheckServerVersion(t *testing.T) {
	tests := []struct {
		version string
		wantErr string // "" for no error
	}{
		{"13.4", "cdc: PostgreSQL 13.4 is too old: walhook needs 14 or newer"},
		{"9.6.24", "cdc: PostgreSQL 9.6.24 is too old"},
		{"14.0", ""},
		{"15.8", ""},
		{"15.8 (Debian 15.8-1.pgdg120+1)", ""},
		{"17beta2", ""},
		{"13devel", "cdc: PostgreSQL 13devel is too old"},
		{"", "cannot read the server version"},
		{"banana", "cannot read the server version"},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			err := checkServerVersion(tt.version)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("checkServerVersion(%q) = %v, want nil", tt.version, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("checkServerVersion(%q) = %v, want error containing %q", tt.version, err, tt.wantErr)
			}
		})
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{Connecting: "connecting", Streaming: "streaming", Standby: "standby", Stopped: "stopped", State(99): "unknown"} {
		if got := s.String(); got != want {
			t.Errorf("State(%d).String() = %q, want %q", s, got, want)
		}
	}
}

func TestBackoff(t *testing.T) {
	prev := backoff(0)
	if prev < minBackoff {
		t.Errorf("backoff(0) = %v, below %v", prev, minBackoff)
	}
	for n := 0; n < 20; n++ {
		d := backoff(n)
		if d < minBackoff || d > maxBackoff {
			t.Errorf("backoff(%d) = %v, outside [%v, %v]", n, d, minBackoff, maxBackoff)
		}
		if base := min(minBackoff<<min(n, 10), maxBackoff); d < base {
			t.Errorf("backoff(%d) = %v, below its base %v", n, d, base)
		}
	}
}
