// Package expression is writ's stand-in for step-runner's expression
// evaluator: it evaluates only literal templates (see the moa stand-in).
package expression

import (
	"fmt"

	"gitlab.com/gitlab-org/moa/ast"
	"gitlab.com/gitlab-org/moa/value"
)

// Sensitive marks a value that must not be interpolated into logs.
const Sensitive uint16 = 1

// Input is a named job input.
type Input struct {
	Key   string
	Value value.Value
}

// Evaluator evaluates templates against a context value.
type Evaluator struct{ ctx value.Value }

// NewEvaluator returns an evaluator over ctx.
func NewEvaluator(ctx value.Value) (*Evaluator, error) { return &Evaluator{ctx: ctx}, nil }

// Eval evaluates a parsed template; only literals are supported.
func (e *Evaluator) Eval(text string, expr ast.Expr) (value.Value, error) {
	if l, ok := expr.(*ast.Literal); ok {
		return value.String(l.Text), nil
	}
	return value.Null(), fmt.Errorf("cannot evaluate %T in writ's test build of gitlab-runner", expr)
}
