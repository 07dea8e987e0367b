package gitrepo

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
)

// Why writ indexes packs itself: go-git's pack writer runs its packfile
// parser over the stream the guard has already inflated, inflating and
// buffering every object a second time (a large allowlist blob several
// times over, in growing buffers). Here the guard's own pass names each
// whole object as it inflates it, records where each object starts and
// the CRC-32 of its bytes, and only deltas are read back, once the pack
// is on disk, to be applied and named. go-git's idxfile writer and delta
// patcher do the rest, and go-git reads the result like any pack.

// keepMin is the smallest blob a read-ahead mirror keeps in memory after
// the fetch that brought it (see WithReadAhead).
const keepMin = largeObject

// deltaCacheBytes bounds the contents kept while deltas are resolved, on
// top of the object being built and its base (each within
// MaxObjectBytes).
const deltaCacheBytes = 32 << 20

// packEntry is one object of a pack being indexed.
type packEntry struct {
	off, dataOff int64 // the entry's header and its zlib data
	typ          byte  // pack type (objCommit … objRefDelta)
	size         int64 // declared inflated size (of the delta data, for a delta)
	base         deltaBase
	baseIdx      int // the base's entry, once known; -1 before
	crc          uint32
	otype        plumbing.ObjectType // the object's type, once known
	hash         plumbing.Hash       // its name, once known
	known        bool
}

// packIndexer collects, while packGuard hands a pack on, what the pack's
// index needs. Its methods are called by the guard in stream order.
type packIndexer struct {
	entries []packEntry
	pos     int64     // pack bytes handed on so far
	ci      int       // the entry holding pos
	trailer int64     // offset of the trailer, -1 until known
	sum     hash.Hash // SHA-1 of every byte before the trailer
	tail    []byte    // the trailer as handed on
	keep    bool      // keep the largest blob ≥ keepMin (read-ahead)
	kept    keptBlob
	obj     objectIndexer
}

// keptBlob is a blob whose content was hashed to its name in this process.
type keptBlob struct {
	hash plumbing.Hash
	data []byte
}

func newPackIndexer(keep bool) *packIndexer {
	return &packIndexer{trailer: -1, sum: sha1.New(), keep: keep}
}

// guardIndexed is guardPack recording into ix.
func guardIndexed(r io.Reader, w io.Writer, lim Limits, ix *packIndexer) error {
	c := &countingReader{r: r, max: lim.MaxBytes}
	g := &packGuard{lim: lim, in: bufio.NewReaderSize(c, 64<<10), counter: c, w: w, buf: make([]byte, 32<<10), ix: ix}
	return g.run()
}

// objectIndexer names a whole object from its content as the guard
// inflates it.
type objectIndexer struct {
	x    *packIndexer
	e    int
	h    plumbing.Hasher
	data []byte // the content, when kept
	// inPlace: the last next returned data's spare room.
	inPlace bool
}

// begin records object i, whose header starts at off and data at dataOff.
// It returns the indexer of a whole object's content, nil for a delta.
func (x *packIndexer) begin(i, off, dataOff int64, typ byte, size int64, base deltaBase) (*objectIndexer, error) {
	e := packEntry{off: off, dataOff: dataOff, typ: typ, size: size, base: base, baseIdx: -1}
	switch typ {
	case objOfsDelta:
		// The base must be an earlier object of this pack, found by where
		// it starts.
		at := off - base.ofs
		j := sort.Search(len(x.entries), func(k int) bool { return x.entries[k].off >= at })
		if base.ofs <= 0 || j == len(x.entries) || x.entries[j].off != at {
			return nil, fmt.Errorf("object %d (ofs-delta) names a base that is no object of the pack", i)
		}
		e.baseIdx = j
	case objRefDelta:
	default:
		e.otype = packType(typ)
	}
	x.entries = append(x.entries, e)
	if e.otype == 0 {
		return nil, nil
	}
	x.obj = objectIndexer{x: x, e: len(x.entries) - 1, h: plumbing.NewHasher(e.otype, size)}
	if x.keep && typ == objBlob && size >= keepMin && size > int64(len(x.kept.data)) {
		x.obj.data = make([]byte, 0, size)
	}
	return &x.obj, nil
}

// next is where the guard inflates the next bytes: straight into a kept
// content while it has room, so it is not copied again.
func (o *objectIndexer) next(buf []byte) []byte {
	if o.data != nil && len(o.data) < cap(o.data) {
		o.inPlace = true
		return o.data[len(o.data):cap(o.data)]
	}
	o.inPlace = false
	return buf
}

// write takes the bytes just inflated into what next returned.
func (o *objectIndexer) write(p []byte) {
	_, _ = o.h.Write(p)
	switch {
	case o.inPlace:
		o.data = o.data[:len(o.data)+len(p)]
	case o.data != nil:
		o.data = append(o.data, p...)
	}
}

// end names the object; the guard has checked that its content is whole.
func (o *objectIndexer) end() {
	e := &o.x.entries[o.e]
	e.hash, e.known = o.h.Sum(), true
	if o.data != nil {
		o.x.kept = keptBlob{hash: e.hash, data: o.data}
	}
}

func packType(typ byte) plumbing.ObjectType {
	switch typ {
	case objCommit:
		return plumbing.CommitObject
	case objTree:
		return plumbing.TreeObject
	case objBlob:
		return plumbing.BlobObject
	case objTag:
		return plumbing.TagObject
	}
	return 0
}

// trailerAt records where the pack's trailer starts.
func (x *packIndexer) trailerAt(off int64) { x.trailer = off }

// wrote sees the bytes handed on, in order: it sums the pack and adds each
// object's bytes to its CRC-32.
func (x *packIndexer) wrote(p []byte) {
	for len(p) > 0 {
		if x.trailer >= 0 && x.pos >= x.trailer {
			x.tail = append(x.tail, p[:min(len(p), 20)]...)
			x.pos += int64(len(p))
			return
		}
		n := int64(len(p))
		if x.trailer >= 0 {
			n = min(n, x.trailer-x.pos)
		}
		for x.ci+1 < len(x.entries) && x.entries[x.ci+1].off <= x.pos {
			x.ci++
		}
		switch {
		case len(x.entries) == 0 || x.pos < x.entries[0].off:
			if len(x.entries) > 0 {
				n = min(n, x.entries[0].off-x.pos)
			}
		default:
			if x.ci+1 < len(x.entries) {
				n = min(n, x.entries[x.ci+1].off-x.pos)
			}
			e := &x.entries[x.ci]
			e.crc = crc32.Update(e.crc, crc32.IEEETable, p[:n])
		}
		x.sum.Write(p[:n])
		x.pos += n
		p = p[n:]
	}
}

// store checks the pack written to f (its trailer), names its deltas, and
// moves it and its index into dir as pack-<checksum>.{pack,idx}.
func (x *packIndexer) store(ctx context.Context, f *os.File, dir string, lim Limits) error {
	var sum plumbing.Hash
	copy(sum[:], x.sum.Sum(nil))
	if len(x.tail) != 20 || !bytes.Equal(x.tail, sum[:]) {
		return errors.New("the pack's checksum does not match its content")
	}
	if err := x.resolve(ctx, f, lim); err != nil {
		return err
	}
	var w idxfile.Writer
	_ = w.OnHeader(uint32(len(x.entries)))
	for _, e := range x.entries {
		_ = w.OnInflatedObjectContent(e.hash, e.off, e.crc, nil)
	}
	if err := w.OnFooter(sum); err != nil {
		return err
	}
	return installPack(dir, f, &w, sum)
}

// installPack moves the pack written to f into dir as pack-<sum>.pack,
// with the index iw built. A pack already there under that name is the
// same pack: f is then left for the caller to remove.
func installPack(dir string, f *os.File, iw *idxfile.Writer, sum plumbing.Hash) error {
	idx, err := iw.Index()
	if err != nil {
		return err
	}
	base := filepath.Join(dir, "pack-"+sum.String())
	if _, err := os.Stat(base + ".pack"); err == nil {
		return nil
	}
	// The index goes in first: a pack without its index is damage, an
	// index without its pack is ignored.
	tmp, err := os.CreateTemp(dir, "tmp_idx_")
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(tmp)
	_, err = idxfile.NewEncoder(bw).Encode(idx)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o444)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), base+".idx")
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(f.Name(), 0o444); err != nil {
		return err
	}
	return os.Rename(f.Name(), base+".pack")
}

// resolve names every delta: its base's content, patched. A base is an
// object of the pack (the fetch asks for no thin pack); a delta whose base
// is not leaves the pack refused. Each delta waits on its base and is
// resolved once that is named, depth first (its base's content is then
// still at hand), so the work is linear in the pack whatever its order.
func (x *packIndexer) resolve(ctx context.Context, f *os.File, lim Limits) error {
	byOfs := map[int][]int{}           // base entry → ofs-deltas on it
	byRef := map[plumbing.Hash][]int{} // base name → ref-deltas on it
	var stack []int                    // named objects whose deltas wait
	waiting := 0
	for i, e := range x.entries {
		switch {
		case e.known:
			stack = append(stack, i)
		case e.typ == objOfsDelta:
			byOfs[e.baseIdx] = append(byOfs[e.baseIdx], i)
			waiting++
		default:
			byRef[plumbing.Hash(e.base.ref)] = append(byRef[plumbing.Hash(e.base.ref)], i)
			waiting++
		}
	}
	rd := &packReader{f: f, x: x, cache: map[int][]byte{}}
	for len(stack) > 0 && waiting > 0 {
		b := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		deltas := append(byOfs[b], byRef[x.entries[b].hash]...)
		delete(byOfs, b)
		delete(byRef, x.entries[b].hash)
		for _, i := range deltas {
			// One delta can build up to MaxObjectBytes: the fetch's
			// deadline is checked before each.
			if ctx.Err() != nil {
				return fmt.Errorf("resolve the pack's deltas: %w", context.Cause(ctx))
			}
			if err := x.name(rd, i, b, lim); err != nil {
				return err
			}
			waiting--
			stack = append(stack, i)
		}
	}
	if waiting > 0 {
		// Whole objects are named and an ofs-delta's base is in the pack:
		// what is left waits, directly or not, on a ref-delta's base.
		for _, e := range x.entries {
			if !e.known && e.typ == objRefDelta {
				return fmt.Errorf("the pack is not self-contained: the base %s of its delta at offset %d is not in it", plumbing.Hash(e.base.ref), e.off)
			}
		}
		return fmt.Errorf("%d of the pack's deltas have no base in it", waiting)
	}
	return nil
}

// name resolves delta i on base b, which is named.
func (x *packIndexer) name(rd *packReader, i, b int, lim Limits) error {
	e := &x.entries[i]
	e.baseIdx = b
	data, err := rd.patch(i)
	if err != nil {
		return err
	}
	if int64(len(data)) > lim.MaxObjectBytes {
		return &LimitError{Limit: "max_object_bytes", Max: lim.MaxObjectBytes, Got: int64(len(data)), What: fmt.Sprintf("size of the object the delta at offset %d builds", e.off)}
	}
	e.otype = x.entries[b].otype
	e.hash, e.known = plumbing.ComputeHash(e.otype, data), true
	if x.keep && e.otype == plumbing.BlobObject && len(data) >= keepMin && len(data) > len(x.kept.data) {
		x.kept = keptBlob{hash: e.hash, data: data}
	}
	return nil
}

// packReader reads objects back from a pack being indexed, keeping recent
// contents within deltaCacheBytes.
type packReader struct {
	f     *os.File
	x     *packIndexer
	zr    io.ReadCloser
	br    *bufio.Reader
	cache map[int][]byte
	order []int
	bytes int
}

// inflate reads entry i's data as stored (a delta's instructions, or a
// whole object's content).
func (r *packReader) inflate(i int) ([]byte, error) {
	e := r.x.entries[i]
	src := io.NewSectionReader(r.f, e.dataOff, 1<<62)
	if r.br == nil {
		r.br = bufio.NewReaderSize(src, 32<<10)
	} else {
		r.br.Reset(src)
	}
	var err error
	if r.zr == nil {
		r.zr, err = zlib.NewReader(r.br)
	} else {
		err = r.zr.(zlib.Resetter).Reset(r.br, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: read back object at %d: %v", ErrDamaged, e.off, err)
	}
	data := make([]byte, e.size)
	if _, err := io.ReadFull(r.zr, data); err != nil {
		return nil, fmt.Errorf("%w: read back object at %d: %v", ErrDamaged, e.off, err)
	}
	return data, nil
}

// content returns entry i's object content: i is known, so its chain of
// bases ends in a whole object.
func (r *packReader) content(i int) ([]byte, error) {
	if d, ok := r.cache[i]; ok {
		return d, nil
	}
	if t := r.x.entries[i].typ; t != objOfsDelta && t != objRefDelta {
		d, err := r.inflate(i)
		if err == nil {
			r.put(i, d)
		}
		return d, err
	}
	return r.patch(i)
}

// patch applies delta i to its base's content.
func (r *packReader) patch(i int) ([]byte, error) {
	// Walk down to a base whose content is at hand, then patch back up,
	// holding two contents at a time.
	chain := []int{i}
	for {
		b := r.x.entries[chain[len(chain)-1]].baseIdx
		if _, ok := r.cache[b]; ok || (r.x.entries[b].typ != objOfsDelta && r.x.entries[b].typ != objRefDelta) {
			break
		}
		chain = append(chain, b)
		if len(chain) > len(r.x.entries) {
			return nil, errors.New("the pack's deltas form a cycle") // cannot happen: bases are named first
		}
	}
	base, err := r.content(r.x.entries[chain[len(chain)-1]].baseIdx)
	if err != nil {
		return nil, err
	}
	for k := len(chain) - 1; k >= 0; k-- {
		delta, err := r.inflate(chain[k])
		if err != nil {
			return nil, err
		}
		data, err := packfile.PatchDelta(base, delta)
		if err != nil {
			return nil, fmt.Errorf("the pack's delta at offset %d does not apply: %w", r.x.entries[chain[k]].off, err)
		}
		r.put(chain[k], data)
		base = data
	}
	return base, nil
}

// put caches a content, dropping the oldest beyond deltaCacheBytes.
func (r *packReader) put(i int, d []byte) {
	if _, ok := r.cache[i]; ok {
		return
	}
	r.cache[i] = d
	r.order = append(r.order, i)
	r.bytes += len(d)
	for r.bytes > deltaCacheBytes && len(r.order) > 1 {
		old := r.order[0]
		r.order = r.order[1:]
		r.bytes -= len(r.cache[old])
		delete(r.cache, old)
	}
}
