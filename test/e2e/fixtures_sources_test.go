package e2e

import (
	"fmt"
	"os"
	"path/filepath"

	"gitlab.com/writ-ci/writ/internal/testkeys"
)

// NewRepo makes repository repo with one commit of files on main, signed
// by by, served as project.
func (r *testRepos) NewRepo(repo, project string, files map[string]string, by Signer) (string, error) {
	if _, ok := r.repos[repo]; ok {
		return "", fmt.Errorf("repository %s exists", repo)
	}
	g := testkeys.GitRepo(r.t)
	sha := g.Commit(r.t, files, "initial import", r.signer(by))
	r.repos[repo], r.paths[repo] = g, project
	if err := r.w.Git.Add(project, filepath.Join(g.Path, ".git")); err != nil {
		return "", err
	}
	return sha, nil
}

// CommitGitlinks is Commit that also records gitlinks (path → commit).
func (r *testRepos) CommitGitlinks(repo, parent string, links, files map[string]string, msg string, by Signer) (string, error) {
	g := r.repos[repo]
	g.Git(r.t, "checkout", "-q", "--detach", parent)
	for path, commit := range links {
		if err := os.MkdirAll(filepath.Join(g.Path, filepath.FromSlash(path)), 0o755); err != nil {
			return "", err
		}
		g.Gitlink(r.t, path, commit)
	}
	return g.Commit(r.t, files, msg, r.signer(by)), nil
}
