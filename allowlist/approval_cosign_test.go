package allowlist

import (
	"bytes"
	"context"
	"crypto"
	"crypto/elliptic"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// cosignKeyFiles writes a key pair in cosign's format: the private key
// encrypted under password as `cosign generate-key-pair` writes it
// (cryptoutils is the code cosign generates it with).
func cosignKeyFiles(t testing.TB, password string) (privPath, pubPath string) {
	t.Helper()
	priv, pub, err := cryptoutils.GeneratePEMEncodedECDSAKeyPair(elliptic.P256(), func(bool) ([]byte, error) { return []byte(password), nil })
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(priv, []byte("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----")) {
		t.Fatalf("not cosign's format:\n%s", priv)
	}
	dir := t.TempDir()
	privPath, pubPath = filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub")
	os.WriteFile(privPath, priv, 0o600)
	os.WriteFile(pubPath, pub, 0o644)
	return privPath, pubPath
}

func staticPassword(p string) PasswordFunc { return func() ([]byte, error) { return []byte(p), nil } }

// TestCosignEncryptedKey: a cosign key file signs approvals with its
// password, and is refused, saying why, without it or with a wrong one.
func TestCosignEncryptedKey(t *testing.T) {
	privPath, pubPath := cosignKeyFiles(t, "correct horse")
	key, err := LoadSigstoreKeyWithPassword(privPath, staticPassword("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := LoadSigstorePublicKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	stmt := mustStatement(t, testRepo, 8, testDigest)
	b, err := SignSigstore(stmt, key)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewApprovalVerifier(nil, []crypto.PublicKey{pub})
	if err != nil {
		t.Fatal(err)
	}
	ok, errs := v.Verify(stmt, stmtDir(stmt), map[string][]byte{approvalPath(8, "alice.sigstore.json"): b}, time.Now())
	if len(ok) != 1 || len(errs) != 0 || ok[0].Signer != fingerprintOf(t, pub) {
		t.Fatalf("approval by a cosign key: %v %v", ok, errs)
	}

	if _, err := LoadSigstoreKeyWithPassword(privPath, staticPassword("wrong")); err == nil || !strings.Contains(err.Error(), "wrong password") {
		t.Errorf("wrong password: %v", err)
	}
	if _, err := LoadSigstoreKey(privPath); err == nil || !strings.Contains(err.Error(), "COSIGN_PASSWORD") {
		t.Errorf("no password: %v", err)
	}
	// An empty password is a password: cosign encrypts with it.
	emptyPriv, _ := cosignKeyFiles(t, "")
	if _, err := LoadSigstoreKeyWithPassword(emptyPriv, staticPassword("")); err != nil {
		t.Errorf("empty password: %v", err)
	}
	// The older PEM type cosign wrote holds the same encryption.
	data, _ := os.ReadFile(privPath)
	legacy := filepath.Join(t.TempDir(), "legacy.key")
	os.WriteFile(legacy, bytes.ReplaceAll(data, []byte("SIGSTORE PRIVATE KEY"), []byte("COSIGN PRIVATE KEY")), 0o600)
	if _, err := LoadSigstoreKeyWithPassword(legacy, staticPassword("correct horse")); err != nil {
		t.Errorf("ENCRYPTED COSIGN PRIVATE KEY: %v", err)
	}
}

// cosignBinary is the real cosign CLI: $WRIT_COSIGN_BIN, else the one
// test/cosign/build.sh cached. Building it is slow, so tests only use a
// cached one; with WRIT_TEST_COSIGN=1 a missing cosign fails the test.
func cosignBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("WRIT_COSIGN_BIN"); p != "" {
		return p
	}
	out, err := exec.Command("bash", "../test/cosign/build.sh", "--path").Output()
	if p := strings.TrimSpace(string(out)); err == nil && p != "" {
		return p
	}
	msg := "cosign is not built: run test/cosign/build.sh (slow: it builds cosign from the Go module proxy), or set WRIT_COSIGN_BIN"
	if os.Getenv("WRIT_TEST_COSIGN") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func runCosign(t *testing.T, bin string, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	// No network: nothing may reach Rekor, Fulcio or TUF.
	cmd.Env = append(os.Environ(), append([]string{"HOME=" + t.TempDir(), "HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9", "NO_PROXY="}, env...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestCosignCLIRoundTrip: an approval signed by the real cosign CLI with
// its own key file is accepted by writ, and writ's approval verifies with
// `cosign verify-blob`; over another statement, neither verifies.
func TestCosignCLIRoundTrip(t *testing.T) {
	bin := cosignBinary(t)
	dir := t.TempDir()
	pw := []string{"COSIGN_PASSWORD=approver-secret"}
	if out, err := runCosign(t, bin, pw, "generate-key-pair", "--output-key-prefix", filepath.Join(dir, "cosign")); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
	}
	privPath, pubPath := filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub")
	stmt := mustStatement(t, testRepo, 8, testDigest)
	stmtPath := filepath.Join(dir, "statement")
	os.WriteFile(stmtPath, stmt, 0o644)
	other := mustStatement(t, testRepo, 9, testDigest)
	otherPath := filepath.Join(dir, "other")
	os.WriteFile(otherPath, other, 0o644)
	pub, err := LoadSigstorePublicKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewApprovalVerifier(nil, []crypto.PublicKey{pub})
	if err != nil {
		t.Fatal(err)
	}

	// cosign signs; writ verifies.
	bundlePath := filepath.Join(dir, "alice.sigstore.json")
	if out, err := runCosign(t, bin, pw, "sign-blob", "--yes", "--key", privPath, "--new-bundle-format", "--tlog-upload=false",
		"--bundle", bundlePath, stmtPath); err != nil {
		t.Fatalf("cosign sign-blob: %v\n%s", err, out)
	}
	bundle, _ := os.ReadFile(bundlePath)
	ok, errs := v.Verify(stmt, stmtDir(stmt), map[string][]byte{approvalPath(8, "alice.sigstore.json"): bundle}, time.Now())
	if len(ok) != 1 || len(errs) != 0 || ok[0].Signer != fingerprintOf(t, pub) {
		t.Fatalf("writ refused cosign's approval: %v %v\n%s", ok, errs, bundle)
	}
	if ok, _ := v.Verify(other, stmtDir(other), map[string][]byte{approvalPath(9, "alice.sigstore.json"): bundle}, time.Now()); len(ok) != 0 {
		t.Fatal("cosign's approval of version 8 counted for version 9")
	}

	// writ signs with cosign's key file; cosign verifies.
	key, err := LoadSigstoreKeyWithPassword(privPath, staticPassword("approver-secret"))
	if err != nil {
		t.Fatal(err)
	}
	writBundle, err := SignSigstore(stmt, key)
	if err != nil {
		t.Fatal(err)
	}
	writPath := filepath.Join(dir, "writ.sigstore.json")
	os.WriteFile(writPath, writBundle, 0o644)
	// cosign wants a trusted root with the new bundle format even for a
	// key; an empty one says "no Fulcio, no Rekor" and keeps it offline.
	emptyRoot := filepath.Join(dir, "trusted_root.json")
	os.WriteFile(emptyRoot, []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`), 0o644)
	verifyArgs := func(blob string) []string {
		return []string{"verify-blob", "--key", pubPath, "--new-bundle-format", "--insecure-ignore-tlog=true", "--trusted-root", emptyRoot, "--bundle", writPath, blob}
	}
	if out, err := runCosign(t, bin, nil, verifyArgs(stmtPath)...); err != nil {
		t.Fatalf("cosign verify-blob refused writ's approval: %v\n%s", err, out)
	}
	if out, err := runCosign(t, bin, nil, verifyArgs(otherPath)...); err == nil || !strings.Contains(out, "invalid signature") {
		t.Fatalf("cosign should refuse writ's approval over another statement for its signature (%v):\n%s", err, out)
	}
}
