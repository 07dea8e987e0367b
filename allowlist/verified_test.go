package allowlist

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// storeOf writes the verified store of a parsed allowlist into a temporary
// directory and returns its path and the SHA-256 the state would record.
func storeOf(t testing.TB, al *Allowlist) (string, string) {
	t.Helper()
	parts, sum, err := encodeVerified(&cached{Commit: "c0ffee", Version: al.Version, Digest: "d1", Parsed: al, Files: map[string][]byte{"keys/a.asc": []byte("key")}})
	if err != nil {
		t.Fatal(err)
	}
	b := append(parts[0], parts[1]...)
	p := filepath.Join(t.TempDir(), "allowlist-verified.store")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, sum
}

func TestVerifiedStoreRoundTrip(t *testing.T) {
	t.Parallel()
	al, err := Parse(FileName, generatedAllowlist(500), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, sum := storeOf(t, al)
	s, err := openVerified(p, sum)
	if err != nil {
		t.Fatal(err)
	}
	if s.header.Allowlist.Jobs != nil || s.header.Meta.Files != nil || s.header.Allowlist.Version != al.Version {
		t.Fatalf("header carries the wrong content: %+v", s.header.Meta)
	}
	if !reflect.DeepEqual(s.header.Allowlist.Signers, al.Signers) {
		t.Fatal("signer sets changed in the store")
	}
	for _, e := range al.Jobs {
		ix, err := s.jobIndex(e.Match.Project, e.Match.Job)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := ix.Lookup(e.Match.Project, e.Match.Job, e.Match.Environments[1], e.Match.Refs[1])
		// A job's entries carry no position (the memo keeps it).
		want := *e
		want.Pos = Pos{}
		if !ok || !reflect.DeepEqual(got, &want) {
			t.Fatalf("entry %s: got %+v", e.Name, got)
		}
		if near := ix.Near(e.Match.Project, e.Match.Job); len(near) != 1 || near[0].Name != e.Name {
			t.Fatalf("near %s: %d entries", e.Name, len(near))
		}
	}
	// A job that matches nothing reads one section and finds nothing.
	ix, err := s.jobIndex("group/app-1", "deploy-99")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ix.Lookup("group/app-1", "deploy-99", "production", "refs/heads/main"); ok {
		t.Fatal("matched an entry that does not exist")
	}
	whole, err := s.all()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(whole, al) {
		t.Fatal("the whole store differs from the accepted allowlist")
	}
}

// TestVerifiedStoreRefusesDamage proves that no byte the job reads is used
// unless it is what acceptance wrote.
func TestVerifiedStoreRefusesDamage(t *testing.T) {
	t.Parallel()
	al, err := Parse(FileName, generatedAllowlist(100), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, sum := storeOf(t, al)
	good, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s, err := openVerified(p, sum)
	if err != nil {
		t.Fatal(err)
	}
	headerEnd := s.base
	e := al.Jobs[42]
	sec := s.header.sections[sectionOf(e.Match.Project, e.Match.Job, len(s.header.sections))]

	cases := []struct {
		name   string
		mutate func([]byte) []byte
		sum    string
		atOpen bool // the damage must be caught when the header is read
	}{
		{"wrong state sum", func(b []byte) []byte { return b }, "00" + sum[2:], true},
		{"magic", func(b []byte) []byte { b[0] ^= 1; return b }, sum, true},
		{"header byte", func(b []byte) []byte { b[headerEnd-3] ^= 1; return b }, sum, true},
		{"header length", func(b []byte) []byte { b[len(verifiedMagic)+3]++; return b }, sum, true},
		{"truncated header", func(b []byte) []byte { return b[:headerEnd-1] }, sum, true},
		{"section byte", func(b []byte) []byte { b[headerEnd+sec.Off+sec.Len/2] ^= 0x40; return b }, sum, false},
		{"section truncated", func(b []byte) []byte { return b[:headerEnd+sec.Off+1] }, sum, false},
		{"sections swapped", func(b []byte) []byte {
			other := s.header.sections[(sectionOf(e.Match.Project, e.Match.Job, len(s.header.sections))+1)%len(s.header.sections)]
			if other.Len != sec.Len {
				// Same length is what makes a swap interesting; otherwise
				// corrupt the start instead.
				b[headerEnd+sec.Off] ^= 1
				return b
			}
			copy(b[headerEnd+sec.Off:], good[headerEnd+other.Off:headerEnd+other.Off+other.Len])
			return b
		}, sum, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := c.mutate(append([]byte(nil), good...))
			q := filepath.Join(t.TempDir(), "store")
			if err := os.WriteFile(q, b, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := openVerified(q, c.sum)
			if c.atOpen {
				if err == nil {
					t.Fatal("damaged header accepted")
				}
				return
			}
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			if ix, err := s.jobIndex(e.Match.Project, e.Match.Job); err == nil {
				got, ok := ix.Lookup(e.Match.Project, e.Match.Job, "production", "refs/heads/main")
				t.Fatalf("damaged section used: %v %+v", ok, got)
			}
		})
	}
}

// syntheticAllowlist builds n entries without parsing, for scale tests.
func syntheticAllowlist(n int) *Allowlist {
	al := &Allowlist{Schema: SchemaV2, Repository: "acme/deploy-allowlist", Version: 1, Expires: time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC),
		Signers: map[string]*SignerSet{"team": {Name: "team", SSH: []string{bobSSH}}}}
	for i := range n {
		al.Jobs = append(al.Jobs, &Entry{
			Name: fmt.Sprintf("job-%d", i),
			Match: Match{Project: fmt.Sprintf("group/app-%d", i/10), Job: fmt.Sprintf("deploy-%d", i%10),
				Environments: []string{"production", "staging"}, Refs: []string{"refs/heads/main"}},
			Definition: Definition{Script: []string{fmt.Sprintf("./deploy.sh --target app-%d", i), "./verify.sh"}},
			Source:     Source{Repository: fmt.Sprintf("https://gitlab.example.com/group/app-%d.git", i/10), Signers: []string{"team"}, Mode: ModeCommit},
			Pos:        Pos{Line: 10 + 20*i, Column: 5},
		})
	}
	return al
}

// BenchmarkJobLoad measures what a job pays to load what its lookup needs
// from the verified store and look its entry up, at 100 and 100,000
// entries; the metric "x_100k/100" is the ratio of the two, measured in
// the same run (the goal: ≤ 1.2).
func BenchmarkJobLoad(b *testing.B) {
	small, smallSum := storeOf(b, syntheticAllowlist(100))
	large, largeSum := storeOf(b, syntheticAllowlist(100_000))
	load := func(p, sum, project, job string) {
		s, err := openVerified(p, sum)
		if err != nil {
			b.Fatal(err)
		}
		ix, err := s.jobIndex(project, job)
		if err != nil {
			b.Fatal(err)
		}
		if _, ok := ix.Lookup(project, job, "production", "refs/heads/main"); !ok {
			b.Fatal("no entry")
		}
	}
	var tSmall, tLarge time.Duration
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		load(small, smallSum, "group/app-5", "deploy-0")
		t1 := time.Now()
		load(large, largeSum, "group/app-5000", "deploy-0")
		tLarge += time.Since(t1)
		tSmall += t1.Sub(t0)
	}
	b.ReportMetric(float64(tLarge)/float64(tSmall), "x_100k/100")
	b.ReportMetric(float64(tLarge.Microseconds())/float64(b.N), "µs_100k/op")
}

// TestSectionOfIsFNV: the section a job reads is the one acceptance wrote
// to, by every writ: sectionOf is FNV-1a of the project's length, the
// project and the job, as hash/fnv computes it.
func TestSectionOfIsFNV(t *testing.T) {
	for _, c := range [][2]string{{"", ""}, {"group/app", "build"}, {"a/b", "c"}, {"a/bc", ""}, {"ü/ñ", "job ✓"}, {strings.Repeat("x", 300), "y"}} {
		h := fnv.New64a()
		var l [8]byte
		binary.BigEndian.PutUint64(l[:], uint64(len(c[0])))
		h.Write(l[:])
		h.Write([]byte(c[0]))
		h.Write([]byte(c[1]))
		for _, n := range []int{1, 7, 32, 4096} {
			if got, want := sectionOf(c[0], c[1], n), int(h.Sum64()%uint64(n)); got != want {
				t.Fatalf("sectionOf(%q, %q, %d) = %d, want %d", c[0], c[1], n, got, want)
			}
		}
	}
}
