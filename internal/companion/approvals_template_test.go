package companion

import (
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/internal/testkeys"
)

// approvalsAllowlist has one entry under the two-person rule: commits
// signed by devs, two approvals by distinct approvers for production.
func approvalsAllowlist(source string, author, carol, dave *testkeys.SSH) string {
	return fmt.Sprintf(`schema: writ/v2
repository: acme/deploy-allowlist
version: 3
expires: %s
signers:
  devs:
    ssh:
      - %q
  approvers:
    ssh:
      - %q
      - %q
jobs:
  - name: acme-web-deploy-production
    match:
      project: acme/web
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
		carol.AllowedSignersLine(""), dave.AllowedSignersLine(""), source)
}

// TestApplicationApprovalsJobRuns runs the application component's
// writ-approvals job with the shell executor: the allowlist comes from the
// fake GitLab with the read-only token, the approval is a real one made by
// `writ source approve` in another clone and pushed to the project's
// repository, which the job fetches. The job shows 1 of 2 and the approve
// command, says it is information only, and its failure (approvals short)
// is allowed. Before the push, the same job shows 0 of 2: what it shows
// comes from the fetched refs.
func TestApplicationApprovalsJobRuns(t *testing.T) {
	gcl := gitlabCILocal(t)
	writ := writBinary(t)
	t.Parallel()
	author, carol, dave := testkeys.SSHKey(t, "dev@example.com"), testkeys.SSHKey(t, "carol@example.com"), testkeys.SSHKey(t, "dave@example.com")
	const source = "https://gitlab.example.com/acme/web.git"

	w := newWorld(t)
	w.readOnly(t)
	w.s.Commit(w.al, "main", "two-person rule", map[string][]byte{"allowlist.yaml": []byte(approvalsAllowlist(source, author, carol, dave))})

	r := newGCLRepo(t, gcl)
	origin := t.TempDir()
	r.Git(t, "init", "-q", "--bare", origin)
	r.Git(t, "remote", "set-url", "origin", origin)
	ci := fmt.Sprintf(`include:
  - local: templates/application.yml
    inputs:
      image: %s
      writ: %s
      environment: production
      allowlist_project: acme/deploy-allowlist
      approvals_entry: acme-web-deploy-production
`, testImage, writ)
	sha := r.Commit(t, map[string]string{".gitlab-ci.yml": ci, "deploy.sh": "echo deploy\n"}, "app", author)
	r.Git(t, "push", "-q", "origin", "main")

	job := func() string {
		t.Helper()
		out, code := r.run(t, "--force-shell-executor",
			"--variable", "CI_PIPELINE_SOURCE=push",
			"--variable", "CI_COMMIT_SHA="+sha,
			"--variable", fmt.Sprintf("CI_PROJECT_ID=%d", w.app.ID),
			"--variable", "CI_API_V4_URL="+w.s.URL,
			"--variable", "WRIT_READ_TOKEN="+readToken,
			"writ-approvals")
		// Short approvals fail the job, and the failure is allowed.
		if code != 0 || !regexp.MustCompile(`WARN\s+writ-approvals`).MatchString(out) {
			t.Fatalf("writ-approvals should warn, not fail the pipeline (%d):\n%s", code, out)
		}
		assertNoToken(t, out)
		if strings.Contains(out, readToken) {
			t.Fatal("the read token leaked into the job log")
		}
		for _, want := range []string{"information only", "GitLab's view is not what the runner counts",
			"to approve: writ source approve --repository " + source + " --commit " + sha + " --environment production"} {
			if !strings.Contains(out, want) {
				t.Errorf("job log lacks %q:\n%s", want, out)
			}
		}
		return out
	}

	if out := job(); !strings.Contains(out, "0 of 2 approvals, 2 more needed") {
		t.Fatalf("before any approval:\n%s", out)
	}

	// Carol approves in her own clone and pushes the ref, as the approve
	// command prints; dave approves for staging only.
	clone := t.TempDir()
	if out, err := exec.Command("git", "clone", "-q", origin, clone).CombinedOutput(); err != nil {
		t.Fatalf("clone: %v\n%s", err, out)
	}
	for _, a := range []struct {
		key        *testkeys.SSH
		label, env string
	}{{carol, "carol", "production"}, {dave, "dave", "staging"}} {
		cmd := exec.Command(writ, "source", "approve", "--dir", clone, "--repository", source, "--commit", sha,
			"--environment", a.env, "--ssh-key", a.key.PrivatePath, "--label", a.label)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("approve: %v\n%s", err, out)
		}
		ref := "refs/writ/approvals/" + sha + "/" + a.label
		if out, err := exec.Command("git", "-C", clone, "push", "-q", "origin", "+"+ref+":"+ref).CombinedOutput(); err != nil {
			t.Fatalf("push: %v\n%s", err, out)
		}
	}
	if r.Git(t, "for-each-ref", "refs/writ/") != "" {
		t.Fatal("the approvals reached the job's repository other than by the job's fetch")
	}

	out := job()
	for _, want := range []string{"1 of 2 approvals, 1 more needed", "valid:   carol: ssh key " + carol.Fingerprint,
		"ignored: dave: other environment"} {
		if !strings.Contains(out, want) {
			t.Errorf("job log lacks %q:\n%s", want, out)
		}
	}
}
