package e2e

import (
	"context"
	"regexp"
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
		if s.Writ.Verdict != Admit && s.Writ.Verdict != Refuse {
			t.Errorf("%s: writ verdict %q", s.Name, s.Writ.Verdict)
		}
		if s.Robustness && s.PassThrough == nil {
			t.Errorf("%s: a robustness scenario must say what the pass-through run shows", s.Name)
		}
		if !s.Robustness {
			attacks++
			if s.Writ.Verdict != Refuse {
				t.Errorf("%s: an attack must be refused", s.Name)
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

// TestScenariosAgainstPassthrough is the suite's mutation check: every
// attack must work against a naive executor (its canary fires), so that a
// refusal under writ means something. Robustness scenarios must show what
// they promise instead.
func TestScenariosAgainstPassthrough(t *testing.T) {
	t.Parallel()
	keys := newKeys(t)
	for _, s := range Scenarios {
		t.Run(s.Name, func(t *testing.T) {
			t.Parallel()
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
			case !f.Canary.Fired():
				t.Fatalf("%s: the attack did not work against the pass-through executor (canary %s absent):\n%s", s.Name, f.Canary.File, o)
			}
			if !s.Robustness {
				t.Logf("canary fired; marker in trace: %v; job %s", f.Canary.Printed(o), o.State)
			}
		})
	}
}
