package allowlist

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/gob"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
)

// The verified store is the on-disk form of an accepted version, written
// once at acceptance and read by every job. A job reads only what its
// lookup needs: the header (metadata, signer sets and a table of sections)
// and the one section that holds the entries for its project and job. Its
// cost therefore does not grow with the allowlist.
//
// Integrity: the state records the SHA-256 of the header (magic, length and
// body); the header records the SHA-256 of every section. A section is
// decoded only after its bytes match, so nothing is used that this
// environment did not write at acceptance — the same guarantee as hashing
// the whole file, paid only for the bytes a job reads.
//
// Layout: verifiedMagic; a big-endian uint32 header length and uint32
// section count; the gob-encoded header; the section table (sectionSize
// bytes a section: offset, length, SHA-256); then the sections. The header
// sum covers everything up to the end of the table. The table is binary,
// not gob, because a job must decode it on every run.

const verifiedMagic = "writ-verified-allowlist/1\n"

// Bounds on what a job reads from the store. The store is writ's own file
// under a hash the state holds, so these only keep a damaged file from
// costing much before the hash check fails.
const (
	maxVerifiedHeader  = 64 << 20
	maxVerifiedSection = 4 * maxAllowlistBytes
)

// entriesPerSection bounds the mean number of entries a section holds.
// Entries for one project and job always share a section, so a section may
// be larger when many entries name the same job.
const entriesPerSection = 32

// sectionCount is the number of sections for n entries: a power of two, so
// that it changes only when the allowlist doubles or halves and a new
// version can keep the sections whose entries did not change (memo.go).
func sectionCount(n int) int {
	c := 1
	for c*entriesPerSection < n {
		c *= 2
	}
	return c
}

// sectionSize is the size of one row of the section table.
const sectionSize = 8 + 8 + sha256.Size

// section locates one run of bytes in the store and fixes its content.
type section struct {
	Off, Len int64
	Sum      [sha256.Size]byte
}

// verifiedHeader is what every job reads. Meta is the accepted version's
// record without its content (YAML, Files, Parsed are nil); Allowlist is the
// parsed allowlist without its jobs.
type verifiedHeader struct {
	Meta      cached
	Allowlist *Allowlist
	Entries   int
	// sections come from the section table (gob skips unexported fields).
	sections []section
	// Raw holds the key files as accepted, for whoever needs the bytes
	// (never a job). The YAML itself stays in the allowlist's mirror, under
	// the accepted commit.
	Raw section
	// Memo is the acceptance memo (memo.go): the entries' order and
	// positions, and what the next acceptance may take from this store.
	// Entries in the sections carry no position, since it changes when
	// lines above them do.
	Memo section
}

// rawContent is the Raw section.
type rawContent struct {
	Files map[string][]byte
}

// sectionOf returns the section the entries for project and job go to. The
// hash only spreads entries over sections: within a section every lookup
// compares all four fields exactly.
func sectionOf(project, job string, n int) int {
	// FNV-1a (64-bit) of the project's length (8 bytes, big-endian), the
	// project and the job, written out so that no string is copied.
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for i := 56; i >= 0; i -= 8 {
		h = (h ^ uint64(byte(uint64(len(project))>>i))) * prime
	}
	for i := 0; i < len(project); i++ {
		h = (h ^ uint64(project[i])) * prime
	}
	for i := 0; i < len(job); i++ {
		h = (h ^ uint64(job[i])) * prime
	}
	return int(h % uint64(n))
}

// encodeVerified returns the store's bytes for c, in two parts (header and
// sections), and the hex SHA-256 the state records.
func encodeVerified(c *cached) ([][]byte, string, error) {
	var body bytes.Buffer
	head, sum, err := writeVerified(c, &body)
	if err != nil {
		return nil, "", err
	}
	return [][]byte{head, body.Bytes()}, sum, nil
}

// writeVerified writes the sections of c's store to body and returns the
// header that goes before them and the hex SHA-256 the state records. A
// section that holds exactly the entries of the same section of the
// version c's memo reused is copied from there; the entries the parse
// took from that version (nil in c.Parsed.Jobs) are decoded only for the
// other sections.
func writeVerified(c *cached, body io.Writer) ([]byte, string, error) {
	if c.Parsed == nil {
		return nil, "", errors.New("verified store: nothing parsed to store")
	}
	jobs := c.Parsed.Jobs
	m := c.memo
	if m == nil || len(m.Entries) != len(jobs) {
		// Only the order and positions (no reuse next time).
		m = &acceptMemo{Entries: make([]entryMemo, len(jobs))}
		for i, e := range jobs {
			if e == nil {
				return nil, "", errors.New("verified store: an entry was not decoded")
			}
			m.Entries[i] = entryMemo{Line: e.Pos.Line, Column: e.Pos.Column, Name: e.Name, Match: &e.Match}
		}
	}
	n := sectionCount(len(jobs))
	groups := make([][]int, n)
	for i := range jobs {
		g := sectionOf(m.Entries[i].Match.Project, m.Entries[i].Match.Job, n)
		m.Entries[i].Sec, m.Entries[i].Idx = g, len(groups[g])
		groups[g] = append(groups[g], i)
	}
	defer m.reuse.close()
	copied := make([]bool, n)
	for i, g := range groups {
		copied[i] = m.reuse.copyable(i, n, g)
	}
	if err := m.materialize(c.Parsed, func(j int) bool { return !copied[m.Entries[j].Sec] }); err != nil {
		return nil, "", fmt.Errorf("verified store: an entry of the store in force: %w", err)
	}
	w := &sectionWriter{w: body}
	put := func(v any) (section, error) {
		w.start()
		if err := gob.NewEncoder(w).Encode(v); err != nil {
			return section{}, err
		}
		return w.end()
	}
	h := verifiedHeader{Entries: len(jobs), sections: make([]section, n)}
	var err error
	if h.Raw, err = put(rawContent{Files: c.Files}); err != nil {
		return nil, "", err
	}
	for i, g := range groups {
		if copied[i] {
			// Checked against its SHA-256 as it is read: if the store
			// in force changed since the parse verified it, nothing is
			// written, and the next acceptance finds it damaged and
			// parses in full.
			b, sum, err := m.reuse.section(i)
			if err != nil {
				return nil, "", err
			}
			if h.sections[i], err = w.copied(b, sum); err != nil {
				return nil, "", err
			}
			continue
		}
		es := make([]*Entry, len(g))
		for k, j := range g {
			e := *jobs[j]
			// Positions are the memo's: a section holds none but
			// those within an entry, counted from its line, so that
			// identical bytes store identically wherever they move.
			e.Source.Extra = extrasMoved(e.Source.Extra, -e.Pos.Line)
			e.Pos = Pos{}
			// The header holds the variable sets; a reader resolves them.
			e.Definition.Included = nil
			es[k] = &e
		}
		if h.sections[i], err = put(es); err != nil {
			return nil, "", err
		}
	}
	w.start()
	if err := m.writeTo(w); err != nil {
		return nil, "", err
	}
	if h.Memo, err = w.end(); err != nil {
		return nil, "", err
	}
	h.Meta = *c
	h.Meta.Files, h.Meta.Parsed = nil, nil
	head := *c.Parsed
	head.Jobs = nil
	h.Allowlist = &head

	var hb bytes.Buffer
	if err := gob.NewEncoder(&hb).Encode(&h); err != nil {
		return nil, "", err
	}
	out := make([]byte, 0, len(verifiedMagic)+8+hb.Len()+n*sectionSize)
	out = append(out, verifiedMagic...)
	out = binary.BigEndian.AppendUint32(out, uint32(hb.Len()))
	out = binary.BigEndian.AppendUint32(out, uint32(n))
	out = append(out, hb.Bytes()...)
	for _, sec := range h.sections {
		out = binary.BigEndian.AppendUint64(out, uint64(sec.Off))
		out = binary.BigEndian.AppendUint64(out, uint64(sec.Len))
		out = append(out, sec.Sum[:]...)
	}
	sum := sha256.Sum256(out)
	// Section offsets count from the end of the header.
	return out, hex.EncodeToString(sum[:]), nil
}

// sectionWriter writes sections one after the other, each with its offset,
// length and SHA-256.
type sectionWriter struct {
	w        io.Writer
	off, at  int64
	h        hash.Hash
	writeErr error
}

func (s *sectionWriter) start() {
	if s.h == nil {
		s.h = sha256.New()
	}
	s.h.Reset()
	s.at = s.off
}

func (s *sectionWriter) Write(b []byte) (int, error) {
	if s.writeErr != nil {
		return 0, s.writeErr
	}
	n, err := s.w.Write(b)
	s.h.Write(b[:n])
	s.off += int64(n)
	s.writeErr = err
	return n, err
}

// copied writes b, a whole section whose SHA-256 is known to be sum.
func (s *sectionWriter) copied(b []byte, sum [sha256.Size]byte) (section, error) {
	if s.writeErr != nil {
		return section{}, s.writeErr
	}
	at := s.off
	n, err := s.w.Write(b)
	s.off += int64(n)
	s.writeErr = err
	return section{Off: at, Len: s.off - at, Sum: sum}, err
}

func (s *sectionWriter) end() (section, error) {
	sec := section{Off: s.at, Len: s.off - s.at}
	copy(sec.Sum[:], s.h.Sum(nil))
	return sec, s.writeErr
}

// verifiedStore is an open store whose header matched the state.
type verifiedStore struct {
	path   string
	base   int64 // where the sections start
	header verifiedHeader
}

// openVerified reads and checks the header of the store at path against
// wantSum, the hex SHA-256 the state recorded.
func openVerified(path, wantSum string) (*verifiedStore, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	pre := make([]byte, len(verifiedMagic)+8)
	if _, err := io.ReadFull(f, pre); err != nil {
		return nil, fmt.Errorf("verified store %s: %w", path, err)
	}
	if string(pre[:len(verifiedMagic)]) != verifiedMagic {
		return nil, fmt.Errorf("verified store %s is not in this writ's format", path)
	}
	hn := int64(binary.BigEndian.Uint32(pre[len(verifiedMagic):]))
	sn := int64(binary.BigEndian.Uint32(pre[len(verifiedMagic)+4:]))
	if hn+sn*sectionSize > maxVerifiedHeader || sn == 0 {
		return nil, fmt.Errorf("verified store %s: a header of %d bytes and %d sections is out of bounds", path, hn, sn)
	}
	rest := make([]byte, hn+sn*sectionSize)
	if _, err := io.ReadFull(f, rest); err != nil {
		return nil, fmt.Errorf("verified store %s: %w", path, err)
	}
	h := sha256.New()
	h.Write(pre)
	h.Write(rest)
	if hex.EncodeToString(h.Sum(nil)) != wantSum {
		return nil, fmt.Errorf("verified store %s does not match the accepted state", path)
	}
	s := &verifiedStore{path: path, base: int64(len(pre)) + int64(len(rest))}
	if err := gob.NewDecoder(bytes.NewReader(rest[:hn])).Decode(&s.header); err != nil {
		return nil, fmt.Errorf("verified store %s unreadable: %w", path, err)
	}
	if s.header.Allowlist == nil {
		return nil, fmt.Errorf("verified store %s is incomplete", path)
	}
	s.header.sections = make([]section, sn)
	for i, t := 0, rest[hn:]; i < int(sn); i, t = i+1, t[sectionSize:] {
		sec := &s.header.sections[i]
		sec.Off = int64(binary.BigEndian.Uint64(t))
		sec.Len = int64(binary.BigEndian.Uint64(t[8:]))
		copy(sec.Sum[:], t[16:sectionSize])
	}
	return s, nil
}

// readAt returns the bytes of sec from f, the store's file, checked
// against its SHA-256.
func (s *verifiedStore) readAt(f *os.File, sec section) ([]byte, error) {
	return s.readInto(f, sec, nil)
}

// readInto is readAt into buf, grown if it is too small.
func (s *verifiedStore) readInto(f *os.File, sec section, buf []byte) ([]byte, error) {
	if sec.Len < 0 || sec.Len > maxVerifiedSection || sec.Off < 0 {
		return nil, fmt.Errorf("verified store %s: a section is out of bounds", s.path)
	}
	if int64(cap(buf)) < sec.Len {
		buf = make([]byte, sec.Len)
	}
	b := buf[:sec.Len]
	if _, err := f.ReadAt(b, s.base+sec.Off); err != nil {
		return nil, fmt.Errorf("verified store %s: %w", s.path, err)
	}
	if sha256.Sum256(b) != sec.Sum {
		return nil, errSectionSum
	}
	return b, nil
}

var errSectionSum = errors.New("a section does not match its recorded SHA-256")

// readWith passes the bytes of sec, checked against its SHA-256, to use.
func (s *verifiedStore) readWith(sec section, use func([]byte) error) error {
	f, err := os.Open(s.path)
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := s.readAt(f, sec)
	if errors.Is(err, errSectionSum) {
		// The store is only a cache of what acceptance verified: removing
		// it makes the next job verify the accepted head again and write a
		// sound one, instead of failing until someone repairs it by hand.
		_ = os.Remove(s.path)
		return fmt.Errorf("verified store %s: a section does not match its recorded SHA-256 (removed; the next job verifies the accepted version again)", s.path)
	}
	if err != nil {
		return err
	}
	return use(b)
}

// read returns the bytes of sec, checked against its SHA-256, decoded into v.
func (s *verifiedStore) read(sec section, v any) error {
	return s.readWith(sec, func(b []byte) error {
		if err := gob.NewDecoder(bytes.NewReader(b)).Decode(v); err != nil {
			return fmt.Errorf("verified store %s: a section is unreadable: %w", s.path, err)
		}
		return nil
	})
}

// extrasMoved returns copies of xs whose positions are by lines further
// down: a stored entry counts them from its own line (writeVerified).
func extrasMoved(xs []*ExtraSource, by int) []*ExtraSource {
	if len(xs) == 0 {
		return xs
	}
	out := make([]*ExtraSource, len(xs))
	for i, x := range xs {
		c := *x
		c.Pos.Line += by
		out[i] = &c
	}
	return out
}

// jobIndex indexes the entries stored for project and job. They carry no
// positions: an entry's is zero, and its extra sources' lines count from
// that (writeVerified); a job's decision reads neither.
func (s *verifiedStore) jobIndex(project, job string) (*Index, error) {
	var es []*Entry
	if err := s.read(s.header.sections[sectionOf(project, job, len(s.header.sections))], &es); err != nil {
		return nil, err
	}
	for _, e := range es {
		s.header.Allowlist.resolveIncluded(e)
	}
	return NewIndex(&Allowlist{Jobs: es}), nil
}

// all returns the whole allowlist: the header's with every section's jobs,
// in file order and at their positions (from the memo).
func (s *verifiedStore) all() (*Allowlist, error) {
	secs := make([][]*Entry, len(s.header.sections))
	total := 0
	for i, sec := range s.header.sections {
		if err := s.read(sec, &secs[i]); err != nil {
			return nil, err
		}
		total += len(secs[i])
	}
	if total != s.header.Entries {
		return nil, fmt.Errorf("verified store %s holds %d entries, its header says %d", s.path, total, s.header.Entries)
	}
	if s.header.Memo.Len == 0 {
		return nil, fmt.Errorf("verified store %s was written by an earlier writ: accept the version again", s.path)
	}
	var m acceptMemo
	if err := s.readWith(s.header.Memo, func(b []byte) error { return m.unmarshal(b) }); err != nil {
		return nil, fmt.Errorf("verified store %s: memo: %w", s.path, err)
	}
	if len(m.Entries) != total {
		return nil, fmt.Errorf("verified store %s: its memo lists %d entries, the sections hold %d", s.path, len(m.Entries), total)
	}
	jobs := make([]*Entry, total)
	for i, me := range m.Entries {
		if me.Sec < 0 || me.Sec >= len(secs) || me.Idx < 0 || me.Idx >= len(secs[me.Sec]) || secs[me.Sec][me.Idx] == nil {
			return nil, fmt.Errorf("verified store %s: its memo names an entry the sections do not hold", s.path)
		}
		e := *secs[me.Sec][me.Idx]
		e.Pos = Pos{Line: me.Line, Column: me.Column}
		e.Source.Extra = extrasMoved(e.Source.Extra, me.Line)
		s.header.Allowlist.resolveIncluded(&e)
		jobs[i] = &e
	}
	al := *s.header.Allowlist
	al.Jobs = jobs
	return &al, nil
}
