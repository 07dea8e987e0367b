package allowlist

// Detached approvals of an allowlist version.
//
// An approval is a signature over a short canonical statement. The
// statement of an allowlist version binds the allowlist repository's
// identity, the version number and a manifest of every file the parser
// reads (allowlist.yaml and each OpenPGP key file, by path and SHA-256).
// Binding all of them means an approval cannot be replayed for other
// content (of allowlist.yaml or of any key file), for another version with
// the same content, or in a fork or copy of the repository.
//
// The verifier is not specific to allowlists: a statement is bytes, and
// Verify counts the distinct trusted keys that signed exactly those bytes.
//
// Approvals live in the allowlist repository next to the allowlist:
//
//	approvals/v<version>/<label>.sshsig          armored SSHSIG (ssh-keygen -Y sign -n ApprovalNamespace)
//	approvals/v<version>/<label>.asc             armored detached OpenPGP signature, binary mode (gpg --armor --detach-sign)
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
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hiddeco/sshsig"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"
	"golang.org/x/crypto/ssh"
	"google.golang.org/protobuf/encoding/protojson"

	"gitlab.com/writ-ci/writ/internal/fsutil"
	"gitlab.com/writ-ci/writ/internal/gitsig"
	"gitlab.com/writ-ci/writ/internal/lazyre"
)

// ApprovalNamespace is the SSH signature namespace of approvals. A signature
// made for git ("git") or any other purpose never counts as an approval.
const ApprovalNamespace = "writ-allowlist@writ-ci.gitlab.com"

// Approval kinds.
const (
	KindSSH      = "ssh"
	KindOpenPGP  = "openpgp"
	KindSigstore = "sigstore"
)

// Approval file name suffixes.
const (
	sshSuffix      = ".sshsig"
	openpgpSuffix  = ".asc"
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

const statementHeader = "writ allowlist approval v2\n"

// maxStatementBytes bounds a statement any signer is asked to sign or any
// approval is checked against.
const maxStatementBytes = 4 << 20

var labelRE = lazyre.New(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidLabel reports whether label may name an approval file: a letter or
// digit, then up to 63 letters, digits, '.', '_' or '-'.
func ValidLabel(label string) bool { return labelRE.MatchString(label) }

// ApprovalDir is the directory, relative to the allowlist repository's
// root and with forward slashes, holding the approvals of version.
func ApprovalDir(version int64) string {
	return "approvals/v" + strconv.FormatInt(version, 10)
}

// ManifestFile is one file an allowlist version loads: its path in the
// repository (forward slashes, relative to the root) and the lower-case hex
// SHA-256 of its exact bytes.
type ManifestFile struct {
	Path   string
	SHA256 string
}

// Manifest hashes files (path to content: allowlist.yaml and every file the
// parser read, as RecordLoads collects them) and sorts them by path, byte
// by byte.
func Manifest(files map[string][]byte) []ManifestFile {
	out := make([]ManifestFile, 0, len(files))
	for p, b := range files {
		sum := sha256.Sum256(b)
		out = append(out, ManifestFile{Path: p, SHA256: hex.EncodeToString(sum[:])})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// RecordLoads wraps load so that every file it returns is also kept in the
// returned map, keyed by path: what the parser read is what the approval
// statement covers, by construction.
// A nil load stays nil (the parser then reads no file).
func RecordLoads(load FileLoader) (FileLoader, map[string][]byte) {
	files := map[string][]byte{}
	if load == nil {
		return nil, files
	}
	return func(p string) ([]byte, error) {
		b, err := load(p)
		if err == nil {
			files[p] = b
		}
		return b, err
	}, files
}

// VersionStatement is the statement approving allowlist version a, parsed
// from yaml (allowlist.yaml's bytes) while reading the files in loaded (as
// RecordLoads collects them).
func VersionStatement(a *Allowlist, yaml []byte, loaded map[string][]byte) ([]byte, error) {
	return versionStatement(a, sha256.Sum256(yaml), loaded)
}

// versionStatement is VersionStatement from the SHA-256 of allowlist.yaml,
// so that acceptance need not keep the file's bytes until approvals.
func versionStatement(a *Allowlist, yamlSum [sha256.Size]byte, loaded map[string][]byte) ([]byte, error) {
	others := make(map[string][]byte, len(loaded))
	for p, b := range loaded {
		if p != FileName {
			others[p] = b
		}
	}
	m := append(Manifest(others), ManifestFile{Path: FileName, SHA256: hex.EncodeToString(yamlSum[:])})
	sort.Slice(m, func(i, j int) bool { return m[i].Path < m[j].Path })
	return NewStatement(a.Repository, a.Version, m)
}

// Statement returns the canonical approval statement of an allowlist
// version:
//
//	writ allowlist approval v2
//	repository: <repository>
//	version: <version>
//	files: <number of files>
//	<sha256>  <path>
//	...
//
// one "<sha256>  <path>" line (64 lower-case hex digits, two spaces, the
// path: the format sha256sum prints) per file the version loads, sorted by
// path byte by byte, allowlist.yaml among them. LF line endings and a final
// LF. It does not validate its arguments; use NewStatement.
func Statement(repository string, version int64, manifest []ManifestFile) []byte {
	var b bytes.Buffer
	b.WriteString(statementHeader)
	b.WriteString("repository: " + repository + "\n")
	b.WriteString("version: " + strconv.FormatInt(version, 10) + "\n")
	b.WriteString("files: " + strconv.Itoa(len(manifest)) + "\n")
	for _, f := range manifest {
		b.WriteString(f.SHA256 + "  " + f.Path + "\n")
	}
	return b.Bytes()
}

// NewStatement is Statement after checking that repository is a non-empty
// identity without control characters, line breaks or surrounding spaces,
// version is at least 1, and manifest lists allowlist.yaml, is sorted by
// path without duplicates, and holds clean relative paths and SHA-256s in
// 64 lower-case hex digits.
func NewStatement(repository string, version int64, manifest []ManifestFile) ([]byte, error) {
	if err := checkRepository(repository); err != nil {
		return nil, err
	}
	if version < 1 {
		return nil, fmt.Errorf("approval statement: version %d: versions start at 1", version)
	}
	if err := checkManifest(manifest); err != nil {
		return nil, err
	}
	return Statement(repository, version, manifest), nil
}

func checkManifest(manifest []ManifestFile) error {
	hasAllowlist := false
	for i, f := range manifest {
		if err := checkManifestPath(f.Path); err != nil {
			return err
		}
		if i > 0 && manifest[i-1].Path >= f.Path {
			return fmt.Errorf("approval statement: files %q and %q are not sorted by path without duplicates", manifest[i-1].Path, f.Path)
		}
		if !isLowerHex(f.SHA256, 64) {
			return fmt.Errorf("approval statement: digest %q of %s is not a SHA-256 in 64 lower-case hex digits", f.SHA256, f.Path)
		}
		hasAllowlist = hasAllowlist || f.Path == FileName
	}
	if !hasAllowlist {
		return fmt.Errorf("approval statement: the files do not include %s", FileName)
	}
	return nil
}

// checkManifestPath refuses what could make one line read as two, or two
// names for one file.
func checkManifestPath(p string) error {
	bad := p == "" || len(p) > 4096 || !utf8.ValidString(p) || strings.HasPrefix(p, "/") ||
		path.Clean(p) != p || p == "." || p == ".." || strings.HasPrefix(p, "../")
	for _, r := range p {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || r == '\\' {
			bad = true
		}
	}
	if bad {
		return fmt.Errorf("approval statement: file path %q is not a clean relative path without control characters", p)
	}
	return nil
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

// checkStatement is what every statement, of any kind, must be before it is
// signed or checked: non-empty bounded UTF-8 text of whole LF-terminated
// lines, starting with "writ " (the kind's header, which keeps a signature
// made for one kind from meaning anything for another).
func checkStatement(stmt []byte) error {
	switch {
	case !bytes.HasPrefix(stmt, []byte("writ ")):
		return errors.New("approval statement: does not start with a writ statement header")
	case len(stmt) > maxStatementBytes:
		return fmt.Errorf("approval statement: larger than %d bytes", maxStatementBytes)
	case !bytes.HasSuffix(stmt, []byte("\n")) || bytes.ContainsAny(stmt, "\r\x00") || !utf8.Valid(stmt):
		return errors.New("approval statement: not UTF-8 lines ending in LF")
	}
	return nil
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
	return SignSSHNamespace(ctx, statement, keyPath, ApprovalNamespace)
}

// SignSSHNamespace is SignSSH for SSH namespace ns (SourceApprovalNamespace
// for approvals of application commits).
func SignSSHNamespace(ctx context.Context, statement []byte, keyPath, ns string) ([]byte, error) {
	if err := checkStatement(statement); err != nil {
		return nil, err
	}
	if _, err := os.Stat(keyPath); err != nil {
		return nil, fmt.Errorf("SSH signing key: %w", err)
	}
	// No file arguments: ssh-keygen signs standard input to standard output,
	// so no temporary file holds the statement or the signature.
	cmd := exec.CommandContext(ctx, "ssh-keygen", "-Y", "sign", "-n", ns, "-f", keyPath)
	cmd.Stdin = bytes.NewReader(statement)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("ssh-keygen -Y sign with %s: %v: %s", keyPath, err, strings.TrimSpace(stderr.String()))
	}
	sig := stdout.Bytes()
	// Check what ssh-keygen made before anyone commits it.
	parsed, err := parseSSHApprovalIn(sig, ns)
	if err != nil {
		return nil, fmt.Errorf("ssh-keygen -Y sign produced an unusable signature: %w", err)
	}
	if err := sshsig.Verify(bytes.NewReader(statement), parsed, parsed.PublicKey, parsed.HashAlgorithm, ns); err != nil {
		return nil, fmt.Errorf("ssh-keygen -Y sign produced a signature that does not verify: %v", err)
	}
	return sig, nil
}

// SignOpenPGP signs statement with the OpenPGP key whose primary key has
// fingerprint (40 or 64 hex digits) by running the gpg program (gpg if
// empty) with `--armor --detach-sign --no-textmode --digest-algo SHA256
// --local-user FINGERPRINT`, and returns the armored signature, the content
// of an approvals/v<version>/<label>.asc file.
//
// Running gpg rather than signing in-process means every key gpg can use
// works (gpg-agent, passphrases through pinentry, smartcards), and no
// private key passes through writ. --no-textmode overrides a textmode line
// in gpg.conf: writ accepts binary signatures only, over the exact bytes.
// The signature is then verified with the key gpg exports, as the trust
// root will verify it.
func SignOpenPGP(ctx context.Context, statement []byte, fingerprint, program string) ([]byte, error) {
	if err := checkStatement(statement); err != nil {
		return nil, err
	}
	fpr := strings.ToUpper(fingerprint)
	if !isUpperHex(fpr) || (len(fpr) != 40 && len(fpr) != 64) {
		return nil, fmt.Errorf("OpenPGP key %q: give the primary key's full fingerprint, 40 or 64 hex digits without spaces (gpg --with-colons --fingerprint KEY prints it on the fpr line)", fingerprint)
	}
	if program == "" {
		program = "gpg"
	}
	run := func(stdin []byte, args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, program, args...)
		cmd.Stdin = bytes.NewReader(stdin)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("%s %s: %v: %s", program, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		return stdout.Bytes(), nil
	}
	sig, err := run(statement, "--armor", "--detach-sign", "--no-textmode", "--digest-algo", "SHA256", "--local-user", fpr)
	if err != nil {
		return nil, err
	}
	pub, err := run(nil, "--armor", "--export-options", "export-minimal", "--export", fpr)
	if err != nil {
		return nil, err
	}
	keys, err := gitsig.NewKeys([][]byte{pub}, nil)
	if err != nil {
		return nil, fmt.Errorf("the public key gpg exports for %s: %w", fpr, err)
	}
	s, err := keys.VerifyOpenPGP(statement, sig, time.Now())
	if err != nil {
		return nil, fmt.Errorf("gpg produced a signature that does not verify: %w", err)
	}
	if s.Fingerprint != fpr {
		return nil, fmt.Errorf("gpg signed with key %s, not %s: give the primary key's fingerprint", s.Fingerprint, fpr)
	}
	return sig, nil
}

func isUpperHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'A' || c > 'F') {
			return false
		}
	}
	return s != ""
}

// parseSSHApproval checks the framing of an .sshsig approval file: one
// armored SSH SIGNATURE block from the first byte, no armor headers, at most
// trailing whitespace, in ApprovalNamespace. It does not verify the
// signature.
func parseSSHApproval(data []byte) (*sshsig.Signature, error) {
	return parseSSHApprovalIn(data, ApprovalNamespace)
}

// parseSSHApprovalIn is parseSSHApproval for signatures in namespace ns.
func parseSSHApprovalIn(data []byte, ns string) (*sshsig.Signature, error) {
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
	if sig.Namespace != ns {
		how := "writ allowlist approve --ssh-key"
		if ns != ApprovalNamespace {
			how = "writ source approve --ssh-key"
		}
		return nil, fmt.Errorf("SSH signature namespace is %q, want %q: sign approvals with `%s` (ssh-keygen -Y sign -n %s)", truncateHint(sig.Namespace), ns, how, ns)
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

// signDigest signs the digest of data as alg says and returns the
// signature and the digest.
func signDigest(key crypto.Signer, alg sigstoreAlg, data []byte) (sig, digest []byte, err error) {
	var opts crypto.SignerOpts = alg.hashFn
	switch alg.hashFn {
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
		return nil, nil, fmt.Errorf("unsupported hash %v", alg.hashFn)
	}
	sig, err = key.Sign(rand.Reader, digest, opts)
	if err != nil {
		return nil, nil, err
	}
	return sig, digest, nil
}

// bundleV03MediaType is the media type of the bundles approvals are.
const bundleV03MediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"

// keyBundle signs statement with key and returns the bundle that
// sigstore-go's sign.Bundle makes for plain data, a key pair and no
// certificate, log or timestamp options: a v0.3 bundle with a message
// signature and the key's hint (a test checks they are the same).
//
// Why not sign.Bundle itself: that package links sigstore-go's Fulcio,
// Rekor and timestamp clients (rekor's pki packages, govalidator, the
// go-openapi stack), whose package initialisation every writ process
// would pay, eight or more times per job, for a message that needs none
// of them.
func keyBundle(statement []byte, key crypto.Signer, alg sigstoreAlg, hint string) (*protobundle.Bundle, error) {
	sig, digest, err := signDigest(key, alg, statement)
	if err != nil {
		return nil, err
	}
	return &protobundle.Bundle{
		MediaType: bundleV03MediaType,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_PublicKey{
				PublicKey: &protocommon.PublicKeyIdentifier{Hint: hint},
			},
		},
		Content: &protobundle.Bundle_MessageSignature{
			MessageSignature: &protocommon.MessageSignature{
				MessageDigest: &protocommon.HashOutput{Algorithm: alg.hash, Digest: digest},
				Signature:     sig,
			},
		},
	}, nil
}

// SignSigstore signs statement with key and returns a Sigstore bundle (JSON,
// media type v0.3) holding a message signature and the key's hint, the
// content of an approvals/v<version>/<label>.sigstore.json file. Nothing is
// sent anywhere: no Fulcio, no Rekor, no timestamp authority.
//
// key must be ECDSA P-256 or Ed25519 (signed as Ed25519ph).
func SignSigstore(statement []byte, key crypto.Signer) ([]byte, error) {
	if err := checkStatement(statement); err != nil {
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
	pb, err := keyBundle(statement, key, alg, hint)
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
	// Kind is KindSSH, KindOpenPGP or KindSigstore.
	Kind string
	// Signer is the approving key's fingerprint: "SHA256:…" (as ssh-keygen -l
	// prints it) for SSH, the primary key's fingerprint in upper-case hex for
	// OpenPGP, "sigstore:<hex SHA-256 of the DER public key>" for Sigstore.
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
	namespace  string // SSH namespace; ApprovalNamespace when empty
	keys       *gitsig.Keys
	sshTrusted map[string]bool // fingerprints of the trusted SSH and OpenPGP keys
	sigstore   []sigstoreKey
	keyless    *keylessVerifier
}

type sigstoreKey struct {
	fingerprint string
	hints       []string // forms a bundle may name the key by, for messages
	alg         sigstoreAlg
	verifier    *verify.Verifier
}

// NewApprovalVerifier builds a verifier trusting keys, the trust root's
// OpenPGP keyring and SSH allowed signers (whose namespaces and validity
// windows apply; nil trusts neither), and sigstoreKeys (ECDSA P-256, or
// Ed25519 verified as Ed25519ph).
//
// Options add other kinds of approvers (WithKeylessApprovals).
func NewApprovalVerifier(keys *gitsig.Keys, sigstoreKeys []crypto.PublicKey, opts ...ApprovalOption) (*ApprovalVerifier, error) {
	v := &ApprovalVerifier{keys: keys, sshTrusted: map[string]bool{}}
	for _, o := range opts {
		if err := o(v); err != nil {
			return nil, err
		}
	}
	if keys != nil {
		for _, fp := range keys.Fingerprints() {
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

// Verify checks approval files against statement, which is any statement
// the caller built (NewStatement makes the one of an allowlist version):
// a statement is bytes, and an approval is a signature over exactly them.
// dir is the directory that holds the approvals of this statement
// (ApprovalDir for an allowlist version), and files maps each approval
// file's path to its content; a file not directly in dir does not count. A
// file is named <label>.sshsig, <label>.asc or <label>.sigstore.json.
//
// It returns the valid approvals, at most one per signer (the first by
// path), sorted by path, and an *ApprovalError for each file that does not
// count. A malformed statement, or more than MaxApprovalFiles files, make
// every file not count, with a single error saying why. Keys are judged at
// now: SSH validity windows, and OpenPGP expiry and revocation (also when
// the signature says it was made).
func (v *ApprovalVerifier) Verify(statement []byte, dir string, files map[string][]byte, now time.Time) ([]Approval, []error) {
	if err := checkStatement(statement); err != nil {
		return nil, []error{err}
	}
	if len(files) > MaxApprovalFiles {
		return nil, []error{fmt.Errorf("%s holds %d files, more than the %d approvals writ reads", dir, len(files), MaxApprovalFiles)}
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)

	var out []Approval
	var errs []error
	bySigner := map[string]bool{}
	for _, name := range names {
		a, err := v.verifyFile(statement, dir+"/", name, files[name], now)
		if err != nil {
			errs = append(errs, &ApprovalError{File: name, Err: err})
			continue
		}
		// The same key approving twice (under two labels, or with two
		// signatures of different kinds) is one approval.
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
	case strings.HasSuffix(base, openpgpSuffix):
		kind, label = KindOpenPGP, strings.TrimSuffix(base, openpgpSuffix)
	default:
		return Approval{}, fmt.Errorf("not an approval file: approvals are named <label>%s, <label>%s or <label>%s", sshSuffix, openpgpSuffix, sigstoreSuffix)
	}
	if !ValidLabel(label) {
		return Approval{}, fmt.Errorf("label %q: use a letter or digit, then letters, digits, '.', '_' or '-' (at most 64)", label)
	}
	var signer string
	var err error
	switch kind {
	case KindSSH:
		signer, err = v.verifySSH(statement, data, now)
	case KindOpenPGP:
		signer, err = v.verifyOpenPGP(statement, data, now)
	default:
		signer, err = v.verifySigstore(statement, data)
	}
	if err != nil {
		return Approval{}, err
	}
	return Approval{File: name, Kind: kind, Signer: signer}, nil
}

// verifyOpenPGP checks an .asc approval and returns the signer's primary
// key fingerprint, the same name the key has as a commit signer, so one
// person's commit signature and detached approval count once.
func (v *ApprovalVerifier) verifyOpenPGP(statement, data []byte, now time.Time) (string, error) {
	if v.keys == nil || !v.keys.HasOpenPGP() {
		return "", errors.New("no OpenPGP keys are trusted (trust.openpgp_keyring)")
	}
	s, err := v.keys.VerifyOpenPGP(statement, data, now)
	if err != nil {
		if strings.Contains(err.Error(), "does not verify") {
			return "", explainMismatch(err)
		}
		return "", err
	}
	return s.Fingerprint, nil
}

// verifySSH checks an .sshsig approval and returns the signer's fingerprint.
func (v *ApprovalVerifier) verifySSH(statement, data []byte, now time.Time) (string, error) {
	// Framing, namespace and the signature against the key it names come
	// first, for errors that say what went wrong; trust is gitsig's to
	// decide, and it verifies everything again.
	sig, err := parseSSHApprovalIn(data, v.sshNamespace())
	if err != nil {
		return "", err
	}
	if v.keys == nil {
		return "", errors.New("no SSH keys are trusted (trust.ssh_allowed_signers)")
	}
	// Only a trusted key's signature is checked: verifying under a key the
	// file chose (a huge RSA modulus, say) would let it choose the cost.
	fp := ssh.FingerprintSHA256(sig.PublicKey)
	if !v.sshTrusted[fp] {
		return "", fmt.Errorf("signed by SSH key %s, which is not among the trusted keys (trust.ssh_allowed_signers)", fp)
	}
	ns := v.sshNamespace()
	if err := sshsig.Verify(bytes.NewReader(statement), sig, sig.PublicKey, sig.HashAlgorithm, ns); err != nil {
		return "", explainMismatch(fmt.Errorf("the SSH signature by %s does not verify over this statement", fp))
	}
	s, err := v.keys.VerifySSH(statement, data, ns, now)
	if err != nil {
		return "", err
	}
	return s.Fingerprint, nil
}

// ForNamespace returns a copy of v that checks SSH approvals in namespace
// ns instead of ApprovalNamespace (source approvals use
// SourceApprovalNamespace), so a signature made for one purpose never
// counts for another.
func (v *ApprovalVerifier) ForNamespace(ns string) *ApprovalVerifier {
	c := *v
	c.namespace = ns
	return &c
}

func (v *ApprovalVerifier) sshNamespace() string {
	if v.namespace == "" {
		return ApprovalNamespace
	}
	return v.namespace
}

// explainMismatch adds what a signature over another statement usually
// means.
func explainMismatch(err error) error {
	return fmt.Errorf("%w: it approves another statement (for an allowlist: another repository, version, or content of allowlist.yaml or a key file); approve the final content with `writ allowlist approve`", err)
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
