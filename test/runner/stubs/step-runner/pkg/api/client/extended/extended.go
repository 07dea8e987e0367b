// Package extended is writ's stand-in for step-runner's client. There is no
// step-runner in writ's test build, so every run fails with ErrNoStepRunner.
package extended

import (
	"context"
	"errors"
	"io"

	"gitlab.com/gitlab-org/step-runner/pkg/api/client"
)

// ErrNoStepRunner is returned by every run.
var ErrNoStepRunner = errors.New("step-runner is not available in writ's test build of gitlab-runner")

// FollowOutput receives a run's logs.
type FollowOutput struct {
	Logs io.Writer
}

// Client talks to a step-runner.
type Client struct{}

// New returns a client; dialer is not used.
func New(dialer any) (*Client, error) { return &Client{}, nil }

// RunAndFollow fails: there is no step-runner.
func (c *Client) RunAndFollow(ctx context.Context, req *client.RunRequest, out *FollowOutput) (client.Status, error) {
	return client.Status{}, ErrNoStepRunner
}

// Cancel does nothing.
func (c *Client) Cancel(ctx context.Context, id string) error { return nil }

// CloseConn does nothing.
func (c *Client) CloseConn() error { return nil }
