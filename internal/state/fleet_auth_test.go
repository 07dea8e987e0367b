package state_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/internal/state"
	"gitlab.com/writ-ci/writ/internal/state/etcdtest"
)

// With etcd's authentication on, each host's certificate common name is
// its etcd user, whose role covers only its environment's prefix: a
// staging host cannot read or change production's marks and claims (the
// store refuses it, and it fails closed even with the local fallback,
// since a refusal is a configuration to fix, not an outage), while each
// host works on its own prefix.
func TestFleetRoles(t *testing.T) {
	c := etcdtest.Start(t, 1)
	if err := c.EnableAuth(map[string]string{"prod-1": "/writ/prod/", "staging-1": "/writ/staging/"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prod := host(t, c, "prod-1", func(cfg *state.FleetConfig) { cfg.Prefix = "/writ/prod/" })
	accept(t, prod, 5, commit(5))
	if err := prod.ClaimJob(ctx, state.JobClaim{ID: "77", Token: "run-p", Host: "prod-1", PayloadSHA256: "aa"}); err != nil {
		t.Fatal(err)
	}
	staging := host(t, c, "staging-1", func(cfg *state.FleetConfig) { cfg.Prefix = "/writ/staging/" })
	accept(t, staging, 1, commit(1))

	// The staging host's certificate, configured with production's prefix.
	intruder := host(t, c, "staging-1", func(cfg *state.FleetConfig) { cfg.Prefix, cfg.FallbackLocal = "/writ/prod/", true })
	refused := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, state.ErrUnavailable) || !strings.Contains(err.Error(), "permission denied") || !strings.Contains(err.Error(), "common name") {
			t.Fatalf("%s under another environment's prefix: %v; want it refused, failing closed", what, err)
		}
	}
	_, err := intruder.Allowlist(ctx)
	refused("a read", err)
	refused("a job claim", intruder.ClaimJob(ctx, state.JobClaim{ID: "78", Token: "run-s", Host: "staging-1", PayloadSHA256: "bb"}))
	refused("dropping a claim", intruder.DropClaim(ctx, state.JobClaim{ID: "77", Token: "run-p", Host: "prod-1", PayloadSHA256: "aa"}))

	// Production's marks and claims are as they were.
	if st, err := prod.Allowlist(ctx); err != nil || st == nil || st.Version != 5 {
		t.Fatalf("production's allowlist mark: %+v %v", st, err)
	}
	var ce *state.ClaimedError
	if err := host(t, c, "prod-1", func(cfg *state.FleetConfig) { cfg.Prefix = "/writ/prod/" }).ClaimJob(ctx,
		state.JobClaim{ID: "77", Token: "run-q", Host: "prod-1", PayloadSHA256: "aa"}); !errors.As(err, &ce) {
		t.Fatalf("production's claim of job 77: %v, want it still held", err)
	}
}
