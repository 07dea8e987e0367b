// Package api is writ's stand-in for the runner wrapper's gRPC API types.
// writ's tests never run `gitlab-runner wrapper`.
package api

import (
	"context"
	"errors"

	"github.com/sirupsen/logrus"
)

// ErrProcessNotInitialized: the wrapped process is not running.
var ErrProcessNotInitialized = errors.New("process not initialized")

// Status of the wrapped process.
type Status int

// Statuses.
const (
	StatusUnknown Status = iota
	StatusRunning
	StatusInShutdown
	StatusStopped
)

func (s Status) String() string {
	switch s {
	case StatusRunning:
		return "running"
	case StatusInShutdown:
		return "in shutdown"
	case StatusStopped:
		return "stopped"
	}
	return "unknown"
}

// ShutdownCallbackDef says where to report a finished shutdown.
type ShutdownCallbackDef struct {
	url, method string
}

// URL of the callback.
func (d ShutdownCallbackDef) URL() string { return d.url }

// Method of the callback.
func (d ShutdownCallbackDef) Method() string { return d.method }

// InitGracefulShutdownRequest asks for a graceful shutdown.
type InitGracefulShutdownRequest struct {
	def ShutdownCallbackDef
}

// ShutdownCallbackDef returns the request's callback definition.
func (r InitGracefulShutdownRequest) ShutdownCallbackDef() ShutdownCallbackDef { return r.def }

// ShutdownCallback runs after shutdown.
type ShutdownCallback interface {
	Run(ctx context.Context)
}

type noCallback struct{ log logrus.FieldLogger }

func (c noCallback) Run(context.Context) {
	c.log.Warn("shutdown callbacks are not available in writ's test build of gitlab-runner")
}

// NewShutdownCallback returns a callback that only logs.
func NewShutdownCallback(log logrus.FieldLogger, def ShutdownCallbackDef) ShutdownCallback {
	return noCallback{log: log}
}
