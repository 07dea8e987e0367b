package gitrepo

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/filemode"

	"gitlab.com/writ-ci/writ/internal/testkeys"
)

// gitIn runs the real git in dir with no configuration but the
// repository's own, as a job's script would.
func gitIn(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "LANG=C"}
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func mustGitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := gitIn(t, dir, args...)
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// A repository with a gitlink, a side branch the checkout must not carry,
// and a .gitmodules naming another server.
func gitlinkRepo(t *testing.T) (r *testkeys.Repo, first, head, side, link string) {
	t.Helper()
	r = testkeys.GitRepo(t)
	first = r.Commit(t, map[string]string{"a.txt": "one\n", "dir/run.sh": "#!/bin/sh\n"}, "first", nil)
	link = strings.Repeat("ab", 20)
	r.Gitlink(t, "vendor/settings", link)
	head = r.Commit(t, map[string]string{"a.txt": "two\n", ".gitmodules": "[submodule \"s\"]\n\tpath = vendor/settings\n\turl = http://attacker.invalid/s.git\n"}, "second", nil)
	r.Git(t, "checkout", "-q", "-b", "side", first)
	side = r.Commit(t, map[string]string{"secret.txt": "not verified\n"}, "side", nil)
	r.Git(t, "checkout", "-q", "main")
	return r, first, head, side, link
}

func TestWriteGitDir(t *testing.T) {
	t.Parallel()
	r, first, head, side, link := gitlinkRepo(t)
	m := localMirror(t, r.Path)
	dir := filepath.Join(t.TempDir(), "build")
	if err := m.Checkout(head, dir); err != nil {
		t.Fatal(err)
	}
	if err := m.WriteGitDir(filepath.Join(dir, ".git"), dir, head, []string{"refs/heads/main", "refs/tags/v1"}); err != nil {
		t.Fatal(err)
	}
	if got := mustGitIn(t, dir, "rev-parse", "HEAD", "refs/heads/main", "refs/tags/v1"); got != head+"\n"+head+"\n"+head {
		t.Fatalf("refs: %s", got)
	}
	if got := mustGitIn(t, dir, "log", "--format=%H"); got != head+"\n"+first {
		t.Fatalf("history: %s", got)
	}
	if got := mustGitIn(t, dir, "status", "--porcelain"); got != "" {
		t.Fatalf("status is not clean:\n%s", got)
	}
	if got := mustGitIn(t, dir, "remote"); got != "" {
		t.Fatalf("remotes: %s", got)
	}
	if got := mustGitIn(t, dir, "ls-files", "-s", "vendor/settings"); got != "160000 "+link+" 0\tvendor/settings" {
		t.Fatalf("gitlink: %s", got)
	}
	mustGitIn(t, dir, "fsck", "--strict", "--no-dangling")
	// Nothing reachable only from another ref came along.
	if out, err := gitIn(t, dir, "cat-file", "-e", side); err == nil {
		t.Fatalf("the side branch's commit is in the checkout's git directory: %s", out)
	}
	// Nothing of the repository's configuration, hooks or submodule URLs.
	cfg, err := os.ReadFile(filepath.Join(dir, ".git", "config"))
	if err != nil || string(cfg) != gitDirConfig {
		t.Fatalf("config %q, %v", cfg, err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".git", "hooks")); !os.IsNotExist(err) {
		t.Fatalf("hooks directory: %v", err)
	}
	if out, _ := gitIn(t, dir, "config", "--get-regexp", "submodule"); out != "" {
		t.Fatalf("submodule configuration: %s", out)
	}
	// The job's own use works: a branch switch at the same commit.
	mustGitIn(t, dir, "checkout", "-q", "main")
	if got := mustGitIn(t, dir, "status", "--porcelain"); got != "" {
		t.Fatalf("status after checkout main:\n%s", got)
	}
}

func TestWriteGitDirRefuses(t *testing.T) {
	t.Parallel()
	r, _, head, _, _ := gitlinkRepo(t)
	m := localMirror(t, r.Path)
	dir := t.TempDir()
	wantErr(t, m.WriteGitDir(filepath.Join(dir, ".git"), dir, head, []string{"refs/heads/../x"}), "ref")
	if err := os.Mkdir(filepath.Join(dir, ".git"), 0o755); err != nil {
		t.Fatal(err)
	}
	wantErr(t, m.WriteGitDir(filepath.Join(dir, ".git"), dir, head, nil), "exists")
}

func TestPathEntryAndGitlinks(t *testing.T) {
	t.Parallel()
	r, first, head, _, link := gitlinkRepo(t)
	m := localMirror(t, r.Path)
	mode, h, found, err := m.PathEntry(head, "vendor/settings")
	if err != nil || !found || mode != filemode.Submodule || h != link {
		t.Fatalf("vendor/settings: %v %s %v %v", mode, h, found, err)
	}
	if _, _, found, err := m.PathEntry(first, "vendor/settings"); err != nil || found {
		t.Fatalf("absent path: %v %v", found, err)
	}
	if _, _, _, err := m.PathEntry(head, "a.txt/below"); !errors.Is(err, ErrNotDirectory) {
		t.Fatalf("a path below a file: %v", err)
	}
	if _, _, _, err := m.PathEntry(head, "../x"); err == nil {
		t.Fatal("a path leaving the tree was accepted")
	}
	links, err := m.Gitlinks(head)
	if err != nil || len(links) != 1 || links["vendor/settings"] != link {
		t.Fatalf("gitlinks %v %v", links, err)
	}
}
