// Package ast is writ's stand-in for moa's template syntax tree: the runner
// only walks it to detect interpolations.
package ast

// Expr is a node of a parsed template.
type Expr interface {
	Walk(Visitor) (Expr, error)
}

// Visitor visits nodes.
type Visitor interface {
	Enter(Expr) (Visitor, error)
	Exit(Expr) (Expr, error)
}

// Literal is template text without interpolation.
type Literal struct{ Text string }

// Walk visits the literal.
func (l *Literal) Walk(v Visitor) (Expr, error) {
	if _, err := v.Enter(l); err != nil {
		return nil, err
	}
	return v.Exit(l)
}

// Template is a template containing interpolations. The stand-in never
// produces one (it refuses interpolation), but the runner type-switches on it.
type Template struct{}

// Walk visits the template.
func (t *Template) Walk(v Visitor) (Expr, error) {
	if _, err := v.Enter(t); err != nil {
		return nil, err
	}
	return v.Exit(t)
}
