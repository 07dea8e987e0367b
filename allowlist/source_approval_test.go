package allowlist

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/internal/gitsig"
	"gitlab.com/writ-ci/writ/internal/testkeys"
)

const (
	srcRepo   = "https://git.example.com/acme/app.git"
	srcCommit = "0123456789abcdef0123456789abcdef01234567"
)

func TestSourceStatementIsExact(t *testing.T) {
	t.Parallel()
	got, err := SourceStatement{Repository: srcRepo, Commit: srcCommit, Environments: []string{"staging", "production"}}.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	want := "writ source approval v1\n" +
		"repository: https://git.example.com/acme/app.git\n" +
		"commit: 0123456789abcdef0123456789abcdef01234567\n" +
		"environments: production staging\n"
	if string(got) != want {
		t.Fatalf("statement:\n%q\nwant\n%q", got, want)
	}
	s, err := ParseSourceStatement(got)
	if err != nil || s.Repository != srcRepo || s.Commit != srcCommit || strings.Join(s.Environments, ",") != "production,staging" {
		t.Fatalf("ParseSourceStatement = %+v, %v", s, err)
	}
}

func TestSourceStatementRefuses(t *testing.T) {
	t.Parallel()
	for name, s := range map[string]SourceStatement{
		"short commit":     {Repository: srcRepo, Commit: srcCommit[:39], Environments: []string{"p"}},
		"upper commit":     {Repository: srcRepo, Commit: strings.ToUpper(srcCommit), Environments: []string{"p"}},
		"no environment":   {Repository: srcRepo, Commit: srcCommit},
		"env twice":        {Repository: srcRepo, Commit: srcCommit, Environments: []string{"p", "p"}},
		"env with space":   {Repository: srcRepo, Commit: srcCommit, Environments: []string{"a b"}},
		"repo line break":  {Repository: srcRepo + "\ncommit: x", Commit: srcCommit, Environments: []string{"p"}},
		"repo empty":       {Commit: srcCommit, Environments: []string{"p"}},
		"repo with spaces": {Repository: " " + srcRepo, Commit: srcCommit, Environments: []string{"p"}},
	} {
		if b, err := s.Bytes(); err == nil {
			t.Errorf("%s: Bytes accepted: %q", name, b)
		}
	}
	good, _ := SourceStatement{Repository: srcRepo, Commit: srcCommit, Environments: []string{"a", "b"}}.Bytes()
	for name, b := range map[string][]byte{
		"unsorted":       bytes.Replace(good, []byte("a b"), []byte("b a"), 1),
		"two spaces":     bytes.Replace(good, []byte("a b"), []byte("a  b"), 1),
		"crlf":           bytes.ReplaceAll(good, []byte("\n"), []byte("\r\n")),
		"no final lf":    bytes.TrimSuffix(good, []byte("\n")),
		"extra line":     append(bytes.Clone(good), "x\n"...),
		"allowlist kind": bytes.Replace(good, []byte("writ source approval v1"), []byte("writ allowlist approval v2"), 1),
		"other version":  bytes.Replace(good, []byte("approval v1"), []byte("approval v2"), 1),
		"trailing space": bytes.Replace(good, []byte("a b\n"), []byte("a b \n"), 1),
	} {
		if _, err := ParseSourceStatement(b); err == nil {
			t.Errorf("%s: ParseSourceStatement accepted %q", name, b)
		}
	}
}

// sourceWorld is an allowlist with two approver keys of one person (alice),
// one of another (bob), and a key outside the approver sets (mallory).
type sourceWorld struct {
	a                         *Allowlist
	e                         *Entry
	alice, alice2, bob, mallo *testkeys.SSH
}

func newSourceWorld(t *testing.T, threshold int) *sourceWorld {
	t.Helper()
	w := &sourceWorld{
		alice: testkeys.SSHKey(t, "alice@example.com"), alice2: testkeys.SSHKey(t, "alice@example.com"),
		bob: testkeys.SSHKey(t, "bob@example.com"), mallo: testkeys.SSHKey(t, "mallory@example.com"),
	}
	w.a = &Allowlist{Signers: map[string]*SignerSet{
		"approvers": {Name: "approvers", SSH: []string{w.alice.AllowedSignersLine(""), w.alice2.AllowedSignersLine(""), w.bob.AllowedSignersLine("")}},
		"devs":      {Name: "devs", SSH: []string{w.mallo.AllowedSignersLine("")}},
	}, People: map[string]*Person{"alice": {Name: "alice", Keys: []string{w.alice.Fingerprint, w.alice2.Fingerprint}}}}
	w.e = &Entry{Name: "deploy", Source: Source{Repository: srcRepo, Signers: []string{"devs"}, Mode: ModeCommit,
		Approvals: &SourceApprovals{Signers: []string{"approvers"}, Threshold: threshold}}}
	return w
}

func sshApproval(t *testing.T, k *testkeys.SSH, label string, s SourceStatement, ns string) SourceApproval {
	t.Helper()
	stmt, err := s.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return SourceApproval{Label: label, Files: map[string][]byte{
		SourceStatementFile: stmt, SourceSignatureFile(KindSSH): k.Sign(t, stmt, ns)}}
}

func TestTallySourceApprovals(t *testing.T) {
	t.Parallel()
	w := newSourceWorld(t, 2)
	ok := SourceStatement{Repository: srcRepo, Commit: srcCommit, Environments: []string{"production", "staging"}}
	other := func(edit func(*SourceStatement)) SourceStatement {
		s := ok
		s.Environments = append([]string(nil), ok.Environments...)
		edit(&s)
		return s
	}
	tampered := sshApproval(t, w.bob, "bob-tampered", ok, SourceApprovalNamespace)
	tampered.Files[SourceStatementFile] = []byte(strings.Replace(string(tampered.Files[SourceStatementFile]), "production staging", "production", 1))
	aps := []SourceApproval{
		sshApproval(t, w.alice, "alice", ok, SourceApprovalNamespace),
		sshApproval(t, w.alice2, "alice-laptop", ok, SourceApprovalNamespace),
		sshApproval(t, w.mallo, "mallory", ok, SourceApprovalNamespace),
		sshApproval(t, w.bob, "bob-commit", other(func(s *SourceStatement) { s.Commit = strings.Repeat("ab", 20) }), SourceApprovalNamespace),
		sshApproval(t, w.bob, "bob-repo", other(func(s *SourceStatement) { s.Repository = "https://git.example.com/acme/fork.git" }), SourceApprovalNamespace),
		sshApproval(t, w.bob, "bob-staging", other(func(s *SourceStatement) { s.Environments = []string{"staging"} }), SourceApprovalNamespace),
		sshApproval(t, w.bob, "bob-git-ns", ok, "git"),
		sshApproval(t, w.bob, "bob-allowlist-ns", ok, ApprovalNamespace),
		tampered,
		{Label: "junk", Files: map[string][]byte{"statement": []byte("hello\n")}},
		{Label: "../x", Files: nil},
	}
	tally, err := w.a.TallySourceApprovals(w.e, srcCommit, "production", nil, aps, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(tally.Valid) != 1 || tally.Valid[0].Label != "alice" || tally.Valid[0].Person != "person alice" || tally.Needed() != 1 {
		t.Fatalf("valid = %+v, needed %d", tally.Valid, tally.Needed())
	}
	want := map[string]string{
		"alice-laptop":     IgnoredDuplicatePerson,
		"mallory":          IgnoredKeyOutsideSets,
		"bob-commit":       IgnoredOtherCommit,
		"bob-repo":         IgnoredOtherRepository,
		"bob-staging":      IgnoredOtherEnvironment,
		"bob-git-ns":       IgnoredBadSignature,
		"bob-allowlist-ns": IgnoredBadSignature,
		"bob-tampered":     IgnoredBadSignature,
		"junk":             IgnoredMalformed,
		"../x":             IgnoredMalformed,
	}
	got := map[string]string{}
	for _, ig := range tally.Ignored {
		got[ig.Label] = ig.Reason
		t.Logf("ignored %s: %s: %s", ig.Label, ig.Reason, ig.Detail)
	}
	for label, reason := range want {
		if got[label] != reason {
			t.Errorf("%s: reason %q, want %q", label, got[label], reason)
		}
	}
	if len(got) != len(want) {
		t.Errorf("ignored %v, want %v", got, want)
	}

	// Bob's valid approval makes two people; the order of the list does not matter.
	aps = append(aps, sshApproval(t, w.bob, "bob", ok, SourceApprovalNamespace))
	for i, j := 0, len(aps)-1; i < j; i, j = i+1, j-1 {
		aps[i], aps[j] = aps[j], aps[i]
	}
	tally, _ = w.a.TallySourceApprovals(w.e, srcCommit, "production", nil, aps, time.Now())
	if tally.Needed() != 0 || len(tally.Valid) != 2 || tally.Valid[0].Label != "alice" || tally.Valid[1].Label != "bob" {
		t.Fatalf("with bob: valid %+v, needed %d", tally.Valid, tally.Needed())
	}
}

func TestTallySourceAuthorCounts(t *testing.T) {
	t.Parallel()
	w := newSourceWorld(t, 2)
	ok := SourceStatement{Repository: srcRepo, Commit: srcCommit, Environments: []string{"production"}}
	aps := []SourceApproval{sshApproval(t, w.alice2, "alice-laptop", ok, SourceApprovalNamespace), sshApproval(t, w.bob, "bob", ok, SourceApprovalNamespace)}
	author := &gitsig.Signer{Kind: gitsig.KindSSH, Fingerprint: w.alice.Fingerprint}
	// Without author_counts the author is nobody's approval.
	tally, _ := w.a.TallySourceApprovals(w.e, srcCommit, "production", author, aps[:1], time.Now())
	if tally.Needed() != 1 {
		t.Fatalf("author_counts false: needed %d, valid %+v", tally.Needed(), tally.Valid)
	}
	w.e.Source.Approvals.AuthorCounts = true
	// The author (alice) counts once: her second key's approval is a duplicate.
	tally, _ = w.a.TallySourceApprovals(w.e, srcCommit, "production", author, aps[:1], time.Now())
	if tally.Needed() != 1 || len(tally.Ignored) != 1 || tally.Ignored[0].Reason != IgnoredDuplicatePerson {
		t.Fatalf("author alice + alice: needed %d, ignored %+v", tally.Needed(), tally.Ignored)
	}
	tally, _ = w.a.TallySourceApprovals(w.e, srcCommit, "production", author, aps, time.Now())
	if tally.Needed() != 0 {
		t.Fatalf("author alice + bob: needed %d", tally.Needed())
	}
	// An author whose key is not in the approver sets does not count.
	outsider := &gitsig.Signer{Kind: gitsig.KindSSH, Fingerprint: w.mallo.Fingerprint}
	tally, _ = w.a.TallySourceApprovals(w.e, srcCommit, "production", outsider, aps[1:], time.Now())
	if tally.Needed() != 1 {
		t.Fatalf("outsider author counted: %+v", tally.Valid)
	}
}

func TestParsePeopleAndApprovals(t *testing.T) {
	t.Parallel()
	alice, bob := testkeys.SSHKey(t, "alice@example.com"), testkeys.SSHKey(t, "bob@example.com")
	doc := func(people, approvals string) string {
		return "schema: writ/v2\nrepository: acme/al\nversion: 1\nexpires: 2099-01-01T00:00:00Z\n" +
			"signers:\n  approvers:\n    ssh:\n      - " + alice.AllowedSignersLine("") + "\n      - " + bob.AllowedSignersLine("") + "\n" +
			people +
			"jobs:\n  - name: deploy\n    match:\n      project: acme/app\n      job: deploy\n      environments: [production]\n      refs: [refs/heads/main]\n" +
			"    definition:\n      script: [make deploy]\n" +
			"    source:\n      repository: https://git.example.com/acme/app.git\n      signers: [approvers]\n      mode: commit\n" + approvals
	}
	good := doc("people:\n  alice: ['"+alice.Fingerprint+"']\n", "      approvals:\n        signers: [approvers]\n        threshold: 2\n        author_counts: true\n")
	a, err := Parse("allowlist.yaml", []byte(good), nil)
	if err != nil {
		t.Fatal(err)
	}
	ap := a.Jobs[0].Source.Approvals
	if ap == nil || ap.Threshold != 2 || !ap.AuthorCounts || ap.Signers[0] != "approvers" || a.PersonOf(alice.Fingerprint) != "person alice" {
		t.Fatalf("approvals %+v, people %+v", ap, a.People)
	}
	out, err := Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse("allowlist.yaml", out, nil)
	if err != nil {
		t.Fatalf("marshalled output does not parse: %v\n%s", err, out)
	}
	if m2, _ := Marshal(b); !bytes.Equal(m2, out) {
		t.Fatalf("marshal round trip differs:\n%s\n%s", out, m2)
	}
	if ch := entryChanges(a.Jobs[0], &Entry{}); !strings.Contains(fmtChanges(ch), "source.approvals") {
		t.Fatalf("diff misses source.approvals: %s", fmtChanges(ch))
	}

	for name, tc := range map[string]struct{ people, approvals, want string }{
		"key under two people": {"people:\n  alice: ['" + alice.Fingerprint + "']\n  bob: ['" + alice.Fingerprint + "']\n", "",
			"12:9: key " + alice.Fingerprint + " is listed under person \"alice\" (line 11) and person \"bob\""},
		"unknown key":    {"people:\n  alice: ['SHA256:nope']\n", "", "is not a key of any signer set"},
		"threshold zero": {"", "      approvals:\n        signers: [approvers]\n        threshold: 0\n", "threshold must be a whole number of people from 1 to 32"},
		"threshold text": {"", "      approvals:\n        signers: [approvers]\n        threshold: \"2\"\n", "threshold must be a whole number"},
		"no threshold":   {"", "      approvals:\n        signers: [approvers]\n", `missing required key "threshold"`},
		"undefined set":  {"", "      approvals:\n        signers: [nobody]\n        threshold: 1\n", `signer set "nobody" is not defined`},
		"unknown field":  {"", "      approvals:\n        signers: [approvers]\n        threshold: 1\n        treshold: 1\n", `did you mean "threshold"`},
	} {
		_, err := Parse("allowlist.yaml", []byte(doc(tc.people, tc.approvals)), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}

func TestParseApproverNamespace(t *testing.T) {
	t.Parallel()
	k := testkeys.SSHKey(t, "alice@example.com")
	doc := "schema: writ/v2\nrepository: acme/al\nversion: 1\nexpires: 2099-01-01T00:00:00Z\n" +
		"signers:\n  approvers:\n    ssh:\n      - '" + k.AllowedSignersLine("git") + "'\n" +
		"jobs:\n  - name: deploy\n    match:\n      project: acme/app\n      job: deploy\n      environments: [production]\n      refs: [refs/heads/main]\n" +
		"    definition:\n      script: [make deploy]\n" +
		"    source:\n      repository: https://git.example.com/acme/app.git\n      signers: [approvers]\n      mode: commit\n" +
		"      approvals:\n        signers: [approvers]\n        threshold: 1\n"
	_, err := Parse("allowlist.yaml", []byte(doc), nil)
	if err == nil || !strings.Contains(err.Error(), "does not include "+SourceApprovalNamespace) {
		t.Fatalf("err = %v", err)
	}
}

func fmtChanges(ch []FieldChange) string {
	var b strings.Builder
	for _, c := range ch {
		b.WriteString(c.Field + " ")
	}
	return b.String()
}

func TestDiffShowsPeopleAndApprovals(t *testing.T) {
	t.Parallel()
	w := newSourceWorld(t, 2)
	old := &Allowlist{Signers: w.a.Signers, People: map[string]*Person{}, Jobs: []*Entry{{Name: "deploy", Match: Match{Environments: []string{"production"}},
		Source: Source{Repository: srcRepo, Signers: []string{"devs"}, Mode: ModeCommit}}}}
	e := *old.Jobs[0]
	e.Source.Approvals = &SourceApprovals{Signers: []string{"approvers"}, Threshold: 2}
	neu := &Allowlist{Signers: w.a.Signers, People: w.a.People, Jobs: []*Entry{&e}}
	d := Diff(old, neu)
	if d.Empty() || len(d.People) != 1 || d.People[0].Field != "person alice" || d.People[0].Old != "none" {
		t.Fatalf("people diff %+v", d.People)
	}
	md := d.Markdown()
	for _, want := range []string{"person alice", "source.approvals", "2 of signers approvers"} {
		if !strings.Contains(md, want) {
			t.Errorf("diff Markdown lacks %q:\n%s", want, md)
		}
	}
}

// TestTallySourceOpenPGP: an OpenPGP approval made with a signing subkey
// counts for its primary key, which is how people name it, and the same
// person approving again with SSH is a duplicate.
func TestTallySourceOpenPGP(t *testing.T) {
	t.Parallel()
	erin := testkeys.GPGKey(t, "Erin", "erin@example.com", testkeys.SigningSubkey())
	erinSSH := testkeys.SSHKey(t, "erin@example.com")
	a := &Allowlist{Signers: map[string]*SignerSet{"approvers": {Name: "approvers",
		OpenPGP: []OpenPGPKey{{Fingerprint: erin.Fingerprint, File: "keys/erin.asc", Armored: erin.ArmoredPublic}},
		SSH:     []string{erinSSH.AllowedSignersLine("")}}},
		People: map[string]*Person{"erin": {Name: "erin", Keys: []string{erin.Fingerprint, erinSSH.Fingerprint}}}}
	e := &Entry{Name: "deploy", Source: Source{Repository: srcRepo, Approvals: &SourceApprovals{Signers: []string{"approvers"}, Threshold: 1}}}
	stmt, _ := SourceStatement{Repository: srcRepo, Commit: srcCommit, Environments: []string{"production"}}.Bytes()
	aps := []SourceApproval{
		{Label: "erin", Files: map[string][]byte{SourceStatementFile: stmt, SourceSignatureFile(KindOpenPGP): erin.Sign(t, stmt)}},
		sshApproval(t, erinSSH, "erin-ssh", SourceStatement{Repository: srcRepo, Commit: srcCommit, Environments: []string{"production"}}, SourceApprovalNamespace),
	}
	tally, err := a.TallySourceApprovals(e, srcCommit, "production", nil, aps, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(tally.Valid) != 1 || tally.Valid[0].Signer != erin.Fingerprint || tally.Valid[0].Kind != KindOpenPGP || tally.Needed() != 0 {
		t.Fatalf("valid %+v", tally.Valid)
	}
	if len(tally.Ignored) != 1 || tally.Ignored[0].Label != "erin-ssh" || tally.Ignored[0].Reason != IgnoredDuplicatePerson {
		t.Fatalf("ignored %+v", tally.Ignored)
	}
}

// TestSourceSigstoreApprovals: a signer set's sigstore key file (parsed,
// marshalled, loaded through the FileLoader) approves a commit with a
// Sigstore bundle made offline, counted as a person via people; a bundle
// by another key is outside the sets.
func TestSourceSigstoreApprovals(t *testing.T) {
	t.Parallel()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(priv.Public())
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	fp, _ := SigstoreFingerprint(priv.Public())
	doc := "schema: writ/v2\nrepository: acme/al\nversion: 1\nexpires: 2099-01-01T00:00:00Z\n" +
		"signers:\n  devs:\n    ssh:\n      - " + testkeys.SSHKey(t, "dev@example.com").AllowedSignersLine("") + "\n" +
		"  approvers:\n    sigstore: [keys/erin.pub]\n" +
		"people:\n  erin: ['" + fp + "']\n" +
		"jobs:\n  - name: deploy\n    match:\n      project: acme/app\n      job: deploy\n      environments: [production]\n      refs: [refs/heads/main]\n" +
		"    definition:\n      script: [make deploy]\n" +
		"    source:\n      repository: " + srcRepo + "\n      signers: [devs]\n      mode: commit\n" +
		"      approvals:\n        signers: [approvers]\n        threshold: 1\n"
	load := func(p string) ([]byte, error) {
		if p == "keys/erin.pub" {
			return pemBytes, nil
		}
		return nil, fmt.Errorf("no file %s", p)
	}
	a, err := Parse(FileName, []byte(doc), load)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := Marshal(a)
	if !strings.Contains(string(out), "sigstore:\n      - keys/erin.pub\n") {
		t.Fatalf("marshal lost the sigstore key:\n%s", out)
	}
	if _, err := Parse(FileName, []byte(strings.Replace(doc, "signers: [devs]", "signers: [approvers]", 1)), load); err == nil || !strings.Contains(err.Error(), "holds only Sigstore keys") {
		t.Fatalf("a Sigstore-only set as commit signers: %v", err)
	}
	stmt, _ := SourceStatement{Repository: srcRepo, Commit: srcCommit, Environments: []string{"production"}}.Bytes()
	bundle := func(k *ecdsa.PrivateKey) []byte {
		b, err := SignSigstore(stmt, k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	aps := []SourceApproval{
		{Label: "erin", Files: map[string][]byte{SourceStatementFile: stmt, SourceSignatureFile(KindSigstore): bundle(priv)}},
		{Label: "zed", Files: map[string][]byte{SourceStatementFile: stmt, SourceSignatureFile(KindSigstore): bundle(other)}},
	}
	tally, err := a.TallySourceApprovals(a.Jobs[0], srcCommit, "production", nil, aps, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if tally.Needed() != 0 || tally.Valid[0].Person != "person erin" || tally.Valid[0].Kind != KindSigstore {
		t.Fatalf("valid %+v", tally.Valid)
	}
	if len(tally.Ignored) != 1 || tally.Ignored[0].Reason != IgnoredKeyOutsideSets {
		t.Fatalf("ignored %+v", tally.Ignored)
	}
}
