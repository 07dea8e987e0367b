package executor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/internal/config"
	"gitlab.com/writ-ci/writ/internal/state"
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

// racingStore is a Local store where another host admits a job of the
// entry (commit other) just before this decision's first write.
type racingStore struct {
	*state.Local
	other string
	raced bool
}

func (s *racingStore) PutEntry(ctx context.Context, e *state.Entry, next state.EntryMark) error {
	if !s.raced {
		s.raced = true
		m := next
		m.Commit, m.Job, m.Host = s.other, "9999", "other-host"
		cur, err := s.Local.Entry(ctx, e.Name)
		if err != nil {
			return err
		}
		if err := s.Local.PutEntry(ctx, cur, m); err != nil {
			return err
		}
		return fmt.Errorf("%w: injected", state.ErrConflict)
	}
	return s.Local.PutEntry(ctx, e, next)
}

// Issue #15: when another host moves the entry's mark while a decision is
// taken, the decision is taken again against the new mark: the same commit
// is admitted, an older one is refused as a rollback, a newer one admitted.
func TestDecisionRacesAnotherHost(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	older := e.head
	newer := e.src.Commit(t, map[string]string{"x": "2"}, "newer", e.signer)
	newest := e.src.Commit(t, map[string]string{"x": "3"}, "newest", e.signer)
	e.head = newest
	e.write()
	cfg, err := config.Load(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range []struct {
		job, other string
		admitted   bool
		mark       string
	}{
		{older, older, true, older},
		{older, newer, false, newer},
		{newest, newer, true, newest},
	} {
		cfg.Paths.State = filepath.Join(e.root, fmt.Sprintf("state-%d", i))
		st := &racingStore{Local: state.NewLocal(cfg.Paths.State), other: c.other}
		payloadFile := filepath.Join(e.root, fmt.Sprintf("payload-%d.json", i))
		getenv := func(k string) string {
			if k == envJobResponse {
				return payloadFile
			}
			return ""
		}
		o := Options{Config: cfg, Allowlist: &dirSource{dir: e.alDir}, State: st, Getenv: getenv}.withDefaults()
		d, _, err := o.decide(t.Context(), e.payload(3000+i, c.job), true)
		if err != nil || d.Admitted != c.admitted {
			t.Fatalf("case %d: admitted=%v err=%v failures=%+v, want admitted=%v", i, d.Admitted, err, d.Failures, c.admitted)
		}
		if !c.admitted && (len(d.Failures) != 1 || d.Failures[0].Check != CheckRollback) {
			t.Fatalf("case %d: failures %+v, want one rollback", i, d.Failures)
		}
		hw, _, _ := o.readHighWater(t.Context(), "app-build")
		if hw == nil || hw.Commit != c.mark {
			t.Fatalf("case %d: mark %+v, want %s", i, hw, c.mark)
		}
	}
}

// slowClaimStore is a Local store whose job-id claim answers only once the
// decision has read the entry's marks (a claim slower than the checks, as
// a fleet store's round trip can be), with claimErr.
type slowClaimStore struct {
	*state.Local
	claimErr  error
	entryRead chan struct{}
	once      sync.Once

	mu       sync.Mutex
	claimed  bool // the claim has answered
	putEarly bool // a mark moved before the claim answered
	putMarks int
	overlaps bool // the checks ran while the claim was pending
}

func (s *slowClaimStore) Entry(ctx context.Context, name string) (*state.Entry, error) {
	s.once.Do(func() { close(s.entryRead) })
	return s.Local.Entry(ctx, name)
}

func (s *slowClaimStore) ClaimJob(ctx context.Context, c state.JobClaim) error {
	select {
	case <-s.entryRead:
		s.mu.Lock()
		s.overlaps = true
		s.mu.Unlock()
	case <-time.After(10 * time.Second):
	}
	s.mu.Lock()
	s.claimed = true
	s.mu.Unlock()
	if s.claimErr != nil {
		return s.claimErr
	}
	return s.Local.ClaimJob(ctx, c)
}

func (s *slowClaimStore) PutEntry(ctx context.Context, e *state.Entry, next state.EntryMark) error {
	s.mu.Lock()
	s.putEarly = s.putEarly || !s.claimed
	s.putMarks++
	s.mu.Unlock()
	return s.Local.PutEntry(ctx, e, next)
}

// Issue #15: the job-id claim runs while the allowlist and the source are
// checked, but no mark moves before it holds (the entry's, nor an extra
// source's), and its outcome decides: another run's id is refused for that
// alone, a claim that cannot be taken fails closed.
func TestClaimOverlapsChecks(t *testing.T) {
	t.Parallel()
	plain := newEnv(t)
	plain.write()
	extra := newSettingsEnv(t)
	extra.entry.SourceExtra = []string{"extra:", "  - path: tools", "    ref: refs/heads/main",
		"    repository: " + q("file://"+extra.settings.Path), "    signers: [devs]", "    mode: commit"}
	extra.write()
	holder := state.JobClaim{ID: "4000", Token: "other-run", Host: "other-host", Time: time.Now()}
	for _, c := range []struct {
		name     string
		claimErr error
	}{
		{"claimed", nil},
		{"held by another run", &state.ClaimedError{Holder: holder}},
		{"store unavailable", fmt.Errorf("%w: injected", state.ErrUnavailable)},
	} {
		for _, ec := range []struct {
			name  string
			e     *env
			marks int // marks an admission moves
		}{{"plain", plain, 1}, {"extra source", extra.env, 2}} {
			claimOverlapCase(t, ec.name+": "+c.name, ec.e, c.claimErr, ec.marks)
		}
	}
}

func claimOverlapCase(t *testing.T, name string, e *env, claimErr error, marks int) {
	t.Helper()
	cfg, err := config.Load(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(e.root, strings.NewReplacer(" ", "-", ":", "").Replace(name))
	cfg.Paths.State = filepath.Join(dir, "state")
	st := &slowClaimStore{Local: state.NewLocal(cfg.Paths.State), claimErr: claimErr, entryRead: make(chan struct{})}
	getenv := func(k string) string {
		if k == envJobResponse {
			return filepath.Join(dir, "payload.json")
		}
		return ""
	}
	o := Options{Config: cfg, Allowlist: &dirSource{dir: e.alDir}, State: st, Getenv: getenv}.withDefaults()
	d, _, err := o.decide(t.Context(), makePayload(t, 4000, e.head, e.entry.Script), true)
	if !st.overlaps {
		t.Errorf("%s: the claim answered before the checks read the entry's marks: it does not overlap them", name)
	}
	if st.putEarly {
		t.Errorf("%s: a mark moved before the job id was claimed", name)
	}
	hw, _, _ := o.readHighWater(t.Context(), "app-build")
	var held *state.ClaimedError
	switch {
	case claimErr == nil:
		if err != nil || !d.Admitted || st.putMarks != marks || hw == nil || hw.Commit != e.head || o.claimed != "4000" {
			t.Fatalf("%s: admitted=%v err=%v failures %+v, marks put %d, mark %+v, claimed %q; want admitted, %d marks moved, the entry's at %s",
				name, d.Admitted, err, d.Failures, st.putMarks, hw, o.claimed, marks, e.head)
		}
		return
	case st.putMarks != 0 || hw != nil || o.claimed != "" || d.Admitted:
		t.Fatalf("%s: admitted=%v, marks put %d, mark %+v, claimed %q; want nothing moved", name, d.Admitted, st.putMarks, hw, o.claimed)
	case errors.As(claimErr, &held):
		if err != nil || len(d.Failures) != 1 || d.Failures[0].Check != CheckJobID || d.Signer != "" {
			t.Fatalf("%s: err=%v failures %+v signer %q; want the job_id refusal alone", name, err, d.Failures, d.Signer)
		}
	case !errors.Is(err, state.ErrUnavailable):
		t.Fatalf("%s: err=%v, want writ cannot decide (ErrUnavailable)", name, err)
	}
}
