package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/testkeys"
)

// Keys are the suite's signers, made once by a parent test (which owns
// them) and shared by its subtests.
type Keys struct {
	// Trusted is alice: the app-team's signer, and a root signer of the
	// allowlist (she signs its commits).
	Trusted *testkeys.GPG
	// Foreign is mallory: a valid OpenPGP key nobody trusts.
	Foreign *testkeys.GPG
	// Approver is carol: the environments' second root signer, who
	// approves allowlist versions (threshold 2).
	Approver *testkeys.SSH
	// ForeignSSH is mallory's SSH key.
	ForeignSSH *testkeys.SSH
}

func newKeys(t testing.TB) *Keys {
	t.Helper()
	var k Keys
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); k.Trusted = testkeys.GPGKey(t, "Alice", "alice@example.com") }()
	go func() { defer wg.Done(); k.Foreign = testkeys.GPGKey(t, "Mallory", "mallory@example.com") }()
	wg.Wait()
	if k.Trusted == nil || k.Foreign == nil {
		t.FailNow()
	}
	k.Approver = testkeys.SSHKey(t, "carol@example.com")
	k.ForeignSSH = testkeys.SSHKey(t, "mallory@example.com")
	return &k
}

// testRepos implements Repos with real git repositories and keys.
type testRepos struct {
	t     testing.TB
	w     *World
	keys  *Keys
	repos map[string]*testkeys.Repo
	paths map[string]string // repo → project path on the git server
	// approvers are the approval scenarios' keys (fixtures_approvals_test.go).
	approvers map[Approver]*testkeys.SSH
}

func (r *testRepos) signer(by Signer) any {
	switch by {
	case Trusted:
		return r.keys.Trusted
	case Foreign:
		return r.keys.Foreign
	default:
		return nil
	}
}

func (r *testRepos) Commit(repo, parent string, files map[string]string, msg string, by Signer) (string, error) {
	g := r.repos[repo]
	g.Git(r.t, "checkout", "-q", "--detach", parent)
	// testkeys writes new files 0644; executables must exist first.
	for name, content := range files {
		if strings.HasPrefix(content, "#!") {
			p := filepath.Join(g.Path, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return "", err
			}
			if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
				return "", err
			}
			if err := os.Chmod(p, 0o755); err != nil {
				return "", err
			}
		}
	}
	return g.Commit(r.t, files, msg, r.signer(by)), nil
}

func (r *testRepos) SetBranch(repo, branch, commit string) error {
	r.repos[repo].Git(r.t, "update-ref", "refs/heads/"+branch, commit)
	return nil
}

func (r *testRepos) Tag(repo, name, commit string, by Signer) (string, error) {
	return r.repos[repo].Tag(r.t, name, commit, r.signer(by)), nil
}

func (r *testRepos) URL(repo string) string { return r.w.Git.URL(r.paths[repo]) }

func (r *testRepos) SourceURL(repo string) string { return r.w.Git.HTTPSURL(r.paths[repo]) }

func (r *testRepos) Approve(identity string, version int64, content, label string, by Signer) (string, string, error) {
	// The statement covers every file the allowlist loads: allowlist.yaml
	// and the fixture's only key file.
	return r.ApproveFiles(identity, version, map[string]string{
		allowlist.FileName: content,
		"keys/alice.asc":   string(r.keys.Trusted.ArmoredPublic),
	}, label, by)
}

func (r *testRepos) ApproveFiles(identity string, version int64, files map[string]string, label string, by Signer) (string, string, error) {
	key := r.keys.Approver
	if by == Foreign {
		key = r.keys.ForeignSSH
	}
	m := make(map[string][]byte, len(files))
	for p, c := range files {
		m[p] = []byte(c)
	}
	stmt, err := allowlist.NewStatement(identity, version, allowlist.Manifest(m))
	if err != nil {
		return "", "", err
	}
	sig := key.Sign(r.t, stmt, allowlist.ApprovalNamespace)
	return allowlist.ApprovalDir(version) + "/" + label + ".sshsig", string(sig), nil
}

// newFixture builds the legitimate world for one scenario: the application
// history (see History), the attacker's fork, the allowlist repository and
// the legitimate image, with canary c baked into the old backdoored and the
// experimental commits.
func newFixture(t testing.TB, w *World, keys *Keys, name string) *Fixture {
	t.Helper()
	scratch := filepath.Join(w.Dir, "scratch")
	if err := os.MkdirAll(scratch, 0o755); err != nil {
		t.Fatal(err)
	}
	f := &Fixture{W: w, Scratch: scratch, Canary: NewCanary(name, scratch)}
	repos := &testRepos{t: t, w: w, keys: keys, repos: map[string]*testkeys.Repo{}, paths: map[string]string{
		RepoApp: "acme/app", RepoAttacker: "evil/app", RepoAllowlist: "acme/deploy-allowlist",
	}}
	f.Repos = repos

	app := testkeys.GitRepo(t)
	repos.repos[RepoApp] = app
	alice := keys.Trusted
	commit := func(files map[string]string, msg string) string {
		sha, err := repos.Commit(RepoApp, "HEAD", files, msg, Trusted)
		if err != nil {
			t.Fatal(err)
		}
		return sha
	}
	// The first commit has no parent to check out; deploy.sh must be
	// executable before testkeys writes it.
	if err := os.WriteFile(filepath.Join(app.Path, "deploy.sh"), []byte(DeployScript), 0o755); err != nil {
		t.Fatal(err)
	}
	f.Hist.Base = app.Commit(t, map[string]string{
		"deploy.sh": DeployScript, "VERSION": "1.4.2\n", "README.md": "# acme/app\n",
	}, "initial import", alice)
	f.Hist.Backdoored = commit(map[string]string{"deploy.sh": backdoored(f.Canary)}, "add a debug hook")
	f.Hist.Reviewed = commit(map[string]string{"deploy.sh": DeployScript}, "remove the debug hook (security review)")
	f.Hist.Head = commit(map[string]string{"README.md": "# acme/app\n\nDeployed by writ.\n"}, "docs")
	app.Git(t, "update-ref", "refs/heads/main", f.Hist.Head)
	f.Hist.Experiment, _ = repos.Commit(RepoApp, f.Hist.Base, map[string]string{"deploy.sh": backdoored(f.Canary)}, "experiment: faster deploys", Trusted)
	app.Git(t, "checkout", "-q", "main")

	// The attacker's fork: a clone of the application.
	forkPath := t.TempDir()
	clone := exec.Command("git", "clone", "-q", "--no-local", app.Path, forkPath)
	clone.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	if out, err := clone.CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	repos.repos[RepoAttacker] = &testkeys.Repo{Path: forkPath, When: app.When}

	// The allowlist's history: version 6, which still admitted the canary
	// as a debug script, then the accepted version 7. Both signed by alice
	// and approved by carol.
	al := testkeys.GitRepo(t)
	repos.repos[RepoAllowlist] = al
	params := AllowlistParams{
		Fingerprint: alice.Fingerprint, SourceURL: repos.SourceURL(RepoApp), Reviewed: f.Hist.Reviewed,
		Notify: f.Canary.Code(),
	}
	f.AllowlistCommits = map[int64]string{}
	for _, v := range []struct {
		version int64
		script  []string
	}{{6, []string{f.Canary.Code()}}, {7, nil}} {
		p := params
		p.Version, p.Script = v.version, v.script
		content := Allowlist(p)
		path, approval, err := repos.Approve(AllowlistIdentity, v.version, content, "carol", Trusted)
		if err != nil {
			t.Fatal(err)
		}
		f.AllowlistCommits[v.version] = al.Commit(t, map[string]string{
			"allowlist.yaml": content,
			"keys/alice.asc": string(alice.ArmoredPublic),
			path:             approval,
		}, "allowlist version "+strconv.FormatInt(v.version, 10), alice)
		f.AllowlistYAML = content
	}

	for repo, path := range repos.paths {
		if err := w.Git.Add(path, filepath.Join(repos.repos[repo].Path, ".git")); err != nil {
			t.Fatal(err)
		}
	}
	w.AddImage(LegitImage, "echo deploy image ready")
	f.Payload = f.LegitPayload()
	return f
}
