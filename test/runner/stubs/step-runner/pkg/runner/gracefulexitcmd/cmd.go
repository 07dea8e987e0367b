// Package gracefulexitcmd is writ's stand-in for step-runner's command
// helper: a command that gets SIGTERM when ctx ends and is killed delay later.
package gracefulexitcmd

import (
	"context"
	"os/exec"
	"syscall"
	"time"
)

// Cmd is an exec.Cmd with graceful cancellation.
type Cmd = exec.Cmd

// New returns a command that is sent SIGTERM when ctx is done and killed
// (its pipes closed) delay after that.
func New(ctx context.Context, delay time.Duration, name string, args ...string) *Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = delay
	return cmd
}
