package filter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
)

// rawJSON is one value, still encoded; the adapter decodes it when an
// expression reads it.
type rawJSON []byte

// adapter turns rawJSON into CEL values and leaves everything else to
// CEL's default adapter.
type adapter struct{}

// NativeToValue implements types.Adapter.
func (adapter) NativeToValue(v any) ref.Val {
	if raw, ok := v.(rawJSON); ok {
		return value(raw)
	}
	return types.DefaultTypeAdapter.NativeToValue(v)
}

// value decodes one JSON value: numbers become int when they are integers
// that fit, double otherwise; objects and arrays are decoded lazily, as
// their members and elements are read.
func value(b []byte) ref.Val {
	switch {
	case len(b) == 0:
		return types.NewErr("malformed row: empty value")
	case b[0] == '"':
		if len(b) < 2 || b[len(b)-1] != '"' {
			return types.NewErr("malformed row: unterminated string")
		}
		if bytes.IndexByte(b, '\\') < 0 {
			return types.String(b[1 : len(b)-1])
		}
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return types.NewErr("malformed row: %v", err)
		}
		return types.String(s)
	case b[0] == '{':
		o := &object{}
		o.init(b)
		return o
	case b[0] == '[':
		elems, err := scanArray(b)
		if err != nil {
			return types.NewErr("malformed row: %v", err)
		}
		return types.NewDynamicList(adapter{}, elems)
	case string(b) == "true":
		return types.True
	case string(b) == "false":
		return types.False
	case string(b) == "null":
		return types.NullValue
	}
	if i, err := strconv.ParseInt(string(b), 10, 64); err == nil {
		return types.Int(i)
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || !json.Valid(b) {
		return types.NewErr("malformed row: bad value %q", b)
	}
	return types.Double(f)
}

// scanArray splits a JSON array into its elements, still encoded.
func scanArray(b []byte) ([]rawJSON, error) {
	i := skipSpace(b, 1)
	var elems []rawJSON
	if i < len(b) && b[i] == ']' {
		return elems, trailing(b, i+1)
	}
	for {
		end, err := skipValue(b, i)
		if err != nil {
			return nil, err
		}
		elems = append(elems, rawJSON(b[i:end]))
		i = skipSpace(b, end)
		if i >= len(b) {
			return nil, errors.New("unterminated array")
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case ']':
			return elems, trailing(b, i+1)
		default:
			return nil, fmt.Errorf("expected ',' or ']' at offset %d", i)
		}
	}
}

// scanner walks a JSON object's members one at a time, without decoding
// their values. It checks the structure it walks (brackets, strings,
// separators), not the values' contents, which are checked when decoded.
type scanner struct {
	b    []byte
	pos  int // where the next member (or the opening brace) starts
	open bool
	done bool
	err  error
}

// next returns the next member; ok is false at the end or on an error
// (then s.err is set).
func (s *scanner) next() (m member, ok bool) {
	if s.done {
		return member{}, false
	}
	m, err := s.step()
	if err != nil {
		s.done, s.err = true, err
		return member{}, false
	}
	if m.raw == nil {
		s.done = true
		return member{}, false
	}
	return m, true
}

func (s *scanner) step() (member, error) {
	b, i := s.b, skipSpace(s.b, s.pos)
	if !s.open {
		if i >= len(b) || b[i] != '{' {
			return member{}, errors.New("not a JSON object")
		}
		s.open = true
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == '}' {
			return member{}, trailing(b, i+1)
		}
	}
	if i >= len(b) || b[i] != '"' {
		return member{}, fmt.Errorf("expected a key at offset %d", i)
	}
	end, err := skipString(b, i)
	if err != nil {
		return member{}, err
	}
	key := b[i+1 : end-1]
	if bytes.IndexByte(key, '\\') >= 0 {
		var name string
		if err := json.Unmarshal(b[i:end], &name); err != nil {
			return member{}, fmt.Errorf("key at offset %d: %w", i, err)
		}
		key = []byte(name)
	}
	i = skipSpace(b, end)
	if i >= len(b) || b[i] != ':' {
		return member{}, fmt.Errorf("expected ':' at offset %d", i)
	}
	start := skipSpace(b, i+1)
	if end, err = skipValue(b, start); err != nil {
		return member{}, err
	}
	m := member{key: key, raw: b[start:end]}
	i = skipSpace(b, end)
	if i >= len(b) {
		return member{}, errors.New("unterminated object")
	}
	switch b[i] {
	case ',':
		s.pos = i + 1
	case '}':
		s.pos = len(b)
		s.done = true
		if err := trailing(b, i+1); err != nil {
			return member{}, err
		}
	default:
		return member{}, fmt.Errorf("expected ',' or '}' at offset %d", i)
	}
	return m, nil
}

func trailing(b []byte, i int) error {
	if skipSpace(b, i) != len(b) {
		return errors.New("trailing data after the object")
	}
	return nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the offset just past the string starting at b[i].
func skipString(b []byte, i int) (int, error) {
	j := i + 1
	for {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return 0, fmt.Errorf("unterminated string at offset %d", i)
		}
		j += k
		// The quote ends the string unless an odd number of backslashes
		// escape it.
		n := 0
		for p := j - 1; p > i && b[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			return j + 1, nil
		}
		j++
	}
}

// skipValue returns the offset just past the value starting at b[i].
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errors.New("missing value")
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		// Brackets are counted, not matched: decoding the value checks it.
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, err := skipString(b, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, fmt.Errorf("unterminated value at offset %d", i)
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
		j++
	}
	if j == i {
		return 0, fmt.Errorf("missing value at offset %d", i)
	}
	return j, nil
}
