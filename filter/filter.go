// Package filter compiles and evaluates webhook filters: CEL expressions
// (https://cel.dev) over one event, true when the webhook should receive it.
//
// An expression sees three variables:
//
//   - event: "created", "updated" or "deleted" (an action's name for an
//     action topic);
//   - row: the row as a map from column name to value, typed as in the
//     payload (int and double for numbers, string, bool, null, maps for
//     json and jsonb objects, lists for arrays; numeric, timestamps and
//     other text-like types are strings);
//   - old: the row before the change, when the server sent it (REPLICA
//     IDENTITY FULL), else an empty map.
//
// Rows are decoded lazily: an expression that reads one column decodes
// that column only. The package knows nothing of configuration or
// delivery; config compiles to validate and dispatch evaluates.
package filter

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/google/cel-go/cel"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"
)

// Variables an expression may use.
const (
	VarEvent = "event"
	VarRow   = "row"
	VarOld   = "old"
)

// MaxLength bounds an expression's length in bytes.
const MaxLength = 4096

// costLimit bounds the work of one evaluation of an expression with
// comprehensions (all, exists, map, filter...), so that one over a huge
// array cannot stall delivery; past it evaluation fails (no match).
// Expressions without comprehensions run in time bounded by their length
// and are not tracked, which saves a quarter of their cost.
const costLimit = 100_000

// Program is a compiled filter. It is safe for concurrent use.
type Program struct {
	src string
	prg cel.Program
}

// Error is a compile error located in the expression.
type Error struct {
	// Line is the 1-based line within the expression; Column the 1-based
	// column (in characters) within that line; both 0 when unknown.
	Line, Column int
	Message      string
}

// Error returns the message with its position, e.g. "line 1, column 5:
// undeclared reference to 'rows'".
func (e *Error) Error() string {
	if e.Line == 0 {
		return e.Message
	}
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Message)
}

// Compile parses and type-checks src. Its error, if any, is an *Error for
// the first problem found (its message names how many more there are).
func Compile(src string) (*Program, error) {
	if strings.TrimSpace(src) == "" {
		return nil, &Error{Message: "must not be empty"}
	}
	if len(src) > MaxLength {
		return nil, &Error{Message: fmt.Sprintf("is %d bytes long, more than the %d allowed", len(src), MaxLength)}
	}
	env, err := cel.NewEnv(
		cel.CustomTypeAdapter(adapter{}),
		cel.Variable(VarEvent, cel.StringType),
		cel.Variable(VarRow, cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable(VarOld, cel.MapType(cel.StringType, cel.DynType)),
	)
	if err != nil {
		return nil, fmt.Errorf("filter: creating the CEL environment: %w", err)
	}
	ast, iss := env.Compile(src)
	if iss.Err() != nil {
		errs := iss.Errors()
		first := errs[0]
		e := &Error{Message: tidy(first.Message)}
		if loc := first.Location; loc != nil && loc.Line() > 0 {
			e.Line, e.Column = within(src, loc.Line(), loc.Column()+1)
		}
		if n := len(errs) - 1; n > 0 {
			e.Message += fmt.Sprintf(" (and %d more %s)", n, plural(n, "problem", "problems"))
		}
		return nil, e
	}
	if t := ast.OutputType(); !t.IsExactType(cel.BoolType) && !t.IsExactType(cel.DynType) {
		return nil, &Error{Message: fmt.Sprintf("must be true or false, but gives %s", t)}
	}
	opts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	if hasComprehension(ast) {
		opts = append(opts, cel.CostLimit(costLimit))
	}
	prg, err := env.Program(ast, opts...)
	if err != nil {
		return nil, &Error{Message: err.Error()}
	}
	return &Program{src: src, prg: prg}, nil
}

// tidy shortens CEL's messages: the token list of a syntax error and the
// empty container of an unknown name say nothing to a reader.
func tidy(msg string) string {
	if i := strings.Index(msg, " expecting {"); i >= 0 && strings.HasPrefix(msg, "Syntax error:") {
		msg = msg[:i]
	}
	msg = strings.Replace(msg, "mismatched input '<EOF>'", "the expression ends too early", 1)
	return strings.TrimSuffix(msg, " (in container '')")
}

// within moves a position past the end of src's last line of text (the end
// of input after trailing new lines) to just past that line, where the
// expression really stops.
func within(src string, line, column int) (int, int) {
	lines := strings.Split(strings.TrimRight(src, " \t\r\n"), "\n")
	if line > len(lines) {
		last := lines[len(lines)-1]
		return len(lines), utf8.RuneCountInString(last) + 1
	}
	return line, column
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// hasComprehension reports whether the expression loops.
func hasComprehension(a *cel.Ast) bool {
	nav := celast.NavigateAST(a.NativeRep())
	return len(celast.MatchDescendants(nav, celast.KindMatcher(celast.ComprehensionKind))) > 0
}

// String returns the expression as written.
func (p *Program) String() string { return p.src }

// Input is what one event offers filters. Build one per event and pass it
// to every Program that filters the event: its rows are decoded once, and
// only as far as expressions read them. It is not safe for concurrent use.
type Input struct {
	// Event is the topic's event: "created", "updated" or "deleted".
	Event string
	// Row is the JSON object of row.
	Row []byte
	// Old is the JSON object of old; nil or empty for none.
	Old []byte

	ready    bool
	row, old object
	event    ref.Val
}

// Reset makes in the input of another event, reusing its memory.
func (in *Input) Reset(event string, row, old []byte) {
	in.Event, in.Row, in.Old = event, row, old
	in.ready = false
}

// prepare sets up the variables, once; rows are scanned when read.
func (in *Input) prepare() {
	if in.ready {
		return
	}
	in.ready = true
	in.event = types.String(in.Event)
	in.row.init(in.Row)
	if len(in.Row) == 0 {
		in.row.scan.err = errors.New("no row")
	}
	in.old.init(in.Old)
}

// activation gives an Input's variables to an evaluation.
type activation struct{ in *Input }

// ResolveName implements interpreter.Activation.
func (a activation) ResolveName(name string) (any, bool) {
	switch name {
	case VarEvent:
		return a.in.event, true
	case VarRow:
		return &a.in.row, true
	case VarOld:
		return &a.in.old, true
	}
	return nil, false
}

// Parent implements interpreter.Activation: there is none.
func (a activation) Parent() interpreter.Activation { return nil }

// errNotBool is the error of an expression that gave no boolean.
var errNotBool = errors.New("the expression gave no boolean")

// Match evaluates the filter on in: true when the event should be
// delivered. An error (a missing key, a type mismatch, a malformed row, a
// cost over the limit) means no match; the caller decides how to report it.
func (p *Program) Match(in *Input) (bool, error) {
	in.prepare()
	out, _, err := p.prg.Eval(activation{in})
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("%w (it gave %s)", errNotBool, out.Type())
	}
	return bool(b), nil
}
