package e2e

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

// TestPayloadFixtureAcceptedByRunner feeds executor/testdata/payload.json —
// the payload the docs and unit tests use, and the example for `writ
// allowlist entry --job` — to the real GitLab Runner, which must start the
// job (send an update) rather than reject the payload, so the fixture stays
// one the runner really accepts.
func TestPayloadFixtureAcceptedByRunner(t *testing.T) {
	w := NewWorld(t)
	body, err := os.ReadFile("../../executor/testdata/payload.json")
	if err != nil {
		t.Fatal(err)
	}
	var head struct {
		ID    int64  `json:"id"`
		Token string `json:"token"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o := w.RunRaw(ctx, head.ID, head.Token, body)
	if !o.Served || len(o.Updates) == 0 || strings.Contains(o.Runner.Log, payloadRejected) {
		t.Fatalf("the runner did not start the fixture's job (served %v, %d updates):\n%s", o.Served, len(o.Updates), tail(o.Runner.Log, 3000))
	}
	if !strings.Contains(o.Trace, "Using Custom executor") {
		t.Errorf("the job did not reach the custom executor:\n%s", tail(o.Trace, 3000))
	}
}
