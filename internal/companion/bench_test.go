package companion

import (
	"fmt"
	"strings"
	"testing"

	"gitlab.com/writ-ci/writ/allowlist"
)

// bigAllowlist is an allowlist with n entries.
func bigAllowlist(n int) string {
	var b strings.Builder
	b.WriteString(editHeader + "jobs:\n")
	for i := 0; i < n; i++ {
		b.WriteString(entryText(entry(fmt.Sprintf("e%d", i), fmt.Sprintf("job %d", i), fmt.Sprintf("./deploy.sh %d", i)), "  "))
	}
	return b.String()
}

// BenchmarkProposeEdit measures the edit and its verification (two parses)
// of a 2000-entry allowlist, the core of one propose.
func BenchmarkProposeEdit(b *testing.B) {
	file := []byte(bigAllowlist(2000))
	old, err := allowlist.Parse("allowlist.yaml", file, nil)
	if err != nil {
		b.Fatal(err)
	}
	put := []*allowlist.Entry{entry("e1000", "job 1000", "./deploy.sh new"), entry("new", "new", "x")}
	b.SetBytes(int64(len(file)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out, err := editAllowlist(file, put, 4)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := verifyEdit(out, old, put, 4, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDeriveJobs measures reading a lint response of 500 jobs.
func BenchmarkDeriveJobs(b *testing.B) {
	var y strings.Builder
	res := &lintResult{Valid: true}
	y.WriteString("variables:\n  G: g\ndefault:\n  image: " + imageDigest + "\n")
	for i := 0; i < 500; i++ {
		fmt.Fprintf(&y, "job%d:\n  stage: deploy\n  tags: [p]\n  script: [x]\n  variables: {V: \"%d\"}\n  timeout: 1h 30m\n", i, i)
		res.Jobs = append(res.Jobs, lintJob{Name: fmt.Sprintf("job%d", i), Stage: "deploy", Script: []string{"x"}, TagList: []string{"p"}})
	}
	res.MergedYAML = y.String()
	b.SetBytes(int64(len(res.MergedYAML)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		jobs, err := deriveJobs(res, []string{"p"})
		if err != nil || len(jobs) != 500 {
			b.Fatal(err, len(jobs))
		}
	}
}
