package allowlist

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/gob"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Fuzzing incremental acceptance (memo.go).
//
// The claim under test: a version parsed taking unchanged entries from the
// store of the version in force is exactly the version parsed on its own —
// the same Allowlist, the same store, or the same refusal word for word.
//
// FuzzIncrementalParse mutates two whole documents. Most of its mutations
// break the YAML or the version in force, so it rarely reaches the reuse
// paths; FuzzIncrementalEdits therefore mutates a short program of edits
// instead (fzDoc.apply): a version in force built from one of a few
// base documents, and a new version made by the changes an operator
// makes — a key rotated, a set added, removed or renamed, an SSH key's
// namespaces option changed, a set made Sigstore-only, a variable added to
// or removed from a variable set, entries edited, moved, copied — plus raw
// lines for whatever the model cannot write. Every document is small, and
// the store of the version in force is written once per process
// (incrementalChecker), so that an exec costs about four parses of a few
// kilobytes (about 2.5 ms of CPU) and never waits on the disk.
//
// The seeds (incrementalSeeds) cover every change of the top level an
// entry can and cannot see (scope.go), on entries that name the changed
// set and entries that do not; TestIncrementalEditsSeeds checks that each
// does what its name says. Both targets run the seeds in `go test`;
// `make fuzz` fuzzes them.

// incrementalChecker compares the incremental parse of a new version with
// its parse on its own. It keeps the stores of the versions in force it
// wrote, by content, in a directory of the fuzz run's.
type incrementalChecker struct {
	load  FileLoader
	dir   string
	prevs map[[sha256.Size]byte]*verifiedStore // nil: the version was refused
}

// maxCheckerStores bounds the stores a checker keeps.
const maxCheckerStores = 256

func newIncrementalChecker(f testing.TB) *incrementalChecker {
	f.Helper()
	files := map[string][]byte{}
	for name, path := range map[string]string{
		"keys/alice.asc": filepath.Join(exampleDir, "keys", "alice.asc"),
		"keys/frank.asc": filepath.Join("testdata", "incremental", "frank.asc"),
		"keys/grace.pub": filepath.Join("testdata", "incremental", "grace.pub"),
		"keys/heidi.pub": filepath.Join("testdata", "incremental", "heidi.pub"),
	} {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		files[name] = b
	}
	return &incrementalChecker{load: mapLoader(files), dir: f.TempDir(), prevs: map[[sha256.Size]byte]*verifiedStore{}}
}

// inForce returns the store acceptance writes for old, or nil if old is
// refused.
func (c *incrementalChecker) inForce(t *testing.T, old []byte) *verifiedStore {
	key := sha256.Sum256(old)
	if s, ok := c.prevs[key]; ok {
		return s
	}
	if len(c.prevs) >= maxCheckerStores {
		for k, s := range c.prevs {
			if s != nil {
				os.Remove(s.path)
			}
			delete(c.prevs, k)
		}
	}
	var s *verifiedStore
	if al, m, err := parseFull(FileName, bytes.Clone(old), rereadOf(old), c.load, nil); err == nil {
		parts, sum, err := encodeVerified(&cached{Parsed: al, memo: m})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(c.dir, fmt.Sprintf("%x.store", key[:12]))
		if err := os.WriteFile(p, bytes.Join(parts, nil), 0o600); err != nil {
			t.Fatal(err)
		}
		if s, err = openVerified(p, sum); err != nil {
			t.Fatal(err)
		}
	}
	c.prevs[key] = s
	return s
}

func rereadOf(b []byte) func() ([]byte, error) {
	return func() ([]byte, error) { return bytes.Clone(b), nil }
}

// check asserts the claim for next, accepted while old is in force. It
// returns the number of entries the incremental parse took from old's
// store (-1 when old is refused).
func (c *incrementalChecker) check(t *testing.T, old, next []byte) int {
	t.Helper()
	if len(old) > 1<<20 || len(next) > 1<<20 {
		return -1
	}
	prev := c.inForce(t, old)
	if prev == nil {
		return -1
	}
	// As acceptance does: the entries taken from prev are decoded only
	// for the sections of the new store that cannot be copied.
	inc, im, ierr := parseAccept(FileName, bytes.Clone(next), rereadOf(next), c.load, prev)
	n := reused(im)
	full, fm, ferr := parseAccept(FileName, bytes.Clone(next), rereadOf(next), c.load, nil)
	if errText(ierr) != errText(ferr) {
		t.Fatalf("incremental (%d entries reused): %v\nfull: %v", n, ierr, ferr)
	}
	if ierr != nil {
		return n
	}
	ih, ib, _ := storeParts(t, inc, im)
	fh, fb, raw := storeParts(t, full, fm)
	if im != nil {
		if err := im.materialize(inc, nil); err != nil {
			t.Fatal(err)
		}
	}
	if !reflect.DeepEqual(inc, full) {
		t.Fatalf("the incremental parse differs from the full parse (%d entries reused)", n)
	}
	if !reflect.DeepEqual(ih, fh) {
		t.Fatalf("the incremental store's header differs from the full parse's (%d entries reused)", n)
	}
	if !bytes.Equal(ib, fb) {
		t.Fatalf("the incremental store's sections differ from the full parse's (%d entries reused)", n)
	}
	c.readBack(t, raw, full)
	return n
}

// readBack checks that the entries the next acceptance reads back from
// the store written (raw, its bytes and header sum), at the positions the
// memo gives them, are the version's.
func (c *incrementalChecker) readBack(t *testing.T, raw storeBytes, al *Allowlist) {
	t.Helper()
	p := filepath.Join(c.dir, "new.store")
	if err := os.WriteFile(p, append(raw.head, raw.body...), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := openVerified(p, raw.sum)
	if err != nil {
		t.Fatal(err)
	}
	back, err := s.all()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Jobs, al.Jobs) {
		t.Fatal("the entries read back from the store differ from the version's")
	}
}

// storeBytes is a store as writeVerified returns it.
type storeBytes struct {
	head, body []byte
	sum        string
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return "error: " + err.Error()
}

// storeParts writes the verified store of al and m in memory and returns its
// header, decoded (the header is a gob of maps, whose order varies), the
// bytes after it (the sections and the memo, which must be equal byte for
// byte), and the store as written.
func storeParts(t *testing.T, al *Allowlist, m *acceptMemo) (verifiedHeader, []byte, storeBytes) {
	t.Helper()
	var body bytes.Buffer
	head, sum, err := writeVerified(&cached{Parsed: al, memo: m}, &body)
	if err != nil {
		t.Fatal(err)
	}
	pre := len(verifiedMagic) + 8
	hn := int(binary.BigEndian.Uint32(head[len(verifiedMagic):]))
	sn := int(binary.BigEndian.Uint32(head[len(verifiedMagic)+4:]))
	if len(head) != pre+hn+sn*sectionSize {
		t.Fatalf("a store header of %d bytes for %d+%d", len(head), hn, sn)
	}
	var h verifiedHeader
	if err := gob.NewDecoder(bytes.NewReader(head[pre : pre+hn])).Decode(&h); err != nil {
		t.Fatal(err)
	}
	h.sections = make([]section, sn)
	for i, tb := 0, head[pre+hn:]; i < sn; i, tb = i+1, tb[sectionSize:] {
		h.sections[i] = section{Off: int64(binary.BigEndian.Uint64(tb)), Len: int64(binary.BigEndian.Uint64(tb[8:]))}
		copy(h.sections[i].Sum[:], tb[16:sectionSize])
	}
	return h, body.Bytes(), storeBytes{head: head, body: body.Bytes(), sum: sum}
}

// FuzzIncrementalEdits: a new version made by edits from a version in
// force (a base document, or what the edits before the last checkpoint
// made of it) parses with reuse exactly as on its own, and the parse on
// its own is the whole-file parse's.
func FuzzIncrementalEdits(f *testing.F) {
	for _, s := range incrementalSeeds {
		f.Add(s.base, s.ops)
	}
	c := newIncrementalChecker(f)
	f.Fuzz(func(t *testing.T, base uint8, ops []byte) {
		old, next := fzVersions(base, ops)
		if c.check(t, old, next) < 0 {
			return
		}
		// The parse on its own is the whole-file parse, refusal or
		// allowlist (the split parse's claim, on versions that reach it).
		al, _, err := parseAccept(FileName, bytes.Clone(next), rereadOf(next), c.load, nil)
		whole, _, werr := wholeParse(bytes.Clone(next), c.load)
		if errText(err) != errText(werr) {
			t.Fatalf("parse: %v\nwhole-file parse: %v", err, werr)
		}
		if err == nil && !reflect.DeepEqual(al, whole) {
			t.Fatal("the parse differs from the whole-file parse")
		}
	})
}

// Key material for the documents the edit fuzzer writes: public keys made
// by ssh-keygen, gpg (testdata/incremental/frank.asc) and openssl
// (grace.pub, heidi.pub), their private halves discarded, so that every
// set parses as an operator's would and a corpus entry means the same
// documents on every run.
var (
	fzSSH = []string{
		bobSSH,
		"carol@example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIANATSYN2yfplAwNlyk6am8QNwYgFh/0DMvnmV4wsB+a",
		"dan@example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGGxXJLEmcYpUlfkxpUHjUuyg6EJPb+8VgWQIIVedjH6",
		"erin@example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE8N88091J5OLt/lnjYUzr275uXAjhZhBtjTJ1pQ4ReQ",
	}
	// fzOpenPGP are fingerprints and key files.
	fzOpenPGP = [][2]string{
		{"40C8C819C0DCCD991D8E05859F55F7974B5C971B", "keys/alice.asc"},
		{"00685C003521822FA3CF9B363EB3CCCFFD62571C", "keys/frank.asc"},
	}
	fzSigstore = []string{"keys/grace.pub", "keys/heidi.pub"}
	// fzNamespaces are an SSH key's options: none (every namespace), git
	// only (no source approvals), git and source approvals, and variants
	// of each (refused ones included: without git, empty, in capitals).
	fzNamespaces = []string{"", `namespaces="git"`, `namespaces="git,` + SourceApprovalNamespace + `"`, `namespaces="file"`,
		`namespaces="git,file"`, `namespaces="` + SourceApprovalNamespace + `,git"`, `namespaces=""`, `namespaces="GIT"`,
		`cert-authority,namespaces="git"`, `namespaces="git",valid-before="20300101Z"`, `valid-after="20200101Z"`}

	fzSetNames    = []string{"team", "ops", "approvers", "release", "crew", "nobody"}
	fzVarSetNames = []string{"aws-prod", "registry", "common", "other", "missing"}
	fzVarNames    = []string{"REGION", "ACCOUNT", "ROLE", "HOST", "RELEASE"}
	fzValues      = []string{"eu-west-1", "us-east-1", "123456789012", "arn:aws:iam::${ACCOUNT}:role/x", "${REGION}.example.com", ""}
	fzScripts     = []string{"./deploy.sh", "./deploy.sh --all", "make deploy", "./verify.sh && ./deploy.sh"}
	fzEnvs        = []string{"production", "staging", "production, staging", "review"}
)

// Key kinds of fzKey.
const (
	fzKeyOpenPGP = iota
	fzKeySSH
	fzKeySigstore
	fzKeyKinds
)

type fzKey struct {
	kind, idx int
	ns        int // SSH: index into fzNamespaces
}

// lines returns the key's lines in a signer set's list of its kind.
func (k fzKey) lines() []string {
	switch k.kind {
	case fzKeyOpenPGP:
		o := fzOpenPGP[k.idx%len(fzOpenPGP)]
		return []string{"      - fingerprint: " + o[0], "        key: " + o[1]}
	case fzKeySSH:
		l := fzSSH[k.idx%len(fzSSH)]
		if ns := fzNamespaces[k.ns%len(fzNamespaces)]; ns != "" {
			principal, rest, _ := strings.Cut(l, " ")
			l = principal + " " + ns + " " + rest
		}
		return []string{"      - " + l}
	}
	return []string{"      - " + fzSigstore[k.idx%len(fzSigstore)]}
}

type fzSet struct {
	name string
	keys []fzKey
}

type fzVar struct {
	name, value string
	kind        int // 0: value, 1: pattern, 2: a file's value, 3: a raw value
}

func (v fzVar) render() string {
	switch v.kind % 4 {
	case 1:
		return v.name + ": {pattern: '^" + regexp.QuoteMeta(v.value) + "$'}"
	case 2:
		return v.name + ": {value: '" + v.value + "', file: true}"
	case 3:
		return v.name + ": {value: '" + v.value + "', raw: true}"
	}
	return v.name + ": {value: '" + v.value + "'}"
}

type fzVarSet struct {
	name string
	vars []fzVar
}

type fzPerson struct {
	name string
	keys []string // fingerprints, as people lists them
}

type fzEntry struct {
	id        int
	script    int
	envs      int
	signers   []string
	sigNone   bool     // signature: none
	approvals []string // approvals.signers; nil: no approvals
	threshold int
	varSets   []string
	vars      []fzVar
	extra     []string // the extra source's signers; nil: no extra source
	pad       int      // blank and comment lines above the item
	style     int      // how lists of names are written (list)
}

// fzDoc is an allowlist the edit fuzzer changes and writes.
type fzDoc struct {
	version int
	repo    string
	pad     int // comment lines above signers
	signers []fzSet
	people  []fzPerson
	varSets []fzVarSet
	// layout is where the top level's sections are: 0 all before the
	// job list, 1 variable_sets and people after it, 2 signers too.
	layout int
	jobs   []fzEntry
	nextID int
	raw    []fzRaw
}

// fzRaw is a line inserted (or, with an empty text, removed) at a line of
// the written document.
type fzRaw struct {
	line int
	text string
}

func (d *fzDoc) render() []byte {
	l := []string{"schema: writ/v2", "repository: " + d.repo, "version: " + strconv.Itoa(d.version), "expires: 2027-03-01T00:00:00Z"}
	for range d.pad {
		l = append(l, "# signer sets are reviewed by the security team")
	}
	if d.layout%3 != 2 {
		l = d.renderSigners(l)
	}
	if d.layout%3 == 0 {
		l = d.renderSets(l)
	}
	l = append(l, "jobs:")
	for _, e := range d.jobs {
		l = e.render(l)
	}
	if d.layout%3 != 0 {
		l = d.renderSets(l)
	}
	if d.layout%3 == 2 {
		l = d.renderSigners(l)
	}
	for _, r := range d.raw {
		at := r.line % (len(l) + 1)
		switch {
		case r.text != "":
			l = append(l[:at], append([]string{r.text}, l[at:]...)...)
		case at < len(l):
			l = append(l[:at], l[at+1:]...)
		}
	}
	return []byte(strings.Join(l, "\n") + "\n")
}

func (d *fzDoc) renderSigners(l []string) []string {
	if len(d.signers) == 0 {
		return append(l, "signers: {}")
	}
	l = append(l, "signers:")
	for _, s := range d.signers {
		l = s.render(l)
	}
	return l
}

func (s fzSet) render(l []string) []string {
	if len(s.keys) == 0 {
		return append(l, "  "+s.name+": {}")
	}
	l = append(l, "  "+s.name+":")
	for kind, key := range []string{"openpgp", "ssh", "sigstore"} {
		first := true
		for _, k := range s.keys {
			if k.kind != kind {
				continue
			}
			if first {
				l, first = append(l, "    "+key+":"), false
			}
			l = append(l, k.lines()...)
		}
	}
	return l
}

// renderSets writes variable_sets and people.
func (d *fzDoc) renderSets(l []string) []string {
	if len(d.varSets) > 0 {
		l = append(l, "variable_sets:")
	}
	for _, s := range d.varSets {
		if len(s.vars) == 0 {
			l = append(l, "  "+s.name+": {}")
			continue
		}
		l = append(l, "  "+s.name+":")
		for _, v := range s.vars {
			l = append(l, "    "+v.render())
		}
	}
	if len(d.people) > 0 {
		l = append(l, "people:")
	}
	for _, p := range d.people {
		l = append(l, "  "+p.name+": ['"+strings.Join(p.keys, "', '")+"']")
	}
	return l
}

func (e fzEntry) render(l []string) []string {
	for i := range e.pad {
		if i%2 == 0 {
			l = append(l, "")
		} else {
			l = append(l, "  # moved by a line")
		}
	}
	id := strconv.Itoa(e.id)
	l = append(l,
		"  - name: job-"+id,
		"    match:",
		"      project: group/app-"+id,
		"      job: deploy",
		"      environments: ["+fzEnvs[e.envs%len(fzEnvs)]+"]",
		"      refs: [refs/heads/main]",
		"    definition:",
		"      script: ['"+fzScripts[e.script%len(fzScripts)]+"']")
	if len(e.varSets) > 0 {
		l = e.list(l, "      ", "variable_sets", e.varSets)
	}
	if len(e.vars) > 0 {
		l = append(l, "      variables:")
		for _, v := range e.vars {
			l = append(l, "        "+v.render())
		}
	}
	l = append(l, "    source:", "      repository: https://gitlab.example.com/group/app-"+id+".git")
	if e.sigNone {
		l = append(l, "      signature: none")
	}
	if !e.sigNone || len(e.signers) > 0 {
		l = e.list(l, "      ", "signers", e.signers)
	}
	l = append(l, "      mode: commit")
	if e.approvals != nil {
		l = append(l, "      approvals:")
		l = e.list(l, "        ", "signers", e.approvals)
		l = append(l, "        threshold: "+strconv.Itoa(e.threshold))
	}
	if e.extra != nil {
		l = append(l, "      extra:",
			"        - path: settings",
			"          ref: refs/heads/main",
			"          repository: https://gitlab.example.com/acme/settings.git")
		l = e.list(l, "          ", "signers", e.extra)
		l = append(l, "          mode: commit")
	}
	return l
}

// list writes a list of names in the entry's style: flow, block, or flow
// with every name quoted.
func (e fzEntry) list(l []string, indent, key string, names []string) []string {
	switch {
	case e.style%3 == 1 && len(names) > 0:
		l = append(l, indent+key+":")
		for _, n := range names {
			l = append(l, indent+"  - "+n)
		}
		return l
	case e.style%3 == 2:
		q := make([]string, len(names))
		for i, n := range names {
			q[i] = strconv.Quote(n)
		}
		return append(l, indent+key+": ["+strings.Join(q, ", ")+"]")
	}
	return append(l, indent+key+": ["+strings.Join(names, ", ")+"]")
}

// The edits, one opcode byte (modulo fzOps) and its operands each.
const (
	opCheckpoint     = iota // what the edits made so far is the version in force
	opRotateKey             // set, slot: the key is replaced by the next of its kind
	opAddKey                // set, kind, key
	opRemoveKey             // set, slot
	opNamespaces            // set, slot, option: an SSH key's namespaces option
	opSigstoreOnly          // set: its OpenPGP and SSH keys removed, a Sigstore key kept or added
	opAddSet                // name, key
	opRemoveSet             // set
	opRenameSet             // set, name, follow: with follow odd, every reference is renamed too
	opSwapSets              // set, set
	opVarAdd                // variable set, name, value
	opVarRemove             // variable set, slot
	opVarValue              // variable set, slot, value
	opVarSetAdd             // name, variable name, value
	opVarSetRemove          // variable set
	opVarSetRename          // variable set, name, follow
	opEntrySigners          // entry, action, name
	opEntryApprovals        // entry, action, name
	opEntryVarSets          // entry, action, name
	opEntryVars             // entry, action, name, value
	opEntryExtra            // entry, action, name
	opEntryEdit             // entry, what, value: script, environments, signature none, threshold
	opEntrySwap             // entry, entry: lines move
	opEntryAdd              // entry: a new entry with its references
	opEntryRemove           // entry
	opEntryDuplicate        // entry: a byte-for-byte copy at the end
	opPad                   // entry (or, past the last, the top level), count: lines above it
	opLayout                // layout: sections move past the job list, or back
	opTop                   // what: version, repository
	opPeople                // action, person, key
	opRaw                   // line, length, bytes: a line inserted (length 0: the line removed)
	opVarKind               // variable set, slot, kind: value, pattern, file or raw
	opEntryStyle            // entry, style: how its lists of names are written
	fzOps
)

// fzReader hands out the operand bytes, 0 past the end.
type fzReader struct{ b []byte }

func (r *fzReader) next() int {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return int(c)
}

// fzMaxOps bounds the edits of one input.
const fzMaxOps = 64

// fzVersions returns the version in force and the new version that the
// base document and the edits in ops make.
func fzVersions(base uint8, ops []byte) (old, next []byte) {
	d := fzBase(int(base))
	old = d.render()
	r := &fzReader{b: ops}
	for n := 0; len(r.b) > 0 && n < fzMaxOps; n++ {
		if op := r.next() % fzOps; op == opCheckpoint {
			old = d.render()
		} else {
			d.apply(op, r)
		}
	}
	return old, d.render()
}

// apply makes one edit, its operands read from r.
func (d *fzDoc) apply(op int, r *fzReader) {
	switch op {
	case opRotateKey, opRemoveKey, opNamespaces:
		s, slot := d.set(r.next()), r.next()
		if s == nil || len(s.keys) == 0 {
			return
		}
		k := &s.keys[slot%len(s.keys)]
		switch op {
		case opRotateKey:
			k.idx++
		case opRemoveKey:
			s.keys = append(s.keys[:slot%len(s.keys)], s.keys[slot%len(s.keys)+1:]...)
		case opNamespaces:
			k.ns = r.next()
		}
	case opAddKey:
		if s := d.set(r.next()); s != nil {
			s.keys = append(s.keys, fzKey{kind: r.next() % fzKeyKinds, idx: r.next()})
		}
	case opSigstoreOnly:
		if s := d.set(r.next()); s != nil {
			var keep []fzKey
			for _, k := range s.keys {
				if k.kind == fzKeySigstore {
					keep = append(keep, k)
				}
			}
			if len(keep) == 0 {
				keep = []fzKey{{kind: fzKeySigstore}}
			}
			s.keys = keep
		}
	case opAddSet:
		d.signers = append(d.signers, fzSet{name: pick(fzSetNames, r.next()), keys: []fzKey{{kind: fzKeySSH, idx: r.next()}}})
	case opRemoveSet:
		if i := r.next(); len(d.signers) > 0 {
			i %= len(d.signers)
			d.signers = append(d.signers[:i], d.signers[i+1:]...)
		}
	case opRenameSet:
		s, name, follow := d.set(r.next()), pick(fzSetNames, r.next()), r.next()%2 == 1
		if s == nil {
			return
		}
		if follow {
			for i := range d.jobs {
				e := &d.jobs[i]
				rename(e.signers, s.name, name)
				rename(e.approvals, s.name, name)
				rename(e.extra, s.name, name)
			}
		}
		s.name = name
	case opSwapSets:
		if i, j := r.next(), r.next(); len(d.signers) > 0 {
			i, j = i%len(d.signers), j%len(d.signers)
			d.signers[i], d.signers[j] = d.signers[j], d.signers[i]
		}
	case opVarAdd, opVarRemove, opVarValue:
		d.varEdit(op, r)
	case opVarSetAdd:
		d.varSets = append(d.varSets, fzVarSet{name: pick(fzVarSetNames, r.next()), vars: []fzVar{{name: pick(fzVarNames, r.next()), value: pick(fzValues, r.next())}}})
	case opVarSetRemove:
		if i := r.next(); len(d.varSets) > 0 {
			i %= len(d.varSets)
			d.varSets = append(d.varSets[:i], d.varSets[i+1:]...)
		}
	case opVarSetRename:
		i, name, follow := r.next(), pick(fzVarSetNames, r.next()), r.next()%2 == 1
		if len(d.varSets) == 0 {
			return
		}
		s := &d.varSets[i%len(d.varSets)]
		if follow {
			for j := range d.jobs {
				rename(d.jobs[j].varSets, s.name, name)
			}
		}
		s.name = name
	case opEntrySigners, opEntryApprovals, opEntryVarSets, opEntryExtra:
		d.listEdit(op, r)
	default:
		d.entryEdit(op, r)
	}
}

// varEdit adds, removes or changes a variable of a variable set.
func (d *fzDoc) varEdit(op int, r *fzReader) {
	i, slot := r.next(), r.next()
	if len(d.varSets) == 0 {
		return
	}
	s := &d.varSets[i%len(d.varSets)]
	switch {
	case op == opVarAdd:
		s.vars = append(s.vars, fzVar{name: pick(fzVarNames, slot), value: pick(fzValues, r.next())})
	case len(s.vars) == 0:
	case op == opVarRemove:
		s.vars = append(s.vars[:slot%len(s.vars)], s.vars[slot%len(s.vars)+1:]...)
	default:
		s.vars[slot%len(s.vars)].value = pick(fzValues, r.next())
	}
}

// listEdit changes one of an entry's lists of names: action 0 adds a
// name, 1 removes one, 2 makes the list that one name, 3 removes the
// list (approvals and the extra source).
func (d *fzDoc) listEdit(op int, r *fzReader) {
	e, action, n := d.entry(r.next()), r.next()%4, r.next()
	if e == nil {
		return
	}
	list, names := &e.signers, fzSetNames
	switch op {
	case opEntryApprovals:
		list = &e.approvals
		if e.threshold == 0 {
			e.threshold = 1
		}
	case opEntryVarSets:
		list, names = &e.varSets, fzVarSetNames
	case opEntryExtra:
		list = &e.extra
	}
	name := pick(names, n)
	switch action {
	case 0:
		*list = append(*list, name)
	case 1:
		if len(*list) > 0 {
			k := n % len(*list)
			*list = append((*list)[:k:k], (*list)[k+1:]...)
		}
	case 2:
		*list = []string{name}
	default:
		*list = nil
	}
}

// entryEdit makes the edits of one entry, of the job list and of the
// top level.
func (d *fzDoc) entryEdit(op int, r *fzReader) {
	switch op {
	case opEntryVars:
		e, action, name, value := d.entry(r.next()), r.next()%2, pick(fzVarNames, r.next()), pick(fzValues, r.next())
		switch {
		case e == nil:
		case action == 0:
			e.vars = append(e.vars, fzVar{name: name, value: value})
		case len(e.vars) > 0:
			e.vars = e.vars[:len(e.vars)-1]
		}
	case opEntryEdit:
		e, what, v := d.entry(r.next()), r.next()%4, r.next()
		switch {
		case e == nil:
		case what == 0:
			e.script = v
		case what == 1:
			e.envs = v
		case what == 2:
			e.sigNone = !e.sigNone
		default:
			e.threshold = v % 4
		}
	case opEntrySwap:
		if i, j := r.next(), r.next(); len(d.jobs) > 0 {
			i, j = i%len(d.jobs), j%len(d.jobs)
			d.jobs[i], d.jobs[j] = d.jobs[j], d.jobs[i]
		}
	case opEntryAdd:
		if e := d.entry(r.next()); e != nil {
			n := e.clone()
			n.id, d.nextID = d.nextID, d.nextID+1
			d.jobs = append(d.jobs, n)
		}
	case opEntryRemove:
		if i := r.next(); len(d.jobs) > 0 {
			i %= len(d.jobs)
			d.jobs = append(d.jobs[:i], d.jobs[i+1:]...)
		}
	case opEntryDuplicate:
		if e := d.entry(r.next()); e != nil {
			d.jobs = append(d.jobs, e.clone())
		}
	case opPad:
		i, n := r.next(), r.next()%5
		if len(d.jobs) > 0 && i%(len(d.jobs)+1) < len(d.jobs) {
			d.jobs[i%(len(d.jobs)+1)].pad = n
		} else {
			d.pad = n
		}
	case opLayout:
		d.layout = r.next()
	case opTop:
		if r.next()%2 == 0 {
			d.version++
		} else {
			d.repo = pick([]string{"acme/deploy-allowlist", "acme/other-allowlist", "acme/x y"}, r.next())
		}
	case opPeople:
		d.peopleEdit(r)
	case opVarKind:
		i, slot, kind := r.next(), r.next(), r.next()
		if len(d.varSets) > 0 && len(d.varSets[i%len(d.varSets)].vars) > 0 {
			s := &d.varSets[i%len(d.varSets)]
			s.vars[slot%len(s.vars)].kind = kind
		}
	case opEntryStyle:
		if e := d.entry(r.next()); e != nil {
			e.style = r.next()
		}
	case opRaw:
		line, n := r.next()|r.next()<<8, r.next()%24
		var text []byte
		for range n {
			text = append(text, byte(r.next()))
		}
		d.raw = append(d.raw, fzRaw{line: line, text: string(text)})
	}
}

// peopleEdit lists a key of a set under a person (action 0), or removes a
// person (1).
func (d *fzDoc) peopleEdit(r *fzReader) {
	action, who, key := r.next()%2, pick([]string{"erin", "carol", "dan"}, r.next()), fzKey{kind: r.next() % fzKeyKinds, idx: r.next()}
	for i := range d.people {
		if d.people[i].name != who {
			continue
		}
		if action == 1 {
			d.people = append(d.people[:i], d.people[i+1:]...)
		} else {
			d.people[i].keys = append(d.people[i].keys, fzFingerprint(key))
		}
		return
	}
	if action == 0 {
		d.people = append(d.people, fzPerson{name: who, keys: []string{fzFingerprint(key)}})
	}
}

// fzFingerprint is the fingerprint people name k by.
func fzFingerprint(k fzKey) string {
	switch k.kind {
	case fzKeyOpenPGP:
		return fzOpenPGP[k.idx%len(fzOpenPGP)][0]
	case fzKeySSH:
		fp, _ := checkSSHLine(fzSSH[k.idx%len(fzSSH)])
		return fp
	}
	return fzSigstoreFingerprints()[k.idx%len(fzSigstore)]
}

// fzSigstoreFingerprints are those of fzSigstore's files, "" when one
// does not read (the base documents that list it are then refused, which
// TestIncrementalEditsBases reports).
var fzSigstoreFingerprints = sync.OnceValue(func() []string {
	out := make([]string, len(fzSigstore))
	for i, name := range fzSigstore {
		b, err := os.ReadFile(filepath.Join("testdata", "incremental", strings.TrimPrefix(name, "keys/")))
		if err == nil {
			out[i], _ = sigstorePublicKeyFingerprint(b)
		}
	}
	return out
})

func (d *fzDoc) set(i int) *fzSet {
	if len(d.signers) == 0 {
		return nil
	}
	return &d.signers[i%len(d.signers)]
}

func (d *fzDoc) entry(i int) *fzEntry {
	if len(d.jobs) == 0 {
		return nil
	}
	return &d.jobs[i%len(d.jobs)]
}

func (e fzEntry) clone() fzEntry {
	e.signers = cloneList(e.signers)
	e.approvals = cloneList(e.approvals)
	e.varSets = cloneList(e.varSets)
	e.extra = cloneList(e.extra)
	e.vars = append([]fzVar(nil), e.vars...)
	return e
}

// cloneList copies l, keeping nil and empty apart.
func cloneList(l []string) []string {
	if l == nil {
		return nil
	}
	return append([]string{}, l...)
}

func rename(l []string, from, to string) {
	for i, s := range l {
		if s == from {
			l[i] = to
		}
	}
}

func pick(l []string, i int) string { return l[i%len(l)] }

// fzBases are the documents the versions in force start from.
const fzBases = 5

// fzBase returns base document i (modulo fzBases): every one is accepted
// on its own (TestIncrementalEditsBases).
func fzBase(i int) *fzDoc {
	ssh := func(idx, ns int) fzKey { return fzKey{kind: fzKeySSH, idx: idx, ns: ns} }
	pgp := func(idx int) fzKey { return fzKey{kind: fzKeyOpenPGP, idx: idx} }
	sig := func(idx int) fzKey { return fzKey{kind: fzKeySigstore, idx: idx} }
	d := &fzDoc{version: 1, repo: "acme/deploy-allowlist"}
	add := func(e fzEntry) {
		e.id, d.nextID = d.nextID, d.nextID+1
		d.jobs = append(d.jobs, e)
	}
	switch i % fzBases {
	case 0: // signer sets, each named by some entries and not others
		d.signers = []fzSet{{"team", []fzKey{ssh(0, 0)}}, {"ops", []fzKey{pgp(0), ssh(1, 1)}}, {"release", []fzKey{pgp(1)}}}
		for k, sets := range [][]string{{"team"}, {"ops"}, {"team"}, {"team", "ops"}, {"release"}, {"ops"}} {
			add(fzEntry{script: k, envs: k, signers: sets})
		}
	case 1: // approvals: SSH namespaces, Sigstore-only sets, people
		d.signers = []fzSet{{"team", []fzKey{ssh(0, 0)}}, {"approvers", []fzKey{ssh(1, 2), sig(0)}}, {"crew", []fzKey{sig(1)}}}
		d.people = []fzPerson{{"erin", []string{fzFingerprint(sig(0))}}, {"carol", []string{fzFingerprint(ssh(1, 0))}}}
		add(fzEntry{signers: []string{"team"}, approvals: []string{"approvers"}, threshold: 1})
		add(fzEntry{envs: 1, signers: []string{"team"}})
		add(fzEntry{envs: 2, sigNone: true, approvals: []string{"approvers", "crew"}, threshold: 2})
		add(fzEntry{script: 2, signers: []string{"team"}, approvals: []string{"crew"}, threshold: 1})
		add(fzEntry{script: 3, signers: []string{"team"}})
	case 2: // variable sets, included by some entries and not others
		d.signers = []fzSet{{"team", []fzKey{ssh(0, 0)}}}
		d.varSets = []fzVarSet{
			{"aws-prod", []fzVar{{name: "ACCOUNT", value: "123456789012"}, {name: "ROLE", value: "arn:aws:iam::${ACCOUNT}:role/x"}}},
			{"registry", []fzVar{{name: "HOST", value: "registry.example.com"}}},
			{"common", []fzVar{{name: "REGION", value: "eu-west-1"}}},
		}
		team := []string{"team"}
		add(fzEntry{signers: team, varSets: []string{"aws-prod", "registry"}})
		add(fzEntry{envs: 1, signers: team, varSets: []string{"common"}})
		add(fzEntry{envs: 2, signers: team})
		add(fzEntry{script: 1, signers: team, varSets: []string{"common"}, vars: []fzVar{{name: "RELEASE", value: "v1"}}})
		add(fzEntry{script: 2, signers: team, varSets: []string{"aws-prod"}})
		add(fzEntry{script: 3, signers: team, vars: []fzVar{{name: "REGION", value: "us-east-1"}}})
	case 3: // extra sources naming sets their entry's source does not
		d.signers = []fzSet{{"team", []fzKey{ssh(0, 0)}}, {"crew", []fzKey{ssh(2, 1)}}, {"ops", []fzKey{pgp(0)}}}
		add(fzEntry{signers: []string{"team"}, extra: []string{"crew"}})
		add(fzEntry{envs: 1, signers: []string{"team"}})
		add(fzEntry{envs: 2, signers: []string{"ops"}, extra: []string{"team"}})
		add(fzEntry{script: 1, signers: []string{"crew"}})
		add(fzEntry{script: 2, signers: []string{"ops"}, extra: []string{"ops", "crew"}})
	case 4: // more entries than one section holds, sets after the list
		d.layout = 1
		d.signers = []fzSet{{"team", []fzKey{ssh(0, 0)}}, {"ops", []fzKey{pgp(0)}}, {"approvers", []fzKey{ssh(1, 2), sig(0)}}}
		d.varSets = []fzVarSet{{"common", []fzVar{{name: "REGION", value: "eu-west-1"}}}, {"registry", []fzVar{{name: "HOST", value: "registry.example.com"}}}}
		for k := range 40 {
			e := fzEntry{script: k, envs: k / 4, signers: []string{[]string{"team", "ops"}[k%2]}}
			if k%3 == 0 {
				e.varSets = []string{"common"}
			}
			if k%5 == 0 {
				e.varSets = append(e.varSets, "registry")
			}
			if k%7 == 0 {
				e.approvals, e.threshold = []string{"approvers"}, 1
			}
			add(e)
		}
	}
	return d
}

// TestIncrementalEditsBases: every base document is accepted on its own,
// with no warning, through the split parse (so that its entries can be
// reused), and a new version that changes only the version line takes
// every entry from its store: the edit fuzzer starts where reuse happens.
func TestIncrementalEditsBases(t *testing.T) {
	c := newIncrementalChecker(t)
	for i := range fzBases {
		d := fzBase(i)
		doc := d.render()
		al, warns, err := Lint(FileName, doc, c.load)
		if err != nil || len(warns) > 0 {
			t.Fatalf("base %d: %v %v\n%s", i, err, warns, doc)
		}
		if _, ok := parseSplit(FileName, doc, c.load); !ok {
			t.Fatalf("base %d is not read by the split parse", i)
		}
		d.version++
		if n := c.check(t, doc, d.render()); n != len(al.Jobs) {
			t.Fatalf("base %d: %d of %d entries reused after a version bump", i, n, len(al.Jobs))
		}
	}
}

// TestIncrementalEditsSeeds: the seeds do what their names say: each
// reaches the comparison (its version in force is accepted), and the
// seeds that change what entries read of the top level both reuse some
// entries and decode others again, or are refused.
func TestIncrementalEditsSeeds(t *testing.T) {
	c := newIncrementalChecker(t)
	for _, s := range incrementalSeeds {
		t.Run(s.name, func(t *testing.T) {
			old, next := fzVersions(s.base, s.ops)
			n := c.check(t, old, next)
			if n < 0 {
				t.Fatalf("the version in force is refused:\n%s", old)
			}
			_, err := Parse(FileName, next, c.load)
			switch {
			case s.want == seedRefused && err == nil:
				t.Fatalf("the new version is accepted:\n%s", next)
			case s.want != seedRefused && err != nil:
				t.Fatalf("the new version is refused: %v\n%s", err, next)
			case s.want == seedSome && (n == 0 || n == bytes.Count(next, []byte("\n  - name: "))):
				t.Fatalf("%d entries reused, want some but not all\n%s", n, next)
			case s.want == seedAll && n != bytes.Count(next, []byte("\n  - name: ")):
				t.Fatalf("%d entries reused, want all\n%s", n, next)
			}
		})
	}
}

// What a seed's new version is expected to give.
const (
	seedAny     = iota // accepted, whatever is reused
	seedAll            // accepted, every entry reused
	seedSome           // accepted, some entries reused and some decoded again
	seedRefused        // refused
)

type incrementalSeed struct {
	name string
	base uint8
	ops  []byte
	want int
}

// ops writes an edit program (see fzDoc.apply).
func ops(b ...int) []byte {
	out := make([]byte, len(b))
	for i, v := range b {
		out[i] = byte(v)
	}
	return out
}

// incrementalSeeds cover the changes of the top level an entry can and
// cannot see (scope.go), on entries that name the changed set and entries
// that do not. Base 0: sets team, ops (OpenPGP and an SSH key restricted
// to git), release (OpenPGP). Base 1: team; approvers (an SSH key allowed
// source approvals, a Sigstore key); crew (Sigstore only); people. Base 2:
// variable sets aws-prod, registry, common. Base 3: extra sources naming
// crew, team, ops. Base 4: 40 entries in two sections, sets after the list.
var incrementalSeeds = []incrementalSeed{
	{"version only", 0, ops(opTop, 0), seedAll},
	{"repository renamed", 0, ops(opTop, 1, 1), seedAll},
	{"ssh key rotated in a set some entries name", 0, ops(opRotateKey, 0, 0), seedAll},
	{"openpgp key rotated", 0, ops(opRotateKey, 2, 0), seedAll},
	{"ssh key added to a set", 0, ops(opAddKey, 1, fzKeySSH, 3), seedAll},
	{"sigstore key added to a commit-signing set", 0, ops(opAddKey, 0, fzKeySigstore, 0), seedSome},
	{"key removed, the set keeps one", 0, ops(opRemoveKey, 1, 0), seedAll},
	{"last key removed", 0, ops(opRemoveKey, 2, 0), seedRefused},
	{"set added, named by no entry", 0, ops(opAddSet, 4, 2), seedAny},
	{"set added and named by a new entry", 0, ops(opAddSet, 4, 2, opEntryAdd, 0, opEntrySigners, 6, 2, 4), seedSome},
	{"set removed that entries name", 0, ops(opRemoveSet, 2), seedRefused},
	{"set renamed with its references", 0, ops(opRenameSet, 0, 4, 1), seedSome},
	{"set renamed, references left", 0, ops(opRenameSet, 0, 4, 0), seedRefused},
	{"sets reordered", 0, ops(opSwapSets, 0, 2), seedAll},
	{"commit key restricted to git", 0, ops(opNamespaces, 0, 0, 1), seedSome},
	{"commit key restricted to another namespace", 0, ops(opNamespaces, 0, 0, 3), seedRefused},
	{"set made Sigstore-only, named as commit signers", 0, ops(opSigstoreOnly, 0), seedRefused},
	{"approval key restricted to git", 1, ops(opNamespaces, 1, 0, 1), seedRefused},
	{"approval key's namespaces reordered", 1, ops(opNamespaces, 1, 0, 5), seedAll},
	{"approval key's namespaces emptied", 1, ops(opNamespaces, 1, 0, 6), seedRefused},
	{"approval key made valid from a date", 1, ops(opNamespaces, 1, 0, 10), seedAll},
	{"approval key restricted to git, with a validity", 1, ops(opNamespaces, 1, 0, 9), seedRefused},
	{"commit key made a certificate authority", 0, ops(opNamespaces, 0, 0, 8), seedRefused},
	{"commit key's namespace in capitals", 0, ops(opNamespaces, 0, 0, 7), seedRefused},
	{"approval key's namespaces option removed", 1, ops(opNamespaces, 1, 0, 0), seedAll},
	{"approval set made Sigstore-only, its SSH key still a person's", 1, ops(opSigstoreOnly, 1), seedRefused},
	{"approval set made Sigstore-only", 1, ops(opPeople, 1, 1, 0, 0, opSigstoreOnly, 1), seedSome},
	{"Sigstore-only set gains an SSH key", 1, ops(opAddKey, 2, fzKeySSH, 2), seedSome},
	{"Sigstore-only set named as commit signers", 1, ops(opEntrySigners, 1, 0, 4), seedRefused},
	{"person lists a key", 1, ops(opPeople, 0, 2, fzKeySSH, 0), seedAll},
	{"person removed", 1, ops(opPeople, 1, 0), seedAll},
	{"person lists a key of no set", 1, ops(opPeople, 0, 2, fzKeySSH, 3), seedRefused},
	{"variable added to an included set", 2, ops(opVarAdd, 2, 3, 0), seedSome},
	{"variable added that an including entry defines", 2, ops(opVarAdd, 2, 4, 0), seedRefused},
	{"variable removed", 2, ops(opVarRemove, 0, 1), seedSome},
	{"variable removed that another refers to", 2, ops(opVarRemove, 0, 0), seedRefused},
	{"variable's value changed", 2, ops(opVarValue, 2, 0, 1), seedSome},
	{"variable made a pattern", 2, ops(opVarKind, 2, 0, 1), seedSome},
	{"variable made a file variable", 2, ops(opVarKind, 1, 0, 2), seedSome},
	{"variable made raw", 2, ops(opVarKind, 0, 1, 3), seedSome},
	{"variable set added, named by no entry", 2, ops(opVarSetAdd, 3, 0, 0), seedAny},
	{"variable set removed that entries include", 2, ops(opVarSetRemove, 1), seedRefused},
	{"variable set renamed with its references", 2, ops(opVarSetRename, 2, 3, 1), seedSome},
	{"variable sets moved past the job list", 2, ops(opLayout, 1), seedAll},
	{"signer sets moved past the job list", 0, ops(opLayout, 2), seedAll},
	{"signer sets moved past the job list, a key rotated", 4, ops(opLayout, 2, opRotateKey, 0, 0), seedAll},
	{"entry included a set", 2, ops(opEntryVarSets, 2, 0, 2), seedSome},
	{"entry edited", 0, ops(opEntryEdit, 2, 0, 1), seedSome},
	{"entries swapped", 0, ops(opEntrySwap, 0, 3), seedAll},
	{"entry's lists written as blocks", 1, ops(opEntryStyle, 0, 1), seedSome},
	{"entry's names quoted", 0, ops(opEntryStyle, 3, 2), seedSome},
	{"lines inserted above an entry (the comment joins the item before)", 0, ops(opPad, 1, 3), seedSome},
	{"blank line inserted above an entry (it joins the item before)", 0, ops(opPad, 1, 1), seedSome},
	{"comment above the signer sets", 0, ops(opPad, 6, 2), seedAll},
	{"entry copied byte for byte", 0, ops(opEntryDuplicate, 2), seedRefused},
	{"entry removed", 0, ops(opEntryRemove, 5), seedAll},
	{"entry removed, its set now unused", 0, ops(opEntryRemove, 4), seedAny},
	{"entry added", 0, ops(opEntryAdd, 1), seedSome},
	{"raw comment line", 0, ops(opRaw, 5, 0, 6, '#', ' ', 'n', 'o', 't', 'e'), seedAll},
	{"raw line breaks an entry", 0, ops(opRaw, 20, 0, 3, 'x', ':', ' '), seedRefused},
	{"extra source's set rotated", 3, ops(opRotateKey, 1, 0), seedAll},
	{"extra source's set made Sigstore-only", 3, ops(opSigstoreOnly, 1), seedRefused},
	{"extra source's set removed", 3, ops(opRemoveSet, 1), seedRefused},
	{"extra source removed", 3, ops(opEntryExtra, 0, 3, 0), seedSome},
	{"many: version only", 4, ops(opTop, 0), seedAll},
	{"many: key rotated", 4, ops(opRotateKey, 0, 0), seedAll},
	{"many: approval key restricted to git", 4, ops(opNamespaces, 2, 0, 1), seedRefused},
	{"many: approval set made Sigstore-only", 4, ops(opSigstoreOnly, 2), seedSome},
	{"many: included variable changed", 4, ops(opVarValue, 0, 0, 1), seedSome},
	{"many: entry removed", 4, ops(opEntryRemove, 5), seedAll},
	{"edited version in force, then Sigstore-only", 1, ops(opRotateKey, 0, 0, opCheckpoint, opSigstoreOnly, 1), seedSome},
	{"Sigstore-only in force, then an SSH key again", 1, ops(opPeople, 1, 1, 0, 0, opSigstoreOnly, 1, opCheckpoint, opAddKey, 1, fzKeySSH, 1), seedSome},
	{"approval key without namespaces in force, then allowed explicitly", 0, ops(opNamespaces, 1, 1, 0, opEntryApprovals, 0, 0, 1, opCheckpoint, opNamespaces, 1, 1, 2), seedAll},
}
