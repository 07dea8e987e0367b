package difftest

import (
	"bytes"
	"crypto"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"gitlab.com/writ-ci/writ/internal/testkeys"
)

// t0 is when most objects are made (author, committer and tagger date).
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// world holds the keys, made once per run by the real gpg and ssh-keygen,
// and the one repository every object of the corpus is written to.
type world struct {
	t    *testing.T
	dir  string
	home string
	repo *testkeys.Repo

	// alice signs most SSH cases; bob is trusted in some; mallory never.
	alice, bob, mallory *testkeys.SSH
	sshTypes            map[string]*testkeys.SSH
	// pgp signs most OpenPGP cases with its ed25519 primary key; pgpBob
	// is another trusted key, pgpMallory an untrusted one, pgpRSA signs
	// with the hash algorithms ed25519 keys cannot use.
	pgp, pgpBob, pgpMallory, pgpRSA *testkeys.GPG

	memo map[string]string
	n    int
}

func newWorld(t *testing.T) *world {
	w := &world{t: t, dir: t.TempDir(), home: t.TempDir(), repo: testkeys.GitRepo(t), memo: map[string]string{}}
	if h := w.repo.GitInput(t, []byte{}, "mktree"); h != emptyTree {
		t.Fatalf("git mktree: %s, want the empty tree %s", h, emptyTree)
	}
	w.alice = testkeys.SSHKey(t, "alice@example.com")
	w.bob = testkeys.SSHKey(t, "bob@example.com")
	w.mallory = testkeys.SSHKey(t, "mallory@example.com")
	w.sshTypes = map[string]*testkeys.SSH{
		"ecdsa-256": testkeys.SSHKeyOfType(t, "alice@example.com", "ecdsa", 256),
		"ecdsa-384": testkeys.SSHKeyOfType(t, "alice@example.com", "ecdsa", 384),
		"ecdsa-521": testkeys.SSHKeyOfType(t, "alice@example.com", "ecdsa", 521),
		"rsa-1024":  testkeys.SSHKeyOfType(t, "alice@example.com", "rsa", 1024),
		"rsa-2048":  testkeys.SSHKeyOfType(t, "alice@example.com", "rsa", 2048),
		"rsa-3072":  testkeys.SSHKeyOfType(t, "alice@example.com", "rsa", 3072),
		"dsa":       testkeys.SSHKeyOfType(t, "alice@example.com", "dsa", 0),
	}
	w.pgp = testkeys.GPGKey(t, "Alice PGP", "alice-pgp@example.com")
	w.pgpBob = testkeys.GPGKey(t, "Bob PGP", "bob-pgp@example.com")
	w.pgpMallory = testkeys.GPGKey(t, "Mallory PGP", "mallory-pgp@example.com")
	w.pgpRSA = testkeys.GPGKey(t, "Rita RSA", "rita@example.com", testkeys.RSA())
	return w
}

// once returns the memoised result of make under key, so cases that
// judge the same object under different trust material share it.
func (w *world) once(key string, make func() string) string {
	if h, ok := w.memo[key]; ok {
		return h
	}
	h := make()
	w.memo[key] = h
	return h
}

// emptyTree is the hash of git's empty tree; every commit of the corpus
// has it (git commit-tree needs it stored, newWorld stores it).
const emptyTree = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"

// commitAt makes a root commit dated at with git commit-tree, signed by
// signer (nil, *GPG, *SSH) the way git commit -S signs it. One git
// process per commit keeps the corpus quick to build.
func (w *world) commitAt(signer any, at time.Time) string {
	w.n++
	w.repo.When = at
	var args []string
	switch s := signer.(type) {
	case nil:
		args = []string{"commit-tree", "--no-gpg-sign"}
	case *testkeys.GPG:
		args = []string{"-c", "gpg.format=openpgp", "-c", "gpg.program=" + s.Program, "commit-tree", "-S" + s.SigningFingerprint}
	case *testkeys.SSH:
		args = []string{"-c", "gpg.format=ssh", "commit-tree", "-S" + s.PrivatePath}
	default:
		w.t.Fatalf("unsupported signer %T", signer)
	}
	return w.repo.Git(w.t, append(args, "-m", fmt.Sprintf("case %d", w.n), emptyTree)...)
}

func (w *world) commit(signer any) string { return w.commitAt(signer, t0) }

// payload is an unsigned commit's bytes, as git writes them, ready to be
// signed by hand (without a git process).
func (w *world) payload(at time.Time) []byte {
	w.n++
	date := fmt.Sprintf("%d +0000", at.Unix())
	return []byte("tree " + emptyTree + "\n" +
		"author Test Author <author@example.com> " + date + "\n" +
		"committer Test Committer <committer@example.com> " + date + "\n" +
		fmt.Sprintf("\ncase %d\n", w.n))
}

// withSig stores payload with sig as its gpgsig header (none if nil).
func (w *world) withSig(payload, sig []byte) string {
	if sig == nil {
		return w.repo.WriteObject(w.t, "commit", payload)
	}
	return w.repo.SignedCommit(w.t, payload, sig)
}

// tag makes an annotated tag on a new commit, signed by signer with git
// tag -s (nil: git tag -a).
func (w *world) tag(signer any, at time.Time) string {
	c := w.withSig(w.payload(at), nil)
	w.repo.When = at
	return w.repo.Tag(w.t, fmt.Sprintf("v%d", w.n), c, signer)
}

// rawTag makes a tag signed by signer and rewrites it with edit, which
// gets the signed payload and the signature and returns the new object.
func (w *world) rawTag(signer any, edit func(payload, sig []byte) []byte) string {
	raw := w.repo.RawObject(w.t, "tag", w.tag(signer, t0))
	i := bytes.LastIndex(raw, []byte("-----BEGIN "))
	return w.repo.WriteObject(w.t, "tag", edit(raw[:i], raw[i:]))
}

// sshSign signs data with ssh-keygen -Y sign and extra options.
func (w *world) sshSign(k *testkeys.SSH, data []byte, namespace string, extra ...string) []byte {
	dir := w.t.TempDir()
	msg := filepath.Join(dir, "msg")
	if err := os.WriteFile(msg, data, 0o600); err != nil {
		w.t.Fatal(err)
	}
	args := append([]string{"-Y", "sign", "-n", namespace, "-f", k.PrivatePath}, extra...)
	if out, err := exec.Command("ssh-keygen", append(args, msg)...).CombinedOutput(); err != nil {
		w.t.Fatalf("ssh-keygen -Y sign: %v: %s", err, out)
	}
	sig, err := os.ReadFile(msg + ".sig")
	if err != nil {
		w.t.Fatal(err)
	}
	return sig
}

// gpgRun runs gpg on g's home, at the faked time if any.
func (w *world) gpgRun(g *testkeys.GPG, faked string, stdin []byte, args ...string) []byte {
	full := []string{"--homedir", g.Home, "--batch", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", ""}
	if faked != "" {
		full = append(full, "--faked-system-time", faked)
	}
	cmd := exec.Command("gpg", append(full, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		w.t.Fatalf("gpg %s: %v: %s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}

// gpgWith is g signing with extra gpg options (through git's
// gpg.program), such as --digest-algo or --textmode.
func (w *world) gpgWith(g *testkeys.GPG, extra ...string) *testkeys.GPG {
	w.n++
	v := *g
	v.Program = filepath.Join(w.dir, fmt.Sprintf("gpg-%d.sh", w.n))
	script := "#!/bin/sh\nexec gpg --homedir '" + g.Home + "' --batch --no-tty --pinentry-mode loopback --passphrase ''"
	if g.FakedTime != "" && !strings.Contains(strings.Join(extra, " "), "--faked-system-time") {
		script += " --faked-system-time " + g.FakedTime
	}
	script += " " + strings.Join(extra, " ") + " \"$@\"\n"
	if err := os.WriteFile(v.Program, []byte(script), 0o700); err != nil {
		w.t.Fatal(err)
	}
	return &v
}

// pgpSign makes a detached armored signature as git does, with extra
// options.
func (w *world) pgpSign(g *testkeys.GPG, data []byte, extra ...string) []byte {
	return w.gpgRun(g, g.FakedTime, data, append(extra, "--armor", "--detach-sign", "--local-user", g.SigningFingerprint)...)
}

// subkeyKey makes a key with an ed25519 signing subkey, as gpg makes it.
func (w *world) subkeyKey(name string) *testkeys.GPG {
	return testkeys.GPGKey(w.t, name, strings.ToLower(strings.Fields(name)[0])+"@example.com", testkeys.SigningSubkey())
}

// rebind re-signs the binding signature of g's first subkey after edit
// changes it, and returns the public key, armored. It stands for a key
// whose owner (or an attacker holding a copy of the key file) changed
// what gpg made.
func (w *world) rebind(g *testkeys.GPG, edit func(e *openpgp.Entity, sub *openpgp.Subkey)) []byte {
	return w.edited(g, func(e *openpgp.Entity) {
		if len(e.Subkeys) != 1 {
			w.t.Fatalf("%s: %d subkeys", g.UID, len(e.Subkeys))
		}
		edit(e, &e.Subkeys[0])
	})
}

// edited is g's public key, armored, after edit changes the entity read
// from gpg's export of the secret key.
func (w *world) edited(g *testkeys.GPG, edit func(e *openpgp.Entity)) []byte {
	secret := w.gpgRun(g, "", nil, "--export-secret-keys", g.Fingerprint)
	e, err := openpgp.ReadEntity(packet.NewReader(bytes.NewReader(secret)))
	if err != nil {
		w.t.Fatal(err)
	}
	edit(e)
	var buf bytes.Buffer
	aw, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		w.t.Fatal(err)
	}
	if err := e.Serialize(aw); err != nil {
		w.t.Fatal(err)
	}
	aw.Close()
	return buf.Bytes()
}

// resign signs sub's binding signature again with the primary key,
// keeping its date.
func (w *world) resign(e *openpgp.Entity, sub *openpgp.Subkey) {
	if err := sub.Sig.SignKey(sub.PublicKey, e.PrivateKey, nil); err != nil {
		w.t.Fatal(err)
	}
}

// unflagPrimary signs the primary user ID's self-signature again without
// the sign flag, keeping its date.
func (w *world) unflagPrimary(e *openpgp.Entity) {
	for name, id := range e.Identities {
		id.SelfSignature.FlagSign = false
		if err := id.SelfSignature.SignUserId(name, e.PrimaryKey, e.PrivateKey, nil); err != nil {
			w.t.Fatal(err)
		}
	}
}

// revokeSub adds a subkey revocation signature by the primary key.
func (w *world) revokeSub(e *openpgp.Entity, sub *openpgp.Subkey) {
	rev := &packet.Signature{
		Version:           e.PrimaryKey.Version,
		SigType:           packet.SigTypeSubkeyRevocation,
		PubKeyAlgo:        e.PrimaryKey.PubKeyAlgo,
		Hash:              crypto.SHA256,
		CreationTime:      time.Now(),
		IssuerKeyId:       &e.PrimaryKey.KeyId,
		IssuerFingerprint: e.PrimaryKey.Fingerprint,
	}
	if err := rev.SignKey(sub.PublicKey, e.PrivateKey, nil); err != nil {
		w.t.Fatal(err)
	}
	sub.Revocations = append(sub.Revocations, rev)
}

// keyPart is "keytype base64" of an SSH key.
func keyPart(k *testkeys.SSH) string { return strings.Join(strings.Fields(k.PublicLine)[:2], " ") }

// line is an allowed_signers line for k.
func line(principals, options string, k *testkeys.SSH) string {
	if options != "" {
		return principals + " " + options + " " + keyPart(k)
	}
	return principals + " " + keyPart(k)
}

// mapLines applies f to every line of s (without its "\n").
func mapLines(s []byte, f func(i int, l string) string) []byte {
	lines := strings.Split(strings.TrimSuffix(string(s), "\n"), "\n")
	for i, l := range lines {
		lines[i] = f(i, l)
	}
	return []byte(strings.Join(lines, "\n") + "\n")
}
