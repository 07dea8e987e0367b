// Package client is writ's stand-in for step-runner's client types.
package client

import "time"

// RunRequest asks a step-runner to run steps.
type RunRequest struct {
	Id        string // the runner spells it so
	Timeout   *time.Duration
	WorkDir   string
	BuildDir  string
	Env       map[string]string
	Steps     string
	Variables []Variable
}

// Variable is a job variable passed to a step-runner.
type Variable struct {
	Key    string
	Value  string
	File   bool
	Masked bool
}

// State is a run's final state.
type State int

// States.
const (
	StateUnspecified State = iota
	StateRunning
	StateSuccess
	StateFailure
	StateCancelled
)

func (s State) String() string {
	switch s {
	case StateRunning:
		return "running"
	case StateSuccess:
		return "success"
	case StateFailure:
		return "failure"
	case StateCancelled:
		return "cancelled"
	}
	return "unspecified"
}

// ErrorKind classifies a failed run.
type ErrorKind int

// Error kinds.
const (
	ErrorUnknown ErrorKind = iota
	ErrorInternal
	ErrorStepFailure
	ErrorCancelled
	ErrorTimeout
)

// Status is a run's outcome.
type Status struct {
	State     State
	Message   string
	ErrorKind ErrorKind
}
