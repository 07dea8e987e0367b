package executor

import (
	"context"
	"testing"
	"time"
)

// BenchmarkApprovedHistory is the admission of GitLab's unsigned merge
// commit under signature: none in mode strict, with 16 approved merges
// since descends_from (the walk reads and verifies the approvals of each),
// against the same job in mode commit (the job's commit's approvals
// only), from warm mirrors, measured alternately in one run; ratio is
// strict/commit. Nothing is recorded, so every decision walks the whole
// chain.
func BenchmarkApprovedHistory(b *testing.B) {
	ctx := context.Background()
	w := newMergeWorld(b)
	strict, commit := w.options(b, "strict", 2), w.options(b, "commit", 2)
	var head string
	for range 16 {
		head = w.merge(b, map[string]string{"deploy.sh": "echo " + time.Now().String() + "\n"}, nil)
		w.approve(b, head, 0, 1)
	}
	payload := makePayload(b, 1, head, []string{"make"})
	decide := func(o Options) time.Duration {
		start := time.Now()
		d, _, err := o.decide(ctx, payload, false)
		if err != nil || !d.Admitted {
			b.Fatalf("not admitted: %v %+v", err, d.Failures)
		}
		return time.Since(start)
	}
	decide(commit) // warm the mirror
	decide(strict)
	var c, s time.Duration
	b.ResetTimer()
	for b.Loop() {
		c += decide(commit)
		s += decide(strict)
	}
	n := float64(b.N)
	b.ReportMetric(float64(c.Nanoseconds())/n, "ns/commit")
	b.ReportMetric(float64(s.Nanoseconds())/n, "ns/strict")
	b.ReportMetric(float64(s)/float64(c), "ratio")
}
