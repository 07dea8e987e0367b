package allowlist

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"sync"
	"testing"

	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"google.golang.org/protobuf/encoding/protojson"
)

// keypair adapts a crypto.Signer to sigstore-go's sign.Keypair, so tests can
// compare writ's bundles with sign.Bundle's and make bundles writ itself
// never makes (DSSE). Only tests import pkg/sign: see keyBundle for why.
type keypair struct {
	key  crypto.Signer
	alg  sigstoreAlg
	hint string
}

var _ sign.Keypair = (*keypair)(nil)

func (k *keypair) GetHashAlgorithm() protocommon.HashAlgorithm       { return k.alg.hash }
func (k *keypair) GetSigningAlgorithm() protocommon.PublicKeyDetails { return k.alg.details }
func (k *keypair) GetHint() []byte                                   { return []byte(k.hint) }
func (k *keypair) GetKeyAlgorithm() string                           { return k.alg.name }
func (k *keypair) GetPublicKey() crypto.PublicKey                    { return k.key.Public() }

func (k *keypair) GetPublicKeyPem() (string, error) {
	der, err := x509.MarshalPKIXPublicKey(k.key.Public())
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}

func (k *keypair) SignData(_ context.Context, data []byte) ([]byte, []byte, error) {
	return signDigest(k.key, k.alg, data)
}

// memoSigner returns the same signature every time it signs the same
// digest, so two bundles over one statement can be compared byte for byte
// even with ECDSA's randomised signatures.
type memoSigner struct {
	crypto.Signer
	mu   sync.Mutex
	sigs map[string][]byte
}

func (m *memoSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if sig, ok := m.sigs[string(digest)]; ok {
		return bytes.Clone(sig), nil
	}
	sig, err := m.Signer.Sign(r, digest, opts)
	if err != nil {
		return nil, err
	}
	if m.sigs == nil {
		m.sigs = map[string][]byte{}
	}
	m.sigs[string(digest)] = bytes.Clone(sig)
	return sig, nil
}

// TestSignSigstoreMatchesSignBundle proves that SignSigstore, which builds
// its bundle itself, writes exactly the file sigstore-go's sign.Bundle
// would, for each key type an approval may use.
func TestSignSigstoreMatchesSignBundle(t *testing.T) {
	t.Parallel()
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	stmt := mustStatement(t, testRepo, 7, testDigest)
	for _, tc := range []struct {
		name string
		key  crypto.Signer
	}{{"ECDSA P-256", ecKey}, {"Ed25519ph", edKey}} {
		t.Run(tc.name, func(t *testing.T) {
			key := &memoSigner{Signer: tc.key}
			got, err := SignSigstore(stmt, key)
			if err != nil {
				t.Fatal(err)
			}
			hint, err := keyHint(key.Public())
			if err != nil {
				t.Fatal(err)
			}
			pb, err := sign.Bundle(&sign.PlainData{Data: stmt}, &keypair{key: key, alg: mustAlg(t, key.Public()), hint: hint}, sign.BundleOptions{})
			if err != nil {
				t.Fatal(err)
			}
			want, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(pb)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, '\n')
			if !bytes.Equal(got, want) {
				t.Fatalf("SignSigstore's bundle differs from sign.Bundle's:\n got %s\nwant %s", got, want)
			}
			// And it is an approval by that key, by no other.
			if _, err := verifierFor(t, key.Public()).verifySigstore(stmt, got); err != nil {
				t.Fatalf("own bundle does not verify: %v", err)
			}
			other, _, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := verifierFor(t, other).verifySigstore(stmt, got); err == nil {
				t.Fatal("a bundle verified against a key that did not sign it")
			}
		})
	}
}

func verifierFor(t *testing.T, pub crypto.PublicKey) *ApprovalVerifier {
	t.Helper()
	v, err := NewApprovalVerifier(nil, []crypto.PublicKey{pub})
	if err != nil {
		t.Fatal(err)
	}
	return v
}
