package executor

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/config"
	"gitlab.com/writ-ci/writ/internal/testkeys"
)

// mergeWorld is a merge-request flow: main's commits are GitLab's unsigned
// merge commits of branches a developer signed, and an entry with
// signature: none and two approvers.
type mergeWorld struct {
	repo      *testkeys.Repo
	src       string
	base      string // the reviewed first commit: descends_from
	approvers []*testkeys.SSH
	forge     *testkeys.SSH // the forge's own signing key, in no set
	dir       string
}

func newMergeWorld(t testing.TB) *mergeWorld {
	t.Helper()
	w := &mergeWorld{repo: testkeys.GitRepo(t), dir: t.TempDir(), forge: testkeys.SSHKey(t, "gitlab@example.com")}
	w.src = "file://" + w.repo.Path
	w.base = w.repo.Commit(t, map[string]string{"README.md": "app\n"}, "initial", nil)
	for i := range 3 {
		w.approvers = append(w.approvers, testkeys.SSHKey(t, fmt.Sprintf("approver%d@example.com", i)))
	}
	return w
}

// merge makes a feature branch off main with files, signed by a developer
// key, and GitLab's merge commit of it into main (signed by by, nil for
// unsigned), and moves main there.
func (w *mergeWorld) merge(t testing.TB, files map[string]string, by any) string {
	t.Helper()
	r := w.repo
	main := r.Git(t, "rev-parse", "refs/heads/main")
	r.Git(t, "checkout", "-q", "--detach", main)
	feature := r.Commit(t, files, "feature", testkeys.SSHKey(t, "dev@example.com"))
	return w.mergeOf(t, main, feature, by)
}

func (w *mergeWorld) mergeOf(t testing.TB, first, second string, by any) string {
	t.Helper()
	r := w.repo
	r.Git(t, "checkout", "-q", "--detach", first)
	args := []string{"merge", "-q", "--no-ff", "-m", "Merge branch 'feature' into 'main'", second}
	if k, ok := by.(*testkeys.SSH); ok {
		args = append([]string{"-c", "gpg.format=ssh", "-c", "user.signingkey=" + k.PrivatePath}, append(args, "-S")...)
	} else {
		args = append(args, "--no-gpg-sign")
	}
	r.Git(t, args...)
	m := r.Git(t, "rev-parse", "HEAD")
	r.Git(t, "update-ref", "refs/heads/main", m)
	return m
}

// push commits straight onto main, unsigned: what a compromised forge
// can do between two merges.
func (w *mergeWorld) push(t testing.TB, files map[string]string) string {
	t.Helper()
	r := w.repo
	r.Git(t, "checkout", "-q", "--detach", "refs/heads/main")
	c := r.Commit(t, files, "hotfix", nil)
	r.Git(t, "update-ref", "refs/heads/main", c)
	return c
}

func (w *mergeWorld) approve(t testing.TB, commit string, who ...int) {
	t.Helper()
	for _, i := range who {
		publishTestApproval(t, w.repo, w.approvers[i], w.src, commit, fmt.Sprintf("approver%d", i), "prod")
	}
}

// options is writ deciding under an entry with signature: none in mode,
// requiring threshold approvers; state persists across calls.
func (w *mergeWorld) options(t testing.TB, mode string, threshold int) Options {
	t.Helper()
	var lines []string
	for _, k := range w.approvers {
		lines = append(lines, fmt.Sprintf("      - %q\n", k.AllowedSignersLine("")))
	}
	s := entrySpec{Name: "app-deploy", Project: "group/app", Job: "build", Envs: []string{"prod"}, Refs: []string{"refs/heads/main"},
		Script: []string{"make"}, Vars: []string{"GREETING: {value: hello}"}, Repo: w.src, Signers: []string{"approvers"}, Mode: mode,
		SourceExtra: []string{"signature: none", "descends_from: " + w.base, "approvals:", "  signers: [approvers]", fmt.Sprintf("  threshold: %d", threshold)}}
	entry := strings.Replace(s.render(), "      signers: [approvers]\n      mode:", "      mode:", 1)
	yaml := "schema: writ/v2\nrepository: test/allowlist\nversion: 7\nexpires: 2099-01-01T00:00:00Z\n" +
		"signers:\n  approvers:\n    ssh:\n" + strings.Join(lines, "") + "jobs:\n" + entry
	acc, err := acceptedFrom(w.dir, []byte(yaml))
	if err != nil {
		t.Fatalf("%v\n%s", err, yaml)
	}
	cfg, err := config.Parse([]byte("environment = \"prod\"\n[allowlist]\nurl = \"file:///x\"\nidentity = \"test/allowlist\"\n[trust]\nssh_allowed_signers = \"/x\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Paths.State, cfg.Paths.Cache = filepath.Join(w.dir, "state-"+mode), filepath.Join(w.dir, "cache")
	return Options{Config: cfg, Allowlist: staticSource{acc}}.withDefaults()
}

func decideAt(t *testing.T, o Options, id int, sha string) *Decision {
	t.Helper()
	d, _, err := o.decide(context.Background(), makePayload(t, id, sha, []string{"make"}), true)
	if err != nil {
		t.Fatalf("commit %s: cannot decide: %v", sha, err)
	}
	return d
}

func refusedBy(t *testing.T, d *Decision, check string, wants ...string) {
	t.Helper()
	if d.Admitted || len(d.Failures) == 0 || d.Failures[0].Check != check {
		t.Fatalf("want a refusal by %s, got admitted=%t %+v", check, d.Admitted, d.Failures)
	}
	for _, w := range wants {
		if !strings.Contains(d.Failures[0].Message, w) {
			t.Errorf("refusal lacks %q:\n%s", w, d.Failures[0].Message)
		}
	}
}

// TestUnsignedMergeCommitNeedsApprovals: signature: none admits GitLab's
// unsigned merge commit with two approvals of exactly it, and refuses it
// with one, with approvals of another commit, and when only the forge's
// own signature vouches for it.
func TestUnsignedMergeCommitNeedsApprovals(t *testing.T) {
	t.Parallel()
	w := newMergeWorld(t)
	o := w.options(t, "commit", 2)

	m1 := w.merge(t, map[string]string{"deploy.sh": "echo v1\n"}, nil)
	w.approve(t, m1, 0)
	refusedBy(t, decideAt(t, o, 1, m1), CheckApprovals, "has 1 of the 2 approvals", "1 more needed")

	w.approve(t, m1, 1)
	d := decideAt(t, o, 2, m1)
	if !d.Admitted {
		t.Fatalf("two approvals: refused %+v", d.Failures)
	}
	if !strings.HasPrefix(d.Signer, "approved by key SHA256:") || strings.Count(d.Signer, "key SHA256:") != 2 {
		t.Errorf("the decision names %q as who vouched", d.Signer)
	}

	// Approvals of m1 copied under m2's refs are approvals of m1.
	m2 := w.merge(t, map[string]string{"deploy.sh": "echo v2\n"}, nil)
	for i := range 2 {
		publishTestApproval(t, w.repo, w.approvers[i], w.src, m1, fmt.Sprintf("copy%d", i), "prod")
		ref := fmt.Sprintf("refs/writ/approvals/%s/copy%d", m1, i)
		w.repo.Git(t, "update-ref", fmt.Sprintf("refs/writ/approvals/%s/copy%d", m2, i), w.repo.Git(t, "rev-parse", ref))
	}
	refusedBy(t, decideAt(t, o, 3, m2), CheckApprovals, "has 0 of the 2 approvals", "copy0: other commit")

	// The forge signs its merge commit with its own key: the signature
	// counts for nothing, nor does the forge's approval.
	m3 := w.merge(t, map[string]string{"deploy.sh": "echo v3\n"}, w.forge)
	w.approve(t, m3, 0)
	publishTestApproval(t, w.repo, w.forge, w.src, m3, "gitlab", "prod")
	refusedBy(t, decideAt(t, o, 4, m3), CheckApprovals, "has 1 of the 2 approvals", "gitlab: key outside the approver sets")
}

// TestApprovedHistory: with mode strict, every first-parent commit since
// the last admitted one must be approved, so a commit pushed straight onto
// main between two approved merges is refused even though the merge after
// it (whose tree holds it) is approved; second parents are not walked.
func TestApprovedHistory(t *testing.T) {
	t.Parallel()
	w := newMergeWorld(t)
	strict, commit := w.options(t, "strict", 2), w.options(t, "commit", 2)

	m1 := w.merge(t, map[string]string{"deploy.sh": "echo v1\n"}, nil)
	w.approve(t, m1, 0, 1)
	if d := decideAt(t, strict, 1, m1); !d.Admitted {
		t.Fatalf("first merge, approved: refused %+v", d.Failures)
	}

	x := w.push(t, map[string]string{"deploy.sh": "echo backdoor\n"})
	m2 := w.merge(t, map[string]string{"README.md": "v2\n"}, nil)
	w.approve(t, m2, 0, 1)
	refusedBy(t, decideAt(t, strict, 2, m2), CheckApprovals,
		"every first-parent commit since "+m1+" must be approved", "first-parent commit 1 of 1 (\"hotfix\")", "commit "+x+" has 0 of the 2 approvals")
	// Mode commit looks at the job's commit only: this is what strict adds.
	if d := decideAt(t, commit, 3, m2); !d.Admitted {
		t.Fatalf("mode commit: refused %+v", d.Failures)
	}

	w.approve(t, x, 1, 2)
	if d := decideAt(t, strict, 4, m2); !d.Admitted {
		t.Fatalf("every first-parent commit approved: refused %+v", d.Failures)
	}
	// From the last admitted commit on, only the new merge is walked: x's
	// approvals may be withdrawn now.
	w.repo.Git(t, "update-ref", "-d", "refs/writ/approvals/"+x+"/approver1")
	m3 := w.merge(t, map[string]string{"README.md": "v3\n"}, nil)
	w.approve(t, m3, 0, 2)
	if d := decideAt(t, strict, 5, m3); !d.Admitted {
		t.Fatalf("merge after the last admitted one: refused %+v", d.Failures)
	}
}

// TestApprovedHistoryBaseOffChain: a last-admitted or descends_from commit
// that the job's first-parent chain never reaches is refused, not walked
// past to the first commit.
func TestApprovedHistoryBaseOffChain(t *testing.T) {
	t.Parallel()
	w := newMergeWorld(t)
	o := w.options(t, "strict", 2)
	// A branch off base whose own history never passes through main's
	// first-parent chain: main is merged into it as a second parent.
	w.repo.Git(t, "checkout", "-q", "--detach", w.base)
	side := w.repo.Commit(t, map[string]string{"side": "x\n"}, "side", nil)
	m1 := w.merge(t, map[string]string{"deploy.sh": "echo v1\n"}, nil)
	w.approve(t, m1, 0, 1)
	if d := decideAt(t, o, 1, m1); !d.Admitted {
		t.Fatalf("m1: refused %+v", d.Failures)
	}
	top := w.mergeOf(t, side, m1, nil)
	w.approve(t, top, 0, 1)
	w.approve(t, side, 0, 1)
	refusedBy(t, decideAt(t, o, 2, top), CheckApprovals, m1+" is not on the first-parent chain")
}

// TestUnsignedEntryWithoutApprovalsRefused: an entry that asks for no
// author signature and no approvals (which the parser refuses; here built
// in code) admits nothing.
func TestUnsignedEntryWithoutApprovalsRefused(t *testing.T) {
	t.Parallel()
	for name, src := range map[string]allowlist.Source{
		"no approvals":   {Repository: "file:///x", Mode: allowlist.ModeCommit, Signature: allowlist.SignatureNone},
		"threshold zero": {Repository: "file:///x", Mode: allowlist.ModeCommit, Signature: allowlist.SignatureNone, Approvals: &allowlist.SourceApprovals{Signers: []string{"a"}}},
		"tag mode":       {Repository: "file:///x", Mode: allowlist.ModeTag, Signature: allowlist.SignatureNone, Approvals: &allowlist.SourceApprovals{Signers: []string{"a"}, Threshold: 2}},
	} {
		e := &allowlist.Entry{Name: "x", Source: src}
		d := &Decision{Ref: "refs/heads/main"}
		if src.Mode == allowlist.ModeTag {
			d.Ref = "refs/tags/v1"
		}
		_, err := newSourceRequest(d, &Payload{SHA: strings.Repeat("ab", 20), Ref: "main"}, e, &allowlist.Allowlist{})
		if fs, ok := refusals(err); !ok || fs[0].Check != CheckSignature || !strings.Contains(fs[0].Message, "signature: none") {
			t.Errorf("%s: %v", name, err)
		}
	}
}
