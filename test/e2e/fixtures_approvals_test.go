package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/testkeys"
)

// approverKey returns k's SSH key, made on first use for this fixture.
func (r *testRepos) approverKey(k Approver) *testkeys.SSH {
	if r.approvers == nil {
		r.approvers = map[Approver]*testkeys.SSH{}
	}
	if key := r.approvers[k]; key != nil {
		return key
	}
	name := map[Approver]string{Carol: "carol", Carol2: "carol", Dave: "dave", Outsider: "mallory"}[k]
	key := testkeys.SSHKey(r.t, name+"@example.com")
	r.approvers[k] = key
	return key
}

func (r *testRepos) ApproverLine(k Approver) string { return r.approverKey(k).AllowedSignersLine("") }

func (r *testRepos) ApproverFingerprint(k Approver) string { return r.approverKey(k).Fingerprint }

// PublishApproval makes the approval as `writ source approve` does: the
// statement and the SSH signature in a tree, a commit holding it, a ref.
func (r *testRepos) PublishApproval(repo, commit string, a SourceApproval) error {
	stmt, err := allowlist.SourceStatement{Repository: a.Repository, Commit: a.Commit, Environments: a.Environments}.Bytes()
	if err != nil {
		return err
	}
	sig := r.approverKey(a.By).Sign(r.t, stmt, allowlist.SourceApprovalNamespace)
	if a.Tamper != nil {
		stmt = []byte(a.Tamper(string(stmt)))
	}
	g := r.repos[repo]
	dir := r.t.TempDir()
	blob := func(b []byte) string {
		p := filepath.Join(dir, "blob")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			r.t.Fatal(err)
		}
		return strings.TrimSpace(g.Git(r.t, "hash-object", "-w", p))
	}
	entries := []string{
		"100644 blob " + blob(stmt) + "\t" + allowlist.SourceStatementFile,
		"100644 blob " + blob(sig) + "\t" + allowlist.SourceSignatureFile(allowlist.KindSSH),
	}
	sort.Strings(entries)
	tree := strings.TrimSpace(g.GitInput(r.t, []byte(strings.Join(entries, "\n")+"\n"), "mktree"))
	c := strings.TrimSpace(g.GitInput(r.t, []byte("writ source approval\n"), "commit-tree", tree))
	ref := allowlist.SourceApprovalRef(commit, a.Label)
	g.Git(r.t, "update-ref", ref, c)
	if got := strings.TrimSpace(g.Git(r.t, "rev-parse", ref)); got != c {
		return fmt.Errorf("update-ref %s: %s", ref, got)
	}
	return nil
}

func (r *testRepos) DeleteRef(repo, ref string) error {
	r.repos[repo].Git(r.t, "update-ref", "-d", ref)
	return nil
}
