package allowlist

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"

	"gitlab.com/writ-ci/writ/internal/version"
)

// Incremental acceptance.
//
// A new version of a large allowlist usually changes a few entries and the
// version line. Acceptance therefore remembers, in the verified store it
// writes (the memo section, which no job reads), the SHA-256 of every job
// item's bytes as the split parse cut them (split.go), with the entry's
// name and match. The next acceptance does not parse an item whose bytes
// are unchanged: the checks that span entries read its name and match
// from the memo, and the new store copies the encoded bytes of a section
// that holds exactly the same entries. Such an entry is decoded from the
// store in force only when its new section also holds a changed one
// (materialize), so that accepting a new version costs about what its
// changes cost, plus reading and hashing the file and the store.
//
// An entry is a function of its own bytes and of what its decoding read
// of the top level, and nothing else; reuse is keyed on all three, and on
// the code that decoded it:
//   - the item's bytes: their SHA-256;
//   - what it read: an entry reads the top level only through its scope
//     (scope.go), which records the names read (the entry's uses) and
//     answers each with a view (a signer set's three facts, a variable
//     set's variables). The memo keeps the digest of every view; the new
//     top level is parsed first, and an entry is taken only if every name
//     it used has the same view digest, or it is decoded again. Rotating a
//     key in a signer set, adding a set, or changing people changes no
//     view; making a set Sigstore-only or editing a variable set changes
//     the views of the entries that name it;
//   - the decoder: the build ID of the running writ (or the clean commit
//     a release was built from), so an upgraded writ (whose checks may
//     differ) never takes an entry decoded by another.
//
// An entry that loads a file of its own (none does today) makes its
// version's memo unusable, since those files are outside the context.
//
// Everything that spans entries — unique names, overlaps, limits, unused
// signer sets — runs over every entry, reused or not, exactly as in a full
// parse, and the rule of the split parse holds: any error or warning and
// the whole-file parse decides. Reused bytes come only from the store the
// state names, checked against its header (whose SHA-256 the state holds)
// and each section's SHA-256 in it, both before the parse relies on them
// and as they are copied or decoded: the store written is what a full
// parse would have written, and nothing in it was not verified by this
// environment. TestIncrementalStoreEqualsFull, FuzzIncrementalParse and
// FuzzIncrementalEdits check both.

const memoMagic = "writ-accept-memo/3\n"

// acceptMemo is what an acceptance remembers of its entries.
type acceptMemo struct {
	// Codec is decoderID() of the writ that decoded the entries; "" makes
	// the memo unusable for reuse (it then only keeps the file order).
	Codec string
	// Views are the digests of every view the version's entries could
	// read (entryScope.views), by name.
	Views map[string][sha256.Size]byte
	// EntryLoads is true when an entry loaded a file of its own.
	EntryLoads bool
	// Entries are the job items in file order.
	Entries []entryMemo

	// reuse is where the parse took unchanged entries from (not stored).
	reuse *reuseSource
}

// entryMemo is one job item.
type entryMemo struct {
	// Digest is the SHA-256 of the item's bytes.
	Digest [sha256.Size]byte
	// Line and Column are the entry's position; LineOff is Line less the
	// item's first line, the same wherever identical bytes move.
	Line, LineOff, Column int
	// Uses are the names the entry read of the top level (entryScope):
	// signer sets, and variable sets as varSetUse+name.
	Uses []string
	// Sec and Idx locate the entry in the store: section and index.
	Sec, Idx int
	// Name and Match are the entry's: what the checks that span entries
	// (unique names, overlaps) and the store's sections read of it, so
	// that an unchanged entry passes them without being decoded.
	Name  string
	Match *Match

	set bool // filled by the parse
}

// decoderID identifies the code that decodes entries (see codecID), "" when
// unknown (no reuse then).
var decoderID = sync.OnceValue(func() string { return codecID(runningBuildID()) })

// codecID names the code of a writ: its Go build ID (a hash of everything
// that went into the build) when it has one; a reproducible release build
// has none (-buildid=), and is named as exactly by the clean commit it was
// built from, with the toolchain and platform its ldflags and runtime
// report. Anything else is unknown.
func codecID(buildID string) string {
	switch {
	case buildID != "":
		return "go-build-id:" + buildID
	case version.Commit != "" && version.Modified == "false":
		return "release:" + version.Commit + " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
	}
	return ""
}

// runningBuildID reads the Go build ID of the running executable through
// /proc/self/exe, so that a binary replaced on disk since this process
// started is not mistaken for it.
func runningBuildID() string {
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		exe, xerr := os.Executable()
		if xerr != nil {
			return ""
		}
		if f, err = os.Open(exe); err != nil {
			return ""
		}
	}
	defer f.Close()
	if id := elfBuildID(f); id != "" {
		return id
	}
	// Other formats carry it as text near the start of the code (cmd/go
	// reads the first 32 KiB for it).
	buf := make([]byte, 64<<10)
	n, _ := f.ReadAt(buf, 0)
	const marker = "\xff Go build ID: \""
	k := bytes.Index(buf[:n], []byte(marker))
	if k < 0 {
		return ""
	}
	rest := buf[k+len(marker) : n]
	e := bytes.IndexByte(rest, '"')
	if e <= 0 {
		return ""
	}
	return string(rest[:e])
}

// elfBuildID reads the Go build ID note of an ELF executable.
func elfBuildID(r io.ReaderAt) string {
	ef, err := elf.NewFile(r)
	if err != nil {
		return ""
	}
	sec := ef.Section(".note.go.buildid")
	if sec == nil || sec.Size > 1<<10 {
		return ""
	}
	b, err := sec.Data()
	// namesz, descsz, type (4: the Go build ID), "Go\0\0", the ID.
	if err != nil || len(b) < 16 {
		return ""
	}
	nameSize, descSize, typ := ef.ByteOrder.Uint32(b), ef.ByteOrder.Uint32(b[4:]), ef.ByteOrder.Uint32(b[8:])
	if nameSize != 4 || typ != 4 || string(b[12:16]) != "Go\x00\x00" || int(descSize) > len(b)-16 {
		return ""
	}
	return string(b[16 : 16+descSize])
}

// itemDigests returns the SHA-256 of every item's bytes, on every core.
func itemDigests(data []byte, s *jobsSplit) [][sha256.Size]byte {
	out := make([][sha256.Size]byte, len(s.items))
	workers := max(1, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(s.items); i += workers {
				sp := s.items[i]
				out[i] = sha256.Sum256(data[sp.start:sp.end])
			}
		}()
	}
	wg.Wait()
	return out
}

// parseAccept parses an allowlist for acceptance and returns the memo its
// store keeps. It takes unchanged entries from prev, the store of the
// version in force, when that store's memo allows; the result is what
// Parse returns, except that the entries taken from prev are nil in Jobs:
// every rule was checked without decoding them (their names and matches
// are in the memo), and the new store copies the sections that hold them
// (writeVerified); m.materialize decodes them when they are needed. The
// memo is nil when the file had to be parsed whole.
//
// When entries are reused, their bytes are not read again: the parse reads
// a copy of the file in which they are blank lines, and data is let go
// before the store in force is read. reread returns the file's bytes again
// if the parse must fall back to reading all of it.
func parseAccept(file string, data []byte, reread func() ([]byte, error), load FileLoader, prev *verifiedStore) (*Allowlist, *acceptMemo, error) {
	var s *jobsSplit
	if len(data) <= MaxFileBytes {
		s = splitJobs(data)
	}
	if s != nil {
		digests := itemDigests(data, s)
		if r := matchReuse(prev, digests); r != nil && wholeFileClean(data) && r.keepUnchanged(topViews(file, s.head, load)) {
			sparse, ss := sparseCopy(data, s, r)
			data = nil
			if r.verify() == nil {
				if a, m, ok := parseMemo(file, sparse, load, ss, digests, r); ok {
					return a, m, nil
				}
			}
			sparse = nil
			var err error
			if data, err = reread(); err != nil {
				return nil, nil, err
			}
		}
		if a, m, ok := parseMemo(file, data, load, s, digests, nil); ok {
			return a, m, nil
		}
	}
	// Anything to report, or a layout the split does not read: the
	// whole-file parse decides and words every message.
	p := &parser{file: file, data: data, load: load}
	a := p.run()
	if errs, _ := p.finish(); len(errs) > 0 {
		return nil, nil, errs
	}
	return a, nil, nil
}

// topViews returns the views (entryScope.views) of the top level in head,
// the file with its job items left out (jobsSplit.head), or nil if it does
// not decode. This parses the top level a second time, before the parse
// that decides, so that the items whose views changed are read from the
// file rather than blanked: the top level is small beside the entries.
func topViews(file string, head []byte, load FileLoader) map[string][sha256.Size]byte {
	p := &parser{file: file, data: head, load: load}
	a := p.run()
	if errs, _ := p.finish(); a == nil || len(errs) > 0 {
		return nil // the parse that decides reports it
	}
	return newEntryScope(a).views()
}

// wholeFileClean runs the checks of parser.run that read the whole file
// at once and that a copy with some items blanked could pass when the file
// does not. Any finding sends the file to the full parse, which reports it.
func wholeFileClean(data []byte) bool {
	if structureCount(data) > maxStructure {
		return false
	}
	// Only whether checkText finds anything matters here, so the file is
	// checked in parts, cut after a line break, on every core. A part
	// that does not start the file could only report more (a byte order
	// mark at its start), which sends the file to the full parse.
	parts := max(1, runtime.GOMAXPROCS(0))
	clean := make([]bool, parts)
	var wg sync.WaitGroup
	for k, start := 0, 0; k < parts; k++ {
		end := len(data)
		if k+1 < parts {
			end = max(start, (k+1)*len(data)/parts)
			if i := bytes.IndexByte(data[end:], '\n'); i >= 0 {
				end += i + 1
			} else {
				end = len(data)
			}
		}
		wg.Add(1)
		go func(k int, b []byte) {
			defer wg.Done()
			errs, fatal := checkText(b)
			clean[k] = len(errs) == 0 && !fatal
		}(k, data[start:end])
		start = end
	}
	wg.Wait()
	for _, ok := range clean {
		if !ok {
			return false
		}
	}
	return true
}

// sparseCopy returns a copy of data in which the items r takes from the
// store are blank lines (so every other line keeps its number) and the
// split of that copy.
func sparseCopy(data []byte, s *jobsSplit, r *reuseSource) ([]byte, *jobsSplit) {
	size := s.items[0].start + len(data) - s.items[len(s.items)-1].end
	for i, sp := range s.items {
		if r.has(i) {
			size += bytes.Count(data[sp.start:sp.end], []byte{'\n'})
		} else {
			size += sp.end - sp.start
		}
	}
	out := make([]byte, 0, size)
	out = append(out, data[:s.items[0].start]...)
	items := make([]span, len(s.items))
	for i, sp := range s.items {
		start := len(out)
		if r.has(i) {
			for range bytes.Count(data[sp.start:sp.end], []byte{'\n'}) {
				out = append(out, '\n')
			}
		} else {
			out = append(out, data[sp.start:sp.end]...)
		}
		items[i] = span{start: start, end: len(out), line: sp.line}
	}
	out = append(out, data[s.items[len(s.items)-1].end:]...)
	return out, &jobsSplit{head: s.head, jobsLine: s.jobsLine, items: items}
}

// parseMemo is the split parse (see split.go), taking the items r holds
// from r. ok is false unless the parse found nothing at all to report and,
// with r, the context is the one r's entries were decoded in.
func parseMemo(file string, data []byte, load FileLoader, split *jobsSplit, digests [][sha256.Size]byte, r *reuseSource) (*Allowlist, *acceptMemo, bool) {
	s := &jobsSplit{head: split.head, jobsLine: split.jobsLine, items: split.items}
	p := &parser{file: file, data: data, split: s, reuse: r}
	entryLoads := false
	if load != nil {
		p.load = func(path string) ([]byte, error) {
			entryLoads = entryLoads || p.inJobs
			return load(path)
		}
	}
	a := p.run()
	errs, warns := p.finish()
	if a == nil || len(errs) > 0 || len(warns) > 0 || !s.consumed || s.failed || len(a.Jobs) != len(s.items) {
		return nil, nil, false
	}
	views := newEntryScope(a).views()
	// Checked again on the top level that decided, not only on the one
	// topViews parsed before.
	if r != nil && (entryLoads || !r.unchanged(views)) {
		return nil, nil, false
	}
	m := &acceptMemo{Codec: decoderID(), Views: views, EntryLoads: entryLoads, Entries: p.memo, reuse: r}
	for i := range m.Entries {
		if !m.Entries[i].set {
			if r != nil {
				return nil, nil, false // entries taken from r need the memo
			}
			return a, nil, true
		}
		m.Entries[i].Digest = digests[i]
	}
	return a, m, true
}

// reuseSource holds the entries of the version in force that a new version
// repeats byte for byte.
type reuseSource struct {
	store *verifiedStore
	memo  *acceptMemo
	// old maps an item of the new file to its entry in memo, or -1.
	old []int
	// entries are the decoded sections of the store that hold them.
	// Each section decodes into one array of entries, not one allocation
	// per entry (gob sends what a pointer points to, so a section of
	// []*Entry reads into []Entry).
	entries map[int][]Entry
	// given marks the memo's entries handed out.
	given []bool
	// perSection counts the memo's entries in each section.
	perSection []int
	// kept counts the sections the new store copied from file.
	kept    int
	file    *os.File
	scratch []byte
}

// matchReuse returns what of prev's version the new file's items
// (digests) repeat, or nil if nothing or prev's memo does not allow.
func matchReuse(prev *verifiedStore, digests [][sha256.Size]byte) *reuseSource {
	if prev == nil || prev.header.Memo.Len == 0 {
		return nil
	}
	var m acceptMemo
	if err := prev.readWith(prev.header.Memo, func(b []byte) error { return m.unmarshal(b) }); err != nil {
		return nil
	}
	if id := decoderID(); m.Codec == "" || m.Codec != id || m.EntryLoads {
		return nil
	}
	// An item is usually where it was, or just after the item before
	// it: that guess is checked first, and a map of every digest built
	// only when it fails. Which of two entries with the same digest an
	// item takes does not matter: an entry is a function of its bytes
	// and its context, which are the same.
	var at map[[sha256.Size]byte]int
	r := &reuseSource{store: prev, memo: &m, old: make([]int, len(digests))}
	found, next := false, 0
	for i, d := range digests {
		k, ok := next, next < len(m.Entries) && m.Entries[next].Digest == d
		if !ok {
			if at == nil {
				at = make(map[[sha256.Size]byte]int, len(m.Entries))
				for k := range m.Entries {
					at[m.Entries[k].Digest] = k
				}
			}
			k, ok = at[d]
		}
		if ok {
			next = k + 1
		} else {
			k = -1
		}
		r.old[i], found = k, found || ok
	}
	if !found {
		return nil
	}
	return r
}

// keepUnchanged stops r lending the entries that read a view (uses) whose
// digest differs in views, the new top level's, and reports whether r
// still lends any.
func (r *reuseSource) keepUnchanged(views map[string][sha256.Size]byte) bool {
	if views == nil {
		return false
	}
	found := false
	for i, k := range r.old {
		if k < 0 {
			continue
		}
		if !r.memo.sameViews(k, views) {
			r.old[i] = -1
			continue
		}
		found = true
	}
	return found
}

// unchanged reports whether every entry r lends read the same views in
// views as when it was decoded.
func (r *reuseSource) unchanged(views map[string][sha256.Size]byte) bool {
	for _, k := range r.old {
		if k >= 0 && !r.memo.sameViews(k, views) {
			return false
		}
	}
	return true
}

// sameViews reports whether every name entry k used has the same view
// digest in views as in the memo. A name without a digest on either side
// (undefined) is a change.
func (m *acceptMemo) sameViews(k int, views map[string][sha256.Size]byte) bool {
	for _, u := range m.Entries[k].Uses {
		was, ok1 := m.Views[u]
		now, ok2 := views[u]
		if !ok1 || !ok2 || was != now {
			return false
		}
	}
	return true
}

// verify checks that every section of the store in force holding an
// entry matchReuse found matches its SHA-256, so that a damaged store lends
// nothing and the parse reads the whole file instead. The sections are
// checked again when they are copied or decoded.
func (r *reuseSource) verify() error {
	secs := make([]bool, len(r.store.header.sections))
	for _, k := range r.old {
		if k < 0 {
			continue
		}
		s := r.memo.Entries[k].Sec
		if s < 0 || s >= len(secs) {
			return errors.New("memo names a section the store does not have")
		}
		secs[s] = true
	}
	f, err := os.Open(r.store.path)
	if err != nil {
		return err
	}
	defer f.Close()
	// On every core: each reads and hashes every workers-th section.
	workers := max(1, runtime.GOMAXPROCS(0))
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for s := w; s < len(secs) && errs[w] == nil; s += workers {
				if secs[s] {
					buf, errs[w] = r.store.readInto(f, r.store.header.sections[s], buf)
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// materialize decodes, from the store in force, the entries of a the
// parse took from it (nil in a.Jobs), for the items want selects (every
// one if want is nil).
func (m *acceptMemo) materialize(a *Allowlist, want func(i int) bool) error {
	r := m.reuse
	if r == nil {
		return nil
	}
	secs := map[int]bool{}
	for i, e := range a.Jobs {
		if e == nil && r.has(i) && (want == nil || want(i)) {
			secs[r.memo.Entries[r.old[i]].Sec] = true
		}
	}
	if len(secs) == 0 {
		return nil
	}
	if err := r.load(secs); err != nil {
		return err
	}
	for i, e := range a.Jobs {
		if e != nil || !r.has(i) || (want != nil && !want(i)) {
			continue
		}
		e, err := r.entry(i, Pos{Line: m.Entries[i].Line, Column: m.Entries[i].Column})
		if err != nil {
			return err
		}
		// The store keeps variable sets once; the context (the top
		// level, sets included) is unchanged, so they resolve alike.
		a.resolveIncluded(e)
		a.Jobs[i] = e
	}
	return nil
}

// load reads, checks and decodes the sections secs not decoded yet, on
// every core.
func (r *reuseSource) load(secs map[int]bool) error {
	list := make([]int, 0, len(secs))
	for s := range secs {
		if s < 0 || s >= len(r.store.header.sections) {
			return errors.New("memo names a section the store does not have")
		}
		if _, done := r.entries[s]; !done {
			list = append(list, s)
		}
	}
	if len(list) == 0 {
		return nil
	}
	sort.Ints(list)
	f, err := os.Open(r.store.path)
	if err != nil {
		return err
	}
	defer f.Close()
	if r.entries == nil {
		r.entries = make(map[int][]Entry, len(list))
	}
	workers := min(max(1, runtime.GOMAXPROCS(0)), len(list))
	type result struct {
		es  map[int][]Entry
		err error
	}
	out := make(chan result, workers)
	for w := range workers {
		chunk := list[w*len(list)/workers : (w+1)*len(list)/workers]
		go func() {
			res := result{es: map[int][]Entry{}}
			res.err = r.decode(f, chunk, res.es)
			out <- res
		}()
	}
	var first error
	for range workers {
		res := <-out
		if res.err != nil && first == nil {
			first = res.err
		}
		maps.Copy(r.entries, res.es)
	}
	return first
}

// decode reads, checks and decodes the sections secs into es.
//
// Every section is a gob stream of its own, which opens with the same type
// definitions (one acceptance wrote them all): one decoder reads the first
// section whole and, of the others, only the value, saving a decoder's
// set-up per section. A section that does not open with the same bytes
// gets a decoder of its own.
func (r *reuseSource) decode(f *os.File, secs []int, es map[int][]Entry) error {
	var prefix []byte
	feed := &sliceReader{}
	var shared *gob.Decoder
	for _, s := range secs {
		b, err := r.store.readAt(f, r.store.header.sections[s])
		if err != nil {
			return err
		}
		var v []Entry
		switch {
		case shared == nil:
			n, ok := gobPrefix(b)
			if !ok {
				return errors.New("a section is not a gob stream")
			}
			prefix = b[:n]
			feed.next = b
			shared = gob.NewDecoder(feed)
			err = shared.Decode(&v)
		case bytes.HasPrefix(b, prefix):
			feed.next = b[len(prefix):]
			err = shared.Decode(&v)
		default:
			err = gob.NewDecoder(bytes.NewReader(b)).Decode(&v)
		}
		if err != nil {
			return err
		}
		if feed.Len() != 0 {
			return errors.New("a section holds more than one value")
		}
		es[s] = v
	}
	return nil
}

// sliceReader reads the slice last set in next, and nothing after it, so
// a decoder never reads past the section it is given.
type sliceReader struct{ next []byte }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.next) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.next)
	r.next = r.next[n:]
	return n, nil
}

// ReadByte lets gob read from r directly, without a buffer of its own
// that would read ahead of the section.
func (r *sliceReader) ReadByte() (byte, error) {
	if len(r.next) == 0 {
		return 0, io.EOF
	}
	c := r.next[0]
	r.next = r.next[1:]
	return c, nil
}

func (r *sliceReader) Len() int { return len(r.next) }

// gobPrefix returns the length of the messages that open a gob stream
// before its first value: the type definitions (negative type ids).
func gobPrefix(b []byte) (int, bool) {
	for off := 0; off < len(b); {
		n, w := gobUint(b[off:])
		if w == 0 || n > uint64(len(b)-off-w) {
			return 0, false
		}
		id, iw := gobUint(b[off+w : off+w+int(n)])
		if iw == 0 {
			return 0, false
		}
		if id&1 == 0 { // a type id ≥ 0: a value
			return off, true
		}
		off += w + int(n)
	}
	return 0, false
}

// gobUint decodes one of gob's unsigned integers: a byte below 0x80, or
// the negated count of the big-endian bytes that follow. w is 0 when b does
// not hold one.
func gobUint(b []byte) (x uint64, w int) {
	if len(b) == 0 {
		return 0, 0
	}
	if b[0] < 0x80 {
		return uint64(b[0]), 1
	}
	n := -int(int8(b[0]))
	if n < 1 || n > 8 || n >= len(b) {
		return 0, 0
	}
	for _, c := range b[1 : 1+n] {
		x = x<<8 | uint64(c)
	}
	return x, 1 + n
}

// has reports whether item i is taken from the version in force.
func (r *reuseSource) has(i int) bool { return r != nil && r.old[i] >= 0 }

// memoOf returns the memo of the version in force for item i, which it
// takes from there.
func (r *reuseSource) memoOf(i int) *entryMemo { return &r.memo.Entries[r.old[i]] }

// entry returns item i, now at pos, decoded by load. The entry decoded
// from the store is handed out itself, once; an item repeated byte for
// byte gets a copy.
func (r *reuseSource) entry(i int, pos Pos) (*Entry, error) {
	k := r.old[i]
	m := &r.memo.Entries[k]
	es, ok := r.entries[m.Sec]
	if !ok || m.Idx < 0 || m.Idx >= len(es) {
		return nil, errors.New("the memo does not describe its store")
	}
	e := &es[m.Idx]
	if r.given == nil {
		r.given = make([]bool, len(r.memo.Entries))
	}
	// The decoded entry is handed out itself the first time, unless its
	// extra sources' positions, which the section counts from the
	// entry's line, must be moved: the section's stay as they are.
	if r.given[k] || len(e.Source.Extra) > 0 {
		cp := *e
		cp.Source.Extra = extrasMoved(e.Source.Extra, pos.Line)
		e = &cp
	}
	r.given[k] = true
	e.Pos = pos
	return e, nil
}

// copyable reports whether the new store's section sec, out of n, holds
// exactly the entries of section sec of the version in force (items, in
// order), so that its bytes can be copied from there.
func (r *reuseSource) copyable(sec, n int, items []int) bool {
	if r == nil || len(r.store.header.sections) != n {
		return false
	}
	if r.perSection == nil {
		r.perSection = make([]int, n)
		for _, e := range r.memo.Entries {
			if e.Sec >= 0 && e.Sec < n {
				r.perSection[e.Sec]++
			}
		}
	}
	if r.perSection[sec] != len(items) {
		return false
	}
	for k, i := range items {
		o := r.old[i]
		if o < 0 || r.memo.Entries[o].Sec != sec || r.memo.Entries[o].Idx != k {
			return false
		}
	}
	return true
}

// section returns the bytes of section sec of the version in force,
// checked against its SHA-256 as they are read, and that SHA-256. The
// bytes are read again rather than kept since verify checked them, which
// would hold the store in memory meanwhile; the slice is reused by the
// next call.
func (r *reuseSource) section(sec int) ([]byte, [sha256.Size]byte, error) {
	if r.file == nil {
		f, err := os.Open(r.store.path)
		if err != nil {
			return nil, [sha256.Size]byte{}, err
		}
		r.file = f
	}
	old := r.store.header.sections[sec]
	b, err := r.store.readInto(r.file, old, r.scratch)
	if err != nil {
		return nil, old.Sum, fmt.Errorf("verified store: a section of the store in force: %w", err)
	}
	r.scratch = b
	r.kept++
	return b, old.Sum, nil
}

// close closes the store in force if section opened it.
func (r *reuseSource) close() {
	if r != nil && r.file != nil {
		r.file.Close()
		r.file = nil
	}
}

// writeTo writes m to w; the format is private to the verified store.
// Names and projects are written in place (an entry's name is its own, and
// a large allowlist has about as many projects as entries: a table would
// only cost a map of them); the other strings (jobs, environments, refs,
// signer sets), which an allowlist repeats many times, once in a table
// before the entries, which name them by index.
func (m *acceptMemo) writeTo(w io.Writer) error {
	strs := map[string]uint32{}
	var table []string
	index := func(s string) uint32 {
		i, ok := strs[s]
		if !ok {
			i = uint32(len(table))
			strs[s] = i
			table = append(table, s)
		}
		return i
	}
	var none Match
	// refs are every entry's strings by index, in the order written:
	// job, then environments, refs and uses, each a count and the
	// strings.
	refs := make([]uint32, 0, 8*len(m.Entries))
	for _, e := range m.Entries {
		mt := e.Match
		if mt == nil {
			mt = &none
		}
		refs = append(refs, index(mt.Job))
		for _, list := range [...][]string{mt.Environments, mt.Refs, e.Uses} {
			refs = append(refs, uint32(len(list)))
			for _, s := range list {
				refs = append(refs, index(s))
			}
		}
	}
	b := make([]byte, 0, 64<<10)
	var err error
	flush := func(limit int) {
		if len(b) >= limit && err == nil {
			_, err = w.Write(b)
			b = b[:0]
		}
	}
	b = append(b, memoMagic...)
	b = appendString(b, m.Codec)
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Views)))
	for _, name := range sortedKeys(m.Views) {
		d := m.Views[name]
		b = appendString(b, name)
		b = append(b, d[:]...)
	}
	if m.EntryLoads {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(table)))
	for _, s := range table {
		b = appendString(b, s)
		flush(32 << 10)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Entries)))
	for _, e := range m.Entries {
		b = append(b, e.Digest[:]...)
		for _, v := range [...]int{e.Line, e.LineOff, e.Column, e.Sec, e.Idx} {
			b = binary.BigEndian.AppendUint32(b, uint32(v))
		}
		mt := e.Match
		if mt == nil {
			mt = &none
		}
		b = appendString(b, e.Name)
		b = appendString(b, mt.Project)
		n := 1
		for range 3 {
			n += 1 + int(refs[n])
		}
		for _, v := range refs[:n] {
			b = binary.BigEndian.AppendUint32(b, v)
		}
		refs = refs[n:]
		flush(32 << 10)
	}
	flush(0)
	return err
}

// marshal returns what writeTo writes.
func (m *acceptMemo) marshal() []byte {
	var b bytes.Buffer
	_ = m.writeTo(&b) // a bytes.Buffer does not fail
	return b.Bytes()
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// memoReader reads the memo's fields, remembering the first shortfall.
type memoReader struct {
	b   []byte
	err error
}

func (r *memoReader) next(n int) []byte {
	if r.err != nil || n < 0 || n > len(r.b) {
		if r.err == nil {
			r.err = errors.New("memo is truncated")
		}
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *memoReader) u32() int {
	b := r.next(4)
	if len(b) < 4 {
		return 0
	}
	return int(binary.BigEndian.Uint32(b))
}

// table reads the string table. Its strings share one allocation.
func (r *memoReader) table() []string {
	n := r.u32()
	if r.err != nil || n > len(r.b)/4 {
		r.err = errors.New("memo is truncated")
		return nil
	}
	var all strings.Builder
	ends := make([]int, n)
	for i := range ends {
		all.Write(r.next(r.u32()))
		ends[i] = all.Len()
	}
	return cut(all.String(), ends)
}

// cut returns the parts of s that end at ends.
func cut(s string, ends []int) []string {
	out := make([]string, len(ends))
	at := 0
	for i, e := range ends {
		out[i], at = s[at:e], e
	}
	return out
}

// ref reads an index into table and returns its string.
func (r *memoReader) ref(table []string) string {
	if t := r.u32(); t < len(table) {
		return table[t]
	}
	if r.err == nil {
		r.err = errors.New("memo names a string it does not hold")
	}
	return ""
}

// list reads a count and that many indices into table. Entries mostly
// repeat a few lists (the same environments, refs and signer sets), so
// equal lists are one slice, kept in seen; nothing may append to it.
func (r *memoReader) list(table []string, seen map[string][]string) []string {
	n := r.u32()
	if r.err != nil || n > len(r.b)/4 {
		r.err = errors.New("memo is truncated")
		return nil
	}
	if n == 0 {
		return nil
	}
	raw := r.next(4 * n)
	if l, ok := seen[string(raw)]; ok {
		return l
	}
	l := make([]string, n)
	for i := range l {
		if t := int(binary.BigEndian.Uint32(raw[4*i:])); t < len(table) {
			l[i] = table[t]
		} else if r.err == nil {
			r.err = errors.New("memo names a string it does not hold")
		}
	}
	seen[string(raw)] = l
	return l
}

// unmarshal decodes what writeTo wrote. It keeps nothing of b: the
// table's strings share one allocation, the names and projects another, and equal
// lists one slice, so that the memo of a large allowlist costs little
// more than its entries.
func (m *acceptMemo) unmarshal(b []byte) error {
	r := &memoReader{b: b}
	if string(r.next(len(memoMagic))) != memoMagic {
		return errors.New("memo is not in this writ's format")
	}
	m.Codec = string(r.next(r.u32()))
	nv := r.u32()
	if r.err != nil || nv > len(r.b)/(4+sha256.Size) {
		return errors.New("memo is truncated")
	}
	m.Views = make(map[string][sha256.Size]byte, nv)
	for range nv {
		name := string(r.next(r.u32()))
		var d [sha256.Size]byte
		copy(d[:], r.next(sha256.Size))
		if r.err != nil {
			return r.err
		}
		if _, dup := m.Views[name]; dup {
			return errors.New("memo names a view twice")
		}
		m.Views[name] = d
	}
	m.EntryLoads = string(r.next(1)) == "\x01"
	table := r.table()
	ne := r.u32()
	if r.err != nil || ne > len(r.b)/(sha256.Size+32) {
		return errors.New("memo is truncated")
	}
	m.Entries = make([]entryMemo, ne)
	matches := make([]Match, ne)
	lists := map[string][]string{}
	// Every entry takes at least 76 bytes besides its name and project:
	// what is left bounds them, so the builder never grows.
	var names strings.Builder
	names.Grow(max(0, len(r.b)-76*ne))
	ends := make([]int, 2*ne)
	for i := range m.Entries {
		e := &m.Entries[i]
		copy(e.Digest[:], r.next(sha256.Size))
		e.Line, e.LineOff, e.Column, e.Sec, e.Idx = r.u32(), r.u32(), r.u32(), r.u32(), r.u32()
		names.Write(r.next(r.u32()))
		ends[2*i] = names.Len()
		names.Write(r.next(r.u32()))
		ends[2*i+1] = names.Len()
		e.Match = &matches[i]
		e.Match.Job = r.ref(table)
		e.Match.Environments, e.Match.Refs, e.Uses = r.list(table, lists), r.list(table, lists), r.list(table, lists)
		if r.err != nil {
			return r.err
		}
	}
	for i, s := range cut(names.String(), ends) {
		if i%2 == 0 {
			m.Entries[i/2].Name = s
		} else {
			m.Entries[i/2].Match.Project = s
		}
	}
	if len(r.b) != 0 {
		return errors.New("memo has trailing bytes")
	}
	return nil
}
