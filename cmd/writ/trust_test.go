package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gitlab.com/writ-ci/writ/internal/testkeys"
)

// OpenPGP-only root signers reach threshold 2 with `writ allowlist approve
// --gpg-key`, which signs with the real gpg; verify explains first contact
// and the floor.
func TestApproveWithGPGAndFloor(t *testing.T) {
	carol := testkeys.GPGKey(t, "Carol", "carol@example.com")
	dave := testkeys.GPGKey(t, "Dave", "dave@example.com")
	repo := testkeys.GitRepo(t)
	env := t.TempDir()
	writeFile(t, filepath.Join(env, "root.asc"), string(carol.ArmoredPublic)+string(dave.ArmoredPublic))
	cfg := filepath.Join(env, "config.toml")
	config := func(floor string) {
		writeFile(t, cfg, fmt.Sprintf(`environment = "production"
[allowlist]
url = %q
identity = "acme/deploy-allowlist"
%s
[trust]
openpgp_keyring = "root.asc"
threshold = 2
[paths]
state = "state"
cache = "cache"
audit = "audit.log"
`, repo.Path, floor))
	}
	writeFile(t, filepath.Join(repo.Path, "allowlist.yaml"), allowlistText(1, "make build"))
	repo.Commit(t, nil, "v1", carol)
	writeFile(t, filepath.Join(repo.Path, "allowlist.yaml"), allowlistText(2, "make build"))
	out, code := writ(t, "allowlist", "approve", "--dir", repo.Path, "--gpg-key", dave.Fingerprint, "--gpg-program", dave.Program, "--label", "dave")
	if code != 0 || !strings.Contains(out, "approvals/v2/dave.asc") || !strings.Contains(out, "  writ allowlist approval v2\n") ||
		!strings.Contains(out, "  files: 1\n") {
		t.Fatalf("approve --gpg-key: %d\n%s", code, out)
	}
	if b, err := os.ReadFile(filepath.Join(repo.Path, "approvals", "v2", "dave.asc")); err != nil || !strings.HasPrefix(string(b), "-----BEGIN PGP SIGNATURE-----\n") {
		t.Fatalf("approval file: %v\n%s", err, b)
	}
	repo.Commit(t, nil, "v2, approved by dave", carol)

	// A new host with a floor above version 2.
	config("min_version = 3")
	out, code = writ(t, "--config", cfg, "allowlist", "verify")
	if code != 2 || !strings.Contains(out, "[FAIL] floor") || !strings.Contains(out, "version 2 is below 3, this environment's allowlist.min_version") ||
		!strings.Contains(out, "first contact: this environment had accepted no version before") {
		t.Fatalf("verify under a floor: %d\n%s", code, out)
	}
	config("min_version = 2")
	out, code = writ(t, "--config", cfg, "allowlist", "verify")
	if code != 0 || !strings.Contains(out, "approvals:   2 of 2") || !strings.Contains(out, "floor: version 2 ≥ allowlist.min_version 2") ||
		strings.Contains(out, "No floor is set") {
		t.Fatalf("verify: %d\n%s", code, out)
	}
	// Once accepted, it is no longer first contact.
	out, code = writ(t, "--config", cfg, "allowlist", "verify")
	if code != 0 || strings.Contains(out, "first contact") {
		t.Fatalf("second verify: %d\n%s", code, out)
	}
	if out, code := writ(t, "allowlist", "approve", "--dir", repo.Path, "--gpg-key", "not-a-fingerprint", "--label", "x"); code == 0 || !strings.Contains(out, "full fingerprint") {
		t.Fatalf("approve with a bad fingerprint: %d\n%s", code, out)
	}
}
