package companion

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/gitsig"
)

// LocalOptions configure ReviewLocal: the same review as Review, on a clone
// of the allowlist repository (as in the allowlist repository's own
// pipeline), with no GitLab API call.
type LocalOptions struct {
	// Dir is the repository's work tree (default ".").
	Dir string
	// HeadRev is the revision to review (default "HEAD"). Files come from
	// the commit, never from the work tree, like an environment reads them.
	HeadRev string
	// BaseRev is the revision it would replace, for example
	// "refs/remotes/origin/main"; "" reviews head alone.
	BaseRev string
	// Environments are the environments whose approvals to check.
	Environments []*Environment
	// ExpiryHorizon: default DefaultExpiryHorizon.
	ExpiryHorizon time.Duration
	// Now replaces time.Now, for tests.
	Now func() time.Time
}

// ReviewLocal evaluates HeadRev against BaseRev in a local repository. The
// head commit's signature is checked with each environment's root keys and,
// when valid, counts as one approval, as environments count it.
func ReviewLocal(opts LocalOptions) (*ReviewReport, error) {
	dir := opts.Dir
	if dir == "" {
		dir = "."
	}
	repo, err := git.PlainOpenWithOptions(dir, &git.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return nil, fmt.Errorf("open git repository %s: %w", dir, err)
	}
	headRev := opts.HeadRev
	if headRev == "" {
		headRev = "HEAD"
	}
	head, err := gitSnapshot(repo, headRev)
	if err != nil {
		return nil, err
	}
	if head.Data == nil {
		return nil, fmt.Errorf("%s has no %s", headRev, allowlist.FileName)
	}
	base := &Snapshot{Label: "no base"}
	if opts.BaseRev != "" {
		if base, err = gitSnapshot(repo, opts.BaseRev); err != nil {
			return nil, err
		}
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	return Evaluate(*head, *base, opts.Environments, opts.ExpiryHorizon, now()), nil
}

// gitSnapshot reads the allowlist side of a revision with go-git.
func gitSnapshot(repo *git.Repository, rev string) (*Snapshot, error) {
	h, err := repo.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w (fetch it first, for example git fetch origin main:refs/remotes/origin/main)", rev, err)
	}
	commit, err := repo.CommitObject(*h)
	if err != nil {
		return nil, fmt.Errorf("read commit %s: %w", rev, err)
	}
	tree, err := commit.Tree()
	if err != nil {
		return nil, fmt.Errorf("read tree of %s: %w", rev, err)
	}
	s := &Snapshot{Label: fmt.Sprintf("%s at %s", rev, shortID(h.String()))}
	s.Load = func(p string) ([]byte, error) { return treeFile(tree, p, allowlist.MaxKeyFileBytes) }
	data, err := treeFile(tree, allowlist.FileName, allowlist.MaxFileBytes)
	switch {
	case errors.Is(err, object.ErrFileNotFound):
	case err != nil:
		return nil, fmt.Errorf("%s: %w", rev, err)
	default:
		s.Data = data
	}
	s.Approvals = func(dir string) (map[string][]byte, error) {
		return allowlist.ReadApprovalFiles(tree, dir)
	}
	s.CommitSigner = func(keys *gitsig.Keys, now time.Time) (string, error) {
		sg, err := keys.VerifyCommit(commit, now)
		if err != nil {
			return "", err
		}
		return sg.Fingerprint, nil
	}
	return s, nil
}

// treeFile reads a regular file of a tree, at most limit bytes.
func treeFile(tree *object.Tree, p string, limit int64) ([]byte, error) {
	f, err := tree.File(p)
	if err != nil {
		return nil, err
	}
	if !f.Mode.IsFile() {
		return nil, fmt.Errorf("%s is not a regular file", p)
	}
	if f.Size > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", p, limit)
	}
	r, err := f.Reader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(io.LimitReader(r, limit))
}

// ReadEnvironments loads each environment configuration of paths; a glob
// pattern (environments/*.toml) is expanded.
func ReadEnvironments(paths []string) ([]*Environment, error) {
	var out []*Environment
	seen := map[string]string{}
	for _, p := range paths {
		matches := []string{p}
		if strings.ContainsAny(p, "*?[") {
			m, err := filepath.Glob(p)
			if err != nil {
				return nil, fmt.Errorf("environment config pattern %q: %w", p, err)
			}
			if len(m) == 0 {
				return nil, fmt.Errorf("environment config pattern %q matches no file", p)
			}
			matches = m
		}
		for _, m := range matches {
			if _, err := os.Stat(m); err != nil {
				return nil, fmt.Errorf("environment config: %w", err)
			}
			env, err := LoadEnvironment(m)
			if err != nil {
				return nil, err
			}
			if first, dup := seen[env.Name]; dup {
				return nil, fmt.Errorf("environment %q is configured twice (%s and %s)", env.Name, first, m)
			}
			seen[env.Name] = m
			out = append(out, env)
		}
	}
	return out, nil
}
