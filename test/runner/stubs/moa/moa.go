// Package moa is writ's stand-in for GitLab's moa expression language. Text
// without "${{" parses to a literal; interpolation is refused with an error,
// so a job that depends on it fails visibly instead of running altered text.
package moa

import (
	"errors"
	"strings"

	"gitlab.com/gitlab-org/moa/ast"
)

// ErrUnsupported is returned for templates containing interpolations.
var ErrUnsupported = errors.New("moa expressions are not supported by writ's test build of gitlab-runner")

// ParseTemplate parses text as a template.
func ParseTemplate(text string) (ast.Expr, error) {
	if strings.Contains(text, "${{") {
		return nil, ErrUnsupported
	}
	return &ast.Literal{Text: text}, nil
}

// EscapeTemplate escapes text so it is taken literally.
func EscapeTemplate(text string) string {
	return strings.ReplaceAll(text, "${{", "$${{")
}
