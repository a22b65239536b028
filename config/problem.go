package config

import (
	"strconv"
	"strings"
)

// Problem is one thing wrong with a configuration, located by file, YAML
// line and key path (e.g. "webhooks[2].topic"). Its message never holds
// the value of a secret.
type Problem struct {
	File    string // the file name given to Load or Parse
	Line    int    // 1-based YAML line; 0 when the problem has no line
	Path    string // key path, e.g. "delivery.retry.attempts"; "" for the whole file
	Message string // what is wrong, e.g. "must be between 1 and 10, not 20"
}

// Error returns the problem as "<file>:<line>: <path>: <message>", leaving
// out ":<line>" when Line is 0 and "<path>: " when Path is empty.
func (p Problem) Error() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(p.Line))
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Problems is every problem found in a configuration, in file order. Load
// and Parse return it as their error; recover it with errors.As.
type Problems []Problem

// Error returns one Problem per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}
