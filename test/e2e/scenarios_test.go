package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCatalogIsWellFormed checks the threat model's shape without running
// anything.
func TestCatalogIsWellFormed(t *testing.T) {
	t.Parallel()
	slug := regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)
	names := map[string]bool{}
	perCategory := map[Category]int{}
	attacks := 0
	for _, s := range Scenarios {
		if !slug.MatchString(s.Name) {
			t.Errorf("scenario name %q is not a lower-case slug (canary markers embed it)", s.Name)
		}
		if names[s.Name] {
			t.Errorf("duplicate scenario %q", s.Name)
		}
		names[s.Name] = true
		perCategory[s.Category]++
		if s.Description == "" || s.Mutate == nil {
			t.Errorf("%s: needs a description and a Mutate", s.Name)
		}
		switch s.Writ.Verdict {
		case Admit, Refuse, Undecided, RunnerRejects, UploadRefused:
		default:
			t.Errorf("%s: writ verdict %q", s.Name, s.Writ.Verdict)
		}
		if s.PassThrough != nil && s.Shows == "" {
			t.Errorf("%s: say what the pass-through check shows (Shows)", s.Name)
		}
		if s.Robustness && s.PassThrough == nil {
			t.Errorf("%s: a robustness scenario must say what the pass-through run shows", s.Name)
		}
		if !s.Robustness {
			attacks++
			if s.Writ.Verdict != Refuse && s.Writ.Verdict != Undecided && s.Writ.Verdict != UploadRefused {
				t.Errorf("%s: an attack must be refused, or fail closed", s.Name)
			}
			if s.Writ.Reason == "" || s.Writ.Detail == "" {
				t.Errorf("%s: an attack needs writ's specific reason and detail", s.Name)
			}
		}
	}
	for _, c := range []Category{CatScript, CatInjection, CatVariables, CatSource, CatAllowlist, CatPoisoning, CatImage, CatMalformed, CatConcurrency} {
		if perCategory[c] == 0 {
			t.Errorf("no scenario in category %q", c)
		}
	}
	if attacks < 30 {
		t.Errorf("%d attacks, want at least 30", attacks)
	}
	t.Logf("%d scenarios (%d attacks) in %d categories", len(Scenarios), attacks, len(perCategory))
}

// runFixture serves the fixture's jobs the way the scenario set them up and
// returns the outcome of f.Payload (or of f.Raw), then those of f.Concurrent.
func runFixture(ctx context.Context, f *Fixture) (Outcome, []Outcome) {
	w := f.W
	for _, p := range f.Before {
		w.T.Logf("before: job %d: %s", p.ID, w.RunJob(ctx, p).State)
	}
	switch {
	case f.Raw != nil:
		return w.RunRaw(ctx, f.Payload.ID, f.Payload.Token, f.Raw), nil
	case len(f.Concurrent) > 0:
		all := w.RunJobs(ctx, append([]*Payload{f.Payload}, f.Concurrent...)...)
		return all[0], all[1:]
	default:
		return w.RunJob(ctx, f.Payload), nil
	}
}

// TestLegitimateJobRunsCleanly is the control: unmutated, the fixture's job
// succeeds through the pass-through executor, deploys, and fires no canary.
// Without it, a canary that fired by itself would make every scenario pass.
func TestLegitimateJobRunsCleanly(t *testing.T) {
	t.Parallel()
	keys := newKeys(t)
	w := NewWorld(t)
	f := newFixture(t, w, keys, "control")
	o, _ := runFixture(testCtx(t), f)
	if err := legitRan(f, o); err != nil {
		t.Fatalf("%v:\n%s", err, o)
	}
	if f.Canary.Printed(o) {
		t.Fatalf("canary marker in the trace of the legitimate job:\n%s", o)
	}
}

// TestScenarios runs the whole catalog twice, each run in its own World:
// once with writ as the runner's executor, where every attack must be
// refused (or fail closed) with writ's specific reason in the trace, its
// canary silent and the refusal in the verified audit log; and once with
// the pass-through executor, where every attack must work (its canary
// fires): the mutation check that gives writ's refusals their meaning. With
// -v it logs a summary table of both runs.
func TestScenarios(t *testing.T) {
	t.Parallel()
	keys := newKeys(t)
	sum := newSummary()
	t.Run("catalog", func(t *testing.T) {
		for _, s := range Scenarios {
			t.Run(s.Name, func(t *testing.T) {
				t.Parallel()
				t.Run("passthrough", func(t *testing.T) {
					t.Parallel()
					account, ok := "", false
					defer func() { sum.set(s.Name, &summaryCell{account, ok && !t.Failed()}, nil) }()
					account = runAgainstPassthrough(t, keys, s)
					ok = true
				})
				t.Run("writ", func(t *testing.T) {
					t.Parallel()
					account, ok := "", false
					defer func() { sum.set(s.Name, nil, &summaryCell{account, ok && !t.Failed()}) }()
					account = runAgainstWrit(t, keys, s)
					ok = true
				})
			})
		}
	})
	t.Log("scenario summary (writ vs the pass-through executor):\n\n" + sum.markdown())
}

// runAgainstPassthrough runs s with the pass-through executor and returns
// what happened; the attack must work there.
func runAgainstPassthrough(t *testing.T, keys *Keys, s Scenario) string {
	w := NewWorld(t)
	f := newFixture(t, w, keys, s.Name)
	if err := s.Mutate(f); err != nil {
		t.Fatalf("mutate: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o, _ := runFixture(ctx, f)
	switch {
	case s.PassThrough != nil:
		if err := s.PassThrough(f, o); err != nil {
			t.Fatalf("%s: %v\n%s", s.Name, err, o)
		}
		return s.Shows
	case !f.Canary.Fired():
		t.Fatalf("%s: the attack did not work against the pass-through executor (canary %s absent):\n%s", s.Name, f.Canary.File, o)
	}
	account := "canary fired"
	if f.Canary.Printed(o) {
		account += ", marker in trace"
	}
	if o.State != "" {
		account += "; job " + o.State
	}
	return account
}

// runAgainstWrit runs s with writ and returns what writ did; it must be
// what s.Writ (and s.WritConcurrent) say.
func runAgainstWrit(t *testing.T, keys *Keys, s Scenario) string {
	f, e := newWritFixture(t, keys, s.Name, s.Fresh)
	if err := s.Mutate(f); err != nil {
		t.Fatalf("mutate: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o, others := runFixture(ctx, f)
	if s.Fresh {
		recs, err := e.Records()
		if _, ok := hasEvent(recs, "allowlist-accept"); ok || err != nil {
			t.Errorf("%s: the fresh environment accepted an allowlist version (%v):\n%s", s.Name, err, auditSummary(e))
		}
	}
	if len(f.Concurrent) == 1 && f.Concurrent[0].ID == f.Payload.ID {
		return judgeTwins(t, s, f, e, o)
	}
	account, problems := judgeWrit(s.Writ, f.Canary, e, o)
	if s.WritCheck != nil {
		if err := s.WritCheck(f, o); err != nil {
			problems = append(problems, err.Error())
		}
	}
	for _, p := range problems {
		t.Errorf("%s: %s", s.Name, p)
	}
	if len(problems) > 0 {
		t.Logf("%s\n--- audit log ---\n%s", o, auditSummary(e))
	}
	if len(others) != len(s.WritConcurrent) {
		t.Fatalf("%d concurrent jobs, %d expectations", len(others), len(s.WritConcurrent))
	}
	for i, exp := range s.WritConcurrent {
		acc, problems := judgeWrit(exp, f.Canary, e, others[i])
		for _, p := range problems {
			t.Errorf("%s: concurrent job %d: %s", s.Name, others[i].JobID, p)
		}
		if len(problems) > 0 {
			t.Logf("%s", others[i])
		}
		account += fmt.Sprintf("; alongside: %s", acc)
	}
	return account
}

// judgeTwins judges two payloads that share a job ID (and so one
// coordinator record, whose trace is whichever runner wrote last): by the
// audit log, by the final states, and by the canary. The id is claimed by
// whichever payload reaches prepare first (issue #12): that one is judged
// on its own (the tampered twin refused for the reason s.Writ names, the
// legitimate one admitted), and a twin arriving while the id is held is
// refused as a duplicate ("job_id"). Either way the tampered twin never
// runs and at most the legitimate one is admitted.
func judgeTwins(t *testing.T, s Scenario, f *Fixture, e *writEnv, o Outcome) string {
	var problems []string
	bad := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	if f.Canary.Fired() || f.Canary.Printed(o) {
		bad("the canary fired")
	}
	recs, err := e.Records()
	if err != nil {
		bad("%v", err)
	}
	want := strings.TrimPrefix(s.Writ.Reason, "Failed check: ") + ": "
	var refused, duplicates, admitted int
	for _, r := range jobRecords(recs, o.JobID) {
		switch r.Event {
		case "refuse":
			refused++
			switch {
			case strings.HasPrefix(r.Reason, "job_id: "):
				duplicates++
			case !strings.HasPrefix(r.Reason, want):
				bad("refusal reason %q starts with neither %q nor %q", r.Reason, want, "job_id: ")
			}
		case "admit":
			admitted++
			if r.Fields["sha"] != f.Hist.Head || r.Fields["entry"] != "app-deploy-production" {
				bad("admission of %v by %v", r.Fields["sha"], r.Fields["entry"])
			}
		}
	}
	switch {
	case refused+admitted != 2 || admitted > 1:
		bad("job %d: %d refusals and %d admissions in the audit log, want two decisions, at most one admission", o.JobID, refused, admitted)
	case duplicates == 0 && admitted != 1:
		bad("job %d: neither twin was refused as a duplicate, yet the legitimate one was not admitted", o.JobID)
	}
	var finals []string
	successes := 0
	for _, u := range o.Updates {
		if u.Final() {
			finals = append(finals, u.State)
			if u.State == "success" {
				successes++
			}
		}
	}
	if len(finals) != 2 || successes != admitted {
		bad("final states %q, want two, with %d success", finals, admitted)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", s.Name, p)
	}
	if len(problems) > 0 {
		t.Logf("%s\n--- audit log ---\n%s", o, auditSummary(e))
	}
	if duplicates > 0 {
		return fmt.Sprintf("one twin decided (%d admitted), the other refused as a duplicate job id (audit: job_id); the canary never ran", admitted)
	}
	return "refused the tampered twin (audit: " + strings.TrimPrefix(s.Writ.Reason, "Failed check: ") + "); admitted the legitimate twin, which succeeded"
}

// summary collects both runs of every scenario.
type summary struct {
	mu   sync.Mutex
	rows map[string]*summaryRow
}

type summaryRow struct{ writ, pass *summaryCell }

// summaryCell is one run's account, and whether the run passed.
type summaryCell struct {
	text string
	ok   bool
}

func newSummary() *summary { return &summary{rows: map[string]*summaryRow{}} }

// set records the pass-through run (pass) or the writ run (writ) of a scenario.
func (s *summary) set(name string, pass, writ *summaryCell) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rows[name]
	if r == nil {
		r = &summaryRow{}
		s.rows[name] = r
	}
	if pass != nil {
		r.pass = pass
	}
	if writ != nil {
		r.writ = writ
	}
}

func (s *summary) markdown() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	b.WriteString("| # | scenario | category | writ | pass-through |\n|---|---|---|---|---|\n")
	mark := func(c *summaryCell) string {
		switch {
		case c == nil:
			return "(not run)"
		case !c.ok:
			return "**FAIL** " + c.text
		}
		return c.text
	}
	n := 0
	for _, sc := range Scenarios {
		r := s.rows[sc.Name]
		if r == nil {
			continue
		}
		n++
		cell := func(x string) string { return strings.ReplaceAll(x, "|", "\\|") }
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s |\n", n, sc.Name, sc.Category,
			cell(mark(r.writ)), cell(mark(r.pass)))
	}
	return b.String()
}
