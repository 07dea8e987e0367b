package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/internal/testkeys"
)

// TestSourceApproveAndStatus walks the two-person rule through the CLI:
// the author signs a commit, `writ source status` says two approvals are
// needed, carol approves (for production and staging) and a second key of
// hers counts for nothing, then dave approves and status says enough. The
// approvals are refs a real git push would publish.
func TestSourceApproveAndStatus(t *testing.T) {
	t.Parallel()
	author, carol, carol2, dave := testkeys.SSHKey(t, "dev@example.com"), testkeys.SSHKey(t, "carol@example.com"),
		testkeys.SSHKey(t, "carol@example.com"), testkeys.SSHKey(t, "dave@example.com")
	repo := testkeys.GitRepo(t)
	commit := repo.Commit(t, map[string]string{"deploy.sh": "echo deploy\n"}, "deploy", author)
	const source = "https://gitlab.example.com/group/app.git"
	dir := t.TempDir()
	al := filepath.Join(dir, "allowlist.yaml")
	writeFile(t, al, fmt.Sprintf(`schema: writ/v2
repository: acme/deploy-allowlist
version: 1
expires: %s
signers:
  devs:
    ssh:
      - %q
  approvers:
    ssh:
      - %q
      - %q
      - %q
people:
  carol: [%q, %q]
jobs:
  - name: app-deploy-production
    match:
      project: group/app
      job: deploy
      environments: [production]
      refs: [refs/heads/main]
    definition:
      script: [./deploy.sh]
    source:
      repository: %s
      signers: [devs]
      mode: commit
      approvals:
        signers: [approvers]
        threshold: 2
`, time.Now().AddDate(0, 3, 0).UTC().Format(time.RFC3339), author.AllowedSignersLine(""),
		carol.AllowedSignersLine(""), carol2.AllowedSignersLine(""), dave.AllowedSignersLine(""),
		carol.Fingerprint, carol2.Fingerprint, source))
	if out, code := writ(t, "allowlist", "lint", al); code != 0 {
		t.Fatalf("lint: %d\n%s", code, out)
	}
	status := func(wantCode int, want ...string) {
		t.Helper()
		out, code := writ(t, "source", "status", "--dir", repo.Path, "--allowlist", al, "--entry", "app-deploy-production", "--environment", "production")
		if code != wantCode {
			t.Fatalf("status exit %d, want %d\n%s", code, wantCode, out)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Fatalf("status output lacks %q:\n%s", w, out)
			}
		}
	}
	approve := func(key *testkeys.SSH, label string, envs ...string) string {
		t.Helper()
		args := []string{"source", "approve", "--dir", repo.Path, "--repository", source, "--ssh-key", key.PrivatePath, "--label", label}
		for _, e := range envs {
			args = append(args, "--environment", e)
		}
		out, code := writ(t, args...)
		if code != 0 {
			t.Fatalf("approve: %d\n%s", code, out)
		}
		return out
	}
	status(1, "0 of 2 approvals, 2 more needed", "to approve: writ source approve --repository "+source+" --commit "+commit)

	out := approve(carol, "carol", "staging", "production")
	ref := "refs/writ/approvals/" + commit + "/carol"
	for _, w := range []string{"environments: production staging", "commit: " + commit, "git push origin +" + ref + ":" + ref} {
		if !strings.Contains(out, w) {
			t.Fatalf("approve output lacks %q:\n%s", w, out)
		}
	}
	approve(carol2, "carol-laptop", "production")
	approve(dave, "dave-staging", "staging")
	status(1, "1 of 2 approvals, 1 more needed", "valid:   carol: ssh key "+carol.Fingerprint+" (person carol)",
		"ignored: carol-laptop: duplicate person", "ignored: dave-staging: other environment")

	approve(dave, "dave", "production")
	status(0, "2 of 2 approvals, enough", "valid:   dave: ssh key "+dave.Fingerprint)

	// Without an author signature, the same approvals count; in strict
	// mode the status says what else the runner requires.
	yaml, err := os.ReadFile(al)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, al, strings.Replace(string(yaml), "      signers: [devs]\n      mode: commit\n", "      mode: strict\n      signature: none\n", 1))
	status(0, "2 of 2 approvals, enough", "every first-parent commit since the last one it admitted", "counts commit "+commit+" only")
}

// TestSourceApproveSigstore: --sigstore-key makes a bundle approval that
// status counts for the set's sigstore key file.
func TestSourceApproveSigstore(t *testing.T) {
	t.Parallel()
	author := testkeys.SSHKey(t, "dev@example.com")
	repo := testkeys.GitRepo(t)
	commit := repo.Commit(t, map[string]string{"deploy.sh": "echo deploy\n"}, "deploy", author)
	dir := t.TempDir()
	priv := filepath.Join(dir, "approve.key")
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("sh", "-c", "openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out "+priv+" && openssl pkey -in "+priv+" -pubout -out "+filepath.Join(dir, "keys", "erin.pub")).CombinedOutput(); err != nil {
		if _, lerr := exec.LookPath("openssl"); lerr != nil {
			t.Skip("openssl is not installed")
		}
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	const source = "https://gitlab.example.com/group/app.git"
	al := filepath.Join(dir, "allowlist.yaml")
	writeFile(t, al, fmt.Sprintf(`schema: writ/v2
repository: acme/deploy-allowlist
version: 1
expires: %s
signers:
  devs:
    ssh:
      - %q
  approvers:
    sigstore: [keys/erin.pub]
jobs:
  - name: app-deploy-production
    match:
      project: group/app
      job: deploy
      environments: [production]
      refs: [refs/heads/main]
    definition:
      script: [./deploy.sh]
    source:
      repository: %s
      signers: [devs]
      mode: commit
      approvals:
        signers: [approvers]
        threshold: 1
`, time.Now().AddDate(0, 3, 0).UTC().Format(time.RFC3339), author.AllowedSignersLine(""), source))
	if out, code := writ(t, "source", "approve", "--dir", repo.Path, "--repository", source, "--environment", "production", "--sigstore-key", priv, "--label", "erin"); code != 0 {
		t.Fatalf("approve: %d\n%s", code, out)
	}
	out, code := writ(t, "source", "status", "--dir", repo.Path, "--allowlist", al, "--entry", "app-deploy-production", "--environment", "production", "--commit", commit)
	if code != 0 || !strings.Contains(out, "valid:   erin: sigstore key sigstore:") {
		t.Fatalf("status exit %d:\n%s", code, out)
	}
}
