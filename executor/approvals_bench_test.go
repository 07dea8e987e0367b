package executor

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/config"
	"gitlab.com/writ-ci/writ/internal/testkeys"
)

// approvalsWorld is an application repository whose head is signed by dev
// and approved for prod by three approvers, and two one-entry allowlists
// for it: "plain" without approvals, "approvals" requiring all three.
type approvalsWorld struct {
	head             string
	plain, approvals Options
	payload          []byte
}

func newApprovalsWorld(tb testing.TB, approvers int) *approvalsWorld {
	tb.Helper()
	dev := testkeys.SSHKey(tb, "dev@example.com")
	repo := testkeys.GitRepo(tb)
	repo.Commit(tb, map[string]string{"README.md": "x"}, "one", dev)
	w := &approvalsWorld{head: repo.Commit(tb, map[string]string{"main.go": "package main"}, "two", dev)}
	src := "file://" + repo.Path
	var lines []string
	for i := range 3 {
		k := testkeys.SSHKey(tb, fmt.Sprintf("approver%d@example.com", i))
		lines = append(lines, fmt.Sprintf("      - %q\n", k.AllowedSignersLine("")))
		if i < approvers {
			publishTestApproval(tb, repo, k, src, w.head, fmt.Sprintf("approver%d", i), "prod")
		}
	}
	cfg, err := config.Parse([]byte("environment = \"prod\"\n[allowlist]\nurl = \"file:///x\"\nidentity = \"test/allowlist\"\n[trust]\nssh_allowed_signers = \"/x\"\n"))
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	cfg.Paths.State, cfg.Paths.Cache = filepath.Join(dir, "state"), filepath.Join(dir, "cache")
	for _, withApprovals := range []bool{false, true} {
		s := entrySpec{Name: "app-build", Project: "group/app", Job: "build", Envs: []string{"prod"}, Refs: []string{"refs/heads/main"},
			Script: []string{"make"}, Vars: []string{"GREETING: {value: hello}"}, Repo: src, Signers: []string{"devs"}, Mode: "commit"}
		if withApprovals {
			s.SourceExtra = []string{"approvals:", "  signers: [approvers]", "  threshold: 3"}
		}
		yaml := "schema: writ/v2\nrepository: test/allowlist\nversion: 7\nexpires: 2099-01-01T00:00:00Z\n" +
			fmt.Sprintf("signers:\n  devs:\n    ssh:\n      - %q\n  approvers:\n    ssh:\n%sjobs:\n", dev.AllowedSignersLine(""), strings.Join(lines, "")) + s.render()
		acc, err := acceptedFrom(dir, []byte(yaml))
		if err != nil {
			tb.Fatal(err)
		}
		c := *cfg
		c.Paths.State = filepath.Join(dir, fmt.Sprint("state", withApprovals))
		o := Options{Config: &c, Allowlist: staticSource{acc}}.withDefaults()
		if withApprovals {
			w.approvals = o
		} else {
			w.plain = o
		}
	}
	w.payload = makePayload(tb, 1, w.head, []string{"make"})
	return w
}

// publishTestApproval stores an approval as `writ source approve` does.
func publishTestApproval(tb testing.TB, repo *testkeys.Repo, k *testkeys.SSH, src, commit, label string, envs ...string) {
	tb.Helper()
	stmt, err := allowlist.SourceStatement{Repository: src, Commit: commit, Environments: envs}.Bytes()
	if err != nil {
		tb.Fatal(err)
	}
	sig := k.Sign(tb, stmt, allowlist.SourceApprovalNamespace)
	sb := strings.TrimSpace(repo.GitInput(tb, stmt, "hash-object", "-w", "--stdin"))
	gb := strings.TrimSpace(repo.GitInput(tb, sig, "hash-object", "-w", "--stdin"))
	tree := strings.TrimSpace(repo.GitInput(tb, []byte("100644 blob "+gb+"\t"+allowlist.SourceSignatureFile(allowlist.KindSSH)+"\n100644 blob "+sb+"\t"+allowlist.SourceStatementFile+"\n"), "mktree"))
	c := strings.TrimSpace(repo.GitInput(tb, []byte("writ source approval\n"), "commit-tree", tree))
	repo.Git(tb, "update-ref", allowlist.SourceApprovalRef(commit, label), c)
}

func TestAdmissionCountsApprovals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newApprovalsWorld(t, 3)
	if d, _, err := w.approvals.decide(ctx, w.payload, false); err != nil || !d.Admitted {
		t.Fatalf("three approvals: not admitted: %v %+v", err, d.Failures)
	}
	short := newApprovalsWorld(t, 2)
	d, _, err := short.approvals.decide(ctx, short.payload, false)
	if err != nil || d.Admitted || len(d.Failures) == 0 || d.Failures[0].Check != CheckApprovals || !strings.Contains(d.Failures[0].Message, "has 2 of the 3 approvals") {
		t.Fatalf("two approvals of three: %v %+v", err, d.Failures)
	}
}

// BenchmarkAdmissionApprovals is the admission decision of a job whose
// entry requires three approvals (fetching and verifying them with the
// job's ref, from a warm mirror) against the same job without approvals,
// measured alternately in one run; ratio is with/without.
func BenchmarkAdmissionApprovals(b *testing.B) {
	ctx := context.Background()
	w := newApprovalsWorld(b, 3)
	decide := func(o Options) time.Duration {
		start := time.Now()
		d, _, err := o.decide(ctx, w.payload, false)
		if err != nil || !d.Admitted {
			b.Fatalf("not admitted: %v %+v", err, d.Failures)
		}
		return time.Since(start)
	}
	decide(w.plain) // warm the mirrors
	decide(w.approvals)
	var plain, with time.Duration
	b.ResetTimer()
	for b.Loop() {
		plain += decide(w.plain)
		with += decide(w.approvals)
	}
	n := float64(b.N)
	b.ReportMetric(float64(plain.Nanoseconds())/n, "ns/plain")
	b.ReportMetric(float64(with.Nanoseconds())/n, "ns/approvals")
	b.ReportMetric(float64(with)/float64(plain), "ratio")
	b.ReportMetric(float64((with-plain).Microseconds())/n, "µs-added")
}
