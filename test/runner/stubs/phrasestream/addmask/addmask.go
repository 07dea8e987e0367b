// Package addmask is writ's stand-in for phrasestream's add-mask filter,
// used by the runner's experimental proxy-exec helper, which writ's tests do
// not use: its writers pass output through unchanged.
package addmask

import "io"

// Store holds phrases to mask.
type Store interface {
	List() ([]string, error)
	Add(phrase string) error
}

// AddMask would mask phrases announced on its streams.
type AddMask struct {
	writers []io.Writer
}

// New returns an AddMask over the given streams.
func New(store Store, writers ...io.Writer) (*AddMask, error) {
	return &AddMask{writers: writers}, nil
}

// Get returns stream i.
func (a *AddMask) Get(i int) io.Writer { return a.writers[i] }

// Close does nothing.
func (a *AddMask) Close() error { return nil }
