package allowlist

// Detached approvals of an allowlist version.
//
// An approval is a signature over a short canonical statement that binds
// the allowlist repository's identity, the version number and the SHA-256 of
// allowlist.yaml's exact bytes. Binding all three means an approval cannot be
// replayed for other content, for another version with the same content, or
// in a fork or copy of the repository.
//
// Approvals live in the allowlist repository next to the allowlist:
//
//	approvals/v<version>/<label>.sshsig          armored SSHSIG (ssh-keygen -Y sign -n ApprovalNamespace)
//	approvals/v<version>/<label>.sigstore.json   Sigstore bundle (message signature by a public key)
//
// Sigstore bundles signed by a key are verified offline against configured
// public keys: no Rekor entry and no timestamp is required or checked.
// Keyless bundles (a Fulcio certificate and a Rekor entry) are verified
// offline against a pinned trusted root and named identities
// (approval_keyless.go).

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hiddeco/sshsig"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"
	"golang.org/x/crypto/ssh"
	"google.golang.org/protobuf/encoding/protojson"

	"gitlab.com/writ-ci/writ/internal/fsutil"
	"gitlab.com/writ-ci/writ/internal/gitsig"
)

// ApprovalNamespace is the SSH signature namespace of approvals. A signature
// made for git ("git") or any other purpose never counts as an approval.
const ApprovalNamespace = "writ-allowlist@writ-ci.gitlab.com"

// Approval kinds.
const (
	KindSSH      = "ssh"
	KindSigstore = "sigstore"
)

// Approval file name suffixes.
const (
	sshSuffix      = ".sshsig"
	sigstoreSuffix = ".sigstore.json"
)

// Bounds on what an allowlist repository can make writ read and verify.
const (
	// MaxApprovalFiles is the most approval files one version may have.
	MaxApprovalFiles = 256
	// MaxApprovalFileBytes bounds one approval file.
	MaxApprovalFileBytes = 64 << 10
	maxRepositoryBytes   = 1024
	maxSigstoreKeyBytes  = 64 << 10
)

const statementHeader = "writ allowlist approval v1\n"

var labelRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidLabel reports whether label may name an approval file: a letter or
// digit, then up to 63 letters, digits, '.', '_' or '-'.
func ValidLabel(label string) bool { return labelRE.MatchString(label) }

// ApprovalDir is the directory, relative to the allowlist repository's
// root and with forward slashes, holding the approvals of version.
func ApprovalDir(version int64) string {
	return "approvals/v" + strconv.FormatInt(version, 10)
}

// Statement returns the canonical approval statement:
//
//	writ allowlist approval v1
//	repository: <repository>
//	version: <version>
//	sha256: <digest>
//
// with LF line endings and a final LF. It does not validate its arguments;
// use NewStatement for values that come from a file.
func Statement(repository string, version int64, digest string) []byte {
	var b bytes.Buffer
	b.WriteString(statementHeader)
	b.WriteString("repository: " + repository + "\n")
	b.WriteString("version: " + strconv.FormatInt(version, 10) + "\n")
	b.WriteString("sha256: " + digest + "\n")
	return b.Bytes()
}

// NewStatement is Statement after checking that repository is a non-empty
// identity without control characters, line breaks or surrounding spaces,
// version is at least 1 and digest is 64 lower-case hex digits.
func NewStatement(repository string, version int64, digest string) ([]byte, error) {
	if err := checkRepository(repository); err != nil {
		return nil, err
	}
	if version < 1 {
		return nil, fmt.Errorf("approval statement: version %d: versions start at 1", version)
	}
	if !isLowerHex(digest, 64) {
		return nil, fmt.Errorf("approval statement: digest %q is not a SHA-256 in 64 lower-case hex digits", digest)
	}
	return Statement(repository, version, digest), nil
}

func checkRepository(repository string) error {
	switch {
	case repository == "":
		return errors.New("approval statement: the repository identity is empty")
	case len(repository) > maxRepositoryBytes:
		return fmt.Errorf("approval statement: the repository identity is longer than %d bytes", maxRepositoryBytes)
	case !utf8.ValidString(repository):
		return errors.New("approval statement: the repository identity is not valid UTF-8")
	case strings.TrimSpace(repository) != repository:
		return fmt.Errorf("approval statement: the repository identity %q has leading or trailing spaces", repository)
	}
	for _, r := range repository {
		// Control characters include CR and LF; line and paragraph
		// separators would break the statement's lines for some readers.
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return fmt.Errorf("approval statement: the repository identity %q contains a control character or line break", repository)
		}
	}
	return nil
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// parseStatement returns the version a canonical statement approves, and an
// error if the bytes are not exactly what NewStatement makes.
func parseStatement(stmt []byte) (int64, error) {
	lines := strings.Split(string(stmt), "\n")
	if len(lines) != 5 || lines[4] != "" || lines[0]+"\n" != statementHeader {
		return 0, errors.New("approval statement: not a canonical writ allowlist approval v1 statement")
	}
	repo, ok1 := strings.CutPrefix(lines[1], "repository: ")
	ver, ok2 := strings.CutPrefix(lines[2], "version: ")
	digest, ok3 := strings.CutPrefix(lines[3], "sha256: ")
	if !ok1 || !ok2 || !ok3 {
		return 0, errors.New("approval statement: not a canonical writ allowlist approval v1 statement")
	}
	v, err := strconv.ParseInt(ver, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("approval statement: version %q: %v", ver, err)
	}
	want, err := NewStatement(repo, v, digest)
	if err != nil {
		return 0, err
	}
	if !bytes.Equal(want, stmt) {
		return 0, errors.New("approval statement: not in canonical form")
	}
	return v, nil
}

// SignSSH signs statement for ApprovalNamespace by running
// `ssh-keygen -Y sign -n ApprovalNamespace -f keyPath` and returns the armored
// signature, the content of an approvals/v<version>/<label>.sshsig file.
//
// Running ssh-keygen rather than signing in-process means every key
// ssh-keygen can use works: a passphrase-protected key (ssh-keygen asks on
// the terminal), a key held by ssh-agent (pass the public key file as
// keyPath) or a FIDO security key (sk-ssh-ed25519).
func SignSSH(ctx context.Context, statement []byte, keyPath string) ([]byte, error) {
	if _, err := parseStatement(statement); err != nil {
		return nil, err
	}
	if _, err := os.Stat(keyPath); err != nil {
		return nil, fmt.Errorf("SSH signing key: %w", err)
	}
	// No file arguments: ssh-keygen signs standard input to standard output,
	// so no temporary file holds the statement or the signature.
	cmd := exec.CommandContext(ctx, "ssh-keygen", "-Y", "sign", "-n", ApprovalNamespace, "-f", keyPath)
	cmd.Stdin = bytes.NewReader(statement)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("ssh-keygen -Y sign with %s: %v: %s", keyPath, err, strings.TrimSpace(stderr.String()))
	}
	sig := stdout.Bytes()
	// Check what ssh-keygen made before anyone commits it.
	parsed, err := parseSSHApproval(sig)
	if err != nil {
		return nil, fmt.Errorf("ssh-keygen -Y sign produced an unusable signature: %w", err)
	}
	if err := sshsig.Verify(bytes.NewReader(statement), parsed, parsed.PublicKey, parsed.HashAlgorithm, ApprovalNamespace); err != nil {
		return nil, fmt.Errorf("ssh-keygen -Y sign produced a signature that does not verify: %v", err)
	}
	return sig, nil
}

// parseSSHApproval checks the framing of an .sshsig approval file: one
// armored SSH SIGNATURE block from the first byte, no armor headers, at most
// trailing whitespace, in ApprovalNamespace. It does not verify the
// signature.
func parseSSHApproval(data []byte) (*sshsig.Signature, error) {
	if len(data) > MaxApprovalFileBytes {
		return nil, fmt.Errorf("larger than %d bytes", MaxApprovalFileBytes)
	}
	if !bytes.HasPrefix(data, []byte("-----BEGIN "+sshsig.PEMType+"-----")) {
		return nil, errors.New("not an armored SSH signature (ssh-keygen -Y sign output starts with -----BEGIN SSH SIGNATURE-----)")
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != sshsig.PEMType {
		return nil, errors.New("SSH signature armor is not valid")
	}
	if len(block.Headers) != 0 || len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("SSH signature armor has headers or data after it")
	}
	sig, err := sshsig.ParseSignature(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("SSH signature: %v", err)
	}
	if sig.Namespace != ApprovalNamespace {
		return nil, fmt.Errorf("SSH signature namespace is %q, want %q: sign approvals with `writ allowlist approve --ssh-key` (ssh-keygen -Y sign -n %s)", sig.Namespace, ApprovalNamespace, ApprovalNamespace)
	}
	return sig, nil
}

// LoadSigstoreKey reads an unencrypted PEM private key for Sigstore
// approvals: PKCS#8 ("PRIVATE KEY") or SEC 1 ("EC PRIVATE KEY"), ECDSA P-256
// or Ed25519. An Ed25519 key signs as Ed25519ph (pre-hashed with SHA-512),
// the only Ed25519 form sigstore-go verifies in message signatures.
//
// Make a key with
//
//	openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out approve.key
//	openssl pkey -in approve.key -pubout -out approve.pub
func LoadSigstoreKey(pemPath string) (crypto.Signer, error) {
	return loadSigstoreKey(pemPath, nil)
}

// loadSigstoreKey is LoadSigstoreKey that decrypts encrypted keys (cosign's
// among them) with password; see LoadSigstoreKeyWithPassword.
func loadSigstoreKey(pemPath string, password PasswordFunc) (crypto.Signer, error) {
	b, err := fsutil.ReadFileLimit(pemPath, maxSigstoreKeyBytes)
	if err != nil {
		return nil, fmt.Errorf("sigstore signing key: %w", err)
	}
	block, err := onePEMBlock(b)
	if err != nil {
		return nil, fmt.Errorf("sigstore signing key %s: %w", pemPath, err)
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "ENCRYPTED PRIVATE KEY", "ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY":
		key, err = decryptSigstoreKey(b, password)
	default:
		return nil, fmt.Errorf("sigstore signing key %s: PEM block %q is not a private key; use a PKCS#8 \"PRIVATE KEY\"", pemPath, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("sigstore signing key %s: %w", pemPath, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("sigstore signing key %s: %T cannot sign", pemPath, key)
	}
	if _, err := sigstoreAlgorithm(s.Public()); err != nil {
		return nil, fmt.Errorf("sigstore signing key %s: %w", pemPath, err)
	}
	return s, nil
}

// LoadSigstorePublicKey reads a PEM "PUBLIC KEY" (PKIX) trusted for Sigstore
// approvals: ECDSA P-256, or Ed25519 (verified as Ed25519ph).
func LoadSigstorePublicKey(pemPath string) (crypto.PublicKey, error) {
	b, err := fsutil.ReadFileLimit(pemPath, maxSigstoreKeyBytes)
	if err != nil {
		return nil, fmt.Errorf("sigstore public key: %w", err)
	}
	block, err := onePEMBlock(b)
	if err != nil {
		return nil, fmt.Errorf("sigstore public key %s: %w", pemPath, err)
	}
	if block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("sigstore public key %s: PEM block %q is not a \"PUBLIC KEY\" (openssl pkey -pubout)", pemPath, block.Type)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("sigstore public key %s: %w", pemPath, err)
	}
	if _, err := sigstoreAlgorithm(pub); err != nil {
		return nil, fmt.Errorf("sigstore public key %s: %w", pemPath, err)
	}
	return pub, nil
}

// onePEMBlock returns the only PEM block of b, which must have no headers
// and nothing but whitespace around it.
func onePEMBlock(b []byte) (*pem.Block, error) {
	block, rest := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if !bytes.HasPrefix(bytes.TrimSpace(b), []byte("-----BEGIN ")) || len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("text around the PEM block; the file must hold exactly one key")
	}
	if len(block.Headers) != 0 {
		return nil, errors.New("PEM headers (an encrypted legacy key?); use an unencrypted PKCS#8 key")
	}
	return block, nil
}

// sigstoreAlg is how one key type signs Sigstore message signatures.
type sigstoreAlg struct {
	details protocommon.PublicKeyDetails
	hash    protocommon.HashAlgorithm
	hashFn  crypto.Hash
	name    string
}

// sigstoreAlgorithm returns the signing algorithm for pub, or an error
// saying which keys work.
func sigstoreAlgorithm(pub crypto.PublicKey) (sigstoreAlg, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return sigstoreAlg{protocommon.PublicKeyDetails_PKIX_ECDSA_P256_SHA_256, protocommon.HashAlgorithm_SHA2_256, crypto.SHA256, "ECDSA"}, nil
		}
		return sigstoreAlg{}, fmt.Errorf("ECDSA curve %s is not supported; use an ECDSA P-256 key", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return sigstoreAlg{protocommon.PublicKeyDetails_PKIX_ED25519_PH, protocommon.HashAlgorithm_SHA2_512, crypto.SHA512, "ED25519"}, nil
	default:
		return sigstoreAlg{}, fmt.Errorf("%T keys are not supported for Sigstore approvals; use an ECDSA P-256 key", pub)
	}
}

// SigstoreFingerprint identifies a Sigstore approval key:
// "sigstore:" and the lower-case hex SHA-256 of its DER (PKIX) encoding.
func SigstoreFingerprint(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return KindSigstore + ":" + hex.EncodeToString(sum[:]), nil
}

// keyHint is the bundle's public key hint: base64 of the SHA-256 of the DER
// public key, as sigstore-go's own key pairs make it. It only helps readers:
// verification never trusts it.
func keyHint(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return base64.StdEncoding.EncodeToString(sum[:]), nil
}

// keypair adapts a crypto.Signer to sigstore-go's sign.Keypair.
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

// SignData signs the digest of data and returns the signature and digest.
func (k *keypair) SignData(_ context.Context, data []byte) ([]byte, []byte, error) {
	var digest []byte
	var opts crypto.SignerOpts = k.alg.hashFn
	switch k.alg.hashFn {
	case crypto.SHA256:
		d := sha256.Sum256(data)
		digest = d[:]
	case crypto.SHA512:
		d := sha512.Sum512(data)
		digest = d[:]
		// With Options.Hash = SHA-512, crypto/ed25519 signs the digest as
		// Ed25519ph.
		opts = &ed25519.Options{Hash: crypto.SHA512}
	default:
		return nil, nil, fmt.Errorf("unsupported hash %v", k.alg.hashFn)
	}
	sig, err := k.key.Sign(rand.Reader, digest, opts)
	if err != nil {
		return nil, nil, err
	}
	return sig, digest, nil
}

// SignSigstore signs statement with key and returns a Sigstore bundle (JSON,
// media type v0.3) holding a message signature and the key's hint, the
// content of an approvals/v<version>/<label>.sigstore.json file. Nothing is
// sent anywhere: no Fulcio, no Rekor, no timestamp authority.
//
// key must be ECDSA P-256 or Ed25519 (signed as Ed25519ph).
func SignSigstore(statement []byte, key crypto.Signer) ([]byte, error) {
	if _, err := parseStatement(statement); err != nil {
		return nil, err
	}
	alg, err := sigstoreAlgorithm(key.Public())
	if err != nil {
		return nil, fmt.Errorf("sigstore approval: %w", err)
	}
	hint, err := keyHint(key.Public())
	if err != nil {
		return nil, err
	}
	pb, err := sign.Bundle(&sign.PlainData{Data: statement}, &keypair{key: key, alg: alg, hint: hint}, sign.BundleOptions{})
	if err != nil {
		return nil, fmt.Errorf("sigstore approval: %w", err)
	}
	out, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(pb)
	if err != nil {
		return nil, err
	}
	out = append(out, '\n')
	// Check what was made before anyone commits it.
	v, err := NewApprovalVerifier(nil, []crypto.PublicKey{key.Public()})
	if err != nil {
		return nil, err
	}
	if _, err := v.verifySigstore(statement, out); err != nil {
		return nil, fmt.Errorf("sigstore approval does not verify after signing: %w", err)
	}
	return out, nil
}

// ParseBundle decodes a .sigstore.json approval file and checks that it has
// the only shape an approval may have: a v0.3 bundle with a message
// signature (not a DSSE envelope) made by a public key (not a certificate).
// It does not verify the signature.
func ParseBundle(data []byte) (*bundle.Bundle, error) {
	if len(data) > MaxApprovalFileBytes {
		return nil, fmt.Errorf("larger than %d bytes", MaxApprovalFileBytes)
	}
	var b bundle.Bundle
	if err := b.UnmarshalJSON(data); err != nil {
		return nil, fmt.Errorf("not a Sigstore bundle: %v", err)
	}
	if v, err := b.Version(); err != nil || v != "v0.3" {
		return nil, fmt.Errorf("sigstore bundle media type %q: approvals are v0.3 bundles", b.GetMediaType())
	}
	ms := b.GetMessageSignature()
	if ms == nil {
		return nil, errors.New("the Sigstore bundle holds no message signature (a DSSE attestation is not an approval)")
	}
	if vm := b.GetVerificationMaterial(); vm.GetPublicKey() == nil && vm.GetCertificate() == nil {
		return nil, errors.New("the Sigstore bundle holds neither a public key hint nor a Fulcio certificate")
	}
	if len(ms.GetSignature()) == 0 {
		return nil, errors.New("the Sigstore bundle's signature is empty")
	}
	if ms.GetMessageDigest().GetAlgorithm() == protocommon.HashAlgorithm_HASH_ALGORITHM_UNSPECIFIED {
		return nil, errors.New("the Sigstore bundle has no digest algorithm: pure Ed25519 bundles are not supported (sigstore-go v1.3.0 cannot verify them); sign with an ECDSA P-256 key, or with Ed25519ph as `writ allowlist approve --sigstore-key` does")
	}
	return &b, nil
}

// Approval is one valid detached approval.
type Approval struct {
	// File is the approval file's path in the allowlist repository.
	File string
	// Kind is KindSSH or KindSigstore.
	Kind string
	// Signer is the approving key's fingerprint: "SHA256:…" (as ssh-keygen -l
	// prints it) for SSH, "sigstore:<hex SHA-256 of the DER public key>" for
	// Sigstore.
	Signer string
}

// ApprovalError is why one approval file does not count.
type ApprovalError struct {
	File string
	Err  error
}

func (e *ApprovalError) Error() string { return e.File + ": " + e.Err.Error() }
func (e *ApprovalError) Unwrap() error { return e.Err }

// ApprovalVerifier checks approval files against the trusted keys. Build it
// once; Verify is safe for concurrent use.
type ApprovalVerifier struct {
	ssh        *gitsig.Keys
	sshTrusted map[string]bool // fingerprints of ssh's keys
	sigstore   []sigstoreKey
	keyless    *keylessVerifier
}

type sigstoreKey struct {
	fingerprint string
	hints       []string // forms a bundle may name the key by, for messages
	alg         sigstoreAlg
	verifier    *verify.Verifier
}

// NewApprovalVerifier builds a verifier trusting sshKeys (their
// allowed_signers namespaces and validity windows apply; nil trusts no SSH
// key) and sigstoreKeys (ECDSA P-256, or Ed25519 verified as Ed25519ph).
//
// Options add other kinds of approvers (WithKeylessApprovals).
func NewApprovalVerifier(sshKeys *gitsig.Keys, sigstoreKeys []crypto.PublicKey, opts ...ApprovalOption) (*ApprovalVerifier, error) {
	v := &ApprovalVerifier{ssh: sshKeys, sshTrusted: map[string]bool{}}
	for _, o := range opts {
		if err := o(v); err != nil {
			return nil, err
		}
	}
	if sshKeys != nil {
		for _, fp := range sshKeys.Fingerprints() {
			v.sshTrusted[fp] = true
		}
	}
	seen := map[string]bool{}
	for i, pub := range sigstoreKeys {
		alg, err := sigstoreAlgorithm(pub)
		if err != nil {
			return nil, fmt.Errorf("sigstore key #%d: %w", i+1, err)
		}
		fp, err := SigstoreFingerprint(pub)
		if err != nil {
			return nil, fmt.Errorf("sigstore key #%d: %w", i+1, err)
		}
		if seen[fp] {
			continue
		}
		seen[fp] = true
		var sv signature.Verifier
		switch k := pub.(type) {
		case *ecdsa.PublicKey:
			sv, err = signature.LoadECDSAVerifier(k, crypto.SHA256)
		case ed25519.PublicKey:
			sv, err = signature.LoadED25519phVerifier(k)
		}
		if err != nil {
			return nil, fmt.Errorf("sigstore key #%d: %w", i+1, err)
		}
		// Each trusted key gets its own verifier that ignores the bundle's
		// hint: the hint is attacker-chosen text, and trying every trusted
		// key costs little. The key has no validity window; removing it from
		// the configuration is how it stops being trusted.
		key := root.NewExpiringKey(sv, time.Time{}, time.Time{})
		material := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) { return key, nil })
		// Bundles signed by a key carry no trustworthy time without a
		// timestamp authority, and writ requires none.
		ver, err := verify.NewVerifier(material, verify.WithNoObserverTimestamps())
		if err != nil {
			return nil, err
		}
		hint, _ := keyHint(pub)
		v.sigstore = append(v.sigstore, sigstoreKey{
			fingerprint: fp,
			hints:       []string{hint, strings.TrimPrefix(fp, KindSigstore+":")},
			alg:         alg,
			verifier:    ver,
		})
	}
	return v, nil
}

// Verify checks the approval files of one version against statement. files
// maps each file's path in the allowlist repository
// (ApprovalDir(version)/<label>.sshsig or .sigstore.json) to its content.
// It returns the valid approvals, at most one per signer (the first by path),
// sorted by path, and an *ApprovalError for each file that does not count.
// A statement that is not canonical, or more than MaxApprovalFiles files,
// make every file not count, with a single error saying why. SSH validity
// windows (allowed_signers valid-after/valid-before) are checked at now.
func (v *ApprovalVerifier) Verify(statement []byte, files map[string][]byte, now time.Time) ([]Approval, []error) {
	version, err := parseStatement(statement)
	if err != nil {
		return nil, []error{err}
	}
	if len(files) > MaxApprovalFiles {
		return nil, []error{fmt.Errorf("%s holds %d files, more than the %d approvals writ reads", ApprovalDir(version), len(files), MaxApprovalFiles)}
	}
	dir := ApprovalDir(version) + "/"
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)

	var out []Approval
	var errs []error
	bySigner := map[string]bool{}
	for _, name := range names {
		a, err := v.verifyFile(statement, dir, name, files[name], now)
		if err != nil {
			errs = append(errs, &ApprovalError{File: name, Err: err})
			continue
		}
		// The same key approving twice (under two labels, or with two
		// signatures) is one approval.
		if bySigner[a.Signer] {
			continue
		}
		bySigner[a.Signer] = true
		out = append(out, a)
	}
	return out, errs
}

func (v *ApprovalVerifier) verifyFile(statement []byte, dir, name string, data []byte, now time.Time) (Approval, error) {
	base, ok := strings.CutPrefix(name, dir)
	if !ok || strings.Contains(base, "/") {
		return Approval{}, fmt.Errorf("not in %s", strings.TrimSuffix(dir, "/"))
	}
	if len(data) > MaxApprovalFileBytes {
		return Approval{}, fmt.Errorf("larger than %d bytes", MaxApprovalFileBytes)
	}
	var kind, label string
	switch {
	case strings.HasSuffix(base, sigstoreSuffix):
		kind, label = KindSigstore, strings.TrimSuffix(base, sigstoreSuffix)
	case strings.HasSuffix(base, sshSuffix):
		kind, label = KindSSH, strings.TrimSuffix(base, sshSuffix)
	default:
		return Approval{}, fmt.Errorf("not an approval file: approvals are named <label>%s or <label>%s", sshSuffix, sigstoreSuffix)
	}
	if !ValidLabel(label) {
		return Approval{}, fmt.Errorf("label %q: use a letter or digit, then letters, digits, '.', '_' or '-' (at most 64)", label)
	}
	var signer string
	var err error
	if kind == KindSSH {
		signer, err = v.verifySSH(statement, data, now)
	} else {
		signer, err = v.verifySigstore(statement, data)
	}
	if err != nil {
		return Approval{}, err
	}
	return Approval{File: name, Kind: kind, Signer: signer}, nil
}

// verifySSH checks an .sshsig approval and returns the signer's fingerprint.
func (v *ApprovalVerifier) verifySSH(statement, data []byte, now time.Time) (string, error) {
	// Framing, namespace and the signature against the key it names come
	// first, for errors that say what went wrong; trust is gitsig's to
	// decide, and it verifies everything again.
	sig, err := parseSSHApproval(data)
	if err != nil {
		return "", err
	}
	if v.ssh == nil {
		return "", errors.New("no SSH keys are trusted (trust.ssh_allowed_signers)")
	}
	// Only a trusted key's signature is checked: verifying under a key the
	// file chose (a huge RSA modulus, say) would let it choose the cost.
	fp := ssh.FingerprintSHA256(sig.PublicKey)
	if !v.sshTrusted[fp] {
		return "", fmt.Errorf("signed by SSH key %s, which is not among the trusted keys (trust.ssh_allowed_signers)", fp)
	}
	if err := sshsig.Verify(bytes.NewReader(statement), sig, sig.PublicKey, sig.HashAlgorithm, ApprovalNamespace); err != nil {
		return "", explainMismatch(fmt.Errorf("the SSH signature by %s does not verify over this statement", fp))
	}
	s, err := v.ssh.VerifySSH(statement, data, ApprovalNamespace, now)
	if err != nil {
		return "", err
	}
	return s.Fingerprint, nil
}

// explainMismatch adds what a signature over another statement usually
// means.
func explainMismatch(err error) error {
	return fmt.Errorf("%w: it approves another repository, version or allowlist.yaml content; approve the final content with `writ allowlist approve`", err)
}

// verifySigstore checks a .sigstore.json approval and returns the signer's
// fingerprint.
func (v *ApprovalVerifier) verifySigstore(statement, data []byte) (string, error) {
	b, err := ParseBundle(data)
	if err != nil {
		return "", err
	}
	if b.GetVerificationMaterial().GetCertificate() != nil {
		return v.verifyKeyless(statement, b)
	}
	if len(v.sigstore) == 0 {
		return "", errors.New("no Sigstore keys are trusted (trust.sigstore_public_keys)")
	}
	alg := b.GetMessageSignature().GetMessageDigest().GetAlgorithm()
	hint := b.GetVerificationMaterial().GetPublicKey().GetHint()
	var named *sigstoreKey
	tried := 0
	for i := range v.sigstore {
		k := &v.sigstore[i]
		for _, h := range k.hints {
			if hint == h {
				named = k
			}
		}
		if k.alg.hash != alg {
			continue
		}
		tried++
		// The artifact is a reader, consumed by each attempt.
		policy := verify.NewPolicy(verify.WithArtifact(bytes.NewReader(statement)), verify.WithKey())
		if _, err := k.verifier.Verify(b, policy); err == nil {
			return k.fingerprint, nil
		}
	}
	switch {
	case named != nil:
		return "", explainMismatch(fmt.Errorf("the Sigstore signature by trusted key %s does not verify over this statement", named.fingerprint))
	case tried == 0:
		return "", fmt.Errorf("the Sigstore bundle's digest algorithm %s matches no trusted key (ECDSA P-256 signs SHA2_256, Ed25519ph SHA2_512)", alg)
	default:
		return "", fmt.Errorf("the Sigstore bundle (key hint %q) is not signed by a trusted key over this statement", truncateHint(hint))
	}
}

// truncateHint bounds attacker-chosen text quoted in an error.
func truncateHint(h string) string {
	if len(h) > 80 {
		return h[:80] + "…"
	}
	return h
}
