package config

import (
	"fmt"
	"regexp"
	"strings"
)

// Limits of ${...} expansion, so that a hostile or careless value cannot
// exhaust the stack or the heap: defaults nest at most maxExpandDepth
// deep, and one value expands to at most maxExpandedBytes.
const (
	maxExpandDepth   = 16
	maxExpandedBytes = 1 << 20
)

// soleReference matches a value that is one ${NAME} reference and nothing
// else: even in a secret, that text is a reference, not the secret.
var soleReference = regexp.MustCompile(`^\$\{[A-Za-z_][A-Za-z0-9_]*\}$`)

// expand replaces ${VAR} and ${VAR:-default} in s with values from lookup
// and $$ with a single $. Like the shell, ${VAR:-default} takes the default
// when VAR is unset or empty, and the default is only expanded when it is
// used. Any other $ is kept as it is. expand returns the problems it met:
// an unset variable without a default, a malformed ${...}, defaults nested
// more than maxExpandDepth deep, or a result over maxExpandedBytes.
//
// sensitivity tells how much of s its problems may quote.
func expand(s string, lookup func(string) (string, bool), sens sensitivity) (string, []string) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	e := expander{s: s, lookup: lookup, sens: sens}
	if sens == secretSens && soleReference.MatchString(s) {
		e.sens = mayHoldSecret
	}
	out := e.text(false, true)
	if e.aborted {
		return "", e.problems
	}
	return out, e.problems
}

// expander is the state of one expand call.
type expander struct {
	s        string
	i        int
	lookup   func(string) (string, bool)
	sens     sensitivity
	depth    int  // defaults being read, one inside the other
	aborted  bool // a limit was hit: stop reading, report nothing more
	problems []string
}

// text reads literal text and references up to the end of s or, when
// nested (inside a default), up to the first unmatched '}', which it leaves
// unread. When eval is false the text is only checked, not looked up.
func (e *expander) text(nested, eval bool) string {
	var b strings.Builder
	for e.i < len(e.s) && !e.aborted {
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
		if b.Len() > maxExpandedBytes {
			e.abort(fmt.Sprintf("expands to more than %d bytes", maxExpandedBytes))
		}
	}
	return b.String()
}

// abort records msg and stops the expansion.
func (e *expander) abort(msg string) {
	if !e.aborted {
		e.problems = append(e.problems, msg)
		e.aborted = true
	}
}

// sensitivity is how much of a value its problems may quote.
type sensitivity int

const (
	// plainValue: any part of the value may be quoted.
	plainValue sensitivity = iota
	// mayHoldSecret (a URL, which may carry credentials): the names of
	// well-formed ${NAME} references may be quoted, not the text of a
	// malformed one, which may be a literal fragment of a secret.
	mayHoldSecret
	// secretSens: nothing of the value is quoted, except the name of a
	// value that is exactly one ${NAME} reference.
	secretSens
)

// problem records a problem, described by named when s may be quoted and
// by vague when it is a secret. malformed tells whether named quotes the
// text of a malformed reference rather than a well-formed name.
func (e *expander) problem(named, vague string, malformed bool) {
	if e.sens == secretSens || malformed && e.sens == mayHoldSecret {
		named = vague
	}
	e.problems = append(e.problems, named)
}

// Descriptions of problems in secret values, which quote nothing.
const (
	secretUnset     = "refers to a variable that is not set (the name is not shown, since this value is secret; write $$ for a literal $)"
	secretMalformed = "holds a malformed ${ reference (not shown, since this value is secret; write $$ for a literal $)"
)

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
				e.problem(fmt.Sprintf("${%s} is not set", name), secretUnset, false)
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
		if e.depth++; e.depth > maxExpandDepth {
			e.abort(fmt.Sprintf("nests ${VAR:-default} more than %d deep", maxExpandDepth))
			return ""
		}
		def := e.text(true, eval && useDefault)
		e.depth--
		if e.aborted {
			return ""
		}
		if e.i >= len(e.s) {
			e.problem(fmt.Sprintf("${%s:- has no closing }", name), secretMalformed, true)
			return ""
		}
		e.i++ // the closing '}'
		if useDefault {
			return def
		}
		return v
	case rest == "":
		e.problem(fmt.Sprintf("${%s has no closing }", name), secretMalformed, true)
		return ""
	}
	e.fail(fmt.Sprintf("${%s must be followed by } or :-default}", name))
	return ""
}

// fail records a malformed reference and skips to the end of it.
func (e *expander) fail(msg string) {
	e.problem(msg, secretMalformed, true)
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
