package allowlist

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hiddeco/sshsig"
	"golang.org/x/crypto/ssh"

	"gitlab.com/writ-ci/writ/internal/gitsig"
)

// The fuzz targets use fixed keys derived from constant seeds, so the seed
// corpora in testdata/fuzz hold valid approvals by them. These keys exist
// only for fuzzing.
var fuzzStatement = Statement("gitlab.example.com/acme/allowlist", 3, []ManifestFile{
	{Path: FileName, SHA256: "3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f3f"},
	{Path: "keys/dev.asc", SHA256: "3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e"},
})

func fuzzSSHKey() ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("writ approval fuzz ssh key"))
	return ed25519.NewKeyFromSeed(seed[:])
}

func fuzzSigstoreKey(tb testing.TB) *ecdsa.PrivateKey {
	d := sha256.Sum256([]byte("writ approval fuzz sigstore key"))
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d[:])
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func fuzzVerifier(tb testing.TB) *ApprovalVerifier {
	pub, err := ssh.NewPublicKey(fuzzSSHKey().Public())
	if err != nil {
		tb.Fatal(err)
	}
	line := "fuzz@example.com " + string(ssh.MarshalAuthorizedKey(pub))
	signers, err := gitsig.ParseAllowedSigners([]byte(line))
	if err != nil {
		tb.Fatal(err)
	}
	keys, err := gitsig.NewKeys(nil, signers)
	if err != nil {
		tb.Fatal(err)
	}
	v, err := NewApprovalVerifier(keys, []crypto.PublicKey{&fuzzSigstoreKey(tb).PublicKey})
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// FuzzApprovalSSH feeds .sshsig approval files an attacker may have written.
// Nothing may panic, and a file that counts must carry a signature by the
// trusted key that verifies over the statement.
func FuzzApprovalSSH(f *testing.F) {
	v := fuzzVerifier(f)
	name := ApprovalDir(3) + "/fuzz.sshsig"
	f.Add([]byte("-----BEGIN SSH SIGNATURE-----\n-----END SSH SIGNATURE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = parseSSHApproval(data)
		got, errs := v.Verify(fuzzStatement, ApprovalDir(3), map[string][]byte{name: data}, time.Unix(1700000000, 0))
		if len(got)+len(errs) != 1 {
			t.Fatalf("%d approvals and %d errors for one file", len(got), len(errs))
		}
		if len(got) == 1 {
			sig, err := parseSSHApproval(data)
			if err != nil {
				t.Fatalf("accepted a file that does not parse: %v", err)
			}
			pub, _ := ssh.NewPublicKey(fuzzSSHKey().Public())
			if err := sshsig.Verify(bytes.NewReader(fuzzStatement), sig, pub, sig.HashAlgorithm, ApprovalNamespace); err != nil {
				t.Fatalf("accepted a signature that does not verify: %v", err)
			}
			if got[0].Signer != ssh.FingerprintSHA256(pub) || got[0].Kind != KindSSH {
				t.Fatalf("accepted as %+v", got[0])
			}
		}
	})
}

// FuzzApprovalSigstore feeds .sigstore.json approval files an attacker may
// have written. Nothing may panic, and a file that counts must parse as an
// approval bundle and name the trusted key.
func FuzzApprovalSigstore(f *testing.F) {
	v := fuzzVerifier(f)
	name := ApprovalDir(3) + "/fuzz.sigstore.json"
	fp, err := SigstoreFingerprint(&fuzzSigstoreKey(f).PublicKey)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ParseBundle(data)
		got, errs := v.Verify(fuzzStatement, ApprovalDir(3), map[string][]byte{name: data}, time.Unix(1700000000, 0))
		if len(got)+len(errs) != 1 {
			t.Fatalf("%d approvals and %d errors for one file", len(got), len(errs))
		}
		if len(got) == 1 {
			if _, err := ParseBundle(data); err != nil {
				t.Fatalf("accepted a file that does not parse: %v", err)
			}
			if got[0].Signer != fp || got[0].Kind != KindSigstore {
				t.Fatalf("accepted as %+v", got[0])
			}
		}
	})
}

// TestFuzzSeedsAreMeaningful keeps the seed corpora honest: the "valid"
// seeds are approvals the fuzz verifier accepts, so fuzzing starts from
// inputs that reach signature verification, and the others are refused.
func TestFuzzSeedsAreMeaningful(t *testing.T) {
	t.Parallel()
	v := fuzzVerifier(t)
	for _, c := range []struct {
		target, seed, suffix string
		valid                bool
	}{
		{"FuzzApprovalSSH", "valid", ".sshsig", true},
		{"FuzzApprovalSSH", "valid-sha256", ".sshsig", true},
		{"FuzzApprovalSSH", "namespace-git", ".sshsig", false},
		{"FuzzApprovalSSH", "other-version", ".sshsig", false},
		{"FuzzApprovalSSH", "trailing", ".sshsig", false},
		{"FuzzApprovalSigstore", "valid", ".sigstore.json", true},
		{"FuzzApprovalSigstore", "valid-compact", ".sigstore.json", true},
		{"FuzzApprovalSigstore", "other-repository", ".sigstore.json", false},
		{"FuzzApprovalSigstore", "corrupt-signature", ".sigstore.json", false},
		{"FuzzApprovalSigstore", "dsse", ".sigstore.json", false},
		{"FuzzApprovalSigstore", "pure-ed25519", ".sigstore.json", false},
	} {
		raw, err := os.ReadFile(filepath.Join("testdata", "fuzz", c.target, c.seed))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitN(string(raw), "\n", 3)
		if len(lines) < 2 || lines[0] != "go test fuzz v1" || !strings.HasPrefix(lines[1], "[]byte(") {
			t.Fatalf("%s/%s: not a corpus file", c.target, c.seed)
		}
		s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			t.Fatalf("%s/%s: %v", c.target, c.seed, err)
		}
		got, errs := v.Verify(fuzzStatement, ApprovalDir(3), map[string][]byte{ApprovalDir(3) + "/fuzz" + c.suffix: []byte(s)}, time.Unix(1700000000, 0))
		if (len(got) == 1) != c.valid {
			t.Errorf("%s/%s: approvals %+v, errors %v; valid = %v expected", c.target, c.seed, got, errs, c.valid)
		}
	}
}

// TestWriteFuzzSeeds rewrites the seeds that hold signatures over
// fuzzStatement (or a variant of it) when the statement format changes:
// WRIT_WRITE_FUZZ_SEEDS=1 go test -run TestWriteFuzzSeeds ./allowlist/
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("WRIT_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set WRIT_WRITE_FUZZ_SEEDS=1 to rewrite the approval fuzz seeds")
	}
	signer, err := ssh.NewSignerFromKey(fuzzSSHKey())
	if err != nil {
		t.Fatal(err)
	}
	other := Statement("gitlab.example.com/acme/allowlist", 4, []ManifestFile{{Path: FileName, SHA256: strings.Repeat("3f", 32)}})
	sshSeed := func(name string, stmt []byte, h sshsig.HashAlgorithm) {
		sig, err := sshsig.Sign(bytes.NewReader(stmt), signer, h, ApprovalNamespace)
		if err != nil {
			t.Fatal(err)
		}
		writeSeed(t, "FuzzApprovalSSH", name, sshsig.Armor(sig))
	}
	sshSeed("valid", fuzzStatement, sshsig.HashSHA512)
	sshSeed("valid-sha256", fuzzStatement, sshsig.HashSHA256)
	sshSeed("other-version", other, sshsig.HashSHA512)

	key := fuzzSigstoreKey(t)
	bundle, err := SignSigstore(fuzzStatement, key)
	if err != nil {
		t.Fatal(err)
	}
	writeSeed(t, "FuzzApprovalSigstore", "valid", bundle)
	var compact bytes.Buffer
	if err := json.Compact(&compact, bundle); err != nil {
		t.Fatal(err)
	}
	writeSeed(t, "FuzzApprovalSigstore", "valid-compact", compact.Bytes())
	fork := Statement("gitlab.example.com/fork/allowlist", 3, []ManifestFile{{Path: FileName, SHA256: strings.Repeat("3f", 32)}})
	bundle, err = SignSigstore(fork, key)
	if err != nil {
		t.Fatal(err)
	}
	writeSeed(t, "FuzzApprovalSigstore", "other-repository", bundle)
}

func writeSeed(t *testing.T, target, name string, data []byte) {
	t.Helper()
	body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(data)) + ")\n"
	if err := os.WriteFile(filepath.Join("testdata", "fuzz", target, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}
