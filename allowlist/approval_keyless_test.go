package allowlist

import (
	"crypto"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"google.golang.org/protobuf/encoding/protojson"

	"gitlab.com/writ-ci/writ/internal/config"
	"gitlab.com/writ-ci/writ/internal/testkeys"
)

const (
	testIssuer = "https://gitlab.example.com"
	aliceID    = "alice@acme.example"
)

// virtualSigstore is a Fulcio CA and a Rekor log in memory (sigstore-go's
// own test double), and its trusted_root.json as an environment pins it.
type virtualSigstore struct {
	*ca.VirtualSigstore
	rootPath string
}

func newVirtualSigstore(t testing.TB) *virtualSigstore {
	t.Helper()
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	// The virtual log's ID is the hex text of its key ID; trusted_root.json
	// holds the raw key ID.
	logs := map[string]*root.TransparencyLog{}
	for k, tl := range vs.RekorLogs() {
		c := *tl
		if c.ID, err = hex.DecodeString(k); err != nil {
			t.Fatal(err)
		}
		logs[k] = &c
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, vs.FulcioCertificateAuthorities(), map[string]*root.TransparencyLog{}, vs.TimestampingAuthorities(), logs)
	if err != nil {
		t.Fatal(err)
	}
	js, err := tr.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "trusted_root.json")
	if err := os.WriteFile(p, js, 0o644); err != nil {
		t.Fatal(err)
	}
	return &virtualSigstore{VirtualSigstore: vs, rootPath: p}
}

// bundleEdit changes a keyless bundle before it is written out.
type bundleEdit func(*protorekor.TransparencyLogEntry)

// approve signs statement as subject/issuer with a Fulcio certificate,
// logged in Rekor at integrated with an inclusion proof, and returns the
// v0.3 bundle JSON an approval file holds.
func (vs *virtualSigstore) approve(t testing.TB, subject, issuer string, statement []byte, integrated time.Time, edits ...bundleEdit) []byte {
	t.Helper()
	e, err := vs.SignAtTime(subject, issuer, statement, integrated)
	if err != nil {
		t.Fatal(err)
	}
	vc, _ := e.VerificationContent()
	sc, _ := e.SignatureContent()
	entries, _ := e.TlogEntries()
	ms := sc.(*bundle.MessageSignature)
	cert := vc.(*bundle.Certificate).Certificate()
	signed := entries[0].TransparencyLogEntry()

	// The virtual log puts the entry at index 1000 of a one-entry tree;
	// log it at index 0, with the promise and the proof both for index 0.
	body, logID := signed.GetCanonicalizedBody(), signed.GetLogId().GetKeyId()
	set, err := vs.RekorSignPayload(tlog.RekorPayload{Body: base64.StdEncoding.EncodeToString(body), IntegratedTime: signed.GetIntegratedTime(), LogIndex: 0, LogID: hex.EncodeToString(logID)})
	if err != nil {
		t.Fatal(err)
	}
	proof, err := vs.GetInclusionProof(body)
	if err != nil {
		t.Fatal(err)
	}
	rootHash, _ := hex.DecodeString(*proof.RootHash)
	var hashes [][]byte
	for _, h := range proof.Hashes {
		b, _ := hex.DecodeString(h)
		hashes = append(hashes, b)
	}
	entry := &protorekor.TransparencyLogEntry{
		LogIndex:          0,
		LogId:             &protocommon.LogId{KeyId: logID},
		KindVersion:       &protorekor.KindVersion{Kind: "hashedrekord", Version: "0.0.1"},
		IntegratedTime:    signed.GetIntegratedTime(),
		InclusionPromise:  &protorekor.InclusionPromise{SignedEntryTimestamp: set},
		InclusionProof:    &protorekor.InclusionProof{LogIndex: 0, RootHash: rootHash, TreeSize: *proof.TreeSize, Hashes: hashes, Checkpoint: &protorekor.Checkpoint{Envelope: *proof.Checkpoint}},
		CanonicalizedBody: body,
	}
	for _, edit := range edits {
		edit(entry)
	}
	pb := &protobundle.Bundle{
		MediaType: "application/vnd.dev.sigstore.bundle.v0.3+json",
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content:     &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: cert.Raw}},
			TlogEntries: []*protorekor.TransparencyLogEntry{entry},
		},
		Content: &protobundle.Bundle_MessageSignature{MessageSignature: &protocommon.MessageSignature{
			MessageDigest: &protocommon.HashOutput{Algorithm: protocommon.HashAlgorithm_SHA2_256, Digest: ms.Digest()},
			Signature:     ms.Signature(),
		}},
	}
	out, err := protojson.Marshal(pb)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func keylessVerifierFor(t testing.TB, rootPath string, ids ...SigstoreIdentity) *ApprovalVerifier {
	t.Helper()
	tr, err := LoadTrustedRoot(rootPath)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewApprovalVerifier(nil, nil, WithKeylessApprovals(tr, ids))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestKeylessApprovals(t *testing.T) {
	vs := newVirtualSigstore(t)
	stmt := mustStatement(t, testRepo, 8, testDigest)
	soon := time.Now().Add(5 * time.Minute)
	v := keylessVerifierFor(t, vs.rootPath,
		SigstoreIdentity{Issuer: testIssuer, Subject: aliceID},
		SigstoreIdentity{Issuer: testIssuer, SubjectRegexp: `^[a-z]+@ops\.acme\.example$`})
	file := approvalPath(8, "alice.sigstore.json")

	// Exact identity: one approval, named by issuer and subject.
	ok, errs := v.Verify(stmt, stmtDir(stmt), map[string][]byte{file: vs.approve(t, aliceID, testIssuer, stmt, soon)}, time.Now())
	if len(ok) != 1 || len(errs) != 0 || ok[0].Signer != "sigstore-identity:"+testIssuer+" "+aliceID || ok[0].Kind != KindSigstore {
		t.Fatalf("keyless approval by alice: %v %v", ok, errs)
	}
	// A pattern: each subject it matches is its own signer; one subject
	// twice counts once.
	files := map[string][]byte{
		approvalPath(8, "carol.sigstore.json"): vs.approve(t, "carol@ops.acme.example", testIssuer, stmt, soon),
		approvalPath(8, "dave.sigstore.json"):  vs.approve(t, "dave@ops.acme.example", testIssuer, stmt, soon),
		approvalPath(8, "dave2.sigstore.json"): vs.approve(t, "dave@ops.acme.example", testIssuer, stmt, soon),
	}
	if ok, errs := v.Verify(stmt, stmtDir(stmt), files, time.Now()); len(ok) != 2 || len(errs) != 0 {
		t.Fatalf("pattern approvals: %v %v", ok, errs)
	}
	// The approval of version 8 does not approve version 9.
	other := mustStatement(t, testRepo, 9, testDigest)
	if ok, errs := v.Verify(other, stmtDir(other), map[string][]byte{approvalPath(9, "alice.sigstore.json"): vs.approve(t, aliceID, testIssuer, stmt, soon)}, time.Now()); len(ok) != 0 || len(errs) != 1 {
		t.Fatalf("an approval of version 8 counted for 9: %v %v", ok, errs)
	}

	stranger := newVirtualSigstore(t)
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"wrong issuer", vs.approve(t, aliceID, "https://evil.example", stmt, soon), "not trusted"},
		{"wrong subject", vs.approve(t, "mallory@acme.example", testIssuer, stmt, soon), "not trusted"},
		// The pattern is anchored: a subject that merely contains a match
		// is refused.
		{"pattern prefix", vs.approve(t, "carol@ops.acme.example.evil.com", testIssuer, stmt, soon), "not trusted"},
		{"certificate expired at log time", vs.approve(t, aliceID, testIssuer, stmt, time.Now().Add(30*time.Minute)), "does not verify"},
		{"missing inclusion proof", vs.approve(t, aliceID, testIssuer, stmt, soon, func(e *protorekor.TransparencyLogEntry) { e.InclusionProof = nil }), "inclusion proof"},
		{"forged inclusion proof", vs.approve(t, aliceID, testIssuer, stmt, soon, func(e *protorekor.TransparencyLogEntry) { e.InclusionProof.RootHash[0] ^= 1 }), "does not verify"},
		{"log entry without its body", vs.approve(t, aliceID, testIssuer, stmt, soon, func(e *protorekor.TransparencyLogEntry) { e.CanonicalizedBody = nil }), "nil value"},
		{"another Sigstore", stranger.approve(t, aliceID, testIssuer, stmt, soon), "does not verify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, errs := v.Verify(stmt, stmtDir(stmt), map[string][]byte{file: tc.data}, time.Now())
			if len(errs) == 1 {
				t.Log(errs[0])
			}
			if len(ok) != 0 || len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want) {
				t.Fatalf("want refused with %q: %v %v", tc.want, ok, errs)
			}
		})
	}

	// The stranger's own root accepts its bundle, so the refusal above is
	// the root's doing; and it refuses ours.
	sv := keylessVerifierFor(t, stranger.rootPath, SigstoreIdentity{Issuer: testIssuer, Subject: aliceID})
	if ok, _ := sv.Verify(stmt, stmtDir(stmt), map[string][]byte{file: stranger.approve(t, aliceID, testIssuer, stmt, soon)}, time.Now()); len(ok) != 1 {
		t.Fatal("the second Sigstore's root refuses its own approval")
	}
	if ok, _ := sv.Verify(stmt, stmtDir(stmt), map[string][]byte{file: vs.approve(t, aliceID, testIssuer, stmt, soon)}, time.Now()); len(ok) != 0 {
		t.Fatal("a root that does not match accepted an approval")
	}

	// Without keyless trust, a certificate bundle is refused, saying why.
	kv, _ := NewApprovalVerifier(nil, []crypto.PublicKey{})
	if _, errs := kv.Verify(stmt, stmtDir(stmt), map[string][]byte{file: vs.approve(t, aliceID, testIssuer, stmt, soon)}, time.Now()); len(errs) != 1 || !strings.Contains(errs[0].Error(), "trust.sigstore_identities") {
		t.Fatalf("keyless bundle without keyless trust: %v", errs)
	}
}

func TestKeylessIdentityConfig(t *testing.T) {
	vs := newVirtualSigstore(t)
	tr, err := LoadTrustedRoot(vs.rootPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id   SigstoreIdentity
		want string
	}{
		{SigstoreIdentity{Subject: aliceID}, "issuer is empty"},
		{SigstoreIdentity{Issuer: testIssuer}, "exactly one"},
		{SigstoreIdentity{Issuer: testIssuer, Subject: aliceID, SubjectRegexp: "^a$"}, "exactly one"},
		{SigstoreIdentity{Issuer: testIssuer, SubjectRegexp: `.*@acme\.example`}, "anchored"},
		{SigstoreIdentity{Issuer: testIssuer, SubjectRegexp: `^(.*$`}, "subject_regexp"},
	} {
		if _, err := NewApprovalVerifier(nil, nil, WithKeylessApprovals(tr, []SigstoreIdentity{tc.id})); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.id, err, tc.want)
		}
	}
	if _, err := NewApprovalVerifier(nil, nil, WithKeylessApprovals(tr, nil)); err == nil {
		t.Error("keyless approvals without identities accepted")
	}
	bad := filepath.Join(t.TempDir(), "trusted_root.json")
	os.WriteFile(bad, []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`), 0o644)
	if _, err := LoadTrustedRoot(bad); err == nil || !strings.Contains(err.Error(), "no Fulcio") {
		t.Errorf("empty trusted root: %v", err)
	}
}

// TestKeylessTrustFromConfig: the environment's config names the trusted
// root and identities; its trust counts a keyless approval, and changing an
// identity changes the trust's ID (so past judgements are not reused).
func TestKeylessTrustFromConfig(t *testing.T) {
	vs := newVirtualSigstore(t)
	k := testkeys.SSHKey(t, "root@example.com")
	signers := filepath.Join(t.TempDir(), "allowed_signers")
	os.WriteFile(signers, []byte(k.AllowedSignersLine("")+"\n"), 0o644)
	cfg := &config.Config{}
	cfg.Allowlist.Identity = testRepo
	cfg.Trust.Threshold = 1
	cfg.Trust.SSHAllowedSigners = signers
	cfg.Trust.SigstoreTrustedRoot = vs.rootPath
	cfg.Trust.SigstoreIdentities = []config.SigstoreIdentity{{Issuer: testIssuer, Subject: aliceID}}
	tr, err := LoadTrust(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stmt := mustStatement(t, testRepo, 8, testDigest)
	ok, errs := tr.Approvals.Verify(stmt, stmtDir(stmt), map[string][]byte{approvalPath(8, "alice.sigstore.json"): vs.approve(t, aliceID, testIssuer, stmt, time.Now().Add(5*time.Minute))}, time.Now())
	if len(ok) != 1 || len(errs) != 0 {
		t.Fatalf("keyless approval through the config: %v %v", ok, errs)
	}
	cfg.Trust.SigstoreIdentities[0].Subject = "bob@acme.example"
	tr2, err := LoadTrust(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if tr2.ID == tr.ID {
		t.Error("changing a keyless identity kept the trust ID")
	}
	cfg.Trust.SigstoreIdentities[0].SubjectRegexp = "^x$"
	if _, err := LoadTrust(cfg); err == nil || !strings.Contains(err.Error(), "exactly one") {
		t.Errorf("bad identity: %v", err)
	}
}

// FuzzApprovalKeyless feeds keyless .sigstore.json approvals an attacker may
// have written to a verifier that trusts a virtual Sigstore and one
// identity, starting from a valid approval. Nothing may panic, and a file
// that counts names that identity.
func FuzzApprovalKeyless(f *testing.F) {
	vs := newVirtualSigstore(f)
	v := keylessVerifierFor(f, vs.rootPath, SigstoreIdentity{Issuer: testIssuer, Subject: aliceID})
	stmt := mustStatement(f, testRepo, 8, testDigest)
	dir := stmtDir(stmt)
	f.Add(vs.approve(f, aliceID, testIssuer, stmt, time.Now().Add(5*time.Minute)))
	f.Add(vs.approve(f, "mallory@acme.example", testIssuer, stmt, time.Now().Add(5*time.Minute)))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, errs := v.Verify(stmt, dir, map[string][]byte{dir + "/fuzz.sigstore.json": data}, time.Now())
		if len(got)+len(errs) != 1 {
			t.Fatalf("%d approvals and %d errors for one file", len(got), len(errs))
		}
		if len(got) == 1 && got[0].Signer != "sigstore-identity:"+testIssuer+" "+aliceID {
			t.Fatalf("accepted as %+v", got[0])
		}
	})
}

// TestDocsKeylessConfig: the keyless trust example in docs/allowlist.md
// decodes as writ's config does, and its identities are valid.
func TestDocsKeylessConfig(t *testing.T) {
	md, err := os.ReadFile(filepath.Join("..", "docs", "allowlist.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(md), "### Keyless approvals")
	block, ok2 := "", false
	if ok {
		_, after, _ := strings.Cut(rest, "```toml\n")
		block, _, ok2 = strings.Cut(after, "```")
	}
	if !ok || !ok2 {
		t.Fatal("docs/allowlist.md has no keyless TOML example")
	}
	var doc struct{ Trust config.Trust }
	if _, err := toml.Decode(block, &doc); err != nil {
		t.Fatalf("the docs' keyless example does not decode: %v\n%s", err, block)
	}
	if doc.Trust.SigstoreTrustedRoot == "" || len(doc.Trust.SigstoreIdentities) != 2 {
		t.Fatalf("decoded %+v", doc.Trust)
	}
	vs := newVirtualSigstore(t)
	tr, err := LoadTrustedRoot(vs.rootPath)
	if err != nil {
		t.Fatal(err)
	}
	var ids []SigstoreIdentity
	for _, x := range doc.Trust.SigstoreIdentities {
		ids = append(ids, SigstoreIdentity{Issuer: x.Issuer, Subject: x.Subject, SubjectRegexp: x.SubjectRegexp})
	}
	if _, err := NewApprovalVerifier(nil, nil, WithKeylessApprovals(tr, ids)); err != nil {
		t.Fatalf("the docs' identities: %v", err)
	}
	re := regexp.MustCompile(doc.Trust.SigstoreIdentities[1].SubjectRegexp)
	if !re.MatchString("https://gitlab.com/acme/release-approvals//.gitlab-ci.yml@refs/heads/main") || re.MatchString("https://gitlab.com/acme/release-approvalsX/.gitlab-ci.yml@refs/heads/main") {
		t.Errorf("the docs' pattern %q does not say what it means", re)
	}
}

// BenchmarkKeylessApproval verifies one keyless approval (certificate chain,
// inclusion proof, inclusion promise, identity) and, as the anchor in the
// same run, one key-based Sigstore approval; it reports keyless/key.
func BenchmarkKeylessApproval(b *testing.B) {
	vs := newVirtualSigstore(b)
	kv := keylessVerifierFor(b, vs.rootPath, SigstoreIdentity{Issuer: testIssuer, Subject: aliceID})
	stmt := mustStatement(b, testRepo, 8, testDigest)
	dir := stmtDir(stmt)
	keyless := map[string][]byte{dir + "/alice.sigstore.json": vs.approve(b, aliceID, testIssuer, stmt, time.Now().Add(5*time.Minute))}
	priv, pub := cosignKeyFiles(b, "pw")
	key, err := LoadSigstoreKeyWithPassword(priv, staticPassword("pw"))
	if err != nil {
		b.Fatal(err)
	}
	pk, err := LoadSigstorePublicKey(pub)
	if err != nil {
		b.Fatal(err)
	}
	bundleJSON, err := SignSigstore(stmt, key)
	if err != nil {
		b.Fatal(err)
	}
	v, err := NewApprovalVerifier(nil, []crypto.PublicKey{pk})
	if err != nil {
		b.Fatal(err)
	}
	keyed := map[string][]byte{dir + "/dana.sigstore.json": bundleJSON}
	run := func(v *ApprovalVerifier, files map[string][]byte, n int) time.Duration {
		start := time.Now()
		for range n {
			if got, errs := v.Verify(stmt, dir, files, time.Now()); len(got) != 1 || len(errs) != 0 {
				b.Fatal(got, errs)
			}
		}
		return time.Since(start)
	}
	var tKeyless, tKey time.Duration
	n := 0
	for b.Loop() {
		tKeyless += run(kv, keyless, 1)
		tKey += run(v, keyed, 1)
		n++
	}
	b.ReportMetric(float64(tKeyless)/float64(tKey), "keyless/key")
	b.ReportMetric(float64(tKeyless.Microseconds())/float64(n), "keyless-µs/op")
}

// TestCosignVerifiesKeylessApproval: a keyless approval that writ accepts
// (built on the virtual Sigstore) also verifies with the real cosign CLI
// against the same trusted_root.json and identity, and cosign refuses it for
// another identity: both read the bundle alike.
func TestCosignVerifiesKeylessApproval(t *testing.T) {
	bin := cosignBinary(t)
	vs := newVirtualSigstore(t)
	stmt := mustStatement(t, testRepo, 8, testDigest)
	dir := t.TempDir()
	stmtPath, bundlePath := filepath.Join(dir, "statement"), filepath.Join(dir, "alice.sigstore.json")
	os.WriteFile(stmtPath, stmt, 0o644)
	data := vs.approve(t, aliceID, testIssuer, stmt, time.Now().Add(5*time.Minute))
	os.WriteFile(bundlePath, data, 0o644)
	v := keylessVerifierFor(t, vs.rootPath, SigstoreIdentity{Issuer: testIssuer, Subject: aliceID})
	if ok, errs := v.Verify(stmt, stmtDir(stmt), map[string][]byte{stmtDir(stmt) + "/alice.sigstore.json": data}, time.Now()); len(ok) != 1 {
		t.Fatalf("writ refused: %v", errs)
	}
	args := func(identity string) []string {
		// The virtual Fulcio issues no SCTs.
		return []string{"verify-blob", "--new-bundle-format", "--trusted-root", vs.rootPath, "--insecure-ignore-sct",
			"--certificate-identity", identity, "--certificate-oidc-issuer", testIssuer, "--bundle", bundlePath, stmtPath}
	}
	if out, err := runCosign(t, bin, nil, args(aliceID)...); err != nil {
		t.Fatalf("cosign verify-blob refused writ's keyless approval: %v\n%s", err, out)
	}
	if out, err := runCosign(t, bin, nil, args("mallory@acme.example")...); err == nil {
		t.Fatalf("cosign accepted the approval for another identity:\n%s", out)
	}
}
