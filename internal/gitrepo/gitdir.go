package gitrepo

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/index"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/revlist"
	"github.com/go-git/go-git/v5/storage/filesystem"

	"github.com/go-git/go-billy/v5/osfs"
)

// gitDirPackWindow is the delta window of the pack WriteGitDir writes: a
// history written without deltas can be many times the mirror's size.
const gitDirPackWindow = 10

// gitDirConfig is the whole configuration of a git directory WriteGitDir
// makes: no remote (nothing to fetch from or push to), no hooks path, no
// filters, nothing read from the repository's content.
const gitDirConfig = `[core]
	repositoryformatversion = 0
	filemode = true
	bare = false
	logallrefupdates = false
[gc]
	auto = 0
`

// WriteGitDir makes gitDir (which must not exist) the git directory of the
// work tree Checkout wrote for commit into workTree, so that git run there
// sees the verified commit and nothing else writ has not verified:
//
//   - objects: exactly those reachable from commit (its history, trees and
//     blobs; never a submodule's commits), copied from the mirror into one
//     pack, each checked against its name as it is read;
//   - HEAD: detached at commit, as GitLab Runner leaves a checkout;
//   - refs: each full ref name in refs (refs/heads/… or refs/tags/…) points
//     at commit; a tag is written as a lightweight tag;
//   - index: the commit's tree, gitlinks included, so git status is clean;
//   - config: gitDirConfig alone: no remote, no hooks, no filters.
//
// The .gitmodules file of the tree, if any, is never read.
func (m *Mirror) WriteGitDir(gitDir, workTree, commit string, refs []string) (err error) {
	c, err := m.Commit(commit)
	if err != nil {
		return err
	}
	for _, r := range refs {
		if err := CheckRefName(r); err != nil {
			return err
		}
	}
	if err := os.Mkdir(gitDir, 0o755); err != nil {
		return fmt.Errorf("git directory: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(gitDir)
		}
	}()
	for _, d := range []string{"objects/pack", "objects/info", "refs/heads", "refs/tags"} {
		if err := os.MkdirAll(filepath.Join(gitDir, filepath.FromSlash(d)), 0o755); err != nil {
			return err
		}
	}
	files := map[string]string{"HEAD": commit + "\n", "config": gitDirConfig,
		"description": "checkout of a commit writ verified\n"}
	for _, r := range refs {
		files[r] = commit + "\n"
	}
	for name, content := range files {
		p := filepath.Join(gitDir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	st := filesystem.NewStorage(osfs.New(gitDir), cache.NewObjectLRUDefault())
	if err := m.copyHistory(st, c.Hash); err != nil {
		return fmt.Errorf("copy the history of %s: %w", commit, err)
	}
	if err := m.writeIndex(st, c, workTree); err != nil {
		return fmt.Errorf("index of %s: %w", commit, err)
	}
	return nil
}

// copyHistory writes the objects reachable from commit into st as one
// pack.
func (m *Mirror) copyHistory(st *filesystem.Storage, commit plumbing.Hash) error {
	hashes, err := revlist.Objects(m.repo.Storer, []plumbing.Hash{commit}, nil)
	if err != nil {
		return err
	}
	w, err := st.PackfileWriter()
	if err != nil {
		return err
	}
	enc := packfile.NewEncoder(w, m.repo.Storer, false)
	if _, err := enc.Encode(hashes, gitDirPackWindow); err != nil {
		w.Close()
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	// Closing indexes the new pack by hashing each object's content, so an
	// object the mirror damaged lands under its true name, never under the
	// name the history gives it: what the checkout shows must be there.
	c, err := object.GetCommit(st, commit)
	if err != nil {
		return fmt.Errorf("%w: commit %s is not intact in the copied history: %v", ErrDamaged, commit, err)
	}
	if _, err := object.GetTree(st, c.TreeHash); err != nil {
		return fmt.Errorf("%w: the tree of commit %s is not intact in the copied history: %v", ErrDamaged, commit, err)
	}
	return nil
}

// writeIndex writes the index of c's tree, with the stat data of the files
// in workTree (git compares content where they differ, as after a chown).
func (m *Mirror) writeIndex(st *filesystem.Storage, c *object.Commit, workTree string) error {
	tree, err := c.Tree()
	if err != nil {
		return err
	}
	idx := &index.Index{Version: 2}
	walker := object.NewTreeWalker(tree, true, nil)
	defer walker.Close()
	for n := 0; ; n++ {
		if n > maxCheckoutEntries {
			return fmt.Errorf("more than %d tree entries", maxCheckoutEntries)
		}
		name, e, err := walker.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if e.Mode == filemode.Dir {
			continue
		}
		ie := &index.Entry{Hash: e.Hash, Name: path.Clean(name), Mode: e.Mode}
		if e.Mode != filemode.Submodule {
			statEntry(ie, filepath.Join(workTree, filepath.FromSlash(name)))
		}
		idx.Entries = append(idx.Entries, ie)
	}
	return st.SetIndex(idx)
}

// statEntry fills an index entry's stat data from the file at p, when it
// can be read.
func statEntry(e *index.Entry, p string) {
	fi, err := os.Lstat(p)
	if err != nil {
		return
	}
	e.ModifiedAt = fi.ModTime()
	e.Size = uint32(fi.Size())
	if s, ok := fi.Sys().(*syscall.Stat_t); ok {
		e.CreatedAt = time.Unix(s.Ctim.Sec, s.Ctim.Nsec)
		e.Dev, e.Inode = uint32(s.Dev), uint32(s.Ino)
		e.UID, e.GID = s.Uid, s.Gid
	}
}

// ErrNotDirectory is wrapped by PathEntry's error when a component of the
// path is not a directory in the tree, so nothing can be placed below it.
var ErrNotDirectory = errors.New("not a directory")

// PathEntry returns the mode and object of the entry at p (slash-separated)
// in commit's tree, without following symlinks. found is false when no
// entry has that path; a component before the last that exists but is not
// a directory is an error wrapping ErrNotDirectory.
func (m *Mirror) PathEntry(commit, p string) (mode filemode.FileMode, hash string, found bool, err error) {
	if err := checkPath(p); err != nil {
		return 0, "", false, err
	}
	c, err := m.Commit(commit)
	if err != nil {
		return 0, "", false, err
	}
	tree, err := c.Tree()
	if err != nil {
		return 0, "", false, fmt.Errorf("tree of commit %s: %w", commit, err)
	}
	comps := strings.Split(p, "/")
	for i, name := range comps {
		var e *object.TreeEntry
		for j := range tree.Entries {
			if tree.Entries[j].Name == name {
				e = &tree.Entries[j]
				break
			}
		}
		switch {
		case e == nil:
			return 0, "", false, nil
		case i == len(comps)-1:
			return e.Mode, e.Hash.String(), true, nil
		case e.Mode != filemode.Dir:
			return 0, "", false, fmt.Errorf("%s in commit %s is %w (mode %s)", strings.Join(comps[:i+1], "/"), commit, ErrNotDirectory, e.Mode)
		}
		if tree, err = m.repo.TreeObject(e.Hash); err != nil {
			return 0, "", false, fmt.Errorf("%s in commit %s: %w", strings.Join(comps[:i+1], "/"), commit, err)
		}
	}
	return 0, "", false, nil
}

// Gitlinks returns the submodule entries (gitlinks) of commit's tree:
// path → the commit it records.
func (m *Mirror) Gitlinks(commit string) (map[string]string, error) {
	c, err := m.Commit(commit)
	if err != nil {
		return nil, err
	}
	tree, err := c.Tree()
	if err != nil {
		return nil, fmt.Errorf("tree of commit %s: %w", commit, err)
	}
	out := map[string]string{}
	walker := object.NewTreeWalker(tree, true, nil)
	defer walker.Close()
	for n := 0; ; n++ {
		if n > maxCheckoutEntries {
			return nil, fmt.Errorf("more than %d tree entries", maxCheckoutEntries)
		}
		name, e, err := walker.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if e.Mode == filemode.Submodule {
			out[name] = e.Hash.String()
		}
	}
}
