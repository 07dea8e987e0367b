package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// benchMinSamples is how many jobs each sub-benchmark runs at least, so the
// median is over enough runs even when the benchmark framework asks for
// fewer (a job takes about a second, longer than -benchtime's default).
const benchMinSamples = 10

// BenchmarkTrivialJob measures one trivial job end to end through the real
// GitLab Runner: the allowlisted deploy (a script that prints three lines)
// served by the coordinator to a fresh `gitlab-runner run-single`, with
// writ as the custom executor (allowlist fetched and judged, source fetched
// over https and its signature verified, checkout, script, audit records)
// or with the pass-through executor (the runner's own clone over http).
//
// ns/op is the mean over the framework's b.N jobs; ms/job-median is the
// median over at least benchMinSamples jobs (the extra ones run with the
// timer stopped). Run with -benchtime=10x for ten timed jobs.
func BenchmarkTrivialJob(b *testing.B) {
	keys := newKeys(b)
	for _, exe := range []string{"writ", "passthrough"} {
		b.Run(exe, func(b *testing.B) {
			w := NewWorld(b)
			f := newFixture(b, w, keys, "bench")
			if exe == "writ" {
				e := installWrit(b, w, keys)
				if err := e.Accept(); err != nil {
					b.Fatal(err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			var samples []time.Duration
			job := func() {
				p := f.LegitPayload()
				start := time.Now()
				o := w.RunJob(ctx, p)
				samples = append(samples, time.Since(start))
				if !o.Succeeded() {
					b.Fatalf("job failed:\n%s", o)
				}
			}
			b.ResetTimer()
			for range b.N {
				job()
			}
			b.StopTimer()
			for len(samples) < benchMinSamples {
				job()
			}
			b.ReportMetric(float64(median(samples))/float64(time.Millisecond), "ms/job-median")
		})
	}
}

// BenchmarkTrivialJobLargeAllowlist measures the trivial job of
// BenchmarkTrivialJob with writ judging it against a 10,000-entry allowlist
// (the suite's allowlist plus 10,000 entries for other projects, signed and
// approved like it), against the pass-through executor and against writ
// with the suite's small allowlist, jobs interleaved in one run so that the
// ratios compare like with like. Goal: x_writ10000/passthrough ≤ 1.05.
//
// ns/op is one job of each of the three; the ratios are of the medians.
func BenchmarkTrivialJobLargeAllowlist(b *testing.B) {
	keys := newKeys(b)
	type kind struct {
		name    string
		w       *World
		f       *Fixture
		samples []time.Duration
	}
	kinds := []*kind{{name: "passthrough"}, {name: "writ"}, {name: "writ10000"}}
	for _, k := range kinds {
		k.w = NewWorld(b)
		k.f = newFixture(b, k.w, keys, "bench-"+k.name)
		if k.name == "passthrough" {
			continue
		}
		if k.name == "writ10000" {
			if err := publishFiller(k.f, 8, 10_000); err != nil {
				b.Fatal(err)
			}
		}
		e := installWrit(b, k.w, keys)
		if err := e.Accept(); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	job := func(k *kind) {
		p := k.f.LegitPayload()
		start := time.Now()
		o := k.w.RunJob(ctx, p)
		k.samples = append(k.samples, time.Since(start))
		if !o.Succeeded() {
			b.Fatalf("%s: job failed:\n%s", k.name, o)
		}
	}
	round := func(i int) {
		// Alternate the order so that no kind always runs first.
		for j := range kinds {
			job(kinds[(i+j)%len(kinds)])
		}
	}
	round(0) // warm the runner's and writ's caches
	for _, k := range kinds {
		k.samples = nil
	}
	i := 0
	b.ResetTimer()
	for range b.N {
		i++
		round(i)
	}
	b.StopTimer()
	for len(kinds[0].samples) < benchMinSamples {
		i++
		round(i)
	}
	pass := median(kinds[0].samples)
	for _, k := range kinds {
		b.ReportMetric(float64(median(k.samples))/float64(time.Millisecond), "ms/"+k.name)
	}
	b.ReportMetric(float64(median(kinds[1].samples))/float64(pass), "x_writ/passthrough")
	b.ReportMetric(float64(median(kinds[2].samples))/float64(pass), "x_writ10000/passthrough")
}

// publishFiller makes version of f's allowlist the accepted one's plus n
// entries for projects of their own (none matches the suite's jobs),
// signed and approved like the others, and moves main to it.
func publishFiller(f *Fixture, version int64, n int) error {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `  - name: filler-%d
    match:
      project: filler/app%d
      job: build
      environments: [%s]
      refs: [refs/heads/main]
    definition:
      script:
        - make
        - echo %d
    source:
      repository: %s
      signers: [app-team]
      mode: commit
`, i, i, LegitEnvironment, i, f.Repos.SourceURL(RepoApp))
	}
	return allowlistAttack(f, allowlistVersion{SignedBy: Trusted, ApprovedBy: []Signer{Trusted}, Edit: func(y string) string {
		y = versionLine.ReplaceAllString(y, fmt.Sprintf("version: %d", version))
		return strings.Replace(y, "\njobs:\n", "\njobs:\n"+b.String(), 1)
	}})
}

// median of durations (the mean of the two middle ones for an even count).
func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
