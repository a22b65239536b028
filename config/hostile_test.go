package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestExpandLimits pins a stack overflow: ${A:-${A:-…}} nested a million
// deep used to recurse once per level until the runtime killed the
// process. Nesting and the expanded size are now bounded, with one
// problem each.
func TestExpandLimits(t *testing.T) {
	big := strings.Repeat("x", 64<<10)
	env := envOf(map[string]string{"BIG": big})
	nest := func(n int) string { return strings.Repeat("${A:-", n) + "end" + strings.Repeat("}", n) }
	tests := []struct {
		name, in, want string
		problems       []string
	}{
		{name: "at the depth limit", in: nest(maxExpandDepth), want: "end"},
		{name: "one past the limit", in: nest(maxExpandDepth + 1), problems: []string{"nests ${VAR:-default} more than 16 deep"}},
		{name: "a million deep", in: nest(1_000_000), problems: []string{"nests ${VAR:-default} more than 16 deep"}},
		{name: "a million deep, unclosed", in: strings.Repeat("${A:-", 1_000_000), problems: []string{"nests ${VAR:-default} more than 16 deep"}},
		{name: "unused default past the limit", in: "${BIG:-" + nest(maxExpandDepth+1) + "}", problems: []string{"nests ${VAR:-default} more than 16 deep"}},
		{name: "just under the size limit", in: strings.Repeat("${BIG}", 16), want: strings.Repeat(big, 16)},
		{name: "over the size limit", in: strings.Repeat("${BIG}", 1000), problems: []string{"expands to more than 1048576 bytes"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, problems := expand(tc.in, env, plainValue)
			if strings.Join(problems, "|") != strings.Join(tc.problems, "|") {
				t.Fatalf("problems = %q, want %q", problems, tc.problems)
			}
			if len(tc.problems) == 0 && got != tc.want {
				t.Errorf("expanded to %d bytes, want %d", len(got), len(tc.want))
			}
		})
	}
}

// TestSecretFragmentsNeverPrinted pins a leak: default_secret:
// 'Zq9${PART_OF_SECRET_abc' was reported as "${PART_OF_SECRET_abc has
// no closing }", printing a piece of the secret. No problem of a secret
// value quotes any part of it, whatever is wrong with it.
func TestSecretFragmentsNeverPrinted(t *testing.T) {
	values := []string{
		"Zq9${FRAG_abc",       // unclosed
		"Zq9${FRAG_abc:-x",    // unclosed default
		"Zq9${FRAG_abc}tail",  // an unset variable inside the secret
		"Zq9${FRAG_abc-x}",    // malformed
		"Zq9${1FRAG_abc}",     // malformed name
		"${FRAG_abc:-${FRAG_", // nested, unclosed
	}
	fields := []struct{ name, yaml string }{
		{"default_secret", "default_secret: '%s'\n"},
		{"webhook secret", "default_secret: s\nwebhooks:\n  - { id: 1, topic: order.created, delivery_url: 'https://h.example.com/', secret: '%s' }\n"},
		{"postgres url", ""}, // built below: the password holds the value
		{"consumer secret", "api:\n  keys:\n    - { consumer_key: ck_0123456789abcdef0123456789abcdef01234567, consumer_secret: 'cs_%s', permissions: read }\n"},
	}
	for _, f := range fields {
		for _, v := range values {
			t.Run(f.name+"/"+v, func(t *testing.T) {
				src := "postgres:\n  url: postgres://walhook@db/shop\nsource: https://shop.example.com/\n" + strings.Replace(f.yaml, "%s", v, 1)
				if f.name == "postgres url" {
					src = "postgres:\n  url: 'postgres://walhook:" + v + "@db/shop'\nsource: https://shop.example.com/\n"
				}
				_, err := Parse("t.yaml", []byte(src), noEnv)
				if err == nil {
					t.Fatal("Parse succeeded")
				}
				if msg := err.Error(); strings.Contains(msg, "FRAG") || strings.Contains(msg, "abc") || strings.Contains(msg, "Zq9") {
					t.Errorf("a problem quotes the secret:\n%s", msg)
				}
			})
		}
	}
	// A secret that is one reference names its variable: that is no secret.
	_, err := Parse("t.yaml", []byte(minimal+"default_secret: ${HOOK_SECRET}\n"), noEnv)
	if err == nil || !strings.Contains(err.Error(), "default_secret: ${HOOK_SECRET} is not set") {
		t.Errorf("a secret that is one reference: %v", err)
	}
}

// TestLoadRefusesWhatIsNoConfigFile pins an out-of-memory: --config
// /dev/zero read until the heap ran out, and a FIFO would block for ever.
// Only a regular file of at most MaxFileBytes is read.
func TestLoadRefusesWhatIsNoConfigFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte(minimal+"#"+strings.Repeat("x", MaxFileBytes)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	atLimit := filepath.Join(dir, "at-limit.yaml")
	body := minimal + "#"
	if err := os.WriteFile(atLimit, []byte(body+strings.Repeat("x", MaxFileBytes-len(body)-1)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, want string
	}{
		{"/dev/zero", "/dev/zero: is not a regular file (a character device)"},
		{fifo, fifo + ": is not a regular file (a named pipe)"},
		{dir, dir + ": is not a regular file (a directory)"},
		{big, big + ": is larger than 1048576 bytes (1 MiB)"},
		{atLimit, ""},
	}
	for _, tc := range tests {
		t.Run(filepath.Base(tc.path), func(t *testing.T) {
			c, err := Load(tc.path, noEnv)
			if tc.want == "" {
				if err != nil || c == nil {
					t.Fatalf("Load of a file of exactly %d bytes: %v", MaxFileBytes, err)
				}
				return
			}
			var ps Problems
			if !errors.As(err, &ps) || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("Load = %v, want a problem starting %q", err, tc.want)
			}
		})
	}
}

// TestRefusedAddress pins the SSRF ranges that were allowed by default
// (NAT64, 6to4, IPv4-compatible, 0.0.0.0/8, 192.0.0.0/24, 198.18.0.0/15,
// 240.0.0.0/4, 255.255.255.255) alongside those that always were refused.
func TestRefusedAddress(t *testing.T) {
	allow := []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("fd00:1::/32")}
	tests := []struct {
		addr string
		want string // "" when allowed
	}{
		{"64:ff9b::7f00:1", "a NAT64 form of a loopback address (127.0.0.0/8)"},
		{"64:ff9b::a00:1", "a NAT64 form of a private address (10.0.0.0/8)"},
		{"64:ff9b::a01:1", "a NAT64 form of a private address (10.0.0.0/8)"}, // allow lists 10.1.0.0/16, not its NAT64 form
		{"64:ff9b::808:808", ""},
		{"64:ff9b:1::1", "a local-use NAT64 address (64:ff9b:1::/48)"},
		{"2002:7f00:1::1", "a 6to4 address (2002::/16)"},
		{"2002:808:808::1", "a 6to4 address (2002::/16)"},
		{"::127.0.0.1", "an IPv4-compatible address (::/96)"},
		{"::8.8.8.8", "an IPv4-compatible address (::/96)"},
		{"::ffff:0:7f00:1", "an IPv4-translated address (::ffff:0:0:0/96)"},
		{"::ffff:127.0.0.1", "a loopback address (127.0.0.0/8)"},
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", "a Teredo address (2001::/32)"},
		{"0.0.0.0", "an unspecified address (0.0.0.0/32)"},
		{"0.1.2.3", `a "this network" address (0.0.0.0/8)`},
		{"192.0.0.170", "an IETF protocol assignment address (192.0.0.0/24)"},
		{"198.18.0.1", "a benchmarking address (198.18.0.0/15)"},
		{"198.19.255.255", "a benchmarking address (198.18.0.0/15)"},
		{"240.0.0.1", "a reserved address (240.0.0.0/4)"},
		{"255.255.255.255", "a broadcast address (255.255.255.255/32)"},
		{"224.0.0.1", "a link-local multicast address (224.0.0.0/24)"},
		{"239.1.1.1", "a multicast address (224.0.0.0/4)"},
		{"ff05::1", "a multicast address (ff00::/8)"},
		{"127.0.0.1", "a loopback address (127.0.0.0/8)"},
		{"::1", "a loopback address (::1/128)"},
		{"::", "an unspecified address (::/128)"},
		{"10.0.0.1", "a private address (10.0.0.0/8)"},
		{"10.1.2.3", ""}, // in allow
		{"100.64.0.1", "a private (shared, carrier-grade NAT) address (100.64.0.0/10)"},
		{"169.254.169.254", "a link-local address (169.254.0.0/16)"},
		{"fe80::1%eth0", "a link-local address (fe80::/10)"},
		{"fec0::1", "a site-local address (fec0::/10)"},
		{"fd00::1", "a private (unique local) address (fc00::/7)"},
		{"fd00:1::1", ""}, // in allow
		{"192.0.2.1", "a documentation address (192.0.2.0/24)"},
		{"2001:db8::1", "a documentation address (2001:db8::/32)"},
		{"8.8.8.8", ""},
		{"2606:4700:4700::1111", ""},
		{"192.0.1.1", ""},
		{"198.20.0.1", ""},
	}
	for _, tc := range tests {
		if got := RefusedAddress(netip.MustParseAddr(tc.addr), false, allow); got != tc.want {
			t.Errorf("RefusedAddress(%s) = %q, want %q", tc.addr, got, tc.want)
		}
		if got := RefusedAddress(netip.MustParseAddr(tc.addr), true, nil); got != "" {
			t.Errorf("RefusedAddress(%s) with private networks allowed = %q", tc.addr, got)
		}
	}
}

// TestPprofWarning pins a silent exposure: pprof on 0.0.0.0 started
// without a word.
func TestPprofWarning(t *testing.T) {
	tests := []struct {
		listen string
		pprof  bool
		warn   bool
	}{
		{"0.0.0.0:9187", true, true},
		{":9187", true, true},
		{"[::]:9187", true, true},
		{"10.0.0.5:9187", true, true},
		{"walhook.internal:9187", true, true},
		{"127.0.0.1:9187", true, false},
		{"127.8.0.1:9187", true, false},
		{"[::1]:9187", true, false},
		{"localhost:9187", true, false},
		{"0.0.0.0:9187", false, false},
	}
	for _, tc := range tests {
		c := Defaults()
		c.HTTP.Listen, c.HTTP.Pprof = tc.listen, tc.pprof
		w := c.Warnings()
		if got := len(w) > 0; got != tc.warn {
			t.Errorf("listen %s, pprof %v: warnings %q, want a warning: %v", tc.listen, tc.pprof, w, tc.warn)
		}
		if tc.warn && !strings.Contains(w[0], tc.listen) {
			t.Errorf("the warning does not name %s: %q", tc.listen, w[0])
		}
	}
}
