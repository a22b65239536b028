package config

import (
	"errors"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/walhook/walhook/filter"
)

// filterField decodes a webhook's filter, a CEL expression, compiling it so
// that a syntax or type error is reported with its line in the file.
func (d *decoder) filterField(dst *string) decodeFunc {
	return func(path string, n *yaml.Node) {
		s, ok := d.scalar(path, n, "a CEL expression", plainValue)
		if !ok {
			return
		}
		if _, err := filter.Compile(s); err != nil {
			line, msg := d.filterProblem(n, s, err)
			d.add(line, path, "%s", msg)
			return
		}
		*dst = s
	}
}

// filterProblem locates a compile error of the expression s, the value of
// n: in a literal block (|) each line of the expression is a line of the
// file, so the problem goes on its own line; otherwise on the key's line,
// with the position within the expression when it spans several lines.
func (d *decoder) filterProblem(n *yaml.Node, s string, err error) (int, string) {
	var fe *filter.Error
	if !errors.As(err, &fe) {
		return d.lineOf(n), err.Error()
	}
	line, msg := d.lineOf(n), "invalid filter: "+fe.Message
	switch v := resolve(n); {
	case fe.Line == 0:
	case v == n && v.Style&yaml.LiteralStyle != 0:
		line, msg = v.Line+fe.Line, fmt.Sprintf("invalid filter at column %d: %s", fe.Column, fe.Message)
	case strings.Contains(strings.TrimRight(s, "\n"), "\n"):
		msg = fmt.Sprintf("invalid filter at line %d, column %d of the expression: %s", fe.Line, fe.Column, fe.Message)
	default:
		msg = fmt.Sprintf("invalid filter at column %d: %s", fe.Column, fe.Message)
	}
	return line, msg
}
