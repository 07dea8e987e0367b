package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestStagesThatJudgeLoadTheTrustRoot: config and prepare load the trust
// root and stop on a broken one, before anything of the job runs; run and
// cleanup act on prepare's recorded decision and do not read it, so a
// broken trust file costs them nothing (and cannot keep a job's state from
// being cleaned up).
func TestStagesThatJudgeLoadTheTrustRoot(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	writeFile(t, cfg, fmt.Sprintf(`environment = "production"
[allowlist]
url = "https://gitlab.example.com/acme/deploy-allowlist.git"
identity = "acme/deploy-allowlist"
[trust]
ssh_allowed_signers = %q
[paths]
state = %q
cache = %q
audit = %q
builds = %q
`, filepath.Join(dir, "allowed_signers"), filepath.Join(dir, "state"), filepath.Join(dir, "cache"), filepath.Join(dir, "audit.log"), filepath.Join(dir, "builds")))
	writeFile(t, filepath.Join(dir, "allowed_signers"), "root@example.com ssh-ed25519 not-a-key\n")
	t.Setenv("JOB_RESPONSE_FILE", "")

	for _, stage := range []string{"config", "prepare"} {
		out, code := writ(t, "--config", cfg, "executor", stage)
		if code == 0 || !strings.Contains(out, "trust.ssh_allowed_signers") {
			t.Errorf("executor %s with a broken trust root: exit %d, want a failure naming trust.ssh_allowed_signers\n%s", stage, code, out)
		}
	}
	out, code := writ(t, "--config", cfg, "executor", "cleanup")
	if code != 0 || strings.Contains(out, "trust") {
		t.Errorf("executor cleanup read the trust root: exit %d\n%s", code, out)
	}
	out, code = writ(t, "--config", cfg, "executor", "run", filepath.Join(dir, "script"), "build_script")
	if strings.Contains(out, "trust") {
		t.Errorf("executor run read the trust root: exit %d\n%s", code, out)
	}
}
