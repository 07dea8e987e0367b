package gitrepo

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// packGuard copies a pack from a remote to the mirror's pack writer,
// checking it against the limits as it reads: the object count in the
// header, each object's declared size, what its data actually inflates to
// and, for a delta, the size of the object it builds. Bytes reach the
// writer (whose indexer inflates objects into memory) only once the guard
// has checked them, so no object larger than MaxObjectBytes is ever
// inflated by go-git, whatever its header claims.
type packGuard struct {
	lim     Limits
	in      *bufio.Reader
	counter *countingReader
	w       io.Writer
	pending []byte // read and checked, not yet written
	buf     []byte
	zr      io.ReadCloser // reused: a new inflater per object costs its 32 KiB window
	// safe: what is pending may go on before the current object is read
	// to its end. go-git never inflates an object past the size its header
	// declares, so that is once the header (and for a delta, the size it
	// builds) is checked.
	safe bool
	off  int64        // pack bytes read so far
	ix   *packIndexer // when set, records what it needs to index the pack
}

// guardPack copies the pack read from r to w within lim.
func guardPack(r io.Reader, w io.Writer, lim Limits) error {
	c := &countingReader{r: r, max: lim.MaxBytes}
	g := &packGuard{lim: lim, in: bufio.NewReaderSize(c, 64<<10), counter: c, w: w, buf: make([]byte, 32<<10)}
	return g.run()
}

// maxHeldBack bounds the bytes held back while a delta's sizes are read.
const maxHeldBack = 1 << 20

// countingReader refuses more than max bytes.
type countingReader struct {
	r   io.Reader
	n   int64
	max int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.max {
		return n, &LimitError{Limit: "max_bytes", Max: c.max, Got: c.n, What: "pack bytes received so far"}
	}
	return n, err
}

// Read and ReadByte read from the remote and keep what they read pending.
// packGuard is an io.ByteReader, so the inflater reads no further than the
// end of each object's data.
func (g *packGuard) Read(p []byte) (int, error) {
	if err := g.bound(); err != nil {
		return 0, err
	}
	n, err := g.in.Read(p[:min(len(p), 32<<10)])
	g.off += int64(n)
	g.pending = append(g.pending, p[:n]...)
	return n, err
}

func (g *packGuard) ReadByte() (byte, error) {
	if err := g.bound(); err != nil {
		return 0, err
	}
	b, err := g.in.ReadByte()
	if err == nil {
		g.off++
		g.pending = append(g.pending, b)
	}
	return b, err
}

// bound keeps what is pending small, also within one call of the inflater
// (empty deflate blocks produce nothing however many bytes they take).
func (g *packGuard) bound() error {
	switch {
	case len(g.pending) < 64<<10:
		return nil
	case g.safe:
		return g.flush()
	case len(g.pending) > maxHeldBack:
		return errors.New("a delta's sizes were not found within its first bytes")
	}
	return nil
}

// flush writes what was checked.
func (g *packGuard) flush() error {
	if len(g.pending) == 0 {
		return nil
	}
	if g.ix != nil {
		g.ix.wrote(g.pending)
	}
	_, err := g.w.Write(g.pending)
	g.pending = g.pending[:0]
	return err
}

// Pack object types (gitformat-pack).
const (
	objCommit   = 1
	objTree     = 2
	objBlob     = 3
	objTag      = 4
	objOfsDelta = 6
	objRefDelta = 7
)

var typeNames = map[byte]string{objCommit: "commit", objTree: "tree", objBlob: "blob", objTag: "tag", objOfsDelta: "ofs-delta", objRefDelta: "ref-delta"}

func (g *packGuard) run() error {
	var hdr [12]byte
	if _, err := io.ReadFull(g, hdr[:]); err != nil {
		return g.readErr("pack header", err)
	}
	if !bytes.Equal(hdr[:4], []byte("PACK")) {
		return errors.New("the remote did not send a pack")
	}
	if v := binary.BigEndian.Uint32(hdr[4:8]); v != 2 && v != 3 {
		return fmt.Errorf("pack version %d is not supported", v)
	}
	count := int64(binary.BigEndian.Uint32(hdr[8:12]))
	if count > g.lim.MaxObjects {
		return &LimitError{Limit: "max_objects", Max: g.lim.MaxObjects, Got: count, What: "objects in the pack"}
	}
	for i := int64(0); i < count; i++ {
		if err := g.object(i); err != nil {
			return err
		}
	}
	g.safe = true
	if g.ix != nil {
		g.ix.trailerAt(g.off)
	}
	var trailer [20]byte
	if _, err := io.ReadFull(g, trailer[:]); err != nil {
		return g.readErr("pack trailer", err)
	}
	// The indexer verifies the trailer checksum over everything written.
	return g.flush()
}

// object checks the i-th object: its header, then its data as it inflates.
func (g *packGuard) object(i int64) error {
	g.safe = false
	start := g.off
	typ, size, base, err := g.objectHeader()
	if err != nil {
		return g.readErr(fmt.Sprintf("header of object %d", i), err)
	}
	dataOff := g.off
	what := fmt.Sprintf("inflated size of object %d (%s)", i, typeNames[typ])
	if size > g.lim.MaxObjectBytes {
		return &LimitError{Limit: "max_object_bytes", Max: g.lim.MaxObjectBytes, Got: size, What: what}
	}
	if g.zr == nil {
		g.zr, err = zlib.NewReader(g)
	} else {
		err = g.zr.(zlib.Resetter).Reset(g, nil)
	}
	if err != nil {
		return g.readErr(fmt.Sprintf("data of object %d", i), err)
	}
	zr := g.zr
	var obj *objectIndexer
	if g.ix != nil {
		if obj, err = g.ix.begin(i, start, dataOff, typ, size, base); err != nil {
			return err
		}
	}
	// A delta's data starts with the sizes of its base and of the object
	// it builds: nothing of it reaches the indexer before the second is
	// checked.
	checked := typ != objOfsDelta && typ != objRefDelta
	g.safe = checked
	var head []byte
	var total int64
	for {
		dst := g.buf
		if obj != nil {
			dst = obj.next(dst)
		}
		n, rerr := zr.Read(dst)
		total += int64(n)
		if total > size {
			return fmt.Errorf("object %d (%s) inflates beyond the %d bytes its header declares", i, typeNames[typ], size)
		}
		if obj != nil {
			obj.write(dst[:n])
		}
		if !checked {
			head = append(head, dst[:min(n, 20)]...)
			target, ok := deltaTarget(head)
			switch {
			case ok && target > g.lim.MaxObjectBytes:
				return &LimitError{Limit: "max_object_bytes", Max: g.lim.MaxObjectBytes, Got: target, What: fmt.Sprintf("size of the object delta %d builds", i)}
			case ok:
				checked, g.safe = true, true
			case len(head) >= 20 || rerr == io.EOF:
				return fmt.Errorf("object %d (%s) is not a valid delta", i, typeNames[typ])
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return g.readErr(fmt.Sprintf("data of object %d", i), rerr)
		}
		if checked && len(g.pending) >= 32<<10 {
			if err := g.flush(); err != nil {
				return err
			}
		}
	}
	if total != size {
		return fmt.Errorf("object %d (%s) inflates to %d bytes, not the %d its header declares", i, typeNames[typ], total, size)
	}
	if obj != nil {
		obj.end()
	}
	// Checked bytes are handed on in batches: each write wakes the indexer.
	if len(g.pending) >= 32<<10 {
		return g.flush()
	}
	return nil
}

// objectHeader reads an object's type and declared size, and for deltas
// the reference to their base: the distance back to it (ofs-delta) or its
// name (ref-delta).
func (g *packGuard) objectHeader() (byte, int64, deltaBase, error) {
	var base deltaBase
	b, err := g.ReadByte()
	if err != nil {
		return 0, 0, base, err
	}
	typ := (b >> 4) & 7
	size := int64(b & 15)
	shift := uint(4)
	for b&0x80 != 0 {
		if shift > 56 {
			return 0, 0, base, errors.New("object size overflows")
		}
		if b, err = g.ReadByte(); err != nil {
			return 0, 0, base, err
		}
		size |= int64(b&0x7f) << shift
		shift += 7
	}
	switch typ {
	case objCommit, objTree, objBlob, objTag:
	case objOfsDelta:
		// gitformat-pack: each further byte adds one before shifting, so
		// that every distance has exactly one encoding.
		for n := 0; ; n++ {
			if n > 9 || base.ofs >= 1<<55 {
				return 0, 0, base, errors.New("delta offset overflows")
			}
			if b, err = g.ReadByte(); err != nil {
				return 0, 0, base, err
			}
			if n > 0 {
				base.ofs++
			}
			base.ofs = base.ofs<<7 | int64(b&0x7f)
			if b&0x80 == 0 {
				break
			}
		}
	case objRefDelta:
		if _, err := io.ReadFull(g, base.ref[:]); err != nil {
			return 0, 0, base, err
		}
	default:
		return 0, 0, base, fmt.Errorf("object type %d is not valid", typ)
	}
	return typ, size, base, nil
}

// deltaBase is where a delta's base is: ofs bytes before the delta in
// the same pack, or the object named ref.
type deltaBase struct {
	ofs int64
	ref [20]byte
}

// deltaTarget reads the target size, the second varint of delta data.
func deltaTarget(d []byte) (int64, bool) {
	i := 0
	varint := func() (int64, bool) {
		var v int64
		for shift := uint(0); i < len(d) && shift < 63; shift += 7 {
			b := d[i]
			i++
			v |= int64(b&0x7f) << shift
			if b&0x80 == 0 {
				return v, true
			}
		}
		return 0, false
	}
	if _, ok := varint(); !ok {
		return 0, false
	}
	return varint()
}

// readErr keeps a limit error as it is and says where the pack broke off.
func (g *packGuard) readErr(where string, err error) error {
	var le *LimitError
	if errors.As(err, &le) {
		return le
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("the pack is truncated (in the %s, after %d bytes)", where, g.counter.n)
	}
	return fmt.Errorf("read the pack (%s): %w", where, err)
}
