package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Request parameters are read the way PHP and WordPress read them, because
// WooCommerce's clients are written against that: a query string becomes
// PHP's $_GET (one value per key, the last one wins; "a[]=1&a[]=2" and
// "a[0]=1" make arrays), and JSON or form bodies override query values.

// phpArray is an ordered map, as a PHP array is. Values are strings or
// nested *phpArray.
type phpArray struct {
	keys []string
	vals map[string]any
	next int64 // the key "[]" appends at
}

func newPHPArray() *phpArray { return &phpArray{vals: make(map[string]any)} }

func (a *phpArray) get(k string) any { return a.vals[k] }

// set stores v under k, keeping k's position when it exists.
func (a *phpArray) set(k string, v any) {
	if _, ok := a.vals[k]; !ok {
		a.keys = append(a.keys, k)
	}
	a.vals[k] = v
	if n, ok := phpIntKey(k); ok && n >= a.next {
		a.next = n + 1
	}
}

// phpIntKey reports whether PHP would store k as an integer key.
func phpIntKey(k string) (int64, bool) {
	n, err := strconv.ParseInt(k, 10, 64)
	if err != nil || strconv.FormatInt(n, 10) != k {
		return 0, false
	}
	return n, true
}

// Limits PHP applies to input variables (max_input_vars,
// max_input_nesting_level).
const (
	maxInputVars    = 1000
	maxInputNesting = 64
)

// parsePHPQuery parses a query string or form body as PHP's parse_str does.
func parsePHPQuery(raw string) *phpArray {
	out := newPHPArray()
	n := 0
	for pair := range strings.SplitSeq(raw, "&") {
		if pair == "" {
			continue
		}
		if n++; n > maxInputVars {
			break
		}
		k, v, _ := strings.Cut(pair, "=")
		base, subs, ok := splitPHPKey(phpURLDecode(k))
		if !ok {
			continue
		}
		out.assign(base, subs, phpURLDecode(v))
	}
	return out
}

// splitPHPKey splits "a[b][]" into "a" and ["b", ""], as PHP registers a
// variable: spaces and dots in the base name become underscores, an
// unterminated first bracket is part of the name, and anything after the
// last complete index is ignored.
func splitPHPKey(key string) (base string, subs []string, ok bool) {
	key = strings.TrimLeft(key, " ")
	i := strings.IndexByte(key, '[')
	if i < 0 || !strings.Contains(key[i:], "]") {
		if i >= 0 {
			key = phpBaseName(key[:i]) + "_" + key[i+1:]
			return key, nil, key != "_" || i > 0
		}
		base = phpBaseName(key)
		return base, nil, base != ""
	}
	base = phpBaseName(key[:i])
	if base == "" {
		return "", nil, false
	}
	rest := key[i:]
	for len(rest) > 0 && rest[0] == '[' {
		j := strings.IndexByte(rest, ']')
		if j < 0 {
			break
		}
		subs = append(subs, rest[1:j])
		rest = rest[j+1:]
	}
	if len(subs) >= maxInputNesting {
		return "", nil, false
	}
	return base, subs, true
}

func phpBaseName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '.' {
			return '_'
		}
		return r
	}, s)
}

func (a *phpArray) assign(base string, subs []string, val string) {
	cur, key := a, base
	for _, s := range subs {
		child, _ := cur.get(key).(*phpArray)
		if child == nil {
			child = newPHPArray()
			cur.set(key, child)
		}
		cur = child
		if s == "" {
			key = strconv.FormatInt(cur.next, 10)
		} else {
			key = s
		}
	}
	cur.set(key, val)
}

// phpURLDecode is PHP's urldecode: "+" is a space and a malformed escape
// is kept as it is.
func phpURLDecode(s string) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b.WriteByte(' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// toValue turns a PHP array into JSON-like values: a list when every key
// is an integer (in PHP's order), else a map.
func (a *phpArray) toValue() any {
	list := true
	for _, k := range a.keys {
		if _, ok := phpIntKey(k); !ok {
			list = false
			break
		}
	}
	conv := func(v any) any {
		if sub, ok := v.(*phpArray); ok {
			return sub.toValue()
		}
		return v
	}
	if list {
		out := make([]any, 0, len(a.keys))
		for _, k := range a.keys {
			out = append(out, conv(a.vals[k]))
		}
		return out
	}
	out := make(map[string]any, len(a.keys))
	for _, k := range a.keys {
		out[k] = conv(a.vals[k])
	}
	return out
}

// toParams returns the top level of a as a parameter map.
func (a *phpArray) toParams() map[string]any {
	out := make(map[string]any, len(a.keys))
	for _, k := range a.keys {
		v := a.vals[k]
		if sub, ok := v.(*phpArray); ok {
			v = sub.toValue()
		}
		out[k] = v
	}
	return out
}

// isForm reports whether the request body is form-encoded.
func isForm(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt == "application/x-www-form-urlencoded"
}

// parseJSONBody decodes a JSON object body. Numbers stay json.Number so
// that integers and strings can be told apart as WordPress does.
func parseJSONBody(body []byte) (map[string]any, *apiError) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	if err == nil {
		if err = dec.Decode(new(any)); errors.Is(err, io.EOF) {
			err = nil
		} else if err == nil {
			err = errors.New("unexpected data after the JSON value")
		}
	}
	if err != nil {
		return nil, &apiError{Status: http.StatusBadRequest, Code: "rest_invalid_json", Message: "Invalid JSON body passed."}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, &apiError{Status: http.StatusBadRequest, Code: "rest_invalid_json", Message: "The JSON body must be an object."}
	}
	return obj, nil
}

// paramReader reads typed parameters and collects what is wrong with them
// for one rest_invalid_param answer.
type paramReader struct {
	p        map[string]any
	problems map[string]string
}

func newParamReader(p map[string]any) *paramReader {
	return &paramReader{p: p, problems: make(map[string]string)}
}

func (r *paramReader) bad(name, format string, args ...any) {
	if _, dup := r.problems[name]; !dup {
		r.problems[name] = fmt.Sprintf(format, args...)
	}
}

// err returns rest_invalid_param for the problems found, or nil.
func (r *paramReader) err() *apiError {
	if len(r.problems) == 0 {
		return nil
	}
	return invalidParams(r.problems)
}

// has reports whether name was sent.
func (r *paramReader) has(name string) bool {
	_, ok := r.p[name]
	return ok
}

// str returns a string parameter and whether it was sent.
func (r *paramReader) str(name string) (string, bool) {
	v, ok := r.p[name]
	if !ok || v == nil {
		return "", false
	}
	s, isStr := v.(string)
	if !isStr {
		r.bad(name, "%s is not of type string.", name)
		return "", false
	}
	return s, true
}

// text returns a string parameter that can be stored as text: valid
// UTF-8 without NUL characters; "" when it was not sent or is refused.
func (r *paramReader) text(name string) string {
	s, ok := r.str(name)
	if !ok {
		return ""
	}
	if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		r.bad(name, "%s must be text: valid UTF-8 without NUL characters.", name)
		return ""
	}
	return s
}

// enum returns a string parameter that must be one of allowed, or def.
func (r *paramReader) enum(name, def string, allowed ...string) string {
	s, ok := r.str(name)
	if !ok {
		return def
	}
	for _, a := range allowed {
		if s == a {
			return s
		}
	}
	r.bad(name, "%s is not one of %s.", name, listWords(allowed))
	return def
}

// integer returns an integer parameter within [min, max], or def.
func (r *paramReader) integer(name string, def, lo, hi int64) int64 {
	v, ok := r.p[name]
	if !ok {
		return def
	}
	n, ok := toInt(v)
	if !ok {
		r.bad(name, "%s is not of type integer.", name)
		return def
	}
	switch {
	case hi != math.MaxInt64 && (n < lo || n > hi):
		r.bad(name, "%s must be between %d (inclusive) and %d (inclusive)", name, lo, hi)
		return def
	case n < lo:
		r.bad(name, "%s must be greater than or equal to %d", name, lo)
		return def
	}
	return n
}

// boolean returns a boolean parameter, or def.
func (r *paramReader) boolean(name string, def bool) bool {
	v, ok := r.p[name]
	if !ok {
		return def
	}
	switch t := v.(type) {
	case bool:
		return t
	case string:
		switch strings.ToLower(t) {
		case "1", "true":
			return true
		case "", "0", "false":
			return false
		}
	case json.Number:
		switch t.String() {
		case "1":
			return true
		case "0":
			return false
		}
	}
	r.bad(name, "%s is not of type boolean.", name)
	return def
}

// intList returns a list of integers sent as "1,2", "a[]=1&a[]=2" or a
// JSON array.
func (r *paramReader) intList(name string) []int64 {
	v, ok := r.p[name]
	if !ok {
		return nil
	}
	var items []any
	switch t := v.(type) {
	case []any:
		items = t
	case map[string]any: // a[x]=1: PHP array with string keys
		for _, k := range sortedKeys(t) {
			items = append(items, t[k])
		}
	case string:
		for f := range strings.FieldsFuncSeq(t, func(r rune) bool { return r == ',' || r == ' ' }) {
			items = append(items, f)
		}
	default:
		items = []any{t}
	}
	out := make([]int64, 0, len(items))
	for i, it := range items {
		n, ok := toInt(it)
		if !ok {
			r.bad(name, "%s[%d] is not of type integer.", name, i)
			return nil
		}
		out = append(out, n)
	}
	return out
}

// date returns a date-time parameter as a time, reading a date without an
// offset in loc.
func (r *paramReader) date(name string, loc *time.Location) (time.Time, bool) {
	s, ok := r.str(name)
	if !ok {
		return time.Time{}, false
	}
	t, err := parseRESTDate(s, loc)
	if err != nil {
		r.bad(name, "Invalid date.")
		return time.Time{}, false
	}
	return t, true
}

// restDate is the date-time shape WordPress accepts (rest_parse_date).
var restDate = regexp.MustCompile(`^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d+)?(Z|z|[+-]\d{2}(?::?\d{2})?)?$`)

func parseRESTDate(s string, loc *time.Location) (time.Time, error) {
	m := restDate.FindStringSubmatch(s)
	if m == nil {
		return time.Time{}, fmt.Errorf("invalid date %q", s)
	}
	base := m[1] + "T" + m[2] + m[3]
	switch zone := m[4]; {
	case zone == "":
		return time.ParseInLocation("2006-01-02T15:04:05.999999999", base, loc)
	case zone == "Z" || zone == "z":
		return time.Parse("2006-01-02T15:04:05.999999999", base)
	default:
		zone = strings.ReplaceAll(zone, ":", "")
		if len(zone) == 3 {
			zone += "00"
		}
		return time.Parse("2006-01-02T15:04:05.999999999-0700", base+zone)
	}
}

// toInt reads an integer the way rest_is_integer does: JSON numbers and
// numeric strings with no fractional part.
func toInt(v any) (int64, bool) {
	var s string
	switch t := v.(type) {
	case json.Number:
		s = t.String()
	case string:
		s = strings.TrimSpace(t)
	case float64:
		s = strconv.FormatFloat(t, 'f', -1, 64)
	default:
		return 0, false
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, false
	}
	return int64(f), true
}

// listWords joins words as WordPress's wp_sprintf_l does: "a and b",
// "a, b, and c".
func listWords(words []string) string {
	switch len(words) {
	case 0:
		return ""
	case 1:
		return words[0]
	case 2:
		return words[0] + " and " + words[1]
	}
	return strings.Join(words[:len(words)-1], ", ") + ", and " + words[len(words)-1]
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
