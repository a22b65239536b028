package topics

import (
	"unicode/utf8"
)

// This file holds the small JSON primitives the encoders append with: a
// string escaper, a validator for JSON texts that arrive from the server or
// from logical messages, and a number checker. They work on byte slices in
// place so that encoding a row allocates nothing.

// maxJSONDepth is the deepest nesting accepted in an embedded JSON text. It
// is encoding/json's limit, so that whatever walhook embeds, a Go receiver
// (and most others) can parse.
const maxJSONDepth = 10000

// hexDigits are the digits of a \u00XX escape.
const hexDigits = "0123456789abcdef"

// replacement is U+FFFD REPLACEMENT CHARACTER in UTF-8, which takes the place
// of every byte that is not part of valid UTF-8.
const replacement = "\uFFFD"

// byteClass tells the escaper and the validator how to treat a byte.
type byteClass uint8

const (
	classPlain    byteClass = iota // printable ASCII other than '"' and '\\': copied as is
	classEscape                    // '"', '\\' and control characters: escaped
	classNonASCII                  // 0x80 and above: part of a UTF-8 sequence, checked
)

// byteClasses classifies every byte value. It is computed once and never
// written afterwards.
var byteClasses = func() (t [256]byteClass) {
	for b := range 256 {
		switch {
		case b < 0x20 || b == '"' || b == '\\':
			t[b] = classEscape
		case b >= utf8.RuneSelf:
			t[b] = classNonASCII
		}
	}
	return t
}()

// appendString appends s to dst as a JSON string: quoted, with quotes,
// backslashes and control characters escaped, and every byte that is not
// valid UTF-8 replaced by U+FFFD. Plain ASCII is copied in runs.
func appendString(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		switch byteClasses[b] {
		case classPlain:
			i++
			continue
		case classNonASCII:
			r, size := utf8.DecodeRune(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
			dst = append(dst, s[start:i]...)
			dst = append(dst, replacement...)
			i++
			start = i
			continue
		}
		dst = append(dst, s[start:i]...)
		switch b {
		case '"', '\\':
			dst = append(dst, '\\', b)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendValidUTF8 appends s to dst, replacing every byte that is not part of
// valid UTF-8 by U+FFFD. It is used for JSON texts that passed jsonChecker:
// in those, bytes above 0x7F can only occur inside strings, where U+FFFD is
// as valid as any other character.
func appendValidUTF8(dst, s []byte) []byte {
	start := 0
	for i := 0; i < len(s); {
		if s[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r != utf8.RuneError || size != 1 {
			i += size
			continue
		}
		dst = append(dst, s[start:i]...)
		dst = append(dst, replacement...)
		i++
		start = i
	}
	return append(dst, s[start:]...)
}

// jsonChecker validates JSON texts (RFC 8259) without recursion, keeping its
// stack of open objects and arrays between calls so that checking allocates
// nothing once warm. The zero value is ready to use.
type jsonChecker struct {
	stack []byte
}

// appendJSON appends the JSON text s to dst if it is valid, with any invalid
// UTF-8 replaced by U+FFFD, and reports whether it was valid. White space
// around and inside s is kept as is.
func (c *jsonChecker) appendJSON(dst, s []byte) ([]byte, bool) {
	ok, nonASCII := c.check(s)
	if !ok {
		return dst, false
	}
	if nonASCII && !utf8.Valid(s) {
		return appendValidUTF8(dst, s), true
	}
	return append(dst, s...), true
}

// check reports whether s is one valid JSON text, and whether it holds any
// byte above 0x7F (which can only be inside a string when it is valid).
func (c *jsonChecker) check(s []byte) (ok, nonASCII bool) {
	stack := c.stack[:0]
	defer func() { c.stack = stack[:0] }()
	var high byte // every string byte ORed together; its top bit marks non-ASCII
	i := skipSpace(s, 0)

value:
	for {
		if i >= len(s) {
			return false, false
		}
		switch b := s[i]; b {
		case '{', '[':
			if len(stack) >= maxJSONDepth {
				return false, false
			}
			closing := byte('}')
			if b == '[' {
				closing = ']'
			}
			i = skipSpace(s, i+1)
			if i < len(s) && s[i] == closing {
				i++
				break
			}
			stack = append(stack, b)
			if b == '{' {
				var good bool
				if i, good = scanMember(s, i, &high); !good {
					return false, false
				}
			}
			continue value
		case '"':
			var good bool
			if i, good = scanString(s, i, &high); !good {
				return false, false
			}
		case 't':
			if !hasPrefix(s[i:], "true") {
				return false, false
			}
			i += len("true")
		case 'f':
			if !hasPrefix(s[i:], "false") {
				return false, false
			}
			i += len("false")
		case 'n':
			if !hasPrefix(s[i:], "null") {
				return false, false
			}
			i += len("null")
		default:
			end, good := scanNumber(s, i)
			if !good {
				return false, false
			}
			i = end
		}

		// A value ended at i: close what it ends, or go on to the next one.
		for {
			i = skipSpace(s, i)
			if len(stack) == 0 {
				return i == len(s), high >= utf8.RuneSelf
			}
			if i >= len(s) {
				return false, false
			}
			top := stack[len(stack)-1]
			switch s[i] {
			case ',':
				i = skipSpace(s, i+1)
				if top == '{' {
					var good bool
					if i, good = scanMember(s, i, &high); !good {
						return false, false
					}
				}
				continue value
			case '}':
				if top != '{' {
					return false, false
				}
			case ']':
				if top != '[' {
					return false, false
				}
			default:
				return false, false
			}
			stack = stack[:len(stack)-1]
			i++
		}
	}
}

// scanMember scans an object member's name and colon starting at s[i], and
// returns the index of its value.
func scanMember(s []byte, i int, high *byte) (int, bool) {
	if i >= len(s) || s[i] != '"' {
		return i, false
	}
	i, ok := scanString(s, i, high)
	if !ok {
		return i, false
	}
	i = skipSpace(s, i)
	if i >= len(s) || s[i] != ':' {
		return i, false
	}
	return skipSpace(s, i+1), true
}

// scanString scans the JSON string that starts with the quote at s[i] and
// returns the index just past its closing quote. Bytes above 0x7F are ORed
// into high.
func scanString(s []byte, i int, high *byte) (int, bool) {
	i++
	var h byte
	for i < len(s) {
		b := s[i]
		if byteClasses[b] != classEscape {
			h |= b
			i++
			continue
		}
		switch b {
		case '"':
			*high |= h
			return i + 1, true
		case '\\':
			if i+1 >= len(s) {
				return i, false
			}
			switch s[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(s) {
					return i, false
				}
				for _, x := range s[i+2 : i+6] {
					if !isHex(x) {
						return i, false
					}
				}
				i += 6
			default:
				return i, false
			}
		default: // a raw control character
			return i, false
		}
	}
	return i, false
}

// scanNumber scans the JSON number that starts at s[i] and returns the index
// just past it.
func scanNumber(s []byte, i int) (int, bool) {
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i >= len(s):
		return i, false
	case s[i] == '0':
		i++
	case s[i] >= '1' && s[i] <= '9':
		i = skipDigits(s, i+1)
	default:
		return i, false
	}
	if i < len(s) && s[i] == '.' {
		j := skipDigits(s, i+1)
		if j == i+1 {
			return j, false
		}
		i = j
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := skipDigits(s, i)
		if j == i {
			return j, false
		}
		i = j
	}
	return i, true
}

// validNumber reports whether s is exactly one JSON number.
func validNumber(s []byte) bool {
	end, ok := scanNumber(s, 0)
	return ok && end == len(s)
}

// validInteger reports whether s is a JSON number without fraction or
// exponent: an optional minus and digits without leading zeros.
func validInteger(s []byte) bool {
	i := 0
	if len(s) > 0 && s[0] == '-' {
		i = 1
	}
	switch {
	case i >= len(s):
		return false
	case s[i] == '0':
		return i+1 == len(s)
	}
	return skipDigits(s, i) == len(s)
}

// validNumeric reports whether s is a numeric value as PostgreSQL prints
// it: an optional minus, digits, and an optional fraction; or NaN,
// Infinity or -Infinity.
func validNumeric(s []byte) bool {
	switch string(s) {
	case "NaN", "Infinity", "-Infinity":
		return true
	}
	i := 0
	if len(s) > 0 && s[0] == '-' {
		i = 1
	}
	j := skipDigits(s, i)
	if j == i {
		return false
	}
	if j == len(s) {
		return true
	}
	if s[j] != '.' {
		return false
	}
	k := skipDigits(s, j+1)
	return k > j+1 && k == len(s)
}

func skipDigits(s []byte, i int) int {
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

func skipSpace(s []byte, i int) int {
	for i < len(s) {
		switch s[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

func isHex(b byte) bool {
	return b >= '0' && b <= '9' || b >= 'a' && b <= 'f' || b >= 'A' && b <= 'F'
}

func hasPrefix(s []byte, prefix string) bool {
	return len(s) >= len(prefix) && string(s[:len(prefix)]) == prefix
}
