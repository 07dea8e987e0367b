package allowlist

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"gitlab.com/writ-ci/writ/internal/version"
)

// acceptStore parses data as acceptance does, taking entries from prev,
// writes its verified store and returns the parse (every entry decoded),
// its memo and the open store.
func acceptStore(t *testing.T, data []byte, prev *verifiedStore) (*Allowlist, *acceptMemo, *verifiedStore, []byte) {
	t.Helper()
	al, m, err := parseAccept(FileName, bytes.Clone(data), func() ([]byte, error) { return bytes.Clone(data), nil }, nil, prev)
	if err != nil {
		t.Fatal(err)
	}
	parts, sum, err := encodeVerified(&cached{Commit: "c0ffee", Version: al.Version, Digest: "d1", Parsed: al, memo: m})
	if err != nil {
		t.Fatal(err)
	}
	decodedAtWrite = 0
	if m != nil && m.reuse != nil {
		decodedAtWrite = len(m.reuse.entries)
	}
	if m != nil {
		if err := m.materialize(al, nil); err != nil {
			t.Fatal(err)
		}
	}
	b := bytes.Join(parts, nil)
	p := filepath.Join(t.TempDir(), "allowlist-verified.store")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := openVerified(p, sum)
	if err != nil {
		t.Fatal(err)
	}
	return al, m, s, b
}

// writeStore writes the verified store of al and m and opens it.
func writeStore(t *testing.T, al *Allowlist, m *acceptMemo) *verifiedStore {
	t.Helper()
	parts, sum, err := encodeVerified(&cached{Parsed: al, memo: m})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "store")
	if err := os.WriteFile(p, bytes.Join(parts, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := openVerified(p, sum)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// decodedAtWrite is the number of sections of the store in force the last
// acceptStore decoded to write its store.
var decodedAtWrite int

// parseFile is parseFull of data, counting in rereads how often the
// parse read the file again.
func parseFile(data []byte, prev *verifiedStore, rereads *int) (*Allowlist, *acceptMemo, error) {
	return parseFull(FileName, bytes.Clone(data), func() ([]byte, error) {
		if rereads != nil {
			*rereads++
		}
		return bytes.Clone(data), nil
	}, nil, prev)
}

// parseFull is parseAccept with the entries it took from prev decoded: what
// Parse returns.
func parseFull(file string, data []byte, reread func() ([]byte, error), load FileLoader, prev *verifiedStore) (*Allowlist, *acceptMemo, error) {
	a, m, err := parseAccept(file, data, reread, load, prev)
	if err == nil && m != nil {
		if err := m.materialize(a, nil); err != nil {
			return nil, nil, err
		}
	}
	return a, m, err
}

// reused counts the items a parse took from the version in force.
func reused(m *acceptMemo) int {
	n := 0
	if m != nil && m.reuse != nil {
		for _, k := range m.reuse.old {
			if k >= 0 {
				n++
			}
		}
	}
	return n
}

// item returns the text of generatedAllowlist's entry i.
func item(data []byte, i int) string {
	s := string(data)
	start := strings.Index(s, "  - name: job-"+strconv.Itoa(i)+"\n")
	end := strings.Index(s[start+1:], "  - name: ")
	if end < 0 {
		return s[start:]
	}
	return s[start : start+1+end]
}

// TestIncrementalStoreEqualsFull: a version accepted with entries taken
// from the version in force parses to exactly what a full parse returns
// (positions included) and writes a store identical byte for byte, for
// the changes a new version usually makes.
func TestIncrementalStoreEqualsFull(t *testing.T) {
	v1 := generatedAllowlist(600)
	_, _, prev, _ := acceptStore(t, v1, nil)
	bump := func(s string) string { return strings.Replace(s, "version: 1\n", "version: 2\n", 1) }
	e10, e300 := item(v1, 10), item(v1, 300)
	cases := map[string]struct {
		text      string
		minReused int
	}{
		"version only":     {bump(string(v1)), 600},
		"one entry edited": {bump(strings.Replace(string(v1), e300, strings.Replace(e300, "./verify.sh", "./verify.sh --all", 1), 1)), 599},
		"entry inserted above others (lines move)": {bump(strings.Replace(string(v1), e10, e10+
			"  - name: extra\n    match:\n      project: group/extra\n      job: deploy\n      environments: [production]\n      refs: [refs/heads/main]\n    definition:\n      script: [make]\n    source:\n      repository: https://gitlab.example.com/group/extra.git\n      signers: [team]\n      mode: commit\n", 1)), 600},
		"entry removed":                  {bump(strings.Replace(string(v1), e300, "", 1)), 599},
		"entries beyond a section count": {bump(string(generatedAllowlist(1100))), 600},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			inc, m, _, incStore := acceptStore(t, []byte(c.text), prev)
			decoded := decodedAtWrite
			if n := reused(m); n < c.minReused {
				t.Fatalf("%d entries taken from the version in force, want at least %d", n, c.minReused)
			}
			full, fm, _, fullStore := acceptStore(t, []byte(c.text), nil)
			if reused(fm) != 0 {
				t.Fatal("a parse without a store in force reused entries")
			}
			if !reflect.DeepEqual(inc, full) {
				t.Fatal("the incremental parse differs from the full parse")
			}
			if !bytes.Equal(incStore, fullStore) {
				t.Fatal("the incremental store differs from the full parse's store")
			}
			if name == "version only" && m.reuse.kept != len(prev.header.sections) {
				t.Fatalf("%d of %d sections copied from the store in force", m.reuse.kept, len(prev.header.sections))
			}
			if name == "version only" && decoded != 0 {
				t.Fatalf("%d sections of the store in force decoded to write a version that changed no entry", decoded)
			}
			if name == "one entry edited" && decoded != 1 {
				t.Fatalf("%d sections of the store in force decoded to write a version that changed one entry, want 1", decoded)
			}
		})
	}
}

// TestIncrementalReparsesOnContext: an unchanged entry is taken from the
// store in force only while what it read of the top level (its scope's
// views) is unchanged. A change an entry can see — a set it names
// removed, made Sigstore-only, its SSH key restricted to other namespaces,
// a variable of a set it includes — decodes it again, with exactly the
// full parse's result or refusal; a change it cannot see — a key rotated
// or added in its signer set, another set added, people listed — reuses
// it, and the store written is the full parse's, byte for byte.
func TestIncrementalReparsesOnContext(t *testing.T) {
	const n = 400
	approvals := "      mode: commit\n      approvals:\n        signers: [team]\n        threshold: 1\n"
	varSets := "variable_sets:\n  common:\n    REGION: {value: eu-west-1}\njobs:\n"
	gen := func(s string) string { return strings.Replace(s, "version: 1\n", "version: 2\n", 1) }
	base := string(generatedAllowlist(n))
	// withSets: the first half of the entries include the set common.
	withSets := strings.Replace(strings.Replace(base, "jobs:\n", varSets, 1), "      timeout: 15m\n", "      timeout: 15m\n      variable_sets: [common]\n", n/2)
	rotated := strings.Replace(bobSSH, "AAAAIBjIOV", "AAAAIBjIOW", 1)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	load := mapLoader(map[string][]byte{"keys/approver.pub": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})})
	last := item([]byte(withSets), n-1)
	cases := []struct {
		name    string
		v1, v2  string
		reuse   int  // entries taken from the store in force
		refused bool // the new version is refused (as a full parse refuses it)
	}{
		{name: "key rotated in the set every entry names", v1: base,
			v2: gen(strings.Replace(base, bobSSH, rotated, 1)), reuse: n},
		{name: "key added to the set every entry names", v1: base,
			v2: gen(strings.Replace(base, "jobs:\n", "      - "+rotated+"\njobs:\n", 1)), reuse: n},
		{name: "key comment changed", v1: base,
			v2: gen(strings.Replace(base, "bob@", "robert@", 1)), reuse: n},
		{name: "set renamed: every entry names an undefined set", v1: base,
			v2: gen(strings.Replace(base, "signers:\n  team:", "signers:\n  crew:", 1)), refused: true},
		{name: "set made Sigstore-only", v1: base,
			v2: gen(strings.Replace(base, "    ssh:\n      - "+bobSSH+"\n", "    sigstore: [keys/approver.pub]\n", 1)), refused: true},
		{name: "approval key restricted to another namespace", v1: strings.ReplaceAll(base, "      mode: commit\n", approvals),
			v2: gen(strings.ReplaceAll(strings.Replace(base, "- "+bobSSH, "- "+strings.Replace(bobSSH, " ssh-ed25519", ` namespaces="git" ssh-ed25519`, 1), 1), "      mode: commit\n", approvals)), refused: true},
		{name: "approval key's namespaces include source approval", v1: strings.ReplaceAll(base, "      mode: commit\n", approvals),
			v2: gen(strings.ReplaceAll(strings.Replace(base, "- "+bobSSH, "- "+strings.Replace(bobSSH, " ssh-ed25519", ` namespaces="git,`+SourceApprovalNamespace+`" ssh-ed25519`, 1), 1), "      mode: commit\n", approvals)), reuse: n},
		{name: "variable of an included set changed", v1: withSets,
			v2: gen(strings.Replace(withSets, "eu-west-1", "eu-west-2", 1)), reuse: n / 2},
		{name: "included set gains the entries' own variable", v1: withSets,
			v2: gen(strings.Replace(withSets, "    REGION: {value: eu-west-1}\n", "    REGION: {value: eu-west-1}\n    RELEASE: {value: v1}\n", 1)), reuse: n / 2, refused: true},
		{name: "another variable set added, for another entry", v1: withSets,
			v2: gen(strings.Replace(strings.Replace(withSets, "variable_sets:\n", "variable_sets:\n  other:\n    X: {value: y}\n", 1),
				last, strings.Replace(last, "      timeout: 15m\n", "      timeout: 15m\n      variable_sets: [other]\n", 1), 1)), reuse: n - 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, prev, _ := acceptStore(t, []byte(c.v1), nil)
			rereads := 0
			inc, im, ierr := parseFull(FileName, []byte(c.v2), func() ([]byte, error) { rereads++; return []byte(c.v2), nil }, load, prev)
			full, fm, ferr := parseFull(FileName, []byte(c.v2), nil, load, nil)
			if (ierr == nil) != (ferr == nil) || (ierr != nil && ierr.Error() != ferr.Error()) {
				t.Fatalf("incremental: %v\nfull: %v", ierr, ferr)
			}
			if !reflect.DeepEqual(inc, full) {
				t.Fatal("the incremental parse differs from the full parse")
			}
			if c.refused {
				if ierr == nil {
					t.Fatal("the version was accepted")
				}
				return
			}
			if ierr != nil {
				t.Fatal(ierr)
			}
			if got := reused(im); got != c.reuse {
				t.Fatalf("%d entries taken from the store in force, want %d", got, c.reuse)
			}
			if rereads != 0 {
				t.Fatalf("the file was read %d more times", rereads)
			}
			is, fs := writeStore(t, inc, im), writeStore(t, full, fm)
			if is.header.Memo.Sum != fs.header.Memo.Sum || len(is.header.sections) != len(fs.header.sections) {
				t.Fatal("the incremental store differs from the full parse's store")
			}
			for i := range is.header.sections {
				if is.header.sections[i].Sum != fs.header.sections[i].Sum {
					t.Fatalf("section %d differs from the full parse's", i)
				}
			}
		})
	}
}

// TestIncrementalRefusesOtherDecoder: entries decoded by another build of
// writ (whose checks may differ) are never taken.
func TestIncrementalRefusesOtherDecoder(t *testing.T) {
	v1 := generatedAllowlist(200)
	_, _, prev, _ := acceptStore(t, v1, nil)
	id := decoderID
	t.Cleanup(func() { decoderID = id })
	decoderID = func() string { return "go-build-id:another-writ" }
	_, m, _, _ := acceptStore(t, v1, prev)
	if n := reused(m); n != 0 {
		t.Fatalf("%d entries taken from a store another build decoded", n)
	}
	decoderID = func() string { return "" }
	_, m, _, _ = acceptStore(t, v1, prev)
	if n := reused(m); n != 0 {
		t.Fatalf("%d entries taken without knowing the decoder", n)
	}
}

// TestIncrementalRefusesDamagedStore: a store in force whose sections do
// not match their SHA-256 lends nothing; the parse is still right.
func TestIncrementalRefusesDamagedStore(t *testing.T) {
	v1 := generatedAllowlist(300)
	full, _, prev, b := acceptStore(t, v1, nil)
	sec := prev.header.sections[0]
	b[prev.base+sec.Off+sec.Len/2] ^= 0x20
	if err := os.WriteFile(prev.path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	al, m, err := parseFile(v1, prev, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := reused(m); n != 0 {
		t.Fatalf("%d entries taken from a damaged store", n)
	}
	if !reflect.DeepEqual(al, full) {
		t.Fatal("the parse differs after a damaged store")
	}
}

// TestIncrementalDuplicatesStillRefused: an entry copied byte for byte
// (both copies unchanged from the store in force) is still a duplicate.
func TestIncrementalDuplicatesStillRefused(t *testing.T) {
	v1 := generatedAllowlist(300)
	_, _, prev, _ := acceptStore(t, v1, nil)
	dup := string(v1) + item(v1, 5)
	al, m, err := parseFile([]byte(dup), prev, nil)
	if err == nil || al != nil || m != nil {
		t.Fatal("a duplicated entry was accepted")
	}
	if !strings.Contains(err.Error(), `entry name "job-5" is already used`) {
		t.Fatalf("unexpected refusal: %v", err)
	}
}

// TestMemoRoundTrip: the memo reads back as written, and a truncated one
// is refused.
func TestMemoRoundTrip(t *testing.T) {
	m := &acceptMemo{Codec: "go-build-id:x", EntryLoads: true, Entries: []entryMemo{
		{Line: 7, LineOff: 0, Column: 5, Uses: []string{"team", "ops"}, Sec: 3, Idx: 1, Name: "deploy",
			Match: &Match{Project: "group/app", Job: "deploy", Environments: []string{"production", "staging"}, Refs: []string{"refs/heads/main"}}},
		{Line: 20, LineOff: 1, Column: 7, Sec: 0, Idx: 0, Name: "team",
			Match: &Match{Project: "group/app", Job: "ops", Environments: []string{"production"}, Refs: []string{"refs/tags/v1", "refs/heads/main"}}},
	}}
	m.Views = map[string][sha256.Size]byte{"team": {1}, varSetUse + "aws": {2}}
	m.Entries[0].Digest[31] = 2
	b := m.marshal()
	var got acceptMemo
	if err := got.unmarshal(b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, m) {
		t.Fatalf("memo changed: %+v", got)
	}
	for n := range len(b) {
		var short acceptMemo
		if err := short.unmarshal(b[:n]); err == nil {
			t.Fatalf("a memo cut at %d bytes was read", n)
		}
	}
}

// BenchmarkParseAcceptReuse10000: parsing a new version of a 10,000-entry
// allowlist that changed one entry, taking the others from the store in
// force, and writing its verified store's sections (the allowlist side of
// acceptance), against BenchmarkParseAcceptFull10000.
func BenchmarkParseAcceptReuse10000(b *testing.B) { benchParseAccept(b, true) }

// BenchmarkParseAcceptFull10000 is the same without a store in force.
func BenchmarkParseAcceptFull10000(b *testing.B) { benchParseAccept(b, false) }

func benchParseAccept(b *testing.B, reuse bool) {
	v1 := generatedAllowlist(10000)
	al, m, err := parseFile(v1, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	var prev *verifiedStore
	if reuse {
		parts, sum, err := encodeVerified(&cached{Parsed: al, memo: m})
		if err != nil {
			b.Fatal(err)
		}
		p := filepath.Join(b.TempDir(), "store")
		if err := os.WriteFile(p, bytes.Join(parts, nil), 0o600); err != nil {
			b.Fatal(err)
		}
		if prev, err = openVerified(p, sum); err != nil {
			b.Fatal(err)
		}
	}
	e := item(v1, 5000)
	v2 := []byte(strings.Replace(strings.Replace(string(v1), e, strings.Replace(e, "./verify.sh", "./verify.sh --all", 1), 1), "version: 1\n", "version: 2\n", 1))
	b.SetBytes(int64(len(v2)))
	for b.Loop() {
		// What acceptance does on the allowlist side: the parse, then
		// the new store's sections.
		al, m, err := parseAccept(FileName, bytes.Clone(v2), func() ([]byte, error) { return bytes.Clone(v2), nil }, nil, prev)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := writeVerified(&cached{Parsed: al, memo: m}, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

// TestIncrementalVariableSets: entries that include a variable set are
// reused like the others (the set is marked used by the reused entries
// too), and a change to the set's variables decodes them again, so that
// an entry's merged variables always come from the version accepted.
func TestIncrementalVariableSets(t *testing.T) {
	base := string(generatedAllowlist(300))
	withSets := strings.Replace(base, "\njobs:\n", "\nvariable_sets:\n  common:\n    REGION: {value: eu-west-1}\njobs:\n", 1)
	withSets = strings.ReplaceAll(withSets, "      variables:\n        RELEASE:", "      variable_sets: [common]\n      variables:\n        RELEASE:")
	full, _, prev, _ := acceptStore(t, []byte(withSets), nil)
	if len(full.Jobs[0].Definition.AllVariables()) < 2 {
		t.Fatalf("the generated entries do not include the set: %+v", full.Jobs[0].Definition)
	}
	v2 := strings.Replace(withSets, "version: 1\n", "version: 2\n", 1)
	inc, m, _, incStore := acceptStore(t, []byte(v2), prev)
	if n := reused(m); n != 300 {
		t.Fatalf("%d of 300 entries including a variable set were reused", n)
	}
	want, _, _, fullStore := acceptStore(t, []byte(v2), nil)
	if !reflect.DeepEqual(inc, want) || !bytes.Equal(incStore, fullStore) {
		t.Fatal("the incremental parse differs from the full parse")
	}

	changed := strings.Replace(v2, "REGION: {value: eu-west-1}", "REGION: {value: us-east-1}", 1)
	got, m, _, _ := acceptStore(t, []byte(changed), prev)
	if n := reused(m); n != 0 {
		t.Fatalf("%d entries reused although the variable set they include changed", n)
	}
	for _, v := range got.Jobs[7].Definition.AllVariables() {
		if v.Name == "REGION" && v.Value != "us-east-1" {
			t.Fatalf("entry kept the old set's value %q", v.Value)
		}
	}
}

// FuzzIncrementalParse: a version parsed taking entries from the store of
// an accepted one (old) is exactly the version parsed on its own: the same
// allowlist and store, or the same refusal word for word. The seeds are
// also FuzzIncrementalEdits' seeds written out (memo_fuzz_test.go), so
// that this target starts from every change of the top level an entry can
// and cannot see.
func FuzzIncrementalParse(f *testing.F) {
	base := generatedAllowlist(4)
	f.Add(base, []byte(strings.Replace(string(base), "version: 1\n", "version: 2\n", 1)))
	f.Add(base, []byte(strings.Replace(string(base), "./verify.sh", "./verify.sh --all", 1)))
	f.Add(base, []byte(strings.Replace(string(base), "signers:\n  team:", "signers:\n  crew:", 1)))
	f.Add(base, append(bytes.Clone(base), item(base, 2)...))
	f.Add([]byte(setsDoc()), []byte(strings.Replace(setsDoc(), "aws-prod", "aws-dev", 1)))
	for _, s := range incrementalSeeds {
		old, next := fzVersions(s.base, s.ops)
		f.Add(old, next)
	}
	c := newIncrementalChecker(f)
	f.Fuzz(func(t *testing.T, old, next []byte) {
		c.check(t, old, next)
	})
}

// TestCodecID: a build ID names the decoder; a release build, which has
// none, is named by its clean stamped commit; anything else is unknown,
// so nothing is reused.
func TestCodecID(t *testing.T) {
	commit, modified := version.Commit, version.Modified
	t.Cleanup(func() { version.Commit, version.Modified = commit, modified })
	version.Commit, version.Modified = "", ""
	if got := codecID("abc/def"); got != "go-build-id:abc/def" {
		t.Fatalf("codecID with a build ID = %q", got)
	}
	if got := codecID(""); got != "" {
		t.Fatalf("codecID of an unknown build = %q", got)
	}
	version.Commit, version.Modified = "0123abcd", "true"
	if got := codecID(""); got != "" {
		t.Fatalf("codecID of a build from a modified tree = %q", got)
	}
	version.Modified = "false"
	if got := codecID(""); !strings.HasPrefix(got, "release:0123abcd go") {
		t.Fatalf("codecID of a release build = %q", got)
	}
	if decoderID() == "" {
		t.Fatal("the test binary has no decoder ID: reuse would never happen")
	}
}

// TestWholeFileClean: the check in parts finds a refused character
// wherever it is, the cuts between parts included, and passes a clean file.
func TestWholeFileClean(t *testing.T) {
	clean := generatedAllowlist(40)
	if !wholeFileClean(clean) {
		t.Fatal("a clean file was refused")
	}
	for _, bad := range []string{"\t", "\r", "\u200b", "\xff"} {
		for off := 0; off < len(clean); off += 97 {
			b := append(append(bytes.Clone(clean[:off]), bad...), clean[off:]...)
			if wholeFileClean(b) {
				t.Fatalf("%q at byte %d passed", bad, off)
			}
		}
	}
}
