package main

import (
	"crypto"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"gitlab.com/writ-ci/writ/allowlist"
)

// TestStatementAndCosignKey: `writ allowlist statement` prints exactly the
// bytes an approval signs, and `writ allowlist approve` signs them with a
// cosign key file decrypted with COSIGN_PASSWORD.
func TestStatementAndCosignKey(t *testing.T) {
	dir := t.TempDir()
	content := allowlistText(3, "make build")
	writeFile(t, filepath.Join(dir, "allowlist.yaml"), content)

	out, code := writ(t, "allowlist", "statement", "--dir", dir)
	sum := sha256.Sum256([]byte(content))
	want := "writ allowlist approval v2\nrepository: acme/deploy-allowlist\nversion: 3\nfiles: 1\n" + hex.EncodeToString(sum[:]) + "  allowlist.yaml\n"
	if code != 0 || out != want {
		t.Fatalf("statement (%d):\n%q\nwant\n%q", code, out, want)
	}

	priv, pub, err := cryptoutils.GeneratePEMEncodedECDSAKeyPair(elliptic.P256(), func(bool) ([]byte, error) { return []byte("s3cret"), nil })
	if err != nil {
		t.Fatal(err)
	}
	keyPath, pubPath := filepath.Join(t.TempDir(), "cosign.key"), filepath.Join(t.TempDir(), "cosign.pub")
	os.WriteFile(keyPath, priv, 0o600)
	os.WriteFile(pubPath, pub, 0o644)

	t.Setenv("COSIGN_PASSWORD", "wrong")
	if out, code := writ(t, "allowlist", "approve", "--dir", dir, "--sigstore-key", keyPath, "--label", "dana"); code == 0 || !strings.Contains(out, "wrong password") {
		t.Fatalf("approve with a wrong password: %d %s", code, out)
	}
	os.Unsetenv("COSIGN_PASSWORD")
	if out, code := writ(t, "allowlist", "approve", "--dir", dir, "--sigstore-key", keyPath, "--label", "dana"); code == 0 || !strings.Contains(out, "COSIGN_PASSWORD") {
		t.Fatalf("approve without a password: %d %s", code, out)
	}
	t.Setenv("COSIGN_PASSWORD", "s3cret")
	if out, code := writ(t, "allowlist", "approve", "--dir", dir, "--sigstore-key", keyPath, "--label", "dana"); code != 0 {
		t.Fatalf("approve: %d %s", code, out)
	}
	bundle, err := os.ReadFile(filepath.Join(dir, "approvals", "v3", "dana.sigstore.json"))
	if err != nil {
		t.Fatal(err)
	}
	pk, err := allowlist.LoadSigstorePublicKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	v, err := allowlist.NewApprovalVerifier(nil, []crypto.PublicKey{pk})
	if err != nil {
		t.Fatal(err)
	}
	ok, errs := v.Verify([]byte(want), "approvals/v3", map[string][]byte{"approvals/v3/dana.sigstore.json": bundle}, time.Now())
	if len(ok) != 1 || len(errs) != 0 {
		t.Fatalf("the approval does not verify over the printed statement: %v %v", ok, errs)
	}
}
