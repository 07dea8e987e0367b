package e2e

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// sandboxBenchRounds is the least number of rounds (one job of each
// variant) BenchmarkSandboxOverhead measures, timed or not.
const sandboxBenchRounds = 20

// BenchmarkSandboxOverhead measures what containing a job costs, end to
// end through the real GitLab Runner: the allowlisted deploy with writ's
// sandbox, with writ and sandbox.unsafe_no_sandbox, and with the
// pass-through executor. A round runs one job of each, in an order that
// rotates from round to round, so that load from elsewhere and any warm-up
// fall on all three alike.
//
// Ratios are paired: each round's sandbox job over the same round's other
// job, and the median of those per-round ratios is reported (a load spike
// during one round moves one ratio, not the anchor of all). sandbox/
// pass-through is the whole of writ against the runner's own scripts (the
// goal is at most 1.05); sandbox/no-sandbox is the sandbox's own cost
// (config_exec's probe and a contained build_script and after_script).
// ms/job-* are medians of wall time; cpu-ms/job-* are medians of the CPU
// time of the runner and every process it waited for, which other load on
// the host changes far less. ns/op is the framework's mean wall time of one
// round (three jobs).
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
	wall := map[string][]time.Duration{}
	cpu := map[string][]time.Duration{}
	ratios := map[string][]float64{}
	rounds := 0
	round := func() {
		got := map[string]time.Duration{}
		for i := range variants {
			v := variants[(i+rounds)%len(variants)]
			if err := os.WriteFile(e.Config, []byte(v.config), 0o644); err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			o := w.RunJobWith(ctx, f.LegitPayload(), v.opts)
			got[v.name] = time.Since(start)
			if !o.Succeeded() {
				b.Fatalf("%s: job failed:\n%s", v.name, o)
			}
			wall[v.name] = append(wall[v.name], got[v.name])
			cpu[v.name] = append(cpu[v.name], o.Runner.CPU)
		}
		rounds++
		for _, anchor := range []string{"no-sandbox", "pass-through"} {
			ratios[anchor] = append(ratios[anchor], float64(got["sandbox"])/float64(got[anchor]))
		}
	}
	b.ResetTimer()
	for range b.N {
		round()
	}
	b.StopTimer()
	for rounds < sandboxBenchRounds {
		round()
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	for _, v := range variants {
		b.ReportMetric(ms(median(wall[v.name])), "ms/job-"+v.name)
		b.ReportMetric(ms(median(cpu[v.name])), "cpu-ms/job-"+v.name)
	}
	b.ReportMetric(medianRatio(ratios["no-sandbox"]), "sandbox/no-sandbox")
	b.ReportMetric(medianRatio(ratios["pass-through"]), "sandbox/pass-through")
	b.ReportMetric(float64(median(cpu["sandbox"]))/float64(median(cpu["pass-through"])), "cpu-sandbox/pass-through")
}

// medianRatio is the median of paired ratios.
func medianRatio(r []float64) float64 {
	s := slices.Clone(r)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
