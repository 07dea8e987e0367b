package executor

// Collecting an entry's upload paths from a build directory the job
// controls. writ runs as root and the job can change every name in the
// tree, so the walk never resolves a path: each step opens one name
// relative to an open directory (openat) with O_NOFOLLOW, and the type and
// owner are read from the opened descriptor (fstat), not from a name that
// may have changed in between. A symbolic link is never followed, wherever
// it points.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"gitlab.com/writ-ci/writ/allowlist"
)

// Bounds on one upload stage's walk.
const (
	maxCollectFiles = 100000
	maxCollectDepth = 64
	// maxCollectVisits bounds the directory entries one stage looks at, so
	// a job that leaves millions of directories under a ** path costs
	// bounded time.
	maxCollectVisits = 1000000
)

// collectError says why an upload was refused: something in the build
// directory that writ will not upload. It is the job's doing, so the job
// fails (not writ).
type collectError struct{ msg string }

func (e *collectError) Error() string { return e.msg }

func refusef(format string, a ...any) error { return &collectError{fmt.Sprintf(format, a...)} }

// buildTree is an open build directory to collect from.
type buildTree struct {
	root *os.File
	// uid, when >= 0, is the only owner a collected file or directory may
	// have: the job's. A file owned by anyone else got into the tree by a
	// hard link or a bind writ did not make, and is not the job's to upload.
	uid int64
	// seen are the collected files by relative path: a file matched by two
	// paths is uploaded once.
	seen  map[string]bool
	files []string
	// visits counts directory entries read, against maxCollectVisits.
	visits int
	// dirsOnly: the pattern being matched ends in "/".
	dirsOnly bool
	// parent is the open directory of the file openFile opened last, and
	// parentPath its path: files come in path order, so most share it.
	parent     *os.File
	parentPath string
}

// openBuildTree opens dir (which writ created and whose parent only root
// can write) without following a symbolic link.
func openBuildTree(dir string, uid int64) (*buildTree, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open the build directory %s: %w", dir, err)
	}
	return &buildTree{root: os.NewFile(uintptr(fd), dir), uid: uid, seen: map[string]bool{}}, nil
}

func (t *buildTree) Close() error {
	if t.parent != nil {
		t.parent.Close()
	}
	return t.root.Close()
}

// match adds every file pattern (an allowlist.CheckUploadPath path)
// matches, in a stable order, and returns how many it added. A directory
// that matches adds its whole tree.
func (t *buildTree) match(pattern string) (int, error) {
	// Parse refused such a path already; an entry built otherwise must not
	// name a way out either.
	if msg := allowlist.CheckUploadPath(pattern); msg != "" {
		return 0, refusef("upload path %q %s", allowlist.Visible(pattern), msg)
	}
	before := len(t.files)
	dir, err := t.dup()
	if err != nil {
		return 0, err
	}
	defer dir.Close()
	// A trailing slash names directories only: "out/" matches no file.
	segs := strings.Split(pattern, "/")
	t.dirsOnly = segs[len(segs)-1] == ""
	if t.dirsOnly {
		segs = segs[:len(segs)-1]
	}
	if err := t.walk(dir, "", segs, 0); err != nil {
		return 0, err
	}
	return len(t.files) - before, nil
}

func (t *buildTree) dup() (*os.File, error) {
	fd, err := unix.Openat(int(t.root.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), t.root.Name()), nil
}

// walk matches segs below dir, whose path is rel ("" for the root).
func (t *buildTree) walk(dir *os.File, rel string, segs []string, depth int) error {
	if depth > maxCollectDepth {
		return refusef("%s is more than %d directories deep", rel, maxCollectDepth)
	}
	if len(segs) == 0 {
		return t.addTree(dir, rel, depth)
	}
	seg, rest := segs[0], segs[1:]
	if seg == "**" {
		if len(rest) == 0 {
			// A trailing ** is the whole tree below.
			return t.addTree(dir, rel, depth)
		}
		// Zero directories, then each subdirectory with ** still to match.
		if err := t.walk(dir, rel, rest, depth); err != nil {
			return err
		}
		return t.eachChild(dir, func(name string, isDir bool) error {
			if !isDir {
				return nil
			}
			return t.descend(dir, rel, name, segs, depth)
		})
	}
	if !hasMeta(seg) {
		return t.step(dir, rel, seg, rest, depth)
	}
	return t.eachChild(dir, func(name string, _ bool) error {
		if ok, _ := path.Match(seg, name); !ok {
			return nil
		}
		return t.step(dir, rel, name, rest, depth)
	})
}

// step matches rest below the entry name of dir.
func (t *buildTree) step(dir *os.File, rel, name string, rest []string, depth int) error {
	if len(rest) == 0 && !t.dirsOnly {
		return t.addEntry(dir, rel, name, depth)
	}
	return t.descend(dir, rel, name, rest, depth)
}

// descend opens the directory name of dir and matches segs below it. A
// name that is missing or not a directory matches nothing; a symbolic link
// is refused.
func (t *buildTree) descend(dir *os.File, rel, name string, segs []string, depth int) error {
	child, err := t.openDir(dir, join(rel, name))
	if child == nil {
		return err
	}
	defer child.Close()
	return t.walk(child, join(rel, name), segs, depth+1)
}

// addEntry adds the file or directory tree name of dir.
func (t *buildTree) addEntry(dir *os.File, rel, name string, depth int) error {
	p := join(rel, name)
	var st unix.Stat_t
	if err := unix.Fstatat(int(dir.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("%s: %w", p, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return t.descend(dir, rel, name, nil, depth)
	}
	return t.addFile(p, &st)
}

// addTree adds every file below dir.
func (t *buildTree) addTree(dir *os.File, rel string, depth int) error {
	return t.eachChild(dir, func(name string, _ bool) error {
		return t.addEntry(dir, rel, name, depth)
	})
}

// addFile records the file p, which must be a regular file of the job's.
// Its content is read later through openFile, which checks again.
func (t *buildTree) addFile(p string, st *unix.Stat_t) error {
	if err := t.checkType(p, st, unix.S_IFREG); err != nil {
		return err
	}
	if t.seen[p] {
		return nil
	}
	if len(t.files) >= maxCollectFiles {
		return refusef("more than %d files match the entry's upload paths", maxCollectFiles)
	}
	t.seen[p] = true
	t.files = append(t.files, p)
	return nil
}

func (t *buildTree) checkType(p string, st *unix.Stat_t, want uint32) error {
	switch st.Mode & unix.S_IFMT {
	case want:
	case unix.S_IFLNK:
		return refusef("%s is a symbolic link: writ never follows one in the build directory (it could lead out of it); upload the file it points to by its own path", p)
	case unix.S_IFDIR:
		return refusef("%s is a directory where a file was expected", p)
	default:
		return refusef("%s is not a regular file or directory (a pipe, socket or device): writ uploads regular files only", p)
	}
	if t.uid >= 0 && int64(st.Uid) != t.uid {
		return refusef("%s is owned by uid %d, not by the job (uid %d): writ uploads only the job's own files", p, st.Uid, t.uid)
	}
	return nil
}

// openDir opens the directory p (relative to the root) by walking it from
// dir's entry; (nil, nil) when it does not exist or is a file.
func (t *buildTree) openDir(dir *os.File, p string) (*os.File, error) {
	name := path.Base(p)
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR):
		// ENOTDIR: a file where a directory was expected, or a symbolic
		// link (O_NOFOLLOW with O_DIRECTORY); tell the two apart.
		var st unix.Stat_t
		if serr := unix.Fstatat(int(dir.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); serr == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return nil, t.checkType(p, &st, unix.S_IFDIR)
		}
		return nil, nil
	case errors.Is(err, unix.ELOOP):
		return nil, refusef("%s is a symbolic link: writ never follows one in the build directory (it could lead out of it)", p)
	case err != nil:
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	f := os.NewFile(uintptr(fd), p)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, err
	}
	if err := t.checkType(p, &st, unix.S_IFDIR); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// eachChild calls fn for the entries of dir in name order, reading the
// directory in bounded chunks.
func (t *buildTree) eachChild(dir *os.File, fn func(name string, isDir bool) error) error {
	if _, err := dir.Seek(0, io.SeekStart); err != nil {
		return err
	}
	var names []string
	dirs := map[string]bool{}
	for {
		ents, err := dir.ReadDir(1024)
		for _, e := range ents {
			names = append(names, e.Name())
			if e.IsDir() {
				dirs[e.Name()] = true
			}
		}
		t.visits += len(ents)
		if len(names) > maxCollectFiles {
			return refusef("a directory of the build directory holds more than %d entries", maxCollectFiles)
		}
		if t.visits > maxCollectVisits {
			return refusef("the upload paths reach more than %d directory entries: name narrower paths", maxCollectVisits)
		}
		if errors.Is(err, io.EOF) || (err == nil && len(ents) == 0) {
			break
		}
		if err != nil {
			return err
		}
	}
	sort.Strings(names)
	for _, n := range names {
		if err := fn(n, dirs[n]); err != nil {
			return err
		}
	}
	return nil
}

// openFile opens the collected file p for reading, walking from the root
// one name at a time without following a link, and checks that it is
// still a regular file of the job's. O_NONBLOCK keeps a file swapped for a
// pipe from blocking the open.
func (t *buildTree) openFile(p string) (*os.File, int64, error) {
	dir, err := t.parentOf(p)
	if err != nil {
		return nil, 0, err
	}
	fd, err := unix.Openat(int(dir.Fd()), path.Base(p), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if errors.Is(err, unix.ELOOP) {
		return nil, 0, refusef("%s is a symbolic link: writ never follows one in the build directory (it could lead out of it)", p)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", p, err)
	}
	f := os.NewFile(uintptr(fd), p)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, 0, err
	}
	if err := t.checkType(p, &st, unix.S_IFREG); err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size, nil
}

// parentOf returns the open directory holding p, walked from the root one
// name at a time like every other step, and kept for the next file.
func (t *buildTree) parentOf(p string) (*os.File, error) {
	parent := path.Dir(p)
	if t.parent != nil && t.parentPath == parent {
		return t.parent, nil
	}
	if t.parent != nil {
		t.parent.Close()
		t.parent, t.parentPath = nil, ""
	}
	dir, err := t.dup()
	if err != nil {
		return nil, err
	}
	if parent != "." {
		segs := strings.Split(parent, "/")
		for i, s := range segs {
			next, err := t.openDir(dir, strings.Join(segs[:i+1], "/"))
			dir.Close()
			if err != nil {
				return nil, err
			}
			if next == nil {
				return nil, refusef("%s changed while writ was uploading it (directory %s is gone)", p, s)
			}
			dir = next
		}
	}
	t.parent, t.parentPath = dir, parent
	return dir, nil
}

func hasMeta(s string) bool { return strings.ContainsAny(s, `*?[`) }

func join(rel, name string) string {
	if rel == "" {
		return name
	}
	return rel + "/" + name
}
