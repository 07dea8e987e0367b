// Package server is writ's stand-in for the runner wrapper's gRPC server.
package server

import (
	"errors"
	"net"

	"github.com/sirupsen/logrus"
)

// ErrUnavailable is returned by Listen.
var ErrUnavailable = errors.New("the runner wrapper gRPC server is not available in writ's test build of gitlab-runner")

// Server would serve the wrapper API.
type Server struct{ log *logrus.Entry }

// New returns a server; wrapper is not used.
func New(log *logrus.Entry, wrapper any) *Server { return &Server{log: log} }

// Listen fails: the stand-in serves nothing.
func (s *Server) Listen(l net.Listener) error {
	s.log.WithError(ErrUnavailable).Error("runner wrapper API")
	_ = l.Close()
	return ErrUnavailable
}

// Stop does nothing.
func (s *Server) Stop() {}
