// Package runner is writ's stand-in for step-runner's runner package: the
// interface the runner's builtin "concrete" step is handed.
package runner

import (
	"io"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
)

// BuiltinContext is what a builtin step can see of its job.
type BuiltinContext interface {
	GetJobVars() map[string]*structpb.Value
	GetEnvs() map[string]string
	Pipe() (stdout, stderr io.Writer)
	WorkDir() string
	GracefulExitDelay() time.Duration
}
