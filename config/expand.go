package config

import (
	"fmt"
	"strings"
)

// expand replaces ${VAR} and ${VAR:-default} in s with values from lookup
// and $$ with a single $. Like the shell, ${VAR:-default} takes the default
// when VAR is unset or empty, and the default is only expanded when it is
// used. Any other $ is kept as it is. expand returns the problems it met:
// an unset variable without a default, or a malformed ${...}.
func expand(s string, lookup func(string) (string, bool)) (string, []string) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	e := expander{s: s, lookup: lookup}
	out := e.text(false, true)
	return out, e.problems
}

// expander is the state of one expand call.
type expander struct {
	s        string
	i        int
	lookup   func(string) (string, bool)
	problems []string
}

// text reads literal text and references up to the end of s or, when
// nested (inside a default), up to the first unmatched '}', which it leaves
// unread. When eval is false the text is only checked, not looked up.
func (e *expander) text(nested, eval bool) string {
	var b strings.Builder
	for e.i < len(e.s) {
		c := e.s[e.i]
		switch {
		case nested && c == '}':
			return b.String()
		case c == '$' && strings.HasPrefix(e.s[e.i+1:], "$"):
			b.WriteByte('$')
			e.i += 2
		case c == '$' && strings.HasPrefix(e.s[e.i+1:], "{"):
			e.i += 2
			b.WriteString(e.reference(eval))
		default:
			b.WriteByte(c)
			e.i++
		}
	}
	return b.String()
}

// reference reads the rest of a ${...} whose "${" has been read.
func (e *expander) reference(eval bool) string {
	start := e.i
	for e.i < len(e.s) && isNameByte(e.s[e.i], e.i == start) {
		e.i++
	}
	name := e.s[start:e.i]
	rest := e.s[e.i:]
	switch {
	case name == "":
		e.fail("${ must be followed by a variable name (letters, digits and _, not starting with a digit); write $$ for a literal $")
		return ""
	case strings.HasPrefix(rest, "}"):
		e.i++
		v, ok := "", false
		if eval {
			v, ok = e.lookup(name)
			if !ok {
				e.problems = append(e.problems, fmt.Sprintf("${%s} is not set", name))
			}
		}
		return v
	case strings.HasPrefix(rest, ":-"):
		e.i += 2
		v, ok := "", false
		if eval {
			v, ok = e.lookup(name)
		}
		useDefault := !ok || v == ""
		def := e.text(true, eval && useDefault)
		if e.i >= len(e.s) {
			e.problems = append(e.problems, fmt.Sprintf("${%s:- has no closing }", name))
			return ""
		}
		e.i++ // the closing '}'
		if useDefault {
			return def
		}
		return v
	case rest == "":
		e.problems = append(e.problems, fmt.Sprintf("${%s has no closing }", name))
		return ""
	}
	e.fail(fmt.Sprintf("${%s must be followed by } or :-default}", name))
	return ""
}

// fail records a malformed reference and skips to the end of it.
func (e *expander) fail(msg string) {
	e.problems = append(e.problems, msg)
	if j := strings.IndexByte(e.s[e.i:], '}'); j >= 0 {
		e.i += j + 1
	} else {
		e.i = len(e.s)
	}
}

// isNameByte reports whether c may appear in a variable name, first tells
// whether it would be the name's first byte.
func isNameByte(c byte, first bool) bool {
	return c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || !first && c >= '0' && c <= '9'
}
