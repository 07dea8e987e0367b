package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"

	"github.com/BurntSushi/toml"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/testkeys"
)

// SetFloor rewrites the environment's configuration with
// allowlist.min_version = minVersion.
func (e *writEnv) SetFloor(minVersion int64) error {
	var c writConfig
	if _, err := toml.DecodeFile(e.Config, &c); err != nil {
		return err
	}
	c.Allowlist.MinVersion = minVersion
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(c); err != nil {
		return err
	}
	return os.WriteFile(e.Config, buf.Bytes(), 0o644)
}

// trustSigners are one fixture's extra keys for the trust scenarios, made
// when first used.
type trustSigners struct {
	mu       sync.Mutex
	ssh      *testkeys.SSH
	pgp      *testkeys.GPG
	pgpFresh string // pgp's export before revocation
	revoked  bool
}

// trustKeys holds each fixture's trustSigners (testRepos has no room for
// them, and they are made only by the few scenarios that need them).
var trustKeys sync.Map // *testRepos → *trustSigners

func (r *testRepos) trust() *trustSigners {
	v, _ := trustKeys.LoadOrStore(r, &trustSigners{})
	return v.(*trustSigners)
}

func (ts *trustSigners) sshKey(r *testRepos) *testkeys.SSH {
	if ts.ssh == nil {
		ts.ssh = testkeys.SSHKey(r.t, "ops@example.com")
	}
	return ts.ssh
}

func (ts *trustSigners) gpgKey(r *testRepos) *testkeys.GPG {
	if ts.pgp == nil {
		ts.pgp = testkeys.GPGKey(r.t, "Dev", "dev@example.com")
		ts.pgpFresh = string(ts.pgp.ArmoredPublic)
	}
	return ts.pgp
}

func (r *testRepos) CommitBy(repo, parent string, files map[string]string, msg string, key TrustKey) (string, error) {
	ts := r.trust()
	ts.mu.Lock()
	var signer any
	switch key {
	case RetiredSSH:
		signer = ts.sshKey(r)
	case RevokedOpenPGP:
		if ts.revoked {
			ts.mu.Unlock()
			return "", fmt.Errorf("CommitBy: the OpenPGP key is already revoked; gpg no longer signs with it")
		}
		signer = ts.gpgKey(r)
	default:
		ts.mu.Unlock()
		return "", fmt.Errorf("CommitBy: unknown key %d", key)
	}
	ts.mu.Unlock()
	g := r.repos[repo]
	g.Git(r.t, "checkout", "-q", "--detach", parent)
	return g.Commit(r.t, files, msg, signer), nil
}

func (r *testRepos) AllowedSignersLine(options ...string) string {
	ts := r.trust()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.sshKey(r).AllowedSignersLine("", options...)
}

func (r *testRepos) OpenPGPKey(revoked bool) (string, string) {
	ts := r.trust()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	g := ts.gpgKey(r)
	if !revoked {
		return g.Fingerprint, ts.pgpFresh
	}
	if !ts.revoked {
		g.Revoke(r.t)
		ts.revoked = true
	}
	return g.Fingerprint, string(g.ArmoredPublic)
}

func (r *testRepos) ApproveOpenPGP(identity string, version int64, files map[string]string, label string, by Signer) (string, string, error) {
	key := r.keys.Trusted
	if by == Foreign {
		key = r.keys.Foreign
	}
	m := make(map[string][]byte, len(files))
	for p, c := range files {
		m[p] = []byte(c)
	}
	stmt, err := allowlist.NewStatement(identity, version, allowlist.Manifest(m))
	if err != nil {
		return "", "", err
	}
	sig, err := allowlist.SignOpenPGP(context.Background(), stmt, key.Fingerprint, key.Program)
	if err != nil {
		return "", "", err
	}
	return allowlist.ApprovalDir(version) + "/" + label + ".asc", string(sig), nil
}

func (r *testRepos) FileAt(repo, commit, path string) (string, error) {
	out, err := exec.Command("git", "-C", r.repos[repo].Path, "show", commit+":"+path).Output()
	if err != nil {
		return "", fmt.Errorf("git show %s:%s: %w", commit, path, err)
	}
	return string(out), nil
}
