// Package metrics is writ's stand-in for labkit's Snowplow metrics options.
package metrics

type collectorOptions struct{}

// CollectorOption configures the metrics collector.
type CollectorOption func(*collectorOptions)

// WithCollectorNamespace sets the metric namespace.
func WithCollectorNamespace(string) CollectorOption { return func(*collectorOptions) {} }

// WithCollectorBatchDeliveryDurationBuckets sets histogram buckets.
func WithCollectorBatchDeliveryDurationBuckets([]float64) CollectorOption {
	return func(*collectorOptions) {}
}
