package e2e

import (
	"context"
	"slices"
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
