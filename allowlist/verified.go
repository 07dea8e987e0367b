package allowlist

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/gob"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"slices"
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

// entriesPerSection is the mean number of entries a section holds. Entries
// for one project and job always share a section, so a section may be
// larger when many entries name the same job.
const entriesPerSection = 32

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
}

// rawContent is the Raw section.
type rawContent struct {
	Files map[string][]byte
}

// sectionOf returns the section the entries for project and job go to. The
// hash only spreads entries over sections: within a section every lookup
// compares all four fields exactly.
func sectionOf(project, job string, n int) int {
	h := fnv.New64a()
	var l [8]byte
	binary.BigEndian.PutUint64(l[:], uint64(len(project)))
	h.Write(l[:])
	h.Write([]byte(project))
	h.Write([]byte(job))
	return int(h.Sum64() % uint64(n))
}

// encodeVerified returns the store's bytes for c, in two parts (header and
// sections) so that they are never copied into one buffer, and the hex
// SHA-256 the state records.
func encodeVerified(c *cached) ([][]byte, string, error) {
	if c.Parsed == nil {
		return nil, "", errors.New("verified store: nothing parsed to store")
	}
	jobs := c.Parsed.Jobs
	n := max(1, (len(jobs)+entriesPerSection-1)/entriesPerSection)
	groups := make([][]*Entry, n)
	for _, e := range jobs {
		i := sectionOf(e.Match.Project, e.Match.Job, n)
		if len(e.Definition.Included) > 0 {
			// The header holds the sets; a reader resolves them again.
			c := *e
			c.Definition.Included = nil
			e = &c
		}
		groups[i] = append(groups[i], e)
	}
	var body bytes.Buffer
	put := func(v any) (section, error) {
		start := body.Len()
		if err := gob.NewEncoder(&body).Encode(v); err != nil {
			return section{}, err
		}
		b := body.Bytes()[start:]
		return section{Off: int64(start), Len: int64(len(b)), Sum: sha256.Sum256(b)}, nil
	}
	h := verifiedHeader{Entries: len(jobs), sections: make([]section, n)}
	var err error
	if h.Raw, err = put(rawContent{Files: c.Files}); err != nil {
		return nil, "", err
	}
	for i, g := range groups {
		if h.sections[i], err = put(g); err != nil {
			return nil, "", err
		}
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
	return [][]byte{out, body.Bytes()}, hex.EncodeToString(sum[:]), nil
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

// read returns the bytes of sec, checked against its SHA-256, decoded into v.
func (s *verifiedStore) read(sec section, v any) error {
	if sec.Len < 0 || sec.Len > maxVerifiedSection || sec.Off < 0 {
		return fmt.Errorf("verified store %s: a section is out of bounds", s.path)
	}
	f, err := os.Open(s.path)
	if err != nil {
		return err
	}
	defer f.Close()
	b := make([]byte, sec.Len)
	if _, err := f.ReadAt(b, s.base+sec.Off); err != nil {
		return fmt.Errorf("verified store %s: %w", s.path, err)
	}
	if sha256.Sum256(b) != sec.Sum {
		// The store is only a cache of what acceptance verified: removing
		// it makes the next job verify the accepted head again and write a
		// sound one, instead of failing until someone repairs it by hand.
		_ = os.Remove(s.path)
		return fmt.Errorf("verified store %s: a section does not match its recorded SHA-256 (removed; the next job verifies the accepted version again)", s.path)
	}
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(v); err != nil {
		return fmt.Errorf("verified store %s: a section is unreadable: %w", s.path, err)
	}
	return nil
}

// jobIndex indexes the entries stored for project and job.
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
// in file order.
func (s *verifiedStore) all() (*Allowlist, error) {
	var jobs []*Entry
	for _, sec := range s.header.sections {
		var es []*Entry
		if err := s.read(sec, &es); err != nil {
			return nil, err
		}
		jobs = append(jobs, es...)
	}
	if len(jobs) != s.header.Entries {
		return nil, fmt.Errorf("verified store %s holds %d entries, its header says %d", s.path, len(jobs), s.header.Entries)
	}
	slices.SortStableFunc(jobs, func(a, b *Entry) int {
		return cmp.Or(cmp.Compare(a.Pos.Line, b.Pos.Line), cmp.Compare(a.Pos.Column, b.Pos.Column))
	})
	al := *s.header.Allowlist
	for _, e := range jobs {
		al.resolveIncluded(e)
	}
	al.Jobs = jobs
	return &al, nil
}
