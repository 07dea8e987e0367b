// Package testkeys makes real signing keys and real git repositories for
// tests. Keys come from the real gpg and ssh-keygen, commits and tags from
// the real git, so tests exercise the same bytes an operator's tools produce.
//
// Every helper isolates the tools from the user's configuration: git runs
// with GIT_CONFIG_GLOBAL=/dev/null, GIT_CONFIG_NOSYSTEM=1 and a temporary
// HOME; gpg runs in a temporary GNUPGHOME whose agent is stopped when the
// test ends.
//
// It is for tests only; nothing outside _test.go files may import it.
package testkeys

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// GPG is a real OpenPGP key in its own GNUPGHOME.
type GPG struct {
	// Home is the GNUPGHOME holding the secret key.
	Home string
	// Fingerprint is the primary key fingerprint, upper-case hex.
	Fingerprint string
	// SigningFingerprint is the fingerprint of the key that actually signs:
	// the signing subkey if one was requested, else the primary key.
	SigningFingerprint string
	// UID is the primary user ID, "Name <email>".
	UID string
	// ArmoredPublic is the armored public key (gpg --export --armor).
	ArmoredPublic []byte
	// FakedTime, if set, is the gpg --faked-system-time every operation
	// with this key uses (keys made in the past).
	FakedTime string
	// Program is a wrapper script usable as git's gpg.program: it runs gpg
	// with this Home and FakedTime.
	Program string
}

type gpgOptions struct {
	created   string // faked creation time, gpg format
	signAt    string // faked signing time
	expire    string // quick-gen-key expiry argument
	subkey    bool
	algorithm string
	usage     string // the primary key's usage
}

// GPGOption changes how GPGKey makes a key.
type GPGOption func(*gpgOptions)

// ExpiredKey makes a key created on 2020-01-01 that expired one day later.
// Signatures by it (through Program or Sign) are dated 2020-01-01T06:00:00Z,
// when the key was still valid.
func ExpiredKey() GPGOption {
	return func(o *gpgOptions) {
		o.created = "20200101T000000"
		o.signAt = "20200101T060000"
		o.expire = "1d"
	}
}

// SigningSubkey adds an ed25519 signing subkey, which gpg then prefers
// for signatures, so the signing key differs from the primary key.
func SigningSubkey() GPGOption { return func(o *gpgOptions) { o.subkey = true } }

// RSA makes an rsa2048 key instead of ed25519.
func RSA() GPGOption { return func(o *gpgOptions) { o.algorithm = "rsa2048" } }

// Algorithm makes the primary key with gpg's algorithm name algo
// ("nistp256", "brainpoolP256r1", "rsa3072", …) instead of ed25519.
func Algorithm(algo string) GPGOption { return func(o *gpgOptions) { o.algorithm = algo } }

// CertifyOnly makes a primary key that may only certify, as many
// people's keys are; with SigningSubkey, the subkey signs.
func CertifyOnly() GPGOption { return func(o *gpgOptions) { o.usage = "cert" } }

// ExpiredKeyValidUntil is the instant ExpiredKey keys stop being valid.
var ExpiredKeyValidUntil = time.Date(2020, 1, 2, 0, 0, 0, 0, time.UTC)

// ExpiredKeySignedAt is when ExpiredKey keys make their signatures.
var ExpiredKeySignedAt = time.Date(2020, 1, 1, 6, 0, 0, 0, time.UTC)

// GPGKey generates a real OpenPGP key with gpg --quick-gen-key.
func GPGKey(t testing.TB, name, email string, opts ...GPGOption) *GPG {
	t.Helper()
	o := gpgOptions{expire: "0", algorithm: "ed25519", usage: "sign"}
	for _, f := range opts {
		f(&o)
	}
	// gpg-agent puts its sockets in GNUPGHOME, and socket paths are limited
	// to about 100 bytes, so keep the path short rather than t.TempDir().
	home, err := os.MkdirTemp("", "tk-gpg-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	g := &GPG{Home: home, UID: fmt.Sprintf("%s <%s>", name, email), FakedTime: o.signAt}
	t.Cleanup(func() {
		_ = exec.Command("gpgconf", "--homedir", home, "--kill", "gpg-agent").Run()
		_ = os.RemoveAll(home)
	})
	run := func(faked string, args ...string) string {
		t.Helper()
		full := []string{"--homedir", home, "--batch", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", ""}
		if faked != "" {
			full = append(full, "--faked-system-time", faked)
		}
		full = append(full, args...)
		out, err := runTool(nil, nil, "gpg", full...)
		if err != nil {
			t.Fatalf("gpg %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	run(o.created, "--quick-gen-key", g.UID, o.algorithm, o.usage, o.expire)
	g.Fingerprint = gpgFingerprints(t, run(o.created, "--with-colons", "--list-keys", g.UID))[0]
	g.SigningFingerprint = g.Fingerprint
	if o.subkey {
		run(o.created, "--quick-add-key", g.Fingerprint, "ed25519", "sign", o.expire)
		fprs := gpgFingerprints(t, run(o.created, "--with-colons", "--list-keys", g.Fingerprint))
		if len(fprs) != 2 {
			t.Fatalf("gpg: expected a primary key and one subkey, got %v", fprs)
		}
		g.SigningFingerprint = fprs[1]
	}
	g.ArmoredPublic = []byte(run("", "--armor", "--export", g.Fingerprint))

	g.Program = filepath.Join(home, "gpg-wrapper.sh")
	script := "#!/bin/sh\nexec gpg --homedir '" + home + "' --batch --no-tty --pinentry-mode loopback --passphrase ''"
	if o.signAt != "" {
		script += " --faked-system-time " + o.signAt
	}
	script += " \"$@\"\n"
	if err := os.WriteFile(g.Program, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	return g
}

func gpgFingerprints(t testing.TB, colons string) []string {
	t.Helper()
	var fprs []string
	for _, line := range strings.Split(colons, "\n") {
		f := strings.Split(line, ":")
		if len(f) > 9 && f[0] == "fpr" {
			fprs = append(fprs, f[9])
		}
	}
	if len(fprs) == 0 {
		t.Fatalf("gpg listed no fingerprint:\n%s", colons)
	}
	return fprs
}

// Sign makes an armored detached signature over data, as git does.
func (g *GPG) Sign(t testing.TB, data []byte) []byte {
	t.Helper()
	out, err := runTool(data, nil, g.Program, "--armor", "--detach-sign", "--local-user", g.SigningFingerprint)
	if err != nil {
		t.Fatalf("gpg sign: %v", err)
	}
	return []byte(out)
}

// Revoke revokes the key with the revocation certificate gpg stored when
// it made the key, and refreshes ArmoredPublic to carry the revocation.
func (g *GPG) Revoke(t testing.TB) {
	t.Helper()
	cert, err := os.ReadFile(filepath.Join(g.Home, "openpgp-revocs.d", g.Fingerprint+".rev"))
	if err != nil {
		t.Fatal(err)
	}
	// gpg prefixes the armor header with ':' so the certificate is not
	// imported by accident; remove it to import on purpose.
	cert = bytes.Replace(cert, []byte(":-----BEGIN PGP PUBLIC KEY BLOCK-----"), []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----"), 1)
	if _, err := runTool(cert, nil, "gpg", "--homedir", g.Home, "--batch", "--no-tty", "--import"); err != nil {
		t.Fatalf("gpg import revocation: %v", err)
	}
	out, err := runTool(nil, nil, "gpg", "--homedir", g.Home, "--batch", "--no-tty", "--armor", "--export", g.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	g.ArmoredPublic = []byte(out)
}

// SSH is a real ed25519 SSH key made by ssh-keygen.
type SSH struct {
	PrivatePath string
	PublicPath  string
	// PublicLine is "ssh-ed25519 AAAA… principal", without newline.
	PublicLine string
	// Principal is the identity the key is listed under.
	Principal string
	// Fingerprint is the ssh-keygen -l form, "SHA256:…".
	Fingerprint string
}

// SSHKey generates an ed25519 key without passphrase (ssh-keygen -t ed25519).
func SSHKey(t testing.TB, principal string) *SSH {
	t.Helper()
	return SSHKeyOfType(t, principal, "ed25519", 0)
}

// SSHKeyOfType generates a key of ssh-keygen type typ ("ed25519",
// "ecdsa", "rsa", "dsa") with bits bits (0: ssh-keygen's default).
func SSHKeyOfType(t testing.TB, principal, typ string, bits int) *SSH {
	t.Helper()
	dir := t.TempDir()
	s := &SSH{PrivatePath: filepath.Join(dir, "id_"+typ), Principal: principal}
	s.PublicPath = s.PrivatePath + ".pub"
	args := []string{"-q", "-t", typ, "-N", "", "-C", principal, "-f", s.PrivatePath}
	if bits != 0 {
		args = append(args, "-b", strconv.Itoa(bits))
	}
	if _, err := runTool(nil, nil, "ssh-keygen", args...); err != nil {
		t.Fatalf("ssh-keygen: %v", err)
	}
	pub, err := os.ReadFile(s.PublicPath)
	if err != nil {
		t.Fatal(err)
	}
	s.PublicLine = strings.TrimSpace(string(pub))
	out, err := runTool(nil, nil, "ssh-keygen", "-l", "-E", "sha256", "-f", s.PublicPath)
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(out)
	if len(fields) < 2 {
		t.Fatalf("ssh-keygen -l: unexpected output %q", out)
	}
	s.Fingerprint = fields[1]
	return s
}

// SSHCertificate signs user's key with ca's key (ssh-keygen -s) as a
// certificate for principal and returns it as an SSH whose PrivatePath
// is the certificate, so that git (user.signingkey) and ssh-keygen -Y sign
// sign with the certificate and the private key next to it.
func SSHCertificate(t testing.TB, ca, user *SSH, principal string) *SSH {
	t.Helper()
	if _, err := runTool(nil, nil, "ssh-keygen", "-q", "-s", ca.PrivatePath, "-I", principal, "-n", principal, user.PublicPath); err != nil {
		t.Fatalf("ssh-keygen -s: %v", err)
	}
	cert := strings.TrimSuffix(user.PublicPath, ".pub") + "-cert.pub"
	line, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	return &SSH{PrivatePath: cert, PublicPath: cert, PublicLine: strings.TrimSpace(string(line)), Principal: principal, Fingerprint: user.Fingerprint}
}

// AllowedSignersLine is the key's line for an allowed_signers file. With a
// non-empty namespaces it carries namespaces="…"; extra options, if any,
// are appended to the option list verbatim (for example
// `valid-before="20200101Z"`).
func (s *SSH) AllowedSignersLine(namespaces string, extra ...string) string {
	var opts []string
	if namespaces != "" {
		opts = append(opts, `namespaces="`+namespaces+`"`)
	}
	opts = append(opts, extra...)
	keyPart := strings.Join(strings.Fields(s.PublicLine)[:2], " ")
	if len(opts) == 0 {
		return s.Principal + " " + keyPart
	}
	return s.Principal + " " + strings.Join(opts, ",") + " " + keyPart
}

// Sign signs data in namespace with ssh-keygen -Y sign and returns the
// armored signature.
func (s *SSH) Sign(t testing.TB, data []byte, namespace string) []byte {
	t.Helper()
	dir := t.TempDir()
	msg := filepath.Join(dir, "msg")
	if err := os.WriteFile(msg, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := runTool(nil, nil, "ssh-keygen", "-Y", "sign", "-n", namespace, "-f", s.PrivatePath, msg); err != nil {
		t.Fatalf("ssh-keygen -Y sign: %v", err)
	}
	sig, err := os.ReadFile(msg + ".sig")
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// Repo is a real non-bare git repository made by git init.
type Repo struct {
	// Path is the work tree; the repository is Path/.git.
	Path string
	// When is the author and committer date of the next commit or tag.
	// GitRepo sets it to 2025-01-01T00:00:00Z; each Commit and Tag
	// advances it by one minute so successive objects differ.
	When time.Time
	home string
}

// GitRepo initialises a repository with the default branch "main".
func GitRepo(t testing.TB) *Repo {
	t.Helper()
	r := &Repo{Path: t.TempDir(), home: t.TempDir(), When: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	r.Git(t, "-c", "init.defaultBranch=main", "init", "-q")
	return r
}

func (r *Repo) env() []string {
	date := "@" + strconv.FormatInt(r.When.Unix(), 10) + " +0000"
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + r.home,
		"TZ=UTC",
		"LANG=C",
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Test Author",
		"GIT_AUTHOR_EMAIL=author@example.com",
		"GIT_AUTHOR_DATE=" + date,
		"GIT_COMMITTER_NAME=Test Committer",
		"GIT_COMMITTER_EMAIL=committer@example.com",
		"GIT_COMMITTER_DATE=" + date,
	}
}

// Git runs git in the repository and returns its standard output with
// surrounding white space trimmed. It fails the test on error.
func (r *Repo) Git(t testing.TB, args ...string) string {
	t.Helper()
	return r.GitInput(t, nil, args...)
}

// GitInput is Git with stdin.
func (r *Repo) GitInput(t testing.TB, stdin []byte, args ...string) string {
	t.Helper()
	out, err := runTool(stdin, r.env(), "git", append([]string{"-C", r.Path}, args...)...)
	if err != nil {
		t.Fatalf("git %s: %v", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(out)
}

// signArgs are the git options that make git sign with signer.
func signArgs(t testing.TB, signer any) []string {
	t.Helper()
	switch s := signer.(type) {
	case nil:
		return nil
	case *GPG:
		return []string{"-c", "gpg.format=openpgp", "-c", "gpg.program=" + s.Program, "-c", "user.signingkey=" + s.SigningFingerprint}
	case *SSH:
		return []string{"-c", "gpg.format=ssh", "-c", "user.signingkey=" + s.PrivatePath}
	default:
		t.Fatalf("testkeys: unsupported signer %T", signer)
		return nil
	}
}

// Commit writes files (path → content, parent directories created), stages
// everything and commits with msg on the current branch, signed by signer
// (nil, *GPG or *SSH). It returns the commit hash.
func (r *Repo) Commit(t testing.TB, files map[string]string, msg string, signer any) string {
	t.Helper()
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p := filepath.Join(r.Path, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(files[name]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r.Git(t, "add", "-A")
	args := signArgs(t, signer)
	args = append(args, "commit", "-q", "--allow-empty", "-m", msg)
	if signer != nil {
		args = append(args, "-S")
	} else {
		args = append(args, "--no-gpg-sign")
	}
	r.Git(t, args...)
	r.When = r.When.Add(time.Minute)
	return r.Git(t, "rev-parse", "HEAD")
}

// Tag makes the annotated tag refs/tags/name on commit, signed by signer
// (nil for an unsigned annotated tag), and returns the tag object's hash.
func (r *Repo) Tag(t testing.TB, name, commit string, signer any) string {
	t.Helper()
	args := signArgs(t, signer)
	args = append(args, "tag", "-m", "release "+name)
	if signer != nil {
		args = append(args, "-s")
	} else {
		args = append(args, "-a")
	}
	args = append(args, name, commit)
	r.Git(t, args...)
	r.When = r.When.Add(time.Minute)
	return r.Git(t, "rev-parse", "refs/tags/"+name)
}

// RawObject returns the raw content of an object (git cat-file <type>).
func (r *Repo) RawObject(t testing.TB, typ, hash string) []byte {
	t.Helper()
	out, err := runTool(nil, r.env(), "git", "-C", r.Path, "cat-file", typ, hash)
	if err != nil {
		t.Fatalf("git cat-file: %v", err)
	}
	return []byte(out)
}

// WriteObject stores raw as an object of type typ without any checks (git
// hash-object --literally), so tests can craft objects git would refuse to
// make, and returns its hash.
func (r *Repo) WriteObject(t testing.TB, typ string, raw []byte) string {
	t.Helper()
	return r.GitInput(t, raw, "hash-object", "-t", typ, "-w", "--stdin", "--literally")
}

// UnsignedPayload returns the raw content of commit without its gpgsig
// header, which is the byte string a commit signature covers.
func (r *Repo) UnsignedPayload(t testing.TB, commit string) []byte {
	t.Helper()
	raw := r.RawObject(t, "commit", commit)
	head, body, ok := bytes.Cut(raw, []byte("\n\n"))
	if !ok {
		t.Fatalf("commit %s has no message separator", commit)
	}
	var out bytes.Buffer
	skipping := false
	for _, line := range bytes.SplitAfter(append(head, '\n'), []byte("\n")) {
		switch {
		case len(line) == 0:
		case skipping && line[0] == ' ':
		case bytes.HasPrefix(line, []byte("gpgsig ")):
			skipping = true
		default:
			skipping = false
			out.Write(line)
		}
	}
	out.WriteString("\n")
	out.Write(body)
	return out.Bytes()
}

// InsertSignature returns the commit payload with a gpgsig header carrying
// sig, placed as git places it: after the other headers.
func InsertSignature(payload, sig []byte) []byte {
	head, body, ok := bytes.Cut(payload, []byte("\n\n"))
	if !ok {
		panic("testkeys: commit payload without message separator")
	}
	sigLines := strings.Split(strings.TrimSuffix(string(sig), "\n"), "\n")
	var out bytes.Buffer
	out.Write(head)
	out.WriteString("\ngpgsig ")
	out.WriteString(strings.Join(sigLines, "\n "))
	out.WriteString("\n\n")
	out.Write(body)
	return out.Bytes()
}

// SignedCommit stores payload (an unsigned commit) with sig inserted as its
// gpgsig header and returns the new commit's hash.
func (r *Repo) SignedCommit(t testing.TB, payload, sig []byte) string {
	t.Helper()
	return r.WriteObject(t, "commit", InsertSignature(payload, sig))
}

// DoubleSignedCommit stores a copy of commit carrying two signature blocks,
// by first and then second (each a *GPG or an *SSH), over the commit's
// unsigned payload, and returns the new commit's hash. Each block alone
// would be a valid signature.
func (r *Repo) DoubleSignedCommit(t testing.TB, commit string, first, second any) string {
	t.Helper()
	payload := r.UnsignedPayload(t, commit)
	var sig []byte
	for _, s := range []any{first, second} {
		switch s := s.(type) {
		case *GPG:
			sig = append(sig, s.Sign(t, payload)...)
		case *SSH:
			sig = append(sig, s.Sign(t, payload, "git")...)
		default:
			t.Fatalf("testkeys: unsupported signer %T", s)
		}
	}
	return r.SignedCommit(t, payload, sig)
}

func runTool(stdin []byte, env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	if env != nil {
		cmd.Env = env
	}
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Gitlink stages a submodule entry at path recording commit, as
// `git submodule add` would without cloning anything: the next Commit
// records it. path is left as an empty directory, as an unpopulated
// submodule is.
func (r *Repo) Gitlink(t testing.TB, path, commit string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(r.Path, filepath.FromSlash(path)), 0o755); err != nil {
		t.Fatal(err)
	}
	r.Git(t, "update-index", "--add", "--cacheinfo", "160000,"+commit+","+path)
}
