// Package lazyre provides regular expressions compiled on first use.
//
// writ runs as one short process per executor stage, eight or more per
// job, and every regular expression a package compiles in a var
// declaration is compiled at each start, used or not: regexp.MustCompile
// at package initialisation was a third of writ's start-up. A *Regexp
// compiles when a method is first called, once per process.
package lazyre

import (
	"regexp"
	"sync"
)

// Regexp is a regular expression compiled on first use. It is safe for
// concurrent use.
type Regexp struct {
	compiled func() *regexp.Regexp
	expr     string
}

// New returns expr, compiled on first use. A bad expression panics then,
// as regexp.MustCompile would have at start-up (each package's tests reach
// their expressions).
func New(expr string) *Regexp {
	return &Regexp{expr: expr, compiled: sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })}
}

// MatchString is regexp.Regexp.MatchString.
func (r *Regexp) MatchString(s string) bool { return r.compiled().MatchString(s) }

// FindStringSubmatch is regexp.Regexp.FindStringSubmatch.
func (r *Regexp) FindStringSubmatch(s string) []string { return r.compiled().FindStringSubmatch(s) }

// ReplaceAllString is regexp.Regexp.ReplaceAllString.
func (r *Regexp) ReplaceAllString(src, repl string) string {
	return r.compiled().ReplaceAllString(src, repl)
}

// String is the source text.
func (r *Regexp) String() string { return r.expr }
