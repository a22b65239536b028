package topics

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// validRunes is s with each byte that is not valid UTF-8 replaced by
// U+FFFD, one for one, as appendString does.
func validRunes(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r)
	}
	return b.String()
}

func TestAppendString(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", `""`},
		{"plain ascii 123", `"plain ascii 123"`},
		{`"quoted" \ back`, `"\"quoted\" \\ back"`},
		{"\n\r\t\b\f", `"\n\r\t\b\f"`},
		{"\x00\x01\x1f", `"\u0000\u0001\u001f"`},
		{"\x7f", "\"\x7f\""},
		{"é✓🎉", `"é✓🎉"`},
		{"\xff", "\"\uFFFD\""},
		{"a\xc3", "\"a\uFFFD\""},                   // truncated sequence at the end
		{"\xed\xa0\x80", "\"\uFFFD\uFFFD\uFFFD\""}, // an encoded surrogate
		{"\xc0\xaf", "\"\uFFFD\uFFFD\""},           // an overlong encoding
	}
	for _, tt := range tests {
		got := appendString([]byte("x"), []byte(tt.in))
		if string(got) != "x"+tt.want {
			t.Errorf("appendString(%q) = %s, want %s", tt.in, got[1:], tt.want)
		}
	}
}

func TestJSONChecker(t *testing.T) {
	tests := []string{
		``, ` `, `{}`, `[]`, `[ ]`, `{ }`, `{"a":1}`, `{"a" : [1, 2 , {"b":null}] }`, `[1,]`, `{"a":1,}`, `{,}`,
		`{"a"}`, `{1:2}`, `"`, `"\"`, `"\u12"`, `"\u12G4"`, `"\uD800"`, `"\x"`, "\"\t\"", `"/\/"`,
		`01`, `-`, `-0`, `1.`, `.1`, `1e`, `1e+`, `1E-2`, `-1.5e10`, `tru`, `true`, `truex`, `nul`, `null `, `fals`,
		`[1 2]`, `{"a":1 "b":2}`, `]`, `[}`, `{]`, `[[[]]]`, `[[[]]`, "\"\xff\"", "\xff", `"a"b`, "\u00a0{}",
		strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth),
		strings.Repeat("[", maxJSONDepth+1) + strings.Repeat("]", maxJSONDepth+1),
		strings.Repeat(`{"a":`, maxJSONDepth) + "1" + strings.Repeat("}", maxJSONDepth),
		strings.Repeat(`{"a":`, maxJSONDepth+1) + "1" + strings.Repeat("}", maxJSONDepth+1),
		strings.Repeat("[", maxJSONDepth) + "[]" + strings.Repeat("]", maxJSONDepth),
	}
	var c jsonChecker
	for _, s := range tests {
		ok, _ := c.check([]byte(s))
		if want := json.Valid([]byte(s)); ok != want {
			t.Errorf("check(%.40q) = %v, encoding/json says %v", s, ok, want)
		}
	}
}

// FuzzJSONChecker checks the JSON validator against encoding/json.
func FuzzJSONChecker(f *testing.F) {
	for _, s := range []string{`{"a": [1, 2.5e-3, "x\u00e9\n"], "b": {"c": null}}`, `[true,false]`, `"\ud83c\udf89"`, `-0.0E+1`, "[\"\xff\"]"} {
		f.Add([]byte(s))
	}
	var c jsonChecker
	f.Fuzz(func(t *testing.T, data []byte) {
		ok, nonASCII := c.check(data)
		if want := json.Valid(data); ok != want {
			t.Fatalf("check(%q) = %v, encoding/json says %v", data, ok, want)
		}
		if !ok {
			return
		}
		if hasHigh := strings.ContainsFunc(string(data), func(r rune) bool { return r >= utf8.RuneSelf }); nonASCII != hasHigh {
			t.Fatalf("check(%q) reports non-ASCII %v, want %v", data, nonASCII, hasHigh)
		}
		out, ok := c.appendJSON(nil, data)
		if !ok || !json.Valid(out) || !utf8.Valid(out) {
			t.Fatalf("appendJSON(%q) = %q, %v; want valid UTF-8 JSON", data, out, ok)
		}
	})
}

// FuzzAppendString checks that every string encodes to a JSON string that
// decodes to the same text, with invalid UTF-8 replaced.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "\"\\\n\x00\x7f", "é✓🎉", "\xff\xc3", "\u2028"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := appendString(nil, []byte(s))
		if !utf8.Valid(out) {
			t.Fatalf("appendString(%q) = %q, not valid UTF-8", s, out)
		}
		var back string
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("appendString(%q) = %s: %v", s, out, err)
		}
		if want := validRunes(s); back != want {
			t.Fatalf("appendString(%q) decodes to %q, want %q", s, back, want)
		}
	})
}
