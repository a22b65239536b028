package dispatch

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/walhook/walhook/state"
)

func TestTrackerConfirmsContiguousPrefix(t *testing.T) {
	var advanced []state.LSN
	tr := tracker{advance: func(_, end state.LSN) { advanced = append(advanced, end) }}
	now := time.Now()
	a := tr.open(10, now)
	tr.add(a, 2)
	tr.seal(a, 11)
	b := tr.open(20, now)
	tr.add(b, 1)
	tr.seal(b, 21)
	c := tr.open(30, now) // an empty transaction
	tr.seal(c, 31)

	tr.done(b) // settled out of order: nothing confirmable yet
	if len(advanced) != 0 {
		t.Fatalf("advanced to %v before the oldest transaction settled", advanced)
	}
	tr.done(a)
	if _, _, idle, _ := tr.position(); idle {
		t.Fatal("idle with one delivery of the first transaction pending")
	}
	tr.done(a)
	if got := advanced; len(got) != 1 || got[0] != 31 {
		t.Fatalf("advanced = %v, want [31] (all three transactions at once)", got)
	}
	commit, end, idle, _ := tr.position()
	if commit != 30 || end != 31 || !idle {
		t.Fatalf("position = %v %v idle=%v, want 30 31 true", commit, end, idle)
	}
}

func TestTrackerUnsealedTransactionHoldsBack(t *testing.T) {
	var tr tracker
	a := tr.open(10, time.Now())
	tr.add(a, 1)
	tr.done(a) // settled, but more deliveries of the transaction may still come
	if _, end, _, _ := tr.position(); end != 0 {
		t.Fatalf("confirmed %v before the transaction was sealed", end)
	}
	tr.seal(a, 11)
	if _, end, _, _ := tr.position(); end != 11 {
		t.Fatalf("end = %v after seal, want 11", end)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"3", 3 * time.Second},
		{"0", 0},
		{"-5", 0},
		{"100000", time.Minute},
		{"Mon, 23 Nov 2026 10:00:30 GMT", 30 * time.Second},
		{"Mon, 23 Nov 2026 09:00:00 GMT", 0},
		{"Tue, 24 Nov 2026 10:00:00 GMT", time.Minute},
		{"soon", 0},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, now, time.Minute); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestGuard(t *testing.T) {
	allow := []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}
	tests := []struct {
		addr    string
		private bool
		blocked string
	}{
		{"127.0.0.1:80", false, "loopback"},
		{"[::1]:443", false, "loopback"},
		{"10.0.0.5:80", false, "private"},
		{"192.168.1.1:80", false, "private"},
		{"172.16.3.4:80", false, "private"},
		{"100.64.1.1:80", false, "private"},
		{"169.254.169.254:80", false, "link-local"},
		{"[fe80::1]:80", false, "link-local"},
		{"224.0.0.1:80", false, "link-local"},
		{"239.1.1.1:80", false, "multicast"},
		{"0.0.0.0:80", false, "unspecified"},
		{"[::ffff:127.0.0.1]:80", false, "loopback"},
		{"10.1.2.3:80", false, ""}, // listed in allow_cidrs
		{"93.184.216.34:443", false, ""},
		{"127.0.0.1:80", true, ""},
	}
	for _, tt := range tests {
		err := guard(tt.private, allow)("tcp", tt.addr, nil)
		switch {
		case tt.blocked == "" && err != nil:
			t.Errorf("%s refused: %v", tt.addr, err)
		case tt.blocked != "" && (err == nil || !errors.Is(err, ErrBlockedAddress) || !strings.Contains(err.Error(), tt.blocked)):
			t.Errorf("%s: err = %v, want a refusal naming %q", tt.addr, err, tt.blocked)
		}
	}
}

func TestSignatures(t *testing.T) {
	body := []byte(`{"id":1,"status":"processing"}`)
	s := newSigner("s3cret")
	mac := hmac.New(sha256.New, []byte("s3cret"))
	mac.Write(body)
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for i := 0; i < 2; i++ { // the reused HMAC state must reset
		if got := s.WooCommerce(body); got != want {
			t.Fatalf("signature %d = %s, want %s", i, got, want)
		}
	}
	if got := newSigner("s3cret").StandardWebhooks("id", 1, body); got != "" {
		t.Errorf("a non-whsec secret signed for Standard Webhooks: %q", got)
	}
}

func TestDeliveryIDStable(t *testing.T) {
	a := DeliveryID(7, 0x16B3748, 3)
	if len(a) != 32 || strings.Trim(a, "0123456789abcdef") != "" {
		t.Fatalf("delivery id %q is not 32 hex characters", a)
	}
	if DeliveryID(7, 0x16B3748, 3) != a {
		t.Fatal("the same event gave two delivery ids")
	}
	for _, other := range []string{DeliveryID(8, 0x16B3748, 3), DeliveryID(7, 0x16B3749, 3), DeliveryID(7, 0x16B3748, 4)} {
		if other == a {
			t.Fatal("different events share a delivery id")
		}
	}
}

func TestRedactURL(t *testing.T) {
	got := redactURL("https://user:pw@hooks.example.com/in?token=abc#frag")
	if strings.Contains(got, "pw") || strings.Contains(got, "abc") || !strings.Contains(got, "hooks.example.com/in") {
		t.Fatalf("redactURL = %q", got)
	}
}

func TestBackoffBounds(t *testing.T) {
	for n := 1; n < 20; n++ {
		d := backoff(100*time.Millisecond, time.Second, n)
		if d <= 0 || d > time.Second {
			t.Fatalf("backoff(%d) = %v out of (0, 1s]", n, d)
		}
	}
}
