// Package api is writ's stand-in for step-runner's API package.
package api

import (
	"os"
	"path/filepath"
)

// DefaultSocketPath is where a step-runner would listen.
func DefaultSocketPath() string {
	return filepath.Join(os.TempDir(), "step-runner.sock")
}
