// Package snowplow is writ's stand-in for labkit's Snowplow billing emitter.
// Usage billing is not part of writ's tests: NewEmitter always fails, which
// the runner logs and then runs without the billing writer.
package snowplow

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"gitlab.com/gitlab-org/labkit/v2/events/snowplow/metrics"
	"gitlab.com/gitlab-org/labkit/v2/events/snowplow/oidc"
)

// ErrEmitterStopped is returned after Stop.
var ErrEmitterStopped = errors.New("snowplow emitter stopped")

// ErrUnavailable is returned by NewEmitter.
var ErrUnavailable = errors.New("snowplow billing is not available in writ's test build of gitlab-runner")

// SendResult summarises one batch delivery.
type SendResult struct {
	EventCount int
	StatusCode int
	Err        error
}

// SendCallback receives delivery results.
type SendCallback func(successes, failures []SendResult)

type emitterOptions struct{}

// EmitterOption configures an Emitter.
type EmitterOption func(*emitterOptions)

// WithCallback sets the delivery callback.
func WithCallback(SendCallback) EmitterOption { return func(*emitterOptions) {} }

// WithTokenSource sets an OIDC token source.
func WithTokenSource(*oidc.Source) EmitterOption { return func(*emitterOptions) {} }

// WithMetricsCollectorOptions configures metrics.
func WithMetricsCollectorOptions(...metrics.CollectorOption) EmitterOption {
	return func(*emitterOptions) {}
}

// Emitter sends events.
type Emitter struct{}

// NewEmitter always fails in the stand-in.
func NewEmitter(collectorURI string, opts ...EmitterOption) (*Emitter, error) {
	return nil, ErrUnavailable
}

// Collector returns the emitter's metrics.
func (e *Emitter) Collector() prometheus.Collector { return prometheus.NewRegistry() }

// Tracker tracks events through an Emitter.
type Tracker struct{}

// NewTracker returns a tracker.
func NewTracker(appID string, e *Emitter) (*Tracker, error) { return nil, ErrUnavailable }

// BillingEventRequiredInput are a billing event's required fields.
type BillingEventRequiredInput struct {
	Category      string
	EventType     string
	Realm         string
	UnitOfMeasure string
	Quantity      float64
}

// BillingEventOptionalInput are a billing event's optional fields.
type BillingEventOptionalInput struct {
	Subject          string
	DeploymentType   string
	Metadata         map[string]any
	InstanceID       string
	UniqueInstanceID string
	ProjectID        int64
	NamespaceID      int64
	RootNamespaceID  int64
	OrganizationID   int64
}

// TrackBillingEventWithOptionalInput fails: nothing is ever tracked.
func (t *Tracker) TrackBillingEventWithOptionalInput(BillingEventRequiredInput, BillingEventOptionalInput) error {
	return ErrUnavailable
}

// Stop does nothing.
func (t *Tracker) Stop() {}
