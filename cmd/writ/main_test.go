package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/internal/testkeys"
)

func writ(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return out.String() + errb.String(), code
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func allowlistText(version int, script string) string {
	return fmt.Sprintf(`schema: writ/v2
repository: acme/deploy-allowlist
version: %d
expires: %s
jobs:
  - name: app-build-production
    match:
      project: group/app
      job: build
      environments: [production]
      refs: [refs/heads/main]
    definition:
      script:
        - %s
    source:
      repository: https://gitlab.example.com/group/app.git
      signers: [devs]
      mode: commit
signers:
  devs:
    ssh:
      - dev@example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAII7/ukhcDAZ7RN+3fk8hPuQX7Os85OvecKZrC2nyG/dX
`, version, time.Now().AddDate(0, 3, 0).UTC().Format(time.RFC3339), script)
}

// TestMaintainerCycle walks edit → lint → approve → commit → verify → diff
// through the CLI, with real keys and a real repository.
func TestMaintainerCycle(t *testing.T) {
	alice := testkeys.SSHKey(t, "alice@example.com")
	bob := testkeys.SSHKey(t, "bob@example.com")
	repo := testkeys.GitRepo(t)
	env := t.TempDir()
	writeFile(t, filepath.Join(env, "allowed_signers"), alice.AllowedSignersLine("")+"\n"+bob.AllowedSignersLine("")+"\n")
	cfg := filepath.Join(env, "config.toml")
	writeFile(t, cfg, fmt.Sprintf(`environment = "production"
[allowlist]
url = %q
identity = "acme/deploy-allowlist"
[trust]
ssh_allowed_signers = "allowed_signers"
threshold = 2
[paths]
state = "state"
cache = "cache"
audit = "audit.log"
`, repo.Path))

	v1 := allowlistText(1, "make build")
	writeFile(t, filepath.Join(repo.Path, "allowlist.yaml"), v1)
	if out, code := writ(t, "allowlist", "lint", filepath.Join(repo.Path, "allowlist.yaml")); code != 0 || !strings.Contains(out, "ok (version 1, 1 jobs") {
		t.Fatalf("lint: %d %s", code, out)
	}
	repo.Commit(t, nil, "v1", alice)

	// One approval short: verify reports it and exits non-zero.
	out, code := writ(t, "--config", cfg, "allowlist", "verify")
	if code != 2 || !strings.Contains(out, "[FAIL] approvals") || !strings.Contains(out, "1 of 2") {
		t.Fatalf("verify below threshold: %d\n%s", code, out)
	}

	out, code = writ(t, "allowlist", "approve", "--dir", repo.Path, "--ssh-key", bob.PrivatePath, "--label", "bob")
	if code != 0 || !strings.Contains(out, "approvals/v1/bob.sshsig") {
		t.Fatalf("approve: %d %s", code, out)
	}
	repo.Commit(t, nil, "bob approves v1", alice)
	out, code = writ(t, "--config", cfg, "allowlist", "verify")
	if code != 0 || !strings.Contains(out, "approvals:   2 of 2") || !strings.Contains(out, "in force:    version 1") {
		t.Fatalf("verify: %d\n%s", code, out)
	}

	// The audit log recorded the rejection and the acceptance, chain intact.
	out, code = writ(t, "--config", cfg, "audit", "verify")
	if code != 0 || !strings.Contains(out, "ok, 2 records") {
		t.Fatalf("audit verify: %d %s", code, out)
	}

	// writ check judges a saved payload offline against the accepted
	// version: the payload's script is not the entry's, so it is refused.
	out, code = writ(t, "--config", cfg, "check", "--job", "../../executor/testdata/payload.json")
	if code != 1 || !strings.Contains(out, "writ check: REFUSED") || !strings.Contains(out, "script: script line 1 differs") ||
		!strings.Contains(out, "allowlist: make build") || !strings.Contains(out, "source: the source was not verified") {
		t.Fatalf("check: %d\n%s", code, out)
	}

	// diff of v1 → v2 names the changed script line for production.
	old := filepath.Join(t.TempDir(), "allowlist.yaml")
	writeFile(t, old, v1)
	writeFile(t, filepath.Join(repo.Path, "allowlist.yaml"), allowlistText(2, "make build deploy"))
	out, code = writ(t, "allowlist", "diff", old, filepath.Join(repo.Path, "allowlist.yaml"))
	if code != 0 || !strings.Contains(out, "production") || !strings.Contains(out, "make build deploy") {
		t.Fatalf("diff: %d\n%s", code, out)
	}
}

func TestLintReportsEveryErrorWithPosition(t *testing.T) {
	f := filepath.Join(t.TempDir(), "allowlist.yaml")
	bad := strings.Replace(allowlistText(1, "make build"), "version: 1", "version: \"1\"\nbogus: &x 1", 1)
	writeFile(t, f, bad)
	out, code := writ(t, "allowlist", "lint", f)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{f + ":3:", f + ":4:"} {
		if !strings.Contains(out, want) {
			t.Errorf("lint output lacks %q:\n%s", want, out)
		}
	}
}

func TestEntryFromJobPayload(t *testing.T) {
	out, code := writ(t, "allowlist", "entry", "--job", "../../executor/testdata/payload.json", "--environment", "production")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, want := range []string{"project: group/app", "job: build", "environments: [production]"} {
		if !strings.Contains(out, want) {
			t.Errorf("entry lacks %q:\n%s", want, out)
		}
	}
}

// TestEntryLeavesTODOsLintRefuses: what writ cannot show (a masked value)
// or must not decide (a dangerous name) comes out as a visible TODO, and
// lint refuses the entry until a maintainer resolves it.
func TestEntryLeavesTODOsLintRefuses(t *testing.T) {
	data, err := os.ReadFile("../../executor/testdata/payload.json")
	if err != nil {
		t.Fatal(err)
	}
	extra := `{"key":"TOKEN","value":"s3cret","public":false,"file":false,"masked":true,"raw":false},` +
		`{"key":"BASH_ENV","value":"/tmp/x","public":true,"file":false,"masked":false,"raw":false},{"key":"GREETING"`
	payload := filepath.Join(t.TempDir(), "job.json")
	writeFile(t, payload, strings.Replace(string(data), `{"key":"GREETING"`, extra, 1))
	out, code := writ(t, "allowlist", "entry", "--job", payload, "--environment", "production")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, want := range []string{"refs: [refs/heads/main]", "TOKEN: {pattern: TODO}", "# TODO: TOKEN is a masked or protected variable",
		"# TODO: BASH_ENV is a dangerous name", "2 TODO(s) in the entry above"} {
		if !strings.Contains(out, want) {
			t.Errorf("entry lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "^.*$") || strings.Contains(out, "s3cret") {
		t.Errorf("entry admits anything or shows the secret:\n%s", out)
	}
	entry, _, _ := strings.Cut(out, "writ allowlist entry:")
	file := filepath.Join(t.TempDir(), "allowlist.yaml")
	writeFile(t, file, "schema: writ/v2\nrepository: a/b\nversion: 1\nexpires: 2099-01-01T00:00:00Z\njobs:\n"+entry)
	out, code = writ(t, "allowlist", "lint", file)
	if code != 1 || !strings.Contains(out, "variable TOKEN still has the TODO") || !strings.Contains(out, "variable BASH_ENV is dangerous") {
		t.Fatalf("lint of the generated entry: exit %d\n%s", code, out)
	}
}

func TestAuditVerifyNamesBrokenRecord(t *testing.T) {
	f := filepath.Join(t.TempDir(), "audit.log")
	writeFile(t, f, `{"seq":1,"garbage":true}`+"\n")
	out, code := writ(t, "audit", "verify", f)
	if code != 1 || !strings.Contains(out, "BROKEN") || !strings.Contains(out, "line 1") {
		t.Fatalf("exit %d\n%s", code, out)
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	if _, code := writ(t, "allowlist", "frobnicate"); code == 0 {
		t.Fatal("unknown command succeeded")
	}
	out, code := writ(t, "--config", "/nonexistent/writ.toml", "allowlist", "verify")
	if code == 0 || !strings.Contains(out, "WRIT_CONFIG") {
		t.Fatalf("missing config: %d %s", code, out)
	}
}

// TestEntryIncludesVariableSetsAndCIUserVariables: writ allowlist entry
// leaves to a named variable set what the set admits, keeps what it does
// not, and includes a CI_-prefixed user variable GitLab does not define;
// lint accepts the result.
func TestEntryIncludesVariableSetsAndCIUserVariables(t *testing.T) {
	data, err := os.ReadFile("../../executor/testdata/payload.json")
	if err != nil {
		t.Fatal(err)
	}
	extra := `{"key":"CI_ASG_TARGET","value":"asg-web","public":true,"file":false,"masked":false,"raw":false},` +
		`{"key":"REGION","value":"eu-west-1","public":false,"file":false,"masked":false,"raw":false},{"key":"GREETING"`
	payload := filepath.Join(t.TempDir(), "job.json")
	writeFile(t, payload, strings.Replace(string(data), `{"key":"GREETING"`, extra, 1))
	header := "schema: writ/v2\nrepository: a/b\nversion: 1\nexpires: 2099-01-01T00:00:00Z\n" +
		"variable_sets:\n  group-app:\n    GREETING: {value: hello}\n    REGION: {value: us-east-1}\n"
	file := filepath.Join(t.TempDir(), "allowlist.yaml")
	writeFile(t, file, header+"jobs: []\n")
	out, code := writ(t, "allowlist", "entry", "--job", payload, "--environment", "production", "--allowlist", file, "--variable-sets", "group-app")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, want := range []string{"variable_sets: [group-app]", "CI_ASG_TARGET: {value: asg-web}", "REGION: {pattern: TODO}"} {
		if !strings.Contains(out, want) {
			t.Errorf("entry lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "GREETING:") {
		t.Errorf("GREETING, which the set admits, is in the entry:\n%s", out)
	}
	// REGION's value differs from the set's: lint says so.
	entry, _, _ := strings.Cut(out, "writ allowlist entry:")
	entry = strings.Replace(entry, "REGION: {pattern: TODO}", "REGION: {value: eu-west-1}", 1)
	writeFile(t, file, header+"jobs:\n"+entry)
	out, code = writ(t, "allowlist", "lint", file)
	if code != 1 || !strings.Contains(out, `variable set "group-app" defines REGION, which the entry's own variables`) {
		t.Fatalf("lint: exit %d\n%s", code, out)
	}
	if out, code := writ(t, "allowlist", "entry", "--job", payload, "--environment", "production", "--variable-sets", "group-app"); code == 0 {
		t.Fatalf("--variable-sets without --allowlist succeeded:\n%s", out)
	}
}
