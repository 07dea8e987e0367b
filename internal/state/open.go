package state

import (
	"os"

	"github.com/hashicorp/go-hclog"

	"gitlab.com/writ-ci/writ/internal/config"
)

// Open returns the Store cfg.State configures: Local on cfg.Paths.State, or
// Fleet on etcd with that directory as this host's floor. Nothing is
// contacted until first use.
func Open(cfg *config.Config, log hclog.Logger) (Store, error) {
	local := NewLocal(cfg.Paths.State)
	if cfg.State.Backend != "etcd" {
		return local, nil
	}
	return NewFleet(FleetConfigFrom(cfg, log), local)
}

// FleetConfigFrom is the FleetConfig cfg.State describes.
func FleetConfigFrom(cfg *config.Config, log hclog.Logger) FleetConfig {
	e := cfg.State.Etcd
	return FleetConfig{
		Endpoints: e.Endpoints, CAFile: e.CAFile, CertFile: e.CertFile, KeyFile: e.KeyFile,
		Prefix: e.Prefix, Timeout: e.Timeout.Duration, JobClaimTTL: e.JobClaimTTL.Duration,
		Host: HostName(cfg), FallbackLocal: cfg.State.Fallback == "local", Log: log,
	}
}

// HostName is the name this host writes into shared state and job claims.
func HostName(cfg *config.Config) string {
	if cfg.State.Host != "" {
		return cfg.State.Host
	}
	h, _ := os.Hostname()
	return h
}
