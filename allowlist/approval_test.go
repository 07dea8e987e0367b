package allowlist

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"
	"google.golang.org/protobuf/encoding/protojson"

	"gitlab.com/writ-ci/writ/internal/gitsig"
	"gitlab.com/writ-ci/writ/internal/testkeys"
)

const (
	testRepo = "gitlab.example.com/acme/allowlist"
)

var (
	testDigest  = strings.Repeat("3f", 32)
	otherDigest = strings.Repeat("3e", 32)
)

// yamlOnly is the manifest of an allowlist that loads no key file.
func yamlOnly(digest string) []ManifestFile {
	return []ManifestFile{{Path: FileName, SHA256: digest}}
}

func mustStatement(t testing.TB, repo string, version int64, digest string) []byte {
	t.Helper()
	s, err := NewStatement(repo, version, yamlOnly(digest))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStatementIsExact(t *testing.T) {
	t.Parallel()
	manifest := Manifest(map[string][]byte{
		"keys/alice.asc": []byte("alice"),
		FileName:         []byte("schema: writ/v1\n"),
		"keys/Bob.asc":   []byte("bob"),
	})
	got, err := NewStatement(testRepo, 12, manifest)
	if err != nil {
		t.Fatal(err)
	}
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	// Sorted by path byte by byte: upper case before lower case.
	want := "writ allowlist approval v2\n" +
		"repository: gitlab.example.com/acme/allowlist\n" +
		"version: 12\n" +
		"files: 3\n" +
		sum("schema: writ/v1\n") + "  allowlist.yaml\n" +
		sum("bob") + "  keys/Bob.asc\n" +
		sum("alice") + "  keys/alice.asc\n"
	if string(got) != want {
		t.Fatalf("statement =\n%s\nwant\n%s", got, want)
	}
	if !bytes.Equal(Statement(testRepo, 12, manifest), got) {
		t.Fatal("Statement and NewStatement differ")
	}
	if ApprovalDir(12) != "approvals/v12" {
		t.Fatalf("ApprovalDir(12) = %q", ApprovalDir(12))
	}
}

// The statement's hashes are sha256sum's: a reviewer can check them with
// `sha256sum allowlist.yaml keys/*.asc`.
func TestStatementMatchesSha256sum(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("sha256sum"); err != nil {
		t.Skip("sha256sum not installed")
	}
	dir := t.TempDir()
	files := map[string][]byte{FileName: []byte("a\n"), "keys/k.asc": []byte("key\r\n")}
	for p, b := range files {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("sha256sum", FileName, "keys/k.asc")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	stmt := string(Statement(testRepo, 1, Manifest(files)))
	if !strings.HasSuffix(stmt, "files: 2\n"+string(out)) {
		t.Fatalf("statement\n%s\ndoes not end with sha256sum's output\n%s", stmt, out)
	}
}

func TestNewStatementRejects(t *testing.T) {
	t.Parallel()
	cases := []struct {
		repo    string
		version int64
		digest  string
	}{
		{"", 1, testDigest},
		{"a\nversion: 9", 1, testDigest},
		{"a\rb", 1, testDigest},
		{"a\x00b", 1, testDigest},
		{"a\tb", 1, testDigest},
		{"a\x7fb", 1, testDigest},
		{"a\u0085b", 1, testDigest},
		{"a\u2028b", 1, testDigest},
		{" a", 1, testDigest},
		{"a ", 1, testDigest},
		{"a\xffb", 1, testDigest},
		{strings.Repeat("a", 1025), 1, testDigest},
		{testRepo, 0, testDigest},
		{testRepo, -1, testDigest},
		{testRepo, 1, strings.ToUpper(testDigest)},
		{testRepo, 1, testDigest[:63]},
		{testRepo, 1, testDigest + "0"},
		{testRepo, 1, strings.Repeat("g", 64)},
		{testRepo, 1, ""},
	}
	for _, c := range cases {
		if s, err := NewStatement(c.repo, c.version, yamlOnly(c.digest)); err == nil {
			t.Errorf("NewStatement(%q, %d, %q) = %q, want an error", c.repo, c.version, c.digest, s)
		}
	}
	key := ManifestFile{Path: "keys/a.asc", SHA256: otherDigest}
	yaml := ManifestFile{Path: FileName, SHA256: testDigest}
	manifests := map[string][]ManifestFile{
		"empty":               nil,
		"no allowlist.yaml":   {key},
		"unsorted":            {key, yaml},
		"duplicate":           {yaml, yaml},
		"path with LF":        {yaml, {Path: "keys/a.asc\n" + testDigest + "  keys/b.asc", SHA256: otherDigest}},
		"absolute path":       {{Path: "/etc/a.asc", SHA256: otherDigest}, yaml},
		"dot-dot":             {{Path: "../a.asc", SHA256: otherDigest}, yaml},
		"unclean":             {yaml, {Path: "keys//a.asc", SHA256: otherDigest}},
		"dot slash":           {{Path: "./a.asc", SHA256: otherDigest}, yaml},
		"backslash":           {yaml, {Path: "keys\\a.asc", SHA256: otherDigest}},
		"CR":                  {yaml, {Path: "keys/a.asc\r", SHA256: otherDigest}},
		"upper-case digest":   {yaml, {Path: "keys/a.asc", SHA256: strings.ToUpper(otherDigest)}},
		"line separator path": {yaml, {Path: "keys/a\u2028.asc", SHA256: otherDigest}},
	}
	for name, m := range manifests {
		if s, err := NewStatement(testRepo, 1, m); err == nil {
			t.Errorf("%s: NewStatement = %q, want an error", name, s)
		}
	}
}

// Every statement a signer is asked to sign or an approval is checked
// against has the shape of one: a writ header and whole LF lines.
func TestCheckStatementRejects(t *testing.T) {
	t.Parallel()
	good := string(mustStatement(t, testRepo, 3, testDigest))
	for _, v := range []string{
		"",
		strings.TrimSuffix(good, "\n"),
		strings.ReplaceAll(good, "\n", "\r\n"),
		"not writ\n",
		good + "\x00\n",
		"writ \xff\n",
	} {
		if err := checkStatement([]byte(v)); err == nil {
			t.Errorf("checkStatement accepted %q", v)
		}
	}
	if err := checkStatement([]byte(good)); err != nil {
		t.Fatal(err)
	}
}

// sshWorld is a set of real ssh-keygen keys and the verifier trusting some.
type sshWorld struct {
	alice, bob, carol, dave, mallory *testkeys.SSH
	keys                             *gitsig.Keys
}

// newSSHWorld makes fresh real keys with ssh-keygen and trusts some of them.
func newSSHWorld(t testing.TB) *sshWorld {
	t.Helper()
	w := &sshWorld{
		alice:   testkeys.SSHKey(t, "alice@example.com"),
		bob:     testkeys.SSHKey(t, "bob@example.com"),
		carol:   testkeys.SSHKey(t, "carol@example.com"),
		dave:    testkeys.SSHKey(t, "dave@example.com"),
		mallory: testkeys.SSHKey(t, "mallory@example.com"),
	}
	lines := strings.Join([]string{
		w.alice.AllowedSignersLine(""),
		w.bob.AllowedSignersLine(ApprovalNamespace),
		// carol may sign commits only, not approvals.
		w.carol.AllowedSignersLine("git"),
		// dave's key stopped being trusted in 2020.
		w.dave.AllowedSignersLine("", `valid-before="20200101Z"`),
	}, "\n") + "\n"
	signers, err := gitsig.ParseAllowedSigners([]byte(lines))
	if err != nil {
		t.Fatal(err)
	}
	w.keys, err = gitsig.NewKeys(nil, signers)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func approvalPath(version int64, name string) string {
	return ApprovalDir(version) + "/" + name
}

// stmtDir is the approval directory of an allowlist statement's version.
func stmtDir(stmt []byte) string {
	for _, line := range strings.Split(string(stmt), "\n") {
		if v, ok := strings.CutPrefix(line, "version: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return ApprovalDir(n)
		}
	}
	return ""
}

// verifyOne runs Verify over a single file.
func verifyOne(t *testing.T, v *ApprovalVerifier, stmt []byte, name string, data []byte) ([]Approval, []error) {
	t.Helper()
	return v.Verify(stmt, stmtDir(stmt), map[string][]byte{name: data}, time.Now())
}

// wantRejected checks that a single file was refused with an error
// mentioning every one of want.
func wantRejected(t *testing.T, approvals []Approval, errs []error, file string, want ...string) {
	t.Helper()
	if len(approvals) != 0 {
		t.Fatalf("accepted %+v, want a refusal", approvals)
	}
	if len(errs) != 1 {
		t.Fatalf("errors %v, want exactly one", errs)
	}
	t.Logf("refused as expected: %v", errs[0])
	var ae *ApprovalError
	if !errors.As(errs[0], &ae) || ae.File != file {
		t.Fatalf("error %v does not name file %s", errs[0], file)
	}
	for _, w := range want {
		if !strings.Contains(errs[0].Error(), w) {
			t.Errorf("error %q does not mention %q", errs[0], w)
		}
	}
}

func TestSSHApprovals(t *testing.T) {
	t.Parallel()
	w := newSSHWorld(t)
	v, err := NewApprovalVerifier(w.keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	stmt := mustStatement(t, testRepo, 4, testDigest)
	ctx := context.Background()

	aliceSig, err := SignSSH(ctx, stmt, w.alice.PrivatePath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(aliceSig, []byte("-----BEGIN SSH SIGNATURE-----\n")) {
		t.Fatalf("SignSSH output is not an armored SSH signature: %q", aliceSig)
	}
	// ssh-keygen itself accepts what SignSSH made, for the right namespace.
	checkWithSSHKeygen(t, w.alice, stmt, aliceSig)

	bobSig := w.bob.Sign(t, stmt, ApprovalNamespace)

	t.Run("valid", func(t *testing.T) {
		t.Parallel()
		got, errs := v.Verify(stmt, stmtDir(stmt), map[string][]byte{
			approvalPath(4, "bob.sshsig"):   bobSig,
			approvalPath(4, "alice.sshsig"): aliceSig,
		}, time.Now())
		if len(errs) != 0 {
			t.Fatal(errs)
		}
		want := []Approval{
			{File: approvalPath(4, "alice.sshsig"), Kind: KindSSH, Signer: w.alice.Fingerprint},
			{File: approvalPath(4, "bob.sshsig"), Kind: KindSSH, Signer: w.bob.Fingerprint},
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("approvals %+v, want %+v", got, want)
		}
	})
	t.Run("same signer twice counts once", func(t *testing.T) {
		t.Parallel()
		again := w.alice.Sign(t, stmt, ApprovalNamespace)
		got, errs := v.Verify(stmt, stmtDir(stmt), map[string][]byte{
			approvalPath(4, "alice.sshsig"):  aliceSig,
			approvalPath(4, "alice2.sshsig"): again,
			approvalPath(4, "zz.sshsig"):     aliceSig,
		}, time.Now())
		if len(errs) != 0 || len(got) != 1 || got[0].File != approvalPath(4, "alice.sshsig") {
			t.Fatalf("approvals %+v, errors %v; want alice once, from alice.sshsig", got, errs)
		}
	})
	negatives := []struct {
		name string
		sig  func(t *testing.T) []byte
		want []string
	}{
		{"over another digest", func(t *testing.T) []byte {
			return w.alice.Sign(t, mustStatement(t, testRepo, 4, otherDigest), ApprovalNamespace)
		}, []string{"does not verify over this statement", "another repository, version, or content"}},
		{"over another version", func(t *testing.T) []byte {
			return w.alice.Sign(t, mustStatement(t, testRepo, 3, testDigest), ApprovalNamespace)
		}, []string{"does not verify"}},
		{"over another repository identity", func(t *testing.T) []byte {
			return w.alice.Sign(t, mustStatement(t, "gitlab.example.com/fork/allowlist", 4, testDigest), ApprovalNamespace)
		}, []string{"does not verify"}},
		{"wrong namespace", func(t *testing.T) []byte {
			return w.alice.Sign(t, stmt, "git")
		}, []string{`namespace is "git"`, ApprovalNamespace}},
		{"unknown key", func(t *testing.T) []byte {
			return w.mallory.Sign(t, stmt, ApprovalNamespace)
		}, []string{w.mallory.Fingerprint, "not among the trusted keys"}},
		{"key trusted for commits only", func(t *testing.T) []byte {
			return w.carol.Sign(t, stmt, ApprovalNamespace)
		}, []string{`namespaces="git"`}},
		{"key no longer valid", func(t *testing.T) []byte {
			return w.dave.Sign(t, stmt, ApprovalNamespace)
		}, []string{"valid-before"}},
		{"trailing data", func(t *testing.T) []byte {
			return append(append([]byte{}, aliceSig...), "more\n"...)
		}, []string{"data after it"}},
		{"leading data", func(t *testing.T) []byte {
			return append([]byte("hello\n"), aliceSig...)
		}, []string{"not an armored SSH signature"}},
		{"garbage", func(t *testing.T) []byte { return []byte("not a signature") }, []string{"not an armored"}},
		{"empty", func(t *testing.T) []byte { return nil }, []string{"not an armored"}},
		{"corrupt base64", func(t *testing.T) []byte {
			b := append([]byte{}, aliceSig...)
			i := bytes.IndexByte(b, '\n') + 20
			b[i] = '*'
			return b
		}, []string{"armor is not valid"}},
		{"a signature by another key spliced in", func(t *testing.T) []byte {
			// Valid SSHSIG by mallory, over the right statement: the key in
			// the signature decides, not the file name.
			return w.mallory.Sign(t, stmt, ApprovalNamespace)
		}, []string{"not among the trusted keys"}},
	}
	for _, n := range negatives {
		t.Run(n.name, func(t *testing.T) {
			t.Parallel()
			name := approvalPath(4, "alice.sshsig")
			got, errs := verifyOne(t, v, stmt, name, n.sig(t))
			wantRejected(t, got, errs, name, n.want...)
		})
	}
	t.Run("no SSH keys trusted", func(t *testing.T) {
		t.Parallel()
		v2, err := NewApprovalVerifier(nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		name := approvalPath(4, "alice.sshsig")
		got, errs := verifyOne(t, v2, stmt, name, aliceSig)
		wantRejected(t, got, errs, name, "no SSH keys are trusted")
	})
}

// checkWithSSHKeygen verifies sig with ssh-keygen -Y verify, the reference
// implementation, and checks that it refuses the git namespace.
func checkWithSSHKeygen(t *testing.T, k *testkeys.SSH, msg, sig []byte) {
	t.Helper()
	dir := t.TempDir()
	signers := filepath.Join(dir, "allowed_signers")
	sigPath := filepath.Join(dir, "sig")
	if err := os.WriteFile(signers, []byte(k.AllowedSignersLine("")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sigPath, sig, 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(ns string) error {
		cmd := exec.Command("ssh-keygen", "-Y", "verify", "-f", signers, "-I", k.Principal, "-n", ns, "-s", sigPath)
		cmd.Stdin = bytes.NewReader(msg)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	if err := run(ApprovalNamespace); err != nil {
		t.Fatalf("ssh-keygen -Y verify refused SignSSH's signature: %v", err)
	}
	if err := run("git"); err == nil {
		t.Fatal("ssh-keygen -Y verify accepted the approval as a git signature")
	}
}

func TestSignSSHErrors(t *testing.T) {
	t.Parallel()
	w := newSSHWorld(t)
	ctx := context.Background()
	stmt := mustStatement(t, testRepo, 1, testDigest)
	if _, err := SignSSH(ctx, stmt, filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("SignSSH with a missing key succeeded")
	}
	if _, err := SignSSH(ctx, []byte("not a statement"), w.alice.PrivatePath); err == nil {
		t.Error("SignSSH signed a non-canonical statement")
	}
	notAKey := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(notAKey, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := SignSSH(ctx, stmt, notAKey); err == nil || !strings.Contains(err.Error(), "ssh-keygen") {
		t.Errorf("SignSSH with a broken key: %v", err)
	}
}

func TestApprovalFileNames(t *testing.T) {
	t.Parallel()
	w := newSSHWorld(t)
	v, err := NewApprovalVerifier(w.keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	stmt := mustStatement(t, testRepo, 5, testDigest)
	sig := w.alice.Sign(t, stmt, ApprovalNamespace)
	for _, name := range []string{
		"approvals/v4/alice.sshsig",     // another version's directory
		"approvals/v5/sub/alice.sshsig", // a subdirectory
		"approvals/v5/alice.sig",        // unknown suffix
		"approvals/v5/README.md",        // not an approval
		"approvals/v5/.sshsig",          // empty label
		"approvals/v5/-alice.sshsig",    // label starts with '-'
		"approvals/v5/al ice.sshsig",    // space in label
		"alice.sshsig",                  // bare name
		"approvals/v50/alice.sshsig",    // prefix of another directory
		"approvals/v5/" + strings.Repeat("a", 65) + ".sshsig",
	} {
		got, errs := verifyOne(t, v, stmt, name, sig)
		wantRejected(t, got, errs, name)
	}
	got, errs := verifyOne(t, v, stmt, "approvals/v5/"+strings.Repeat("a", 64)+".sshsig", sig)
	if len(errs) != 0 || len(got) != 1 {
		t.Fatalf("64-character label: %+v, %v", got, errs)
	}
}

func TestApprovalBounds(t *testing.T) {
	t.Parallel()
	w := newSSHWorld(t)
	v, err := NewApprovalVerifier(w.keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	stmt := mustStatement(t, testRepo, 1, testDigest)
	sig := w.alice.Sign(t, stmt, ApprovalNamespace)

	// An oversized file is refused before it is parsed.
	big := append(append([]byte{}, sig...), bytes.Repeat([]byte(" "), MaxApprovalFileBytes)...)
	got, errs := verifyOne(t, v, stmt, approvalPath(1, "alice.sshsig"), big)
	wantRejected(t, got, errs, approvalPath(1, "alice.sshsig"), "larger than")

	// More files than the bound: nothing counts.
	files := map[string][]byte{approvalPath(1, "alice.sshsig"): sig}
	for i := range MaxApprovalFiles {
		files[approvalPath(1, fmt.Sprintf("x%d.sshsig", i))] = []byte("x")
	}
	got, errs = v.Verify(stmt, stmtDir(stmt), files, time.Now())
	if len(got) != 0 || len(errs) != 1 || !strings.Contains(errs[0].Error(), "more than") {
		t.Fatalf("%d files: %+v, %v", len(files), got, errs)
	}
	// At the bound, every file is looked at.
	delete(files, approvalPath(1, "x0.sshsig"))
	got, errs = v.Verify(stmt, stmtDir(stmt), files, time.Now())
	if len(got) != 1 || len(errs) != MaxApprovalFiles-1 {
		t.Fatalf("%d files: %d approvals, %d errors", len(files), len(got), len(errs))
	}

	// A statement that is not canonical verifies nothing.
	got, errs = v.Verify(append([]byte{}, stmt[:len(stmt)-1]...), ApprovalDir(1), map[string][]byte{approvalPath(1, "alice.sshsig"): sig}, time.Now())
	if len(got) != 0 || len(errs) != 1 {
		t.Fatalf("bad statement: %+v, %v", got, errs)
	}
}

// writePEM writes a PEM block to a new file and returns its path.
func writePEM(t *testing.T, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), strings.ReplaceAll(strings.ToLower(typ), " ", "_")+".pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// sigstoreKeyFiles makes a key of the given kind, writes its private key
// (PKCS#8) and public key (PKIX) as PEM files, and returns the paths.
func sigstoreKeyFiles(t *testing.T, priv crypto.Signer) (privPath, pubPath string) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, "PRIVATE KEY", der), writePEM(t, "PUBLIC KEY", pubDER)
}

func fingerprintOf(t *testing.T, pub crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return "sigstore:" + hex.EncodeToString(sum[:])
}

func TestSigstoreApprovals(t *testing.T) {
	t.Parallel()
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	privPath, pubPath := sigstoreKeyFiles(t, ecKey)
	signer, err := LoadSigstoreKey(privPath)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := LoadSigstorePublicKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewApprovalVerifier(nil, []crypto.PublicKey{pub, edPriv.Public()})
	if err != nil {
		t.Fatal(err)
	}
	stmt := mustStatement(t, testRepo, 9, testDigest)
	bundleJSON, err := SignSigstore(stmt, signer)
	if err != nil {
		t.Fatal(err)
	}
	name := approvalPath(9, "dave.sigstore.json")

	t.Run("valid", func(t *testing.T) {
		t.Parallel()
		got, errs := verifyOne(t, v, stmt, name, bundleJSON)
		want := Approval{File: name, Kind: KindSigstore, Signer: fingerprintOf(t, &ecKey.PublicKey)}
		if len(errs) != 0 || len(got) != 1 || got[0] != want {
			t.Fatalf("approvals %+v, errors %v; want %+v", got, errs, want)
		}
	})
	t.Run("standard bundle", func(t *testing.T) {
		t.Parallel()
		// sigstore-go's own verifier, looking the key up by the bundle's
		// hint as other Sigstore tools do, accepts it too.
		var m map[string]any
		if err := json.Unmarshal(bundleJSON, &m); err != nil {
			t.Fatal(err)
		}
		if m["mediaType"] != "application/vnd.dev.sigstore.bundle.v0.3+json" {
			t.Fatalf("media type %v", m["mediaType"])
		}
		b, err := ParseBundle(bundleJSON)
		if err != nil {
			t.Fatal(err)
		}
		sv, err := signature.LoadECDSAVerifier(&ecKey.PublicKey, crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		hint, _ := keyHint(&ecKey.PublicKey)
		tm := root.NewTrustedPublicKeyMaterialFromMapping(map[string]*root.ExpiringKey{hint: root.NewExpiringKey(sv, time.Time{}, time.Time{})})
		ver, err := verify.NewVerifier(tm, verify.WithCurrentTime())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ver.Verify(b, verify.NewPolicy(verify.WithArtifact(bytes.NewReader(stmt)), verify.WithKey())); err != nil {
			t.Fatalf("sigstore-go does not verify the bundle: %v", err)
		}
	})
	t.Run("same signer twice counts once, with SSH it is two", func(t *testing.T) {
		t.Parallel()
		w := newSSHWorld(t)
		v2, err := NewApprovalVerifier(w.keys, []crypto.PublicKey{pub})
		if err != nil {
			t.Fatal(err)
		}
		again, err := SignSigstore(stmt, signer)
		if err != nil {
			t.Fatal(err)
		}
		got, errs := v2.Verify(stmt, stmtDir(stmt), map[string][]byte{
			name:                                   bundleJSON,
			approvalPath(9, "dave2.sigstore.json"): again,
			approvalPath(9, "alice.sshsig"):        w.alice.Sign(t, stmt, ApprovalNamespace),
		}, time.Now())
		if len(errs) != 0 || len(got) != 2 || got[0].Kind != KindSSH || got[1].File != name {
			t.Fatalf("approvals %+v, errors %v", got, errs)
		}
	})

	signWith := func(t *testing.T, stmt []byte, key crypto.Signer) []byte {
		t.Helper()
		b, err := SignSigstore(stmt, key)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	negatives := []struct {
		name   string
		bundle func(t *testing.T) []byte
		want   []string
	}{
		{"over another digest", func(t *testing.T) []byte {
			return signWith(t, mustStatement(t, testRepo, 9, otherDigest), signer)
		}, []string{"does not verify over this statement", fingerprintOf(t, &ecKey.PublicKey)}},
		{"over another version", func(t *testing.T) []byte {
			return signWith(t, mustStatement(t, testRepo, 8, testDigest), signer)
		}, []string{"does not verify over this statement"}},
		{"over another repository identity", func(t *testing.T) []byte {
			return signWith(t, mustStatement(t, "gitlab.example.com/fork/allowlist", 9, testDigest), signer)
		}, []string{"does not verify over this statement"}},
		{"unknown key", func(t *testing.T) []byte { return signWith(t, stmt, other) }, []string{"not signed by a trusted key"}},
		{"unknown key claiming a trusted key's hint", func(t *testing.T) []byte {
			b := signWith(t, stmt, other)
			otherHint, _ := keyHint(&other.PublicKey)
			trustedHint, _ := keyHint(&ecKey.PublicKey)
			return bytes.Replace(b, []byte(otherHint), []byte(trustedHint), 1)
		}, []string{"does not verify over this statement"}},
		{"corrupted signature", func(t *testing.T) []byte {
			return editBundle(t, bundleJSON, func(m map[string]any) {
				ms := m["messageSignature"].(map[string]any)
				sig := ms["signature"].(string)
				ms["signature"] = flipBase64(sig)
			})
		}, []string{"does not verify"}},
		{"corrupted digest", func(t *testing.T) []byte {
			return editBundle(t, bundleJSON, func(m map[string]any) {
				md := m["messageSignature"].(map[string]any)["messageDigest"].(map[string]any)
				md["digest"] = flipBase64(md["digest"].(string))
			})
		}, []string{"does not verify"}},
		{"truncated JSON", func(t *testing.T) []byte { return bundleJSON[:len(bundleJSON)/2] }, []string{"not a Sigstore bundle"}},
		{"unknown member", func(t *testing.T) []byte {
			return editBundle(t, bundleJSON, func(m map[string]any) { m["approvedBy"] = "everyone" })
		}, []string{"not a Sigstore bundle"}},
		{"older media type", func(t *testing.T) []byte {
			return editBundle(t, bundleJSON, func(m map[string]any) {
				m["mediaType"] = "application/vnd.dev.sigstore.bundle+json;version=0.2"
			})
		}, []string{"v0.3"}},
		{"DSSE attestation instead of a message signature", func(t *testing.T) []byte {
			kp := &keypair{key: ecKey, alg: mustAlg(t, &ecKey.PublicKey)}
			pb, err := signBundle(&sign.DSSEData{Data: stmt, PayloadType: "text/plain"}, kp)
			if err != nil {
				t.Fatal(err)
			}
			return pb
		}, []string{"DSSE"}},
		{"not JSON", func(t *testing.T) []byte { return []byte("-----BEGIN SSH SIGNATURE-----") }, []string{"not a Sigstore bundle"}},
		{"empty", func(t *testing.T) []byte { return nil }, []string{"not a Sigstore bundle"}},
		{"pure Ed25519", func(t *testing.T) []byte {
			// sigstore-go's own Ed25519 key pair makes pure Ed25519
			// bundles, which sigstore-go v1.3.0 cannot verify.
			kp, err := sign.NewEphemeralKeypair(&sign.EphemeralKeypairOptions{Algorithm: protocommon.PublicKeyDetails_PKIX_ED25519})
			if err != nil {
				t.Fatal(err)
			}
			pb, err := signBundle(&sign.PlainData{Data: stmt}, kp)
			if err != nil {
				t.Fatal(err)
			}
			return pb
		}, []string{"pure Ed25519 bundles are not supported", "ECDSA P-256"}},
	}
	for _, n := range negatives {
		t.Run(n.name, func(t *testing.T) {
			t.Parallel()
			got, errs := verifyOne(t, v, stmt, name, n.bundle(t))
			wantRejected(t, got, errs, name, n.want...)
		})
	}
	t.Run("no Sigstore keys trusted", func(t *testing.T) {
		t.Parallel()
		v2, err := NewApprovalVerifier(nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, errs := verifyOne(t, v2, stmt, name, bundleJSON)
		wantRejected(t, got, errs, name, "no Sigstore keys are trusted")
	})
	t.Run("only an Ed25519 key trusted", func(t *testing.T) {
		t.Parallel()
		v2, err := NewApprovalVerifier(nil, []crypto.PublicKey{edPriv.Public()})
		if err != nil {
			t.Fatal(err)
		}
		got, errs := verifyOne(t, v2, stmt, name, bundleJSON)
		wantRejected(t, got, errs, name, "matches no trusted key")
	})
}

func mustAlg(t *testing.T, pub crypto.PublicKey) sigstoreAlg {
	t.Helper()
	a, err := sigstoreAlgorithm(pub)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func signBundle(content sign.Content, kp sign.Keypair) ([]byte, error) {
	pb, err := sign.Bundle(content, kp, sign.BundleOptions{})
	if err != nil {
		return nil, err
	}
	return protojson.Marshal(pb)
}

// editBundle changes a bundle's JSON as an attacker editing the file would.
func editBundle(t *testing.T, b []byte, edit func(map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// flipBase64 changes one character of standard base64 text in its middle.
func flipBase64(s string) string {
	b := []byte(s)
	i := len(b) / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

func TestSigstoreEd25519ph(t *testing.T) {
	t.Parallel()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	privPath, pubPath := sigstoreKeyFiles(t, priv)
	signer, err := LoadSigstoreKey(privPath)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := LoadSigstorePublicKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	stmt := mustStatement(t, testRepo, 2, testDigest)
	b, err := SignSigstore(stmt, signer)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("SHA2_512")) {
		t.Fatalf("Ed25519 bundle is not Ed25519ph (SHA-512 pre-hash): %s", b)
	}
	v, err := NewApprovalVerifier(nil, []crypto.PublicKey{pub})
	if err != nil {
		t.Fatal(err)
	}
	name := approvalPath(2, "erin.sigstore.json")
	got, errs := verifyOne(t, v, stmt, name, b)
	if len(errs) != 0 || len(got) != 1 || got[0].Signer != fingerprintOf(t, priv.Public()) {
		t.Fatalf("approvals %+v, errors %v", got, errs)
	}
	got, errs = verifyOne(t, v, mustStatement(t, testRepo, 2, otherDigest), name, b)
	wantRejected(t, got, errs, name, "does not verify")
}

func TestSigstoreKeyFiles(t *testing.T) {
	t.Parallel()
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSigstoreKey(writePEM(t, "EC PRIVATE KEY", sec1)); err != nil {
		t.Errorf("SEC 1 P-256 key: %v", err)
	}

	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384Priv, p384Pub := sigstoreKeyFiles(t, p384)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaPriv, rsaPub := sigstoreKeyFiles(t, rsaKey)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	ecPriv, ecPub := sigstoreKeyFiles(t, ecKey)

	junk := filepath.Join(t.TempDir(), "junk")
	if err := os.WriteFile(junk, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	twoKeys := filepath.Join(t.TempDir(), "two")
	one, _ := os.ReadFile(ecPub)
	if err := os.WriteFile(twoKeys, append(append([]byte{}, one...), one...), 0o600); err != nil {
		t.Fatal(err)
	}
	headers := filepath.Join(t.TempDir(), "headers")
	if err := os.WriteFile(headers, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: sec1}), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name, path, want string
	}{
		{"P-384", p384Priv, "P-384"},
		{"RSA", rsaPriv, "use an ECDSA P-256 key"},
		{"encrypted", writePEM(t, "ENCRYPTED PRIVATE KEY", pkcs8), "encrypted"},
		{"cosign encrypted", writePEM(t, "ENCRYPTED SIGSTORE PRIVATE KEY", pkcs8), "encrypted"},
		{"legacy encrypted", headers, "headers"},
		{"a public key", ecPub, "not a private key"},
		{"not PEM", junk, "no PEM block"},
		{"missing", filepath.Join(t.TempDir(), "missing"), "no such file"},
	} {
		if _, err := LoadSigstoreKey(c.path); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("LoadSigstoreKey(%s) = %v, want an error mentioning %q", c.name, err, c.want)
		}
	}
	for _, c := range []struct {
		name, path, want string
	}{
		{"P-384", p384Pub, "P-384"},
		{"RSA", rsaPub, "use an ECDSA P-256 key"},
		{"a private key", ecPriv, "not a \"PUBLIC KEY\""},
		{"two keys", twoKeys, "exactly one key"},
		{"not PEM", junk, "no PEM block"},
	} {
		if _, err := LoadSigstorePublicKey(c.path); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("LoadSigstorePublicKey(%s) = %v, want an error mentioning %q", c.name, err, c.want)
		}
	}

	if _, err := NewApprovalVerifier(nil, []crypto.PublicKey{&rsaKey.PublicKey}); err == nil {
		t.Error("NewApprovalVerifier trusted an RSA key")
	}
	if _, err := SignSigstore(mustStatement(t, testRepo, 1, testDigest), rsaKey); err == nil {
		t.Error("SignSigstore signed with an RSA key")
	}
	if _, err := SignSigstore([]byte("writ allowlist approval v2"), ecKey); err == nil {
		t.Error("SignSigstore signed a statement without its final line feed")
	}
}

// BenchmarkVerifyApprovals verifies one SSH and one Sigstore approval.
func BenchmarkVerifyApprovals(b *testing.B) {
	alice := testkeys.SSHKey(b, "alice@example.com")
	signers, err := gitsig.ParseAllowedSigners([]byte(alice.AllowedSignersLine("") + "\n"))
	if err != nil {
		b.Fatal(err)
	}
	keys, err := gitsig.NewKeys(nil, signers)
	if err != nil {
		b.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	v, err := NewApprovalVerifier(keys, []crypto.PublicKey{&ecKey.PublicKey})
	if err != nil {
		b.Fatal(err)
	}
	stmt := mustStatement(b, testRepo, 1, testDigest)
	bundleJSON, err := SignSigstore(stmt, ecKey)
	if err != nil {
		b.Fatal(err)
	}
	files := map[string][]byte{
		approvalPath(1, "alice.sshsig"):       alice.Sign(b, stmt, ApprovalNamespace),
		approvalPath(1, "dave.sigstore.json"): bundleJSON,
	}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if got, errs := v.Verify(stmt, stmtDir(stmt), files, now); len(got) != 2 || len(errs) != 0 {
			b.Fatal(got, errs)
		}
	}
}
