package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"
	"google.golang.org/protobuf/encoding/protojson"
)

// bundleName is the Sigstore bundle over SHA256SUMS.
const bundleName = "SHA256SUMS.sigstore.json"

// signChecksums signs sums with the ECDSA P-256 key in keyFile, or with a
// throw-away key written to dir (release-key.pem and, to verify with,
// release-key.pub). It writes the bundle and returns its name and, for a
// throw-away key, the public key's name.
func signChecksums(dir string, sums []byte, keyFile string, log io.Writer) (string, string, error) {
	var key *ecdsa.PrivateKey
	pubName := ""
	if keyFile != "" {
		k, err := loadKey(keyFile)
		if err != nil {
			return "", "", err
		}
		key = k
	} else {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return "", "", err
		}
		key = k
		if err := writeKeyPair(dir, k); err != nil {
			return "", "", err
		}
		pubName = "release-key.pub"
		fmt.Fprintln(log, "release: no -key: signed with a throw-away key (release-key.pem, release-key.pub); a real release is signed by the release pipeline")
	}
	kp, err := newKeypair(key)
	if err != nil {
		return "", "", err
	}
	pb, err := sign.Bundle(&sign.PlainData{Data: sums}, kp, sign.BundleOptions{Context: context.Background()})
	if err != nil {
		return "", "", fmt.Errorf("sign SHA256SUMS: %w", err)
	}
	out, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(pb)
	if err != nil {
		return "", "", err
	}
	if err := os.WriteFile(filepath.Join(dir, bundleName), append(out, '\n'), 0o644); err != nil {
		return "", "", err
	}
	return bundleName, pubName, nil
}

func loadKey(path string) (*ecdsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: not a PEM file", path)
	}
	var k any
	switch block.Type {
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%s: PEM block %q is not a private key", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%s: the release key must be ECDSA P-256", path)
	}
	return ec, nil
}

func writeKeyPair(dir string, k *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "release-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	pub, err := publicPEM(&k.PublicKey)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "release-key.pub"), pub, 0o644)
}

func publicPEM(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// keypair adapts an ECDSA P-256 key to sigstore-go's sign.Keypair.
type keypair struct {
	key  *ecdsa.PrivateKey
	hint string
}

func newKeypair(k *ecdsa.PrivateKey) (*keypair, error) {
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(der)
	return &keypair{key: k, hint: base64.StdEncoding.EncodeToString(sum[:])}, nil
}

func (k *keypair) GetHashAlgorithm() protocommon.HashAlgorithm {
	return protocommon.HashAlgorithm_SHA2_256
}
func (k *keypair) GetSigningAlgorithm() protocommon.PublicKeyDetails {
	return protocommon.PublicKeyDetails_PKIX_ECDSA_P256_SHA_256
}
func (k *keypair) GetHint() []byte                { return []byte(k.hint) }
func (k *keypair) GetKeyAlgorithm() string        { return "ECDSA" }
func (k *keypair) GetPublicKey() crypto.PublicKey { return &k.key.PublicKey }
func (k *keypair) GetPublicKeyPem() (string, error) {
	p, err := publicPEM(&k.key.PublicKey)
	return string(p), err
}

// SignData signs the SHA-256 digest of data.
func (k *keypair) SignData(_ context.Context, data []byte) ([]byte, []byte, error) {
	d := sha256.Sum256(data)
	sig, err := ecdsa.SignASN1(rand.Reader, k.key, d[:])
	return sig, d[:], err
}

// VerifyBundle checks that bundleJSON is a Sigstore bundle over data signed
// by the ECDSA P-256 public key in pubPEM.
func VerifyBundle(data, bundleJSON, pubPEM []byte) error {
	block, _ := pem.Decode(pubPEM)
	if block == nil {
		return errors.New("the release public key is not PEM")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return err
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return errors.New("the release public key is not ECDSA")
	}
	sv, err := signature.LoadECDSAVerifier(ec, crypto.SHA256)
	if err != nil {
		return err
	}
	key := root.NewExpiringKey(sv, time.Time{}, time.Time{})
	material := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) { return key, nil })
	// A key-based bundle made without a timestamp authority carries no
	// trustworthy time; the keyless release pipeline's bundles do (Rekor).
	v, err := verify.NewVerifier(material, verify.WithNoObserverTimestamps())
	if err != nil {
		return err
	}
	var b bundle.Bundle
	if err := b.UnmarshalJSON(bundleJSON); err != nil {
		return fmt.Errorf("not a Sigstore bundle: %w", err)
	}
	_, err = v.Verify(&b, verify.NewPolicy(verify.WithArtifact(bytes.NewReader(data)), verify.WithKey()))
	return err
}

// VerifyDir checks a release directory: SHA256SUMS is signed by the key,
// and every file it lists has its checksum. It returns how many files it
// checked.
func VerifyDir(dir, pubFile string) (int, error) {
	pub, err := os.ReadFile(pubFile)
	if err != nil {
		return 0, err
	}
	sums, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		return 0, err
	}
	b, err := os.ReadFile(filepath.Join(dir, bundleName))
	if err != nil {
		return 0, err
	}
	if err := VerifyBundle(sums, b, pub); err != nil {
		return 0, fmt.Errorf("SHA256SUMS: the signature does not verify: %w", err)
	}
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(sums))
	for sc.Scan() {
		want, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok || strings.ContainsAny(name, "/\\") || name == ".." {
			return n, fmt.Errorf("SHA256SUMS: malformed line %q", sc.Text())
		}
		got, err := fileSHA256(filepath.Join(dir, name))
		if err != nil {
			return n, err
		}
		if got != want {
			return n, fmt.Errorf("%s: SHA-256 %s, SHA256SUMS says %s", name, got, want)
		}
		n++
	}
	return n, sc.Err()
}
