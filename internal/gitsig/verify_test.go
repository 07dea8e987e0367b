package gitsig

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"gitlab.com/writ-ci/writ/internal/testkeys"
)

func openCommit(t testing.TB, r *testkeys.Repo, hash string) *object.Commit {
	t.Helper()
	repo, err := git.PlainOpen(r.Path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := repo.CommitObject(plumbing.NewHash(hash))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func openTag(t testing.TB, r *testkeys.Repo, hash string) *object.Tag {
	t.Helper()
	repo, err := git.PlainOpen(r.Path)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := repo.TagObject(plumbing.NewHash(hash))
	if err != nil {
		t.Fatal(err)
	}
	return tag
}

func gpgKeys(t testing.TB, armored ...[]byte) *Keys {
	t.Helper()
	k, err := NewKeys(armored, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sshKeys(t testing.TB, lines ...string) *Keys {
	t.Helper()
	as, err := ParseAllowedSigners([]byte(strings.Join(lines, "\n") + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewKeys(nil, as)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// wantErr fails unless err is non-nil and contains every fragment.
func wantErr(t testing.TB, err error, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("verification succeeded, want an error containing %q", fragments)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Fatalf("error %q does not contain %q", err, f)
		}
	}
	t.Logf("refused as expected: %v", err)
}

func TestVerifyCommitOpenPGP(t *testing.T) {
	t.Parallel()
	g := testkeys.GPGKey(t, "Alice", "alice@example.com")
	r := testkeys.GitRepo(t)
	h := r.Commit(t, map[string]string{"a.txt": "a"}, "signed", g)
	s, err := gpgKeys(t, g.ArmoredPublic).VerifyCommit(openCommit(t, r, h), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	want := Signer{Kind: KindOpenPGP, Fingerprint: g.Fingerprint, Principal: "Alice <alice@example.com>"}
	if s != want {
		t.Fatalf("signer %+v, want %+v", s, want)
	}
}

func TestVerifyCommitOpenPGPRSA(t *testing.T) {
	t.Parallel()
	g := testkeys.GPGKey(t, "Rsa", "rsa@example.com", testkeys.RSA())
	r := testkeys.GitRepo(t)
	h := r.Commit(t, map[string]string{"a.txt": "a"}, "signed", g)
	s, err := gpgKeys(t, g.ArmoredPublic).VerifyCommit(openCommit(t, r, h), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if s.Fingerprint != g.Fingerprint {
		t.Fatalf("fingerprint %s, want %s", s.Fingerprint, g.Fingerprint)
	}
}

// A signing subkey signs, but the primary key's fingerprint is reported:
// that is what allowlists pin.
func TestVerifyCommitOpenPGPSubkeyReportsPrimary(t *testing.T) {
	t.Parallel()
	g := testkeys.GPGKey(t, "Sub", "sub@example.com", testkeys.SigningSubkey())
	if g.SigningFingerprint == g.Fingerprint {
		t.Fatal("test setup: no distinct signing subkey")
	}
	r := testkeys.GitRepo(t)
	h := r.Commit(t, map[string]string{"a.txt": "a"}, "signed by subkey", g)
	s, err := gpgKeys(t, g.ArmoredPublic).VerifyCommit(openCommit(t, r, h), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if s.Fingerprint != g.Fingerprint {
		t.Fatalf("fingerprint %s, want primary %s (subkey %s)", s.Fingerprint, g.Fingerprint, g.SigningFingerprint)
	}
}

func TestVerifyCommitSSH(t *testing.T) {
	t.Parallel()
	k := testkeys.SSHKey(t, "bob@example.com")
	r := testkeys.GitRepo(t)
	h := r.Commit(t, map[string]string{"a.txt": "a"}, "signed", k)
	s, err := sshKeys(t, k.AllowedSignersLine("")).VerifyCommit(openCommit(t, r, h), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	want := Signer{Kind: KindSSH, Fingerprint: k.Fingerprint, Principal: "bob@example.com"}
	if s != want {
		t.Fatalf("signer %+v, want %+v", s, want)
	}
	// The namespaces option may name git among others.
	if _, err := sshKeys(t, k.AllowedSignersLine("file,git")).VerifyCommit(openCommit(t, r, h), time.Now()); err != nil {
		t.Fatal(err)
	}
}

// A keyring file with several armor blocks: the signer is in the second.
func TestVerifyCommitKeyringSeveralBlocks(t *testing.T) {
	t.Parallel()
	other := testkeys.GPGKey(t, "Other", "other@example.com")
	g := testkeys.GPGKey(t, "Alice", "alice@example.com")
	r := testkeys.GitRepo(t)
	h := r.Commit(t, map[string]string{"a.txt": "a"}, "signed", g)
	var ring bytes.Buffer
	ring.WriteString("# first: other\n")
	ring.Write(other.ArmoredPublic)
	ring.WriteString("\n# second: alice\n")
	ring.Write(g.ArmoredPublic)
	k := gpgKeys(t, ring.Bytes())
	if got := k.Fingerprints(); len(got) != 2 {
		t.Fatalf("keyring has %d keys (%v), want 2", len(got), got)
	}
	s, err := k.VerifyCommit(openCommit(t, r, h), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if s.Fingerprint != g.Fingerprint {
		t.Fatalf("fingerprint %s, want %s", s.Fingerprint, g.Fingerprint)
	}
	// Control: with only the first block the same commit is refused.
	_, err = gpgKeys(t, other.ArmoredPublic).VerifyCommit(openCommit(t, r, h), time.Now())
	wantErr(t, err, "not among the trusted keys")
}

func TestVerifyCommitUnsigned(t *testing.T) {
	t.Parallel()
	g := testkeys.GPGKey(t, "Alice", "alice@example.com")
	r := testkeys.GitRepo(t)
	h := r.Commit(t, map[string]string{"a.txt": "a"}, "unsigned", nil)
	_, err := gpgKeys(t, g.ArmoredPublic).VerifyCommit(openCommit(t, r, h), time.Now())
	wantErr(t, err, "not signed", h)
	if !errors.Is(err, ErrUnsigned) {
		t.Fatalf("error %v is not ErrUnsigned", err)
	}
}

func TestVerifyCommitUnknownOpenPGPKey(t *testing.T) {
	t.Parallel()
	trusted := testkeys.GPGKey(t, "Trusted", "trusted@example.com")
	mallory := testkeys.GPGKey(t, "Mallory", "mallory@example.com")
	r := testkeys.GitRepo(t)
	h := r.Commit(t, map[string]string{"a.txt": "a"}, "by mallory", mallory)
	_, err := gpgKeys(t, trusted.ArmoredPublic).VerifyCommit(openCommit(t, r, h), time.Now())
	wantErr(t, err, "signed by OpenPGP key "+mallory.Fingerprint+" which is not among the trusted keys")
}

func TestVerifyCommitExpiredOpenPGPKey(t *testing.T) {
	t.Parallel()
	g := testkeys.GPGKey(t, "Old", "old@example.com", testkeys.ExpiredKey())
	r := testkeys.GitRepo(t)
	r.When = testkeys.ExpiredKeySignedAt
	h := r.Commit(t, map[string]string{"a.txt": "a"}, "signed in 2020", g)
	k := gpgKeys(t, g.ArmoredPublic)
	c := openCommit(t, r, h)
	_, err := k.VerifyCommit(c, time.Now())
	wantErr(t, err, "OpenPGP key "+g.Fingerprint+" expired on 2020-01-02", "checked now")
	// Control: the same signature is good while the key was valid, so the
	// refusal above is about expiry and nothing else.
	if _, err := k.VerifyCommit(c, testkeys.ExpiredKeySignedAt.Add(time.Hour)); err != nil {
		t.Fatalf("at a time the key was valid: %v", err)
	}
	// An hour after expiry is already too late.
	_, err = k.VerifyCommit(c, testkeys.ExpiredKeyValidUntil.Add(time.Hour))
	wantErr(t, err, "expired on 2020-01-02")
}

func TestVerifyCommitRevokedOpenPGPKey(t *testing.T) {
	t.Parallel()
	g := testkeys.GPGKey(t, "Revoked", "revoked@example.com")
	r := testkeys.GitRepo(t)
	h := r.Commit(t, map[string]string{"a.txt": "a"}, "signed before revocation", g)
	c := openCommit(t, r, h)
	if _, err := gpgKeys(t, g.ArmoredPublic).VerifyCommit(c, time.Now()); err != nil {
		t.Fatalf("before revocation: %v", err)
	}
	g.Revoke(t)
	_, err := gpgKeys(t, g.ArmoredPublic).VerifyCommit(c, time.Now())
	wantErr(t, err, "OpenPGP key "+g.Fingerprint+" is revoked")
}

func TestVerifyCommitUnknownSSHKey(t *testing.T) {
	t.Parallel()
	trusted := testkeys.SSHKey(t, "trusted@example.com")
	mallory := testkeys.SSHKey(t, "mallory@example.com")
	r := testkeys.GitRepo(t)
	h := r.Commit(t, map[string]string{"a.txt": "a"}, "by mallory", mallory)
	_, err := sshKeys(t, trusted.AllowedSignersLine("")).VerifyCommit(openCommit(t, r, h), time.Now())
	wantErr(t, err, "signed by SSH key "+mallory.Fingerprint+" which is not among the trusted keys")
}

// A trusted key's signature made for another purpose (namespace "file")
// must not pass as a commit signature.
func TestVerifyCommitSSHOtherNamespace(t *testing.T) {
	t.Parallel()
	k := testkeys.SSHKey(t, "bob@example.com")
	r := testkeys.GitRepo(t)
	base := r.Commit(t, map[string]string{"a.txt": "a"}, "to be signed by hand", nil)
	payload := r.RawObject(t, "commit", base)
	keys := sshKeys(t, k.AllowedSignersLine(""))

	bad := r.SignedCommit(t, payload, k.Sign(t, payload, "file"))
	_, err := keys.VerifyCommit(openCommit(t, r, bad), time.Now())
	wantErr(t, err, `SSH signature namespace "file", want "git"`)

	// Control: the same crafting with namespace "git" verifies.
	good := r.SignedCommit(t, payload, k.Sign(t, payload, "git"))
	if _, err := keys.VerifyCommit(openCommit(t, r, good), time.Now()); err != nil {
		t.Fatalf("hand-signed in namespace git: %v", err)
	}
}

func TestVerifyCommitSSHNamespacesExcludeGit(t *testing.T) {
	t.Parallel()
	k := testkeys.SSHKey(t, "bob@example.com")
	r := testkeys.GitRepo(t)
	h := r.Commit(t, map[string]string{"a.txt": "a"}, "signed", k)
	_, err := sshKeys(t, k.AllowedSignersLine("file,writ-allowlist@writ-ci.gitlab.com")).VerifyCommit(openCommit(t, r, h), time.Now())
	wantErr(t, err, "allowed_signers line 1", `does not include "git"`)
}

func TestVerifyCommitSSHValidBefore(t *testing.T) {
	t.Parallel()
	k := testkeys.SSHKey(t, "bob@example.com")
	r := testkeys.GitRepo(t)
	r.When = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	h := r.Commit(t, map[string]string{"a.txt": "a"}, "signed", k)
	c := openCommit(t, r, h)
	_, err := sshKeys(t, k.AllowedSignersLine("", `valid-before="20250201Z"`)).VerifyCommit(c, time.Now())
	wantErr(t, err, "valid-before 2025-02-01 00:00:00 UTC", "dated 2025-03-01 12:00:00 UTC")
	// Control: a window that contains both the committer date and now.
	if _, err := sshKeys(t, k.AllowedSignersLine("", `valid-before="20250401Z"`)).VerifyCommit(c, time.Date(2025, 3, 2, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatalf("valid-before after the commit date and now: %v", err)
	}
}

// Hole 2 of issue 8: a key retired yesterday (valid-before) that signed a
// week ago. The commit's date is its signer's word, so a retired key could
// write any date: a commit writ sees for the first time today is refused,
// while one writ admitted a week ago stays admitted.
func TestVerifyCommitSSHRetiredKey(t *testing.T) {
	t.Parallel()
	today := time.Date(2026, 6, 10, 12, 0, 0, 0, time.UTC)
	k := testkeys.SSHKey(t, "bob@example.com")
	r := testkeys.GitRepo(t)
	r.When = today.AddDate(0, 0, -7)
	h := r.Commit(t, map[string]string{"a.txt": "a"}, "signed a week ago", k)
	c := openCommit(t, r, h)
	retired := sshKeys(t, k.AllowedSignersLine("", `valid-before="20260609Z"`))

	// A week ago, the key was valid and the commit was admitted.
	if _, err := retired.VerifyCommit(c, today.AddDate(0, 0, -7)); err != nil {
		t.Fatalf("a week ago: %v", err)
	}
	// First seen today: refused, naming the retirement.
	_, err := retired.VerifyCommit(c, today)
	wantErr(t, err, "valid-before 2026-06-09 00:00:00 UTC", "it is now 2026-06-10 12:00:00 UTC", "retired")
	// Admitted a week ago: still admitted today.
	s, err := retired.VerifyCommit(c, today, PreviouslyAdmitted())
	if err != nil || s.Fingerprint != k.Fingerprint {
		t.Fatalf("previously admitted: %v, %+v", err, s)
	}
	// A backdated commit by the retired key, previously admitted or not, is
	// refused at its own date too: PreviouslyAdmitted never widens the
	// window, it only stops judging at now.
	r.When = time.Date(2026, 6, 9, 0, 0, 1, 0, time.UTC)
	late := openCommit(t, r, r.Commit(t, map[string]string{"b.txt": "b"}, "after retirement", k))
	_, err = retired.VerifyCommit(late, today, PreviouslyAdmitted())
	wantErr(t, err, "valid-before 2026-06-09", "the commit is dated 2026-06-09 00:00:01 UTC")
}

func TestVerifyTagSSHRetiredKey(t *testing.T) {
	t.Parallel()
	today := time.Date(2026, 6, 10, 12, 0, 0, 0, time.UTC)
	k := testkeys.SSHKey(t, "bob@example.com")
	r := testkeys.GitRepo(t)
	r.When = today.AddDate(0, 0, -7)
	h := r.Commit(t, map[string]string{"a.txt": "a"}, "release", nil)
	tag := openTag(t, r, r.Tag(t, "v1.0.0", h, k))
	retired := sshKeys(t, k.AllowedSignersLine("", `valid-before="20260609Z"`))
	_, err := retired.VerifyTag(tag, today)
	wantErr(t, err, "valid-before 2026-06-09", "it is now", "retired")
	if _, err := retired.VerifyTag(tag, today, PreviouslyAdmitted()); err != nil {
		t.Fatalf("previously admitted tag: %v", err)
	}
}

// The same for OpenPGP: a key that expired after signing is refused for a
// new decision (as before) and still good for one writ made back then.
func TestVerifyCommitOpenPGPExpiredPreviouslyAdmitted(t *testing.T) {
	t.Parallel()
	g := testkeys.GPGKey(t, "Old", "old@example.com", testkeys.ExpiredKey())
	r := testkeys.GitRepo(t)
	r.When = testkeys.ExpiredKeySignedAt
	c := openCommit(t, r, r.Commit(t, map[string]string{"a.txt": "a"}, "signed in 2020", g))
	k := gpgKeys(t, g.ArmoredPublic)
	_, err := k.VerifyCommit(c, time.Now())
	wantErr(t, err, "expired on 2020-01-02", "checked now")
	if _, err := k.VerifyCommit(c, time.Now(), PreviouslyAdmitted()); err != nil {
		t.Fatalf("previously admitted: %v", err)
	}
}

func TestVerifyCommitSSHValidAfter(t *testing.T) {
	t.Parallel()
	k := testkeys.SSHKey(t, "bob@example.com")
	r := testkeys.GitRepo(t)
	r.When = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	h := r.Commit(t, map[string]string{"a.txt": "a"}, "signed", k)
	c := openCommit(t, r, h)
	_, err := sshKeys(t, k.AllowedSignersLine("git", `valid-after="202503011300Z"`)).VerifyCommit(c, time.Now())
	wantErr(t, err, "valid-after 2025-03-01 13:00:00 UTC")
	if _, err := sshKeys(t, k.AllowedSignersLine("git", `valid-after="202503011100Z"`)).VerifyCommit(c, time.Now()); err != nil {
		t.Fatal(err)
	}
}

// Two signature blocks: git itself refuses to reduce them to one signer,
// and so does writ, whatever the blocks are.
func TestVerifyCommitTwoSignatureBlocks(t *testing.T) {
	t.Parallel()
	g := testkeys.GPGKey(t, "Alice", "alice@example.com")
	k := testkeys.SSHKey(t, "bob@example.com")
	r := testkeys.GitRepo(t)
	base := r.Commit(t, map[string]string{"a.txt": "a"}, "payload", nil)
	payload := r.RawObject(t, "commit", base)
	pgpSig := g.Sign(t, payload)
	sshSig := k.Sign(t, payload, "git")
	keys, err := NewKeys([][]byte{g.ArmoredPublic}, mustAllowed(t, k.AllowedSignersLine("")))
	if err != nil {
		t.Fatal(err)
	}
	// Controls: each signature alone verifies.
	for _, sig := range [][]byte{pgpSig, sshSig} {
		if _, err := keys.VerifyCommit(openCommit(t, r, r.SignedCommit(t, payload, sig)), time.Now()); err != nil {
			t.Fatalf("single signature: %v", err)
		}
	}
	cases := map[string][]byte{
		"pgp+pgp": append(append([]byte{}, pgpSig...), pgpSig...),
		"pgp+ssh": append(append([]byte{}, pgpSig...), sshSig...),
		"ssh+pgp": append(append([]byte{}, sshSig...), pgpSig...),
		"ssh+ssh": append(append([]byte{}, sshSig...), sshSig...),
	}
	for name, sig := range cases {
		h := r.SignedCommit(t, payload, sig)
		_, err := keys.VerifyCommit(openCommit(t, r, h), time.Now())
		if err == nil || !strings.Contains(err.Error(), "2 signature blocks: exactly one is accepted") {
			t.Errorf("%s: error %v, want two-blocks refusal", name, err)
		}
	}
	// The shared helper, from a commit git signed itself.
	signed := r.Commit(t, map[string]string{"b.txt": "b"}, "signed", g)
	_, err = keys.VerifyCommit(openCommit(t, r, r.DoubleSignedCommit(t, signed, k, g)), time.Now())
	wantErr(t, err, "2 signature blocks")
	// Two separate gpgsig headers: go-git joins them; still two blocks.
	twoHeaders := testkeys.InsertSignature(testkeys.InsertSignature(payload, pgpSig), sshSig)
	h := r.WriteObject(t, "commit", twoHeaders)
	_, err = keys.VerifyCommit(openCommit(t, r, h), time.Now())
	wantErr(t, err, "2 signature blocks")
}

// One armor block holding two signature packets is two signatures too.
func TestVerifyCommitTwoSignaturePackets(t *testing.T) {
	t.Parallel()
	g := testkeys.GPGKey(t, "Alice", "alice@example.com")
	r := testkeys.GitRepo(t)
	base := r.Commit(t, map[string]string{"a.txt": "a"}, "payload", nil)
	payload := r.RawObject(t, "commit", base)
	sig := g.Sign(t, payload)
	blk, err := armor.Decode(bytes.NewReader(sig))
	if err != nil {
		t.Fatal(err)
	}
	pkt, err := io.ReadAll(blk.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	w, err := armor.Encode(&out, "PGP SIGNATURE", nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(pkt)
	w.Write(pkt)
	w.Close()
	out.WriteString("\n")
	h := r.SignedCommit(t, payload, out.Bytes())
	_, err = gpgKeys(t, g.ArmoredPublic).VerifyCommit(openCommit(t, r, h), time.Now())
	wantErr(t, err, "more than one packet")
}

func TestVerifyCommitTrailingGarbage(t *testing.T) {
	t.Parallel()
	g := testkeys.GPGKey(t, "Alice", "alice@example.com")
	k := testkeys.SSHKey(t, "bob@example.com")
	r := testkeys.GitRepo(t)
	base := r.Commit(t, map[string]string{"a.txt": "a"}, "payload", nil)
	payload := r.RawObject(t, "commit", base)
	keys, err := NewKeys([][]byte{g.ArmoredPublic}, mustAllowed(t, k.AllowedSignersLine("")))
	if err != nil {
		t.Fatal(err)
	}
	for _, sig := range [][]byte{g.Sign(t, payload), k.Sign(t, payload, "git")} {
		for _, doctored := range [][]byte{
			append(append([]byte{}, sig...), "trailing\n"...),
			append([]byte("leading\n"), sig...),
		} {
			h := r.SignedCommit(t, payload, doctored)
			if _, err := keys.VerifyCommit(openCommit(t, r, h), time.Now()); err == nil {
				t.Errorf("doctored signature accepted:\n%s", doctored)
			}
		}
	}
}

// A signature over other content: a valid signature moved onto a commit
// whose message differs.
func TestVerifyCommitTampered(t *testing.T) {
	t.Parallel()
	g := testkeys.GPGKey(t, "Alice", "alice@example.com")
	k := testkeys.SSHKey(t, "bob@example.com")
	r := testkeys.GitRepo(t)
	keys, err := NewKeys([][]byte{g.ArmoredPublic}, mustAllowed(t, k.AllowedSignersLine("")))
	if err != nil {
		t.Fatal(err)
	}
	for _, signer := range []any{g, k} {
		h := r.Commit(t, map[string]string{"a.txt": "a"}, "original", signer)
		sig := openCommit(t, r, h).PGPSignature
		payload := r.UnsignedPayload(t, h)
		tampered := bytes.Replace(payload, []byte("original"), []byte("tampered"), 1)
		bad := r.SignedCommit(t, tampered, []byte(sig))
		_, err := keys.VerifyCommit(openCommit(t, r, bad), time.Now())
		wantErr(t, err, "does not verify over this commit")
		// Control: re-attaching the signature to the original payload
		// reproduces the original commit, which verifies.
		same := r.SignedCommit(t, payload, []byte(sig))
		if same != h {
			t.Fatalf("re-signed commit %s differs from original %s", same, h)
		}
		if _, err := keys.VerifyCommit(openCommit(t, r, same), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestVerifyTag(t *testing.T) {
	t.Parallel()
	g := testkeys.GPGKey(t, "Alice", "alice@example.com")
	k := testkeys.SSHKey(t, "bob@example.com")
	r := testkeys.GitRepo(t)
	keys, err := NewKeys([][]byte{g.ArmoredPublic}, mustAllowed(t, k.AllowedSignersLine("git")))
	if err != nil {
		t.Fatal(err)
	}
	c := r.Commit(t, map[string]string{"a.txt": "a"}, "release", nil)
	pgpTag := r.Tag(t, "v1.0.0", c, g)
	s, err := keys.VerifyTag(openTag(t, r, pgpTag), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if s.Kind != KindOpenPGP || s.Fingerprint != g.Fingerprint {
		t.Fatalf("signer %+v", s)
	}
	sshTag := r.Tag(t, "v1.0.1", c, k)
	s, err = keys.VerifyTag(openTag(t, r, sshTag), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if s.Kind != KindSSH || s.Fingerprint != k.Fingerprint || s.Principal != "bob@example.com" {
		t.Fatalf("signer %+v", s)
	}
}

func TestVerifyTagUnknownKey(t *testing.T) {
	t.Parallel()
	trusted := testkeys.GPGKey(t, "Trusted", "trusted@example.com")
	mallory := testkeys.GPGKey(t, "Mallory", "mallory@example.com")
	mallorySSH := testkeys.SSHKey(t, "mallory@example.com")
	r := testkeys.GitRepo(t)
	c := r.Commit(t, map[string]string{"a.txt": "a"}, "release", nil)
	keys := gpgKeys(t, trusted.ArmoredPublic)
	_, err := keys.VerifyTag(openTag(t, r, r.Tag(t, "v1", c, mallory)), time.Now())
	wantErr(t, err, `tag "v1"`, "signed by OpenPGP key "+mallory.Fingerprint+" which is not among the trusted keys")
	_, err = keys.VerifyTag(openTag(t, r, r.Tag(t, "v2", c, mallorySSH)), time.Now())
	wantErr(t, err, "signed by SSH key "+mallorySSH.Fingerprint+" which is not among the trusted keys")
}

func TestVerifyTagUnsigned(t *testing.T) {
	t.Parallel()
	g := testkeys.GPGKey(t, "Alice", "alice@example.com")
	r := testkeys.GitRepo(t)
	c := r.Commit(t, map[string]string{"a.txt": "a"}, "release", nil)
	_, err := gpgKeys(t, g.ArmoredPublic).VerifyTag(openTag(t, r, r.Tag(t, "v1", c, nil)), time.Now())
	wantErr(t, err, "not signed")
	if !errors.Is(err, ErrUnsigned) {
		t.Fatalf("error %v is not ErrUnsigned", err)
	}
}

// A signature block hidden in a tag message before the real one is a
// second block.
func TestVerifyTagSignatureInMessage(t *testing.T) {
	t.Parallel()
	g := testkeys.GPGKey(t, "Alice", "alice@example.com")
	r := testkeys.GitRepo(t)
	c := r.Commit(t, map[string]string{"a.txt": "a"}, "release", nil)
	raw := r.RawObject(t, "tag", r.Tag(t, "v1", c, nil))
	decoy := g.Sign(t, []byte("decoy"))
	payload := append(append([]byte{}, raw...), decoy...)
	signed := append(append([]byte{}, payload...), g.Sign(t, payload)...)
	h := r.WriteObject(t, "tag", signed)
	_, err := gpgKeys(t, g.ArmoredPublic).VerifyTag(openTag(t, r, h), time.Now())
	wantErr(t, err, "2 signature blocks")
}

func TestVerifySSHDetached(t *testing.T) {
	t.Parallel()
	const ns = "writ-allowlist@writ-ci.gitlab.com"
	k := testkeys.SSHKey(t, "approver@example.com")
	msg := []byte("writ allowlist approval\n")
	sig := k.Sign(t, msg, ns)
	keys := sshKeys(t, k.AllowedSignersLine(ns))
	s, err := keys.VerifySSH(msg, sig, ns, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if s.Fingerprint != k.Fingerprint || s.Principal != "approver@example.com" {
		t.Fatalf("signer %+v", s)
	}
	_, err = keys.VerifySSH([]byte("other message\n"), sig, ns, time.Now())
	wantErr(t, err, "does not verify")
	_, err = keys.VerifySSH(msg, sig, "git", time.Now())
	wantErr(t, err, `SSH signature namespace "writ-allowlist@writ-ci.gitlab.com", want "git"`)
	// The key is trusted for git only: an approval is refused.
	_, err = sshKeys(t, k.AllowedSignersLine("git")).VerifySSH(msg, sig, ns, time.Now())
	wantErr(t, err, `does not include "writ-allowlist@writ-ci.gitlab.com"`)
	_, err = keys.VerifySSH(msg, sig, "", time.Now())
	wantErr(t, err, "no namespace")
}

func TestNewKeysRefusesPrivateKey(t *testing.T) {
	t.Parallel()
	priv := []byte("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nxx\n-----END PGP PRIVATE KEY BLOCK-----\n")
	_, err := NewKeys([][]byte{priv}, nil)
	wantErr(t, err, "private key")
	_, err = NewKeys([][]byte{[]byte("no armor here\n")}, nil)
	wantErr(t, err, "no armored key block")
	_, err = NewKeys(nil, []AllowedSigner{{CertAuthority: true, Line: 3}})
	wantErr(t, err, "line 3", "certificates")
}

func mustAllowed(t testing.TB, lines ...string) []AllowedSigner {
	t.Helper()
	as, err := ParseAllowedSigners([]byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	return as
}

func BenchmarkVerifyCommitOpenPGP(b *testing.B) {
	g := testkeys.GPGKey(b, "Bench", "bench@example.com")
	r := testkeys.GitRepo(b)
	h := r.Commit(b, map[string]string{"a.txt": "a"}, "signed", g)
	c := openCommit(b, r, h)
	keys := gpgKeys(b, g.ArmoredPublic)
	now := time.Now()
	b.ResetTimer()
	for b.Loop() {
		if _, err := keys.VerifyCommit(c, now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyCommitSSH(b *testing.B) {
	k := testkeys.SSHKey(b, "bench@example.com")
	r := testkeys.GitRepo(b)
	h := r.Commit(b, map[string]string{"a.txt": "a"}, "signed", k)
	c := openCommit(b, r, h)
	keys := sshKeys(b, k.AllowedSignersLine("git"))
	now := time.Now()
	b.ResetTimer()
	for b.Loop() {
		if _, err := keys.VerifyCommit(c, now); err != nil {
			b.Fatal(err)
		}
	}
}

// A signer whose clock runs a few minutes ahead of the verifier's is
// accepted; one dated beyond the allowed skew is not.
func TestVerifyCommitOpenPGPClockSkew(t *testing.T) {
	t.Parallel()
	g := testkeys.GPGKey(t, "Alice", "alice@example.com")
	r := testkeys.GitRepo(t)
	h := r.Commit(t, map[string]string{"a.txt": "a"}, "signed", g)
	c := openCommit(t, r, h)
	k := gpgKeys(t, g.ArmoredPublic)
	if _, err := k.VerifyCommit(c, time.Now().Add(-3*time.Minute)); err != nil {
		t.Fatalf("signature 3 minutes ahead of this host's clock: %v", err)
	}
	if _, err := k.VerifyCommit(c, time.Now().Add(-time.Hour)); err == nil || !strings.Contains(err.Error(), "in the future") {
		t.Fatalf("signature an hour ahead: %v", err)
	}
}
