package executor

import (
	"os"
	"path/filepath"
	"testing"

	"gitlab.com/writ-ci/writ/internal/config"
)

// Issue #12: a second payload with a job id in use is refused and audited,
// moves no mark, and its cleanup removes nothing of the first run.
func TestDuplicateJobID(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	older := e.head
	e.head = e.src.Commit(t, map[string]string{"x": "2"}, "newer", e.signer)
	e.write()

	first := e.newJob(e.payload(950, older))
	if _, code := first.stage("prepare"); code != 0 {
		t.Fatalf("first prepare: exit %d\n%s", code, first.log.String())
	}
	// The same bytes from another run (another payload file), and another
	// payload with the same id and a newer commit.
	for i, payload := range [][]byte{e.payload(950, older), e.payload(950, e.head)} {
		dup := e.newJob(payload)
		out, code := dup.stage("prepare")
		if code != 1 {
			t.Fatalf("duplicate %d: prepare exit %d, want 1 (refused)\n%s", i, code, out)
		}
		mustContain(t, out, "Failed check: job_id", "already claimed")
		dup.stage("cleanup")
		if _, err := os.Stat(filepath.Join(e.state, "jobs", "950", "decision.json")); err != nil {
			t.Fatalf("duplicate %d's cleanup removed the first run's decision: %v", i, err)
		}
	}
	o := (&Options{Config: &config.Config{Paths: config.Paths{State: e.state}}}).withDefaults()
	hw, _, err := o.readHighWater(t.Context(), "app-build")
	if err != nil || hw == nil || hw.Commit != older {
		t.Fatalf("mark after duplicates: %+v %v, want the first run's %s", hw, err, older)
	}
	// The first run goes on and ends normally.
	for _, s := range []string{"prepare_script", "get_sources", "build_script"} {
		if out, code := first.run(s); code != 0 {
			t.Fatalf("first run %s: exit %d\n%s", s, code, out)
		}
	}
	if _, code := first.stage("cleanup"); code != 0 {
		t.Fatalf("first cleanup failed\n%s", first.log.String())
	}
	if _, err := os.Stat(filepath.Join(e.state, "jobs", "950")); !os.IsNotExist(err) {
		t.Fatalf("first run's cleanup left its state: %v", err)
	}
	var refusals, cleanups int
	for _, r := range e.auditRecords() {
		if r.Job != "950" {
			continue
		}
		switch r.Event {
		case EventRefuse:
			refusals++
			if f, _ := r.Fields["checks_failed"].([]any); len(f) == 0 || f[0] != CheckJobID {
				t.Errorf("refusal record without the job_id check: %+v", r)
			}
		case EventCleanup:
			cleanups++
		}
	}
	if refusals != 2 || cleanups != 3 {
		t.Fatalf("audit: %d refusals, %d cleanups; want 2 and 3 (two refused cleanups, one real)", refusals, cleanups)
	}
}
