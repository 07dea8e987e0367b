// Package oidc is writ's stand-in for labkit's cloud OIDC token source.
package oidc

type options struct{}

// Option configures a Source.
type Option func(*options)

// WithSkipIfUnsupportedCloud is accepted and ignored.
func WithSkipIfUnsupportedCloud(bool) Option { return func(*options) {} }

// Source would produce ID tokens; the stand-in produces none.
type Source struct{}

// NewSource returns a Source.
func NewSource(...Option) *Source { return &Source{} }
