package gitrepo

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
)

// mergeAt is the pack count above which a fetch merges the mirror's
// smaller packs into one. Every fetch adds a pack, and every process that
// reads the mirror loads every pack's index; without merging, a mirror
// that an environment fetches once per allowlist version would reach
// maxPacks and be fetched again from scratch.
const mergeAt = 8

// tidy merges packs after a fetch (see mergePacks). It is housekeeping: a
// merge that fails leaves the packs as they were, and maxPacks still
// bounds them.
func (m *Mirror) tidy() {
	merged, err := m.mergePacks()
	if err != nil {
		m.removeTempPacks()
		return
	}
	if merged {
		// go-git's storage lists packs once: open it again.
		if repo, err := openRepo(m.dir); err == nil {
			m.repo = repo
		}
	}
}

// packFile is one pack of the mirror.
type packFile struct {
	base string // path without .pack/.idx
	size int64
}

// mergePacks merges the smallest packs when the mirror holds more than
// mergeAt, geometrically as git repack --geometric does: a larger pack
// joins only while it is less than twice the ones merged so far, so each
// byte is copied a logarithmic number of times over the mirror's life.
// It reports whether it merged. The caller holds the mirror's lock.
func (m *Mirror) mergePacks() (bool, error) {
	paths, err := filepath.Glob(filepath.Join(m.dir, "objects", "pack", "pack-*.pack"))
	if err != nil || len(paths) <= mergeAt {
		return false, err
	}
	packs := make([]packFile, 0, len(paths))
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return false, err
		}
		packs = append(packs, packFile{base: strings.TrimSuffix(p, ".pack"), size: fi.Size()})
	}
	sort.Slice(packs, func(i, j int) bool { return packs[i].size < packs[j].size })
	k, sum := 2, packs[0].size+packs[1].size
	for k < len(packs) && packs[k].size < 2*sum {
		sum += packs[k].size
		k++
	}
	if err := mergeInto(filepath.Dir(paths[0]), packs[:k]); err != nil {
		return false, err
	}
	return true, nil
}

// mergeInto writes the objects of packs into one new pack by copying each
// pack's entries as they are: an ofs-delta names its base by distance,
// which copying a whole pack's entries together keeps, and a ref-delta by
// name. Nothing is inflated or hashed again: each object was named from
// its content when its pack was stored, and readers check what they read.
// The old packs are removed once the new one is in place.
func mergeInto(dir string, packs []packFile) (err error) {
	idxs := make([]*idxfile.MemoryIndex, len(packs))
	seen := map[plumbing.Hash]bool{}
	var total int64
	for i, p := range packs {
		if idxs[i], err = readIndex(p.base + ".idx"); err != nil {
			return err
		}
		n, err := idxs[i].Count()
		if err != nil {
			return err
		}
		total += n
		// An object in two packs would be listed once but stored twice,
		// and the count in the pack's header would not match its index.
		if err := eachEntry(idxs[i], func(e *idxfile.Entry) error {
			if seen[e.Hash] {
				return fmt.Errorf("object %s is in more than one pack", e.Hash)
			}
			seen[e.Hash] = true
			return nil
		}); err != nil {
			return err
		}
	}
	if total > 1<<32-1 {
		return errors.New("too many objects for one pack")
	}
	tmp, err := os.CreateTemp(dir, "tmp_pack_")
	if err != nil {
		return err
	}
	defer func() {
		_ = tmp.Close()
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	sum := sha1.New()
	w := bufio.NewWriterSize(io.MultiWriter(tmp, sum), 64<<10)
	var hdr [12]byte
	copy(hdr[:], "PACK")
	binary.BigEndian.PutUint32(hdr[4:], 2)
	binary.BigEndian.PutUint32(hdr[8:], uint32(total))
	_, _ = w.Write(hdr[:])
	var iw idxfile.Writer
	_ = iw.OnHeader(uint32(total))
	pos := int64(12)
	for i, p := range packs {
		n, err := copyEntries(w, p, idxs[i], pos, &iw)
		if err != nil {
			return err
		}
		pos += n
	}
	if err := w.Flush(); err != nil {
		return err
	}
	var trailer plumbing.Hash
	copy(trailer[:], sum.Sum(nil))
	if _, err := tmp.Write(trailer[:]); err != nil {
		return err
	}
	if err := iw.OnFooter(trailer); err != nil {
		return err
	}
	if err := installPack(dir, tmp, &iw, trailer); err != nil {
		return err
	}
	// The pack file goes first: an index without its pack is ignored, a
	// pack without its index is damage.
	for _, p := range packs {
		if p.base == filepath.Join(dir, "pack-"+trailer.String()) {
			continue
		}
		if err := os.Remove(p.base + ".pack"); err != nil {
			return err
		}
		_ = os.Remove(p.base + ".idx")
	}
	return nil
}

// copyEntries appends the entries of pack p (everything between its header
// and trailer) at pos, and adds them to iw. It returns the bytes copied.
func copyEntries(w io.Writer, p packFile, idx *idxfile.MemoryIndex, pos int64, iw *idxfile.Writer) (int64, error) {
	f, err := os.Open(p.base + ".pack")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var hdr [12]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		return 0, fmt.Errorf("%w: %s: %v", ErrDamaged, p.base, err)
	}
	count, _ := idx.Count()
	v := binary.BigEndian.Uint32(hdr[4:])
	if !bytes.Equal(hdr[:4], []byte("PACK")) || (v != 2 && v != 3) || int64(binary.BigEndian.Uint32(hdr[8:])) != count {
		return 0, fmt.Errorf("%w: %s.pack does not match its index", ErrDamaged, p.base)
	}
	body := p.size - 12 - 20
	if body < 0 {
		return 0, fmt.Errorf("%w: %s.pack is truncated", ErrDamaged, p.base)
	}
	err = eachEntry(idx, func(e *idxfile.Entry) error {
		if e.Offset < 12 || int64(e.Offset) >= 12+body {
			return fmt.Errorf("%w: %s.idx names an offset outside its pack", ErrDamaged, p.base)
		}
		iw.Add(e.Hash, uint64(pos)+e.Offset-12, e.CRC32)
		return nil
	})
	if err != nil {
		return 0, err
	}
	if _, err := io.CopyN(w, f, body); err != nil {
		return 0, fmt.Errorf("%w: copy %s.pack: %v", ErrDamaged, p.base, err)
	}
	return body, nil
}

func readIndex(path string) (*idxfile.MemoryIndex, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	idx := idxfile.NewMemoryIndex()
	if err := idxfile.NewDecoder(bufio.NewReader(f)).Decode(idx); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrDamaged, path, err)
	}
	if name := "pack-" + plumbing.Hash(idx.PackfileChecksum).String() + ".idx"; filepath.Base(path) != name {
		return nil, fmt.Errorf("%w: %s is the index of another pack", ErrDamaged, path)
	}
	return idx, nil
}

func eachEntry(idx *idxfile.MemoryIndex, fn func(*idxfile.Entry) error) error {
	iter, err := idx.Entries()
	if err != nil {
		return err
	}
	defer iter.Close()
	for {
		e, err := iter.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}
