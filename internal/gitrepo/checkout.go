package gitrepo

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Checkout bounds: a tree beyond them is refused rather than written.
const (
	maxCheckoutDepth   = 256
	maxCheckoutEntries = 1_000_000
	maxSymlinkTarget   = 4096
	maxSymlinkHops     = 40
)

// checkName checks one tree entry name: a single, ordinary path component
// that is not git's own directory.
func checkName(name string) error {
	switch {
	case name == "", name == ".", name == "..":
		return fmt.Errorf("tree entry name %q is not a file name", name)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("tree entry name %q contains '/' or NUL", clip(name))
	case strings.EqualFold(name, ".git"):
		return fmt.Errorf("tree entry %q: a repository may not carry a .git entry", name)
	}
	return nil
}

// checkPath checks a slash-separated path inside a tree.
func checkPath(p string) error {
	if p == "" || strings.HasPrefix(p, "/") {
		return fmt.Errorf("path %q: give a relative path inside the repository", clip(p))
	}
	for _, comp := range strings.Split(p, "/") {
		if err := checkName(comp); err != nil {
			return fmt.Errorf("path %q: %w", clip(p), err)
		}
	}
	return nil
}

// ReadFile returns the content of the regular file at path (slash-separated,
// relative to the repository root) in commit. Symlinks are not followed; a
// file larger than limit is an error.
func (m *Mirror) ReadFile(commit, path string, limit int64) ([]byte, error) {
	if err := checkPath(path); err != nil {
		return nil, err
	}
	c, err := m.Commit(commit)
	if err != nil {
		return nil, err
	}
	tree, err := c.Tree()
	if err != nil {
		return nil, fmt.Errorf("tree of commit %s: %w", commit, err)
	}
	entry, err := tree.FindEntry(path)
	if err != nil {
		return nil, fmt.Errorf("%s at commit %s: %w", path, commit, err)
	}
	if entry.Mode != filemode.Regular && entry.Mode != filemode.Executable && entry.Mode != filemode.Deprecated {
		return nil, fmt.Errorf("%s at commit %s is not a regular file (mode %s)", path, commit, entry.Mode)
	}
	if m.fresh.hash == entry.Hash && m.fresh.data != nil {
		// Named from its content by this process's fetch: handed over
		// once (a second read goes to the pack), so the mirror holds no
		// copy the caller may want freed.
		data := m.fresh.data
		m.fresh = keptBlob{}
		if int64(len(data)) > limit {
			return nil, fmt.Errorf("%s at commit %s is %d bytes, more than the %d accepted", path, commit, len(data), limit)
		}
		return data, nil
	}
	blob, err := m.repo.BlobObject(entry.Hash)
	if err != nil {
		return nil, fmt.Errorf("%s at commit %s: %w", path, commit, err)
	}
	if blob.Size > limit {
		return nil, fmt.Errorf("%s at commit %s is %d bytes, more than the %d accepted", path, commit, blob.Size, limit)
	}
	r, err := blob.Reader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	// The blob's size is known: read into a buffer of that size rather
	// than growing one (a large allowlist would otherwise cost twice).
	buf := bytes.NewBuffer(make([]byte, 0, blob.Size+1))
	_, err = io.Copy(buf, io.LimitReader(r, limit+1))
	data := buf.Bytes()
	if err != nil {
		return nil, fmt.Errorf("read %s at commit %s: %w", path, commit, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s at commit %s is more than %d bytes", path, commit, limit)
	}
	// The signature covers the commit, which names the tree, which names
	// this blob: content that does not hash to its name is a damaged cache.
	if plumbing.ComputeHash(plumbing.BlobObject, data) != entry.Hash {
		return nil, fmt.Errorf("%w: %s at commit %s does not hash to blob %s", ErrDamaged, path, commit, entry.Hash)
	}
	return data, nil
}

// Checkout writes the tree of commit into dir, which must be empty or not
// exist (its parent is created if needed). It writes the exact blob bytes:
// no hooks, no filters or line-ending conversion, no submodules (a gitlink
// becomes an empty directory, as in a clone without --recurse-submodules),
// no LFS (pointer files stay pointer files), and no .git directory.
//
// Files get mode 0644, or 0755 when executable in git. Directories get
// 0755. Symlinks are written as symlinks, after every file and directory,
// and only when their target is relative and, followed through the other
// symlinks, stays inside dir; anything else fails the checkout. Entry
// names ".", "..", ".git" (any case) or containing '/' fail it too.
//
// On failure the partial checkout is removed, so dir is empty or absent.
func (m *Mirror) Checkout(commit, dir string) (err error) {
	c, err := m.Commit(commit)
	if err != nil {
		return err
	}
	tree, err := c.Tree()
	if err != nil {
		return fmt.Errorf("tree of commit %s: %w", commit, err)
	}
	created, err := prepareDir(dir)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			cleanup(dir, created)
		}
	}()
	co := &checkout{m: m, root: dir}
	if err := co.writeTree(tree, "", 0); err != nil {
		return fmt.Errorf("checkout of %s: %w", commit, err)
	}
	for _, l := range co.links {
		if err := os.Symlink(l.target, filepath.Join(dir, filepath.FromSlash(l.path))); err != nil {
			return fmt.Errorf("checkout of %s: symlink %s: %w", commit, l.path, err)
		}
	}
	for _, l := range co.links {
		if err := resolveInside(dir, l.path); err != nil {
			return fmt.Errorf("checkout of %s: symlink %s -> %s: %w", commit, l.path, l.target, err)
		}
	}
	return nil
}

func prepareDir(dir string) (created bool, err error) {
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return false, fmt.Errorf("checkout directory: %w", err)
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			return false, fmt.Errorf("checkout directory: %w", err)
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("checkout directory: %w", err)
	case !fi.IsDir():
		return false, fmt.Errorf("checkout directory %s is not a directory", dir)
	}
	f, err := os.Open(dir)
	if err != nil {
		return false, fmt.Errorf("checkout directory: %w", err)
	}
	defer f.Close()
	if names, _ := f.Readdirnames(1); len(names) > 0 {
		return false, fmt.Errorf("checkout directory %s is not empty", dir)
	}
	return false, nil
}

// cleanup removes a failed checkout. os.RemoveAll does not follow symlinks.
func cleanup(dir string, created bool) {
	if created {
		_ = os.RemoveAll(dir)
		return
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		_ = os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

type link struct{ path, target string }

type checkout struct {
	m       *Mirror
	root    string
	entries int
	links   []link
}

func (co *checkout) writeTree(t *object.Tree, rel string, depth int) error {
	if depth > maxCheckoutDepth {
		return fmt.Errorf("%s: directories nested deeper than %d", rel, maxCheckoutDepth)
	}
	for _, e := range t.Entries {
		co.entries++
		if co.entries > maxCheckoutEntries {
			return fmt.Errorf("more than %d tree entries", maxCheckoutEntries)
		}
		if err := checkName(e.Name); err != nil {
			if rel != "" {
				return fmt.Errorf("in %s: %w", rel, err)
			}
			return err
		}
		p := path.Join(rel, e.Name)
		full := filepath.Join(co.root, filepath.FromSlash(p))
		switch e.Mode {
		case filemode.Dir:
			// Mkdir, not MkdirAll: an existing name (a duplicate entry)
			// fails here instead of being written through.
			if err := os.Mkdir(full, 0o755); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			sub, err := co.m.repo.TreeObject(e.Hash)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			if err := co.writeTree(sub, p, depth+1); err != nil {
				return err
			}
		case filemode.Regular, filemode.Deprecated:
			if err := co.writeFile(full, p, e.Hash, 0o644); err != nil {
				return err
			}
		case filemode.Executable:
			if err := co.writeFile(full, p, e.Hash, 0o755); err != nil {
				return err
			}
		case filemode.Symlink:
			target, err := co.linkTarget(p, e.Hash)
			if err != nil {
				return err
			}
			co.links = append(co.links, link{path: p, target: target})
		case filemode.Submodule:
			if err := os.Mkdir(full, 0o755); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		default:
			return fmt.Errorf("%s: unsupported mode %s", p, e.Mode)
		}
	}
	return nil
}

func (co *checkout) writeFile(full, p string, h plumbing.Hash, perm os.FileMode) (err error) {
	blob, err := co.m.repo.BlobObject(h)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	r, err := blob.Reader()
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	defer r.Close()
	// O_EXCL|O_NOFOLLOW: never write through anything already there.
	f, err := os.OpenFile(full, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, perm)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("%s: %w", p, cerr)
		}
	}()
	// The signature covers the commit, which names the trees, which name
	// this blob: content that does not hash to its name (a cache damaged
	// on disk) must not reach the build directory.
	hasher := plumbing.NewHasher(plumbing.BlobObject, blob.Size)
	if _, err := io.Copy(io.MultiWriter(f, hasher), r); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if hasher.Sum() != h {
		return fmt.Errorf("%s: %w: its content does not hash to blob %s", p, ErrDamaged, h)
	}
	// The umask may have cleared bits; set exactly what git records.
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}

func (co *checkout) linkTarget(p string, h plumbing.Hash) (string, error) {
	blob, err := co.m.repo.BlobObject(h)
	if err != nil {
		return "", fmt.Errorf("%s: %w", p, err)
	}
	if blob.Size == 0 || blob.Size > maxSymlinkTarget {
		return "", fmt.Errorf("symlink %s: target of %d bytes", p, blob.Size)
	}
	r, err := blob.Reader()
	if err != nil {
		return "", fmt.Errorf("%s: %w", p, err)
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, maxSymlinkTarget+1))
	if err != nil {
		return "", fmt.Errorf("%s: %w", p, err)
	}
	if plumbing.ComputeHash(plumbing.BlobObject, b) != h {
		return "", fmt.Errorf("symlink %s: %w: its target does not hash to blob %s", p, ErrDamaged, h)
	}
	target := string(b)
	if strings.ContainsRune(target, 0) {
		return "", fmt.Errorf("symlink %s: target contains NUL", p)
	}
	if strings.HasPrefix(target, "/") {
		return "", fmt.Errorf("symlink %s -> %s: absolute targets point outside the checkout", p, clip(target))
	}
	return target, nil
}

// resolveInside follows the symlink at rel (slash-separated, relative to
// root) through the checkout as the kernel would, component by component,
// and fails if any step leaves root, a target is absolute, or the chain is
// longer than maxSymlinkHops. A dangling target inside root is fine.
func resolveInside(root, rel string) error {
	// stack holds the resolved components below root; todo the components
	// still to walk.
	var stack []string
	todo := strings.Split(rel, "/")
	hops := 0
	for len(todo) > 0 {
		comp := todo[0]
		todo = todo[1:]
		switch comp {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return errors.New("points outside the checkout")
			}
			stack = stack[:len(stack)-1]
			continue
		}
		cur := filepath.Join(append([]string{root}, append(stack, comp)...)...)
		fi, err := os.Lstat(cur)
		if errors.Is(err, os.ErrNotExist) {
			// Nothing more exists below: the rest is resolved lexically.
			stack = append(stack, comp)
			continue
		}
		if err != nil {
			return err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			stack = append(stack, comp)
			continue
		}
		hops++
		if hops > maxSymlinkHops {
			return errors.New("too many levels of symlinks")
		}
		target, err := os.Readlink(cur)
		if err != nil {
			return err
		}
		if strings.HasPrefix(target, "/") {
			return errors.New("points outside the checkout (absolute)")
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	return nil
}
