package e2e

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// BenchmarkSandboxOverhead measures what containing a job costs, end to
// end through the real GitLab Runner: the allowlisted deploy with writ's
// sandbox, with writ and sandbox.unsafe_no_sandbox, and with the
// pass-through executor, interleaved job by job on one host so that load
// from elsewhere falls on all three alike. It reports the medians' ratios:
// sandbox/no-sandbox is the sandbox's own cost (config_exec's probe and a
// contained build_script and after_script), sandbox/pass-through the
// whole of writ against the runner's own scripts.
func BenchmarkSandboxOverhead(b *testing.B) {
	keys := newKeys(b)
	w := NewWorld(b)
	f := newFixture(b, w, keys, "bench")
	pt := w.Executor
	e := installWrit(b, w, keys)
	if err := e.Accept(); err != nil {
		b.Fatal(err)
	}
	contained, err := os.ReadFile(e.Config)
	if err != nil {
		b.Fatal(err)
	}
	uncontained := strings.Replace(string(contained), "[sandbox]\n", "[sandbox]\nunsafe_no_sandbox = true\n", 1)
	if uncontained == string(contained) {
		b.Fatal("the config has no [sandbox] table")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	variants := []struct {
		name   string
		config string
		opts   RunOptions
	}{
		{"sandbox", string(contained), RunOptions{}},
		{"no-sandbox", uncontained, RunOptions{}},
		{"pass-through", string(contained), RunOptions{Executor: &pt}},
	}
	samples := map[string][]time.Duration{}
	round := func() {
		for _, v := range variants {
			if err := os.WriteFile(e.Config, []byte(v.config), 0o644); err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			o := w.RunJobWith(ctx, f.LegitPayload(), v.opts)
			samples[v.name] = append(samples[v.name], time.Since(start))
			if !o.Succeeded() {
				b.Fatalf("%s: job failed:\n%s", v.name, o)
			}
		}
	}
	b.ResetTimer()
	for range b.N {
		round()
	}
	b.StopTimer()
	for len(samples["sandbox"]) < benchMinSamples {
		round()
	}
	m := func(n string) float64 { return float64(median(samples[n])) }
	b.ReportMetric(m("sandbox")/float64(time.Millisecond), "ms/job-sandbox")
	b.ReportMetric(m("no-sandbox")/float64(time.Millisecond), "ms/job-no-sandbox")
	b.ReportMetric(m("pass-through")/float64(time.Millisecond), "ms/job-pass-through")
	b.ReportMetric(m("sandbox")/m("no-sandbox"), "sandbox/no-sandbox")
	b.ReportMetric(m("sandbox")/m("pass-through"), "sandbox/pass-through")
}
