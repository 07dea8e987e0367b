package gitrepo

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
	"github.com/go-git/go-git/v5/storage/filesystem"

	"gitlab.com/writ-ci/writ/internal/testkeys"
)

// indexInto runs a pack through the guard and the indexer into a fresh
// objects/pack directory, as storePack does, and returns the directory
// of the repository (nothing else in it).
func indexInto(t testing.TB, pack []byte, lim Limits, keep bool) (string, *packIndexer, error) {
	t.Helper()
	dir := t.TempDir()
	packDir := filepath.Join(dir, "objects", "pack")
	if err := os.MkdirAll(packDir, 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(packDir, "tmp_pack_")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ix := newPackIndexer(keep)
	if err := guardIndexed(bytes.NewReader(pack), f, lim, ix); err != nil {
		return dir, ix, err
	}
	return dir, ix, ix.store(context.Background(), f, packDir, lim)
}

// readAll reads every object named in the stored index back through
// go-git, checking that each hashes to its name, and returns contents by
// name.
func readAll(t testing.TB, dir string) map[string]string {
	t.Helper()
	st := filesystem.NewStorage(osfs.New(dir), cache.NewObjectLRUDefault())
	out := map[string]string{}
	idxs, _ := filepath.Glob(filepath.Join(dir, "objects", "pack", "pack-*.idx"))
	for _, p := range idxs {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		idx := idxfile.NewMemoryIndex()
		err = idxfile.NewDecoder(f).Decode(idx)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		iter, err := idx.Entries()
		if err != nil {
			t.Fatal(err)
		}
		for {
			e, err := iter.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			out[e.Hash.String()] = readBack(t, st, e.Hash)
		}
	}
	return out
}

// readBack reads object h through go-git and checks its name.
func readBack(t testing.TB, st *filesystem.Storage, h plumbing.Hash) string {
	t.Helper()
	o, err := st.EncodedObject(plumbing.AnyObject, h)
	if err != nil {
		t.Fatalf("read %s: %v", h, err)
	}
	r, err := o.Reader()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %s: %v", h, err)
	}
	if got := plumbing.ComputeHash(o.Type(), data); got != h {
		t.Fatalf("object %s reads back as %s", h, got)
	}
	return string(data)
}

// blobName is git's name for a blob of content s.
func blobName(s string) string {
	return plumbing.ComputeHash(plumbing.BlobObject, []byte(s)).String()
}

// insertDelta is a delta from a base of baseLen bytes that writes lit.
func insertDelta(baseLen int, lit string) []byte {
	return append([]byte{byte(baseLen), byte(len(lit)), byte(len(lit))}, lit...)
}

// copyDelta is a delta that copies the whole base (fewer than 128 bytes)
// and appends lit.
func copyDelta(baseLen int, lit string) []byte {
	d := []byte{byte(baseLen), byte(baseLen + len(lit)), 0x90, byte(baseLen)}
	return append(append(d, byte(len(lit))), lit...)
}

func refBase(s string) []byte {
	b, _ := hex.DecodeString(blobName(s))
	return b
}

// TestPackIndexerResolvesDeltas: whole objects, an ofs-delta, a ref-delta
// whose base comes later in the pack, and a chain of them are all named
// from their content; go-git reads each back and git's own verify-pack
// accepts the pack and the index writ wrote.
func TestPackIndexerResolvesDeltas(t *testing.T) {
	t.Parallel()
	const base = "base content, long enough"
	d1 := copyDelta(len(base), " +one")   // base + one
	d2 := copyDelta(len(base)+5, " +two") // (base + one) + two
	d3 := copyDelta(len(base), " +three") // base + three, ref to a later base
	whole := packObject{typ: objBlob, size: int64(len(base)), data: deflate(t, []byte(base))}
	hdr := func(o packObject) int64 { // bytes of an entry without base
		n := int64(1)
		for s := o.size >> 4; s > 0; s >>= 7 {
			n++
		}
		return n + int64(len(o.base)) + int64(len(o.data))
	}
	refLater := packObject{typ: objRefDelta, size: int64(len(d3)), base: refBase(base), data: deflate(t, d3)}
	// Layout: [refLater][whole][ofs1 → whole][ofs2 → ofs1]
	ofs1 := packObject{typ: objOfsDelta, size: int64(len(d1)), data: deflate(t, d1)}
	ofs1.base = []byte{byte(hdr(whole))}
	ofs2 := packObject{typ: objOfsDelta, size: int64(len(d2)), data: deflate(t, d2)}
	ofs2.base = []byte{byte(hdr(ofs1))} // the distance back to ofs1
	pack := craftPack(-1, refLater, whole, ofs1, ofs2)
	dir, _, err := indexInto(t, pack, DefaultLimits(), false)
	if err != nil {
		t.Fatal(err)
	}
	got := readAll(t, dir)
	for _, want := range []string{base, base + " +one", base + " +one +two", base + " +three"} {
		if got[blobName(want)] != want {
			t.Errorf("blob %q: read back %q", want, got[blobName(want)])
		}
	}
	if len(got) != 4 {
		t.Errorf("%d objects indexed, want 4", len(got))
	}
	idx, _ := filepath.Glob(filepath.Join(dir, "objects", "pack", "pack-*.idx"))
	if len(idx) != 1 {
		t.Fatalf("%d indexes", len(idx))
	}
	if out, err := exec.Command("git", "verify-pack", "-v", idx[0]).CombinedOutput(); err != nil {
		t.Fatalf("git verify-pack: %v\n%s", err, out)
	}
}

// TestPackIndexerRefuses: a pack the indexer cannot name completely is
// refused: it could only hold objects under names writ did not check.
func TestPackIndexerRefuses(t *testing.T) {
	t.Parallel()
	const base = "base content, long enough"
	whole := packObject{typ: objBlob, size: int64(len(base)), data: deflate(t, []byte(base))}
	d := copyDelta(len(base), "!")
	good := craftPack(-1, whole)
	badSum := bytes.Clone(good)
	badSum[len(badSum)-1] ^= 1
	for name, c := range map[string]struct {
		pack []byte
		want string
	}{
		"checksum": {badSum, "checksum does not match"},
		// A thin pack: the base is an object the receiver is assumed to
		// have. writ never asks for one.
		"thin": {craftPack(-1, packObject{typ: objRefDelta, size: int64(len(d)), base: refBase("elsewhere"), data: deflate(t, d)}), "not self-contained"},
		// An ofs-delta whose distance lands inside another object.
		"ofs-nowhere":     {craftPack(-1, whole, packObject{typ: objOfsDelta, size: int64(len(d)), base: []byte{3}, data: deflate(t, d)}), "no object of the pack"},
		"ofs-before-pack": {craftPack(-1, packObject{typ: objOfsDelta, size: int64(len(d)), base: []byte{0x7f}, data: deflate(t, d)}), "no object of the pack"},
		// A delta written for a base of another size.
		"wrong-base": {craftPack(-1, whole, packObject{typ: objRefDelta, size: 4, base: refBase(base), data: deflate(t, insertDelta(3, "x"))}), "does not apply"},
		// Two deltas whose bases are nowhere.
		"unresolvable-pair": {craftPack(-1,
			packObject{typ: objRefDelta, size: int64(len(d)), base: refBase(base + "!"), data: deflate(t, d)},
			packObject{typ: objRefDelta, size: int64(len(d)), base: refBase(base + "!!"), data: deflate(t, d)}), "not self-contained"},
	} {
		t.Run(name, func(t *testing.T) {
			dir, _, err := indexInto(t, c.pack, DefaultLimits(), false)
			wantErr(t, err, c.want)
			if idx, _ := filepath.Glob(filepath.Join(dir, "objects", "pack", "pack-*")); len(idx) > 0 {
				t.Errorf("refused pack stored: %v", idx)
			}
		})
	}
}

// TestFetchRefusesUnresolvablePack: over the wire, a pack whose delta has
// no base in it is refused and leaves the mirror clean; the honest server
// then fills it.
func TestFetchRefusesUnresolvablePack(t *testing.T) {
	t.Parallel()
	r, hs := linearRepo(t, 2)
	h := newHostile(t, r)
	m := mustMirror(t, h.url, Auth{})
	d := copyDelta(3, "!")
	h.refs = map[string]string{"refs/heads/main": hs[1]}
	h.pack = craftPack(-1, packObject{typ: objRefDelta, size: int64(len(d)), base: refBase("abc"), data: deflate(t, d)})
	h.set("pack")
	err := m.Fetch(ctxTimeout(t, 30*time.Second), mainSpec)
	wantErr(t, err, "not self-contained")
	assertClean(t, m, "")
	if packs, _ := filepath.Glob(filepath.Join(m.Dir(), "objects", "pack", "pack-*")); len(packs) > 0 {
		t.Errorf("refused pack stored: %v", packs)
	}
	honestAgain(t, h, m, hs[1])
}

// TestReadAheadHandsOverOnce: a read-ahead mirror's fetch keeps the large
// blob it brought, named; the first ReadFile of it gets that copy, the
// mirror then holds nothing, and a second read comes from the pack with
// the same bytes. A mirror without read-ahead keeps nothing.
func TestReadAheadHandsOverOnce(t *testing.T) {
	t.Parallel()
	r := testkeys.GitRepo(t)
	var big strings.Builder
	for i := 0; big.Len() < 2*largeObject; i++ {
		fmt.Fprintf(&big, "  - name: job-%d\n", i)
	}
	head := r.Commit(t, map[string]string{"allowlist.yaml": big.String(), "small.txt": "x"}, "v1", nil)
	m, err := OpenMirror(t.TempDir(), r.Path, Auth{}, WithReadAhead())
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Fetch(ctxTimeout(t, time.Minute), mainSpec); err != nil {
		t.Fatal(err)
	}
	if m.fresh.hash.String() != blobName(big.String()) {
		t.Fatalf("read-ahead kept %s, want the large blob %s", m.fresh.hash, blobName(big.String()))
	}
	kept := m.fresh.data
	got, err := m.ReadFile(head, "allowlist.yaml", 4*largeObject)
	if err != nil || string(got) != big.String() {
		t.Fatalf("first read: %d bytes, %v", len(got), err)
	}
	if &got[0] != &kept[0] || m.fresh.data != nil {
		t.Fatal("the first read did not take the kept copy, or the mirror still holds it")
	}
	again, err := m.ReadFile(head, "allowlist.yaml", 4*largeObject)
	if err != nil || string(again) != big.String() || &again[0] == &got[0] {
		t.Fatalf("second read: %d bytes, %v (from the pack: %v)", len(again), err, &again[0] != &got[0])
	}
	plain := mustMirror(t, r.Path, Auth{})
	if err := plain.Fetch(ctxTimeout(t, time.Minute), mainSpec); err != nil {
		t.Fatal(err)
	}
	if plain.fresh.data != nil {
		t.Fatal("a mirror without read-ahead kept a blob")
	}
}

// TestReadAheadRespectsTheLimit: the kept copy is refused by a read whose
// limit it exceeds, as a read from the pack would be.
func TestReadAheadRespectsTheLimit(t *testing.T) {
	t.Parallel()
	r := testkeys.GitRepo(t)
	big := strings.Repeat("0123456789abcdef\n", 2*largeObject/17+1)
	head := r.Commit(t, map[string]string{"allowlist.yaml": big}, "v1", nil)
	m, err := OpenMirror(t.TempDir(), r.Path, Auth{}, WithReadAhead())
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Fetch(ctxTimeout(t, time.Minute), mainSpec); err != nil {
		t.Fatal(err)
	}
	if m.fresh.data == nil {
		t.Fatal("nothing kept")
	}
	_, err = m.ReadFile(head, "allowlist.yaml", largeObject)
	wantErr(t, err, "more than the 1048576 accepted")
}

// FuzzPackIndexer: whatever a server sends, guard and indexer together
// never panic, and a pack they store holds only objects that read back
// under their names.
func FuzzPackIndexer(f *testing.F) {
	const base = "base content, long enough"
	whole := packObject{typ: objBlob, size: int64(len(base)), data: deflate(f, []byte(base))}
	d := copyDelta(len(base), " +one")
	f.Add(craftPack(-1, whole))
	f.Add(craftPack(-1, whole, packObject{typ: objRefDelta, size: int64(len(d)), base: refBase(base), data: deflate(f, d)}))
	f.Add(craftPack(-1, packObject{typ: objRefDelta, size: int64(len(d)), base: refBase(base), data: deflate(f, d)}, whole))
	f.Add(craftPack(-1, whole, packObject{typ: objOfsDelta, size: int64(len(d)), base: []byte{byte(2 + len(whole.data))}, data: deflate(f, d)}))
	lim := Limits{MaxBytes: 1 << 20, MaxObjects: 64, MaxObjectBytes: 1 << 16}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir, _, err := indexInto(t, data, lim, true)
		if err != nil {
			return
		}
		readAll(t, dir)
	})
}

// TestFetchMergesPacks: a mirror fetched once per new commit keeps few
// packs (merged as they accumulate), is never rebuilt for their number,
// and stays whole: git fsck accepts it (every object reachable from its
// ref is there and hashes to its name, ofs-deltas copied into a merged
// pack included) and the first commit is still an ancestor of the last.
func TestFetchMergesPacks(t *testing.T) {
	t.Parallel()
	r := testkeys.GitRepo(t)
	m := mustMirror(t, r.Path, Auth{})
	text := strings.Repeat("a line of an allowlist, long enough to delta\n", 300)
	var first, head string
	for i := range 3 * mergeAt {
		// Two similar files per commit: the server sends one as a delta
		// against the other, inside the same pack.
		head = r.Commit(t, map[string]string{"a.txt": text + fmt.Sprint(i), "b.txt": fmt.Sprint(i) + text}, fmt.Sprint("v", i), nil)
		if first == "" {
			first = head
		}
		if err := m.Fetch(ctxTimeout(t, time.Minute), mainSpec); err != nil {
			t.Fatal(err)
		}
		packs, _ := filepath.Glob(filepath.Join(m.Dir(), "objects", "pack", "pack-*.pack"))
		if len(packs) > mergeAt {
			t.Fatalf("after fetch %d: %d packs, want at most %d", i, len(packs), mergeAt)
		}
		assertClean(t, m, head)
	}
	if m.Rebuilt() != 0 {
		t.Fatalf("the mirror was rebuilt %d times", m.Rebuilt())
	}
	if ok, err := m.IsAncestor(first, head); err != nil || !ok {
		t.Fatalf("IsAncestor(first, head) = %v, %v", ok, err)
	}
	if err := m.CheckCommit(head); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("git", "--git-dir", m.Dir(), "fsck", "--full", "--no-dangling").CombinedOutput()
	if err != nil {
		t.Fatalf("git fsck: %v\n%s", err, out)
	}
	idx, _ := filepath.Glob(filepath.Join(m.Dir(), "objects", "pack", "pack-*.idx"))
	deltas := false
	for _, p := range idx {
		out, err := exec.Command("git", "verify-pack", "-v", p).CombinedOutput()
		if err != nil {
			t.Fatalf("git verify-pack %s: %v\n%s", filepath.Base(p), err, out)
		}
		deltas = deltas || strings.Contains(string(out), "chain length = 1:")
	}
	if !deltas {
		t.Fatal("no pack holds a delta, the case merging must keep")
	}
}

// TestMergeRefusesDuplicates: packs that share an object are left as they
// are (one index entry could not describe two copies).
func TestMergeRefusesDuplicates(t *testing.T) {
	t.Parallel()
	a := packObject{typ: objBlob, size: 1, data: deflate(t, []byte("a"))}
	b := packObject{typ: objBlob, size: 1, data: deflate(t, []byte("b"))}
	dir1, _, err := indexInto(t, craftPack(-1, a), DefaultLimits(), false)
	if err != nil {
		t.Fatal(err)
	}
	dir2, _, err := indexInto(t, craftPack(-1, a, b), DefaultLimits(), false)
	if err != nil {
		t.Fatal(err)
	}
	packDir := filepath.Join(dir1, "objects", "pack")
	moved, _ := filepath.Glob(filepath.Join(dir2, "objects", "pack", "pack-*"))
	for _, p := range moved {
		if err := os.Rename(p, filepath.Join(packDir, filepath.Base(p))); err != nil {
			t.Fatal(err)
		}
	}
	var packs []packFile
	paths, _ := filepath.Glob(filepath.Join(packDir, "pack-*.pack"))
	for _, p := range paths {
		fi, _ := os.Stat(p)
		packs = append(packs, packFile{base: strings.TrimSuffix(p, ".pack"), size: fi.Size()})
	}
	wantErr(t, mergeInto(packDir, packs), "in more than one pack")
	after, _ := filepath.Glob(filepath.Join(packDir, "*"))
	if len(after) != 4 {
		t.Fatalf("after a refused merge: %v", after)
	}
	if got := readAll(t, dir1); got[blobName("a")] != "a" || got[blobName("b")] != "b" {
		t.Fatalf("objects after a refused merge: %v", got)
	}
}

// TestPackIndexerStopsAtTheDeadline: resolving deltas (each may build up
// to max_object_bytes) stops when the fetch's deadline passes.
func TestPackIndexerStopsAtTheDeadline(t *testing.T) {
	t.Parallel()
	const base = "base content, long enough"
	d := copyDelta(len(base), "!")
	pack := craftPack(-1, packObject{typ: objBlob, size: int64(len(base)), data: deflate(t, []byte(base))},
		packObject{typ: objRefDelta, size: int64(len(d)), base: refBase(base), data: deflate(t, d)})
	dir := filepath.Join(t.TempDir(), "pack")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(dir, "tmp_pack_")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ix := newPackIndexer(false)
	if err := guardIndexed(bytes.NewReader(pack), f, DefaultLimits(), ix); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(errors.New("the fetch timed out"))
	wantErr(t, ix.store(ctx, f, dir, DefaultLimits()), "resolve the pack's deltas: the fetch timed out")
	if packs, _ := filepath.Glob(filepath.Join(dir, "pack-*")); len(packs) > 0 {
		t.Fatalf("stored after the deadline: %v", packs)
	}
}
