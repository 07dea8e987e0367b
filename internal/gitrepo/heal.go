package gitrepo

import (
	"compress/flate"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/filesystem/dotgit"

	"gitlab.com/writ-ci/writ/internal/fsutil"
)

// damageMarker, inside a mirror, says that a reader found it damaged; the
// next Fetch rebuilds it first.
const damageMarker = "writ-damaged"

// IsDamage reports whether err comes from a broken mirror rather than from
// what the remote holds: an object missing or unreadable, a pack or index
// that does not decode, a ref file that is empty or garbage, an I/O error.
// A decision that meets one is undecidable (retried), never a refusal;
// call MarkDamaged so that the next Fetch rebuilds the mirror.
func IsDamage(err error) bool {
	if err == nil {
		return false
	}
	var pe *packfile.Error
	var pathErr *fs.PathError
	var corrupt flate.CorruptInputError
	for _, target := range []error{ErrDamaged, ErrIncomplete, plumbing.ErrObjectNotFound, dotgit.ErrEmptyRefFile,
		dotgit.ErrPackfileNotFound, dotgit.ErrIdxNotFound, packfile.ErrInvalidDelta, packfile.ErrDeltaCmd,
		packfile.ErrReferenceDeltaNotFound, packfile.ErrMalformedPackFile, packfile.ErrInflatedSizeMismatch,
		object.ErrMalformedCommit, object.ErrMalformedTree, object.ErrMalformedTag,
		zlib.ErrChecksum, zlib.ErrHeader, zlib.ErrDictionary, io.ErrUnexpectedEOF, plumbing.ErrInvalidType} {
		if errors.Is(err, target) {
			return true
		}
	}
	return errors.As(err, &pe) || errors.As(err, &pathErr) || errors.As(err, &corrupt) ||
		strings.Contains(err.Error(), "invalid hash") // a garbage ref file
}

// MarkDamaged records that a reader found the mirror damaged (see
// IsDamage), so that the next Fetch rebuilds it from scratch. It is safe
// to call without the mirror's lock.
func (m *Mirror) MarkDamaged(why string) {
	_ = fsutil.WriteFileAtomic(filepath.Join(m.dir, damageMarker), []byte(clip(why)+"\n"), 0o600)
}

// damaged returns why the mirror must be rebuilt before use, or "".
func (m *Mirror) damaged() string {
	if m.repo == nil {
		return "it could not be opened"
	}
	data, err := fsutil.ReadFileLimit(filepath.Join(m.dir, damageMarker), 4096)
	if err == nil {
		return "marked damaged: " + strings.TrimSpace(string(data))
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err.Error()
	}
	return ""
}

// rebuild replaces the mirror with an empty one. The caller holds the
// mirror's lock. The old directory is renamed away first, so a crash
// leaves either the old mirror, no mirror (made again on next open) or a
// fresh one, and a trash directory removed by the next rebuild.
func (m *Mirror) rebuild() error {
	old, _ := filepath.Glob(m.dir + ".trash-*")
	trash := fmt.Sprintf("%s.trash-%d", m.dir, time.Now().UnixNano())
	switch err := os.Rename(m.dir, trash); {
	case err == nil:
		m.rebuilt++
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	for _, d := range append(old, trash) {
		if err := os.RemoveAll(d); err != nil {
			return err
		}
	}
	repo, err := createMirror(m.dir, m.url)
	if err != nil {
		return err
	}
	m.repo = repo
	return nil
}

// maxPacks bounds the pack files of a mirror: each fetch adds one, and
// reading slows with their number.
const maxPacks = 64

// overBudget reports whether the mirror outgrew MaxMirrorBytes or maxPacks.
func (m *Mirror) overBudget() bool {
	var size int64
	packs := 0
	_ = filepath.WalkDir(filepath.Join(m.dir, "objects"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if strings.HasSuffix(p, ".pack") {
			packs++
		}
		if fi, err := d.Info(); err == nil {
			size += fi.Size()
		}
		return nil
	})
	return size > m.limits.MaxMirrorBytes || packs > maxPacks
}

// Rebuilt reports how many times this Mirror value rebuilt its directory.
func (m *Mirror) Rebuilt() int { return m.rebuilt }

// maxHistoryCheck bounds the new commits checked after a fetch.
const maxHistoryCheck = 10_000

// checkFetched checks that what a decision reads through tip is in the
// mirror and intact: the tag chain, the commit, its whole tree, and its
// history down to commits in known (tips the mirror already had), the root
// or maxHistoryCheck commits. Missing objects wrap ErrIncomplete,
// unreadable ones ErrDamaged.
func (m *Mirror) checkFetched(tip plumbing.Hash, known map[plumbing.Hash]bool) error {
	c, err := m.peelChecked(tip)
	if err != nil || c == nil {
		return err
	}
	if err := m.checkTree(c.TreeHash); err != nil {
		return fmt.Errorf("commit %s: %w", c.Hash, err)
	}
	if known[c.Hash] {
		return nil
	}
	seen := map[plumbing.Hash]bool{c.Hash: true}
	queue := append([]plumbing.Hash(nil), c.ParentHashes...)
	for len(queue) > 0 {
		h := queue[0]
		queue = queue[1:]
		if seen[h] || known[h] {
			continue
		}
		seen[h] = true
		if len(seen) > maxHistoryCheck {
			// Deeper history is checked as walks read it: a missing or
			// damaged commit there is damage (IsDamage) and the mirror is
			// rebuilt. The bound keeps a fetch's cost before any signature
			// is checked proportional to a job, not to a hostile history.
			return nil
		}
		pc, err := m.commitChecked(h)
		if err != nil {
			return fmt.Errorf("history of %s: %w", tip, err)
		}
		queue = append(queue, pc.ParentHashes...)
	}
	return nil
}

// CheckCommit checks that commit hash and its whole tree are in the mirror
// and intact (objects hash to their names), as a decision about it and a
// checkout of it need. Errors wrap ErrIncomplete or ErrDamaged.
func (m *Mirror) CheckCommit(hash string) error {
	if err := CheckHash(hash); err != nil {
		return err
	}
	c, err := m.commitChecked(plumbing.NewHash(hash))
	if err != nil {
		return err
	}
	return m.checkTree(c.TreeHash)
}

// peelChecked follows a tag chain from h to a commit, checking each
// object. A tag of something else than a commit returns nil.
func (m *Mirror) peelChecked(h plumbing.Hash) (*object.Commit, error) {
	for range 5 {
		o, err := m.verified(h, plumbing.AnyObject)
		if err != nil {
			return nil, err
		}
		switch o.Type() {
		case plumbing.CommitObject:
			return object.DecodeCommit(m.repo.Storer, o)
		case plumbing.TagObject:
			t, err := object.DecodeTag(m.repo.Storer, o)
			if err != nil {
				return nil, fmt.Errorf("%w: tag %s: %v", ErrDamaged, h, err)
			}
			h = t.Target
		default:
			return nil, nil
		}
	}
	return nil, errors.New("tag chain too long")
}

func (m *Mirror) commitChecked(h plumbing.Hash) (*object.Commit, error) {
	o, err := m.verified(h, plumbing.CommitObject)
	if err != nil {
		return nil, err
	}
	c, err := object.DecodeCommit(m.repo.Storer, o)
	if err != nil {
		return nil, fmt.Errorf("%w: commit %s: %v", ErrDamaged, h, err)
	}
	return c, nil
}

// checkTree checks a tree, its subtrees and that its blobs are present.
func (m *Mirror) checkTree(root plumbing.Hash) error {
	queue := []plumbing.Hash{root}
	seen := map[plumbing.Hash]bool{}
	for len(queue) > 0 {
		h := queue[0]
		queue = queue[1:]
		if seen[h] {
			continue
		}
		seen[h] = true
		if int64(len(seen)) > m.limits.MaxObjects {
			return &LimitError{Limit: "max_objects", Max: m.limits.MaxObjects, Got: int64(len(seen)), What: "objects in tree " + root.String()}
		}
		o, err := m.verified(h, plumbing.TreeObject)
		if err != nil {
			return err
		}
		t, err := object.DecodeTree(m.repo.Storer, o)
		if err != nil {
			return fmt.Errorf("%w: tree %s: %v", ErrDamaged, h, err)
		}
		for _, e := range t.Entries {
			switch e.Mode {
			case filemode.Dir:
				queue = append(queue, e.Hash)
			case filemode.Submodule:
				// A commit of another repository: never in this mirror.
			default:
				if err := m.repo.Storer.HasEncodedObject(e.Hash); err != nil {
					return fmt.Errorf("%w: blob %s (%s) of tree %s is missing", ErrIncomplete, e.Hash, clip(e.Name), h)
				}
			}
		}
	}
	return nil
}

// verified reads object h and checks that its content hashes to h: a pack
// damaged on disk may decode into something else.
func (m *Mirror) verified(h plumbing.Hash, t plumbing.ObjectType) (plumbing.EncodedObject, error) {
	o, err := m.repo.Storer.EncodedObject(t, h)
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return nil, fmt.Errorf("%w: %s %s is missing", ErrIncomplete, typeName(t), h)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: read %s %s: %v", ErrDamaged, typeName(t), h, err)
	}
	if o.Size() > m.limits.MaxObjectBytes {
		return nil, &LimitError{Limit: "max_object_bytes", Max: m.limits.MaxObjectBytes, Got: o.Size(), What: "size of " + h.String()}
	}
	r, err := o.Reader()
	if err != nil {
		return nil, fmt.Errorf("%w: read %s %s: %v", ErrDamaged, typeName(t), h, err)
	}
	defer r.Close()
	hasher := plumbing.NewHasher(o.Type(), o.Size())
	n, err := io.Copy(hasher, r)
	if err != nil || n != o.Size() || hasher.Sum() != h {
		return nil, fmt.Errorf("%w: %s %s does not read back intact (%d of %d bytes, %v)", ErrDamaged, o.Type(), h, n, o.Size(), err)
	}
	return o, nil
}

func typeName(t plumbing.ObjectType) string {
	if t == plumbing.AnyObject {
		return "object"
	}
	return t.String()
}
