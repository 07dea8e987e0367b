package gitsig

import (
	"bytes"
	"crypto"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/hiddeco/sshsig"
	"golang.org/x/crypto/ssh"
)

// GitNamespace is the SSH signature namespace git uses for commits and tags.
const GitNamespace = "git"

// ErrUnsigned is returned (wrapped) for a commit or tag without signature.
var ErrUnsigned = errors.New("not signed")

const (
	// maxSignatureBytes bounds the signature text; real ones are a few KiB.
	maxSignatureBytes = 64 << 10
	// maxClockSkew is how far in the future an OpenPGP signature may be
	// dated, for signers whose clock runs slightly ahead.
	maxClockSkew = 10 * time.Minute
	timeFormat   = "2006-01-02 15:04:05 MST"
)

const (
	pgpSigBegin = "-----BEGIN PGP SIGNATURE-----"
	pgpSigEnd   = "-----END PGP SIGNATURE-----"
	sshSigBegin = "-----BEGIN SSH SIGNATURE-----"
	sshSigEnd   = "-----END SSH SIGNATURE-----"
)

// VerifyOption adjusts one verification.
type VerifyOption func(*verifyPolicy)

type verifyPolicy struct {
	// admitted: the object was admitted or accepted once already, so the
	// key's validity is judged only when the signature says it was made.
	admitted bool
}

// PreviouslyAdmitted judges an object writ has already admitted or accepted
// once: its key must have been valid when the signature says it was made,
// and is not judged again at now. Retiring a key (an SSH valid-before, an
// OpenPGP expiry or a "superseded" revocation) then does not undo past
// decisions; a key revoked as compromised stays refused, because OpenPGP
// makes such a revocation apply to every signature.
//
// Without it, a signature is a new decision: the key must be valid both
// when the signature says it was made (a date its signer wrote) and now, so
// a retired key cannot sign by backdating.
func PreviouslyAdmitted() VerifyOption {
	return func(p *verifyPolicy) { p.admitted = true }
}

func newPolicy(opts []VerifyOption) verifyPolicy {
	var p verifyPolicy
	for _, o := range opts {
		o(&p)
	}
	return p
}

// VerifyCommit checks that c carries exactly one signature block (OpenPGP or
// SSH, namespace "git"), valid over the commit without its signature, by one
// of keys. The key must be valid when the signature says it was made (the
// committer date for SSH, the signature's creation time for OpenPGP) and,
// unless PreviouslyAdmitted is given, at now: SSH valid-after/valid-before
// windows, OpenPGP expiry and revocation.
func (k *Keys) VerifyCommit(c *object.Commit, now time.Time, opts ...VerifyOption) (Signer, error) {
	if c == nil {
		return Signer{}, errors.New("no commit to verify")
	}
	s, err := k.verifyCommit(c, now, newPolicy(opts))
	if err != nil {
		return Signer{}, fmt.Errorf("commit %s: %w", c.Hash, err)
	}
	return s, nil
}

func (k *Keys) verifyCommit(c *object.Commit, now time.Time, pol verifyPolicy) (Signer, error) {
	if c.PGPSignature == "" {
		return Signer{}, fmt.Errorf("commit is %w; sign it with git commit -S by a trusted key", ErrUnsigned)
	}
	var obj plumbing.MemoryObject
	if err := c.EncodeWithoutSignature(&obj); err != nil {
		return Signer{}, fmt.Errorf("encode commit payload: %v", err)
	}
	payload, err := objectBytes(&obj)
	if err != nil {
		return Signer{}, err
	}
	return k.verifyText(c.PGPSignature, payload, 0, c.Committer.When, now, pol, "commit")
}

// verifyText verifies the signature text sig of a git object over payload;
// extra counts signature blocks found elsewhere in the object. signedAt is
// the object's own date, the only time an SSH signature states.
func (k *Keys) verifyText(sig string, payload []byte, extra int, signedAt, now time.Time, pol verifyPolicy, what string) (Signer, error) {
	sig = trimArmorBlanks(sig)
	kind, err := frameSignature(sig, extra)
	if err != nil {
		return Signer{}, err
	}
	switch kind {
	case KindOpenPGP:
		return k.verifyOpenPGP(payload, []byte(sig), now, pol, what)
	case KindSSH:
		// The object's date is the signer's word: a retired key can write
		// any date. A new decision therefore also needs the key valid now.
		times := []checkTime{{signedAt, gitWindowMargin, "the " + what + " is dated"}}
		if !pol.admitted {
			times = append(times, checkTime{now, 0, "it is now"})
		}
		return k.verifySSH(payload, []byte(sig), GitNamespace, times, what)
	}
	return Signer{}, fmt.Errorf("unsupported signature kind %q", kind)
}

// VerifyTag is the same as VerifyCommit for a signed annotated tag; an SSH
// signature is dated by t.Tagger.When.
func (k *Keys) VerifyTag(t *object.Tag, now time.Time, opts ...VerifyOption) (Signer, error) {
	if t == nil {
		return Signer{}, errors.New("no tag to verify")
	}
	s, err := k.verifyTag(t, now, newPolicy(opts))
	if err != nil {
		return Signer{}, fmt.Errorf("tag %q (%s): %w", t.Name, t.Hash, err)
	}
	return s, nil
}

func (k *Keys) verifyTag(t *object.Tag, now time.Time, pol verifyPolicy) (Signer, error) {
	if t.PGPSignature == "" {
		return Signer{}, fmt.Errorf("tag is %w; make it with git tag -s by a trusted key", ErrUnsigned)
	}
	var obj plumbing.MemoryObject
	if err := t.EncodeWithoutSignature(&obj); err != nil {
		return Signer{}, fmt.Errorf("encode tag payload: %v", err)
	}
	payload, err := objectBytes(&obj)
	if err != nil {
		return Signer{}, err
	}
	// A tag's signature trails its message and git takes the last block; a
	// block start left in the message would be a second signature.
	return k.verifyText(t.PGPSignature, payload, countBlocks(payload), t.Tagger.When, now, pol, "tag")
}

// VerifySSH checks an armored SSHSIG over message in namespace, by a key
// of the allowed signers whose namespaces option permits namespace and
// whose validity window contains at. A detached SSH signature states no
// time, so at is the time of the decision (usually now).
func (k *Keys) VerifySSH(message, armoredSig []byte, namespace string, at time.Time) (Signer, error) {
	if namespace == "" {
		return Signer{}, errors.New("SSH signature: no namespace given")
	}
	kind, err := frameSignature(string(armoredSig), 0)
	if err != nil {
		return Signer{}, err
	}
	if kind != KindSSH {
		return Signer{}, fmt.Errorf("signature is %s, want an SSH signature (%s)", kind, sshSigBegin)
	}
	return k.verifySSH(message, armoredSig, namespace, []checkTime{{at, 0, "checked at"}}, "message")
}

// VerifyOpenPGP checks an armored detached OpenPGP signature over message
// by one of the OpenPGP keys, made in binary mode (text-mode signatures are
// refused, as for commits). The key must be valid, unexpired and unrevoked,
// both when the signature says it was made and at now.
func (k *Keys) VerifyOpenPGP(message, armoredSig []byte, now time.Time) (Signer, error) {
	kind, err := frameSignature(string(armoredSig), 0)
	if err != nil {
		return Signer{}, err
	}
	if kind != KindOpenPGP {
		return Signer{}, fmt.Errorf("signature is %s, want an OpenPGP signature (%s)", kind, pgpSigBegin)
	}
	return k.verifyOpenPGP(message, armoredSig, now, verifyPolicy{}, "message")
}

func objectBytes(o *plumbing.MemoryObject) ([]byte, error) {
	r, err := o.Reader()
	if err != nil {
		return nil, fmt.Errorf("read signed payload: %v", err)
	}
	defer r.Close()
	return io.ReadAll(r)
}

// isBlockStart reports whether line starts an armored block that git
// would take for a signature.
func isBlockStart(line string) bool {
	for _, p := range []string{pgpSigBegin, sshSigBegin, "-----BEGIN PGP MESSAGE-----", "-----BEGIN CERTIFICATE-----", "-----BEGIN SIGNED MESSAGE-----"} {
		if strings.HasPrefix(line, p) {
			return true
		}
	}
	return false
}

func countBlocks(b []byte) int {
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if isBlockStart(line) {
			n++
		}
	}
	return n
}

// frameSignature checks that sig is exactly one armored signature block,
// with nothing before or after it, and says which kind it is. extra counts
// signature blocks found elsewhere in the object.
func frameSignature(sig string, extra int) (string, error) {
	if len(sig) > maxSignatureBytes {
		return "", fmt.Errorf("signature is %d bytes, more than the %d accepted", len(sig), maxSignatureBytes)
	}
	if n := countBlocks([]byte(sig)) + extra; n > 1 {
		return "", fmt.Errorf("%d signature blocks: exactly one is accepted", n)
	}
	if strings.ContainsAny(sig, "\r\x00") {
		return "", errors.New("signature contains a carriage return or NUL byte")
	}
	body := strings.TrimSuffix(sig, "\n")
	var kind, end string
	switch {
	case strings.HasPrefix(sig, pgpSigBegin+"\n"):
		kind, end = KindOpenPGP, pgpSigEnd
	case strings.HasPrefix(sig, sshSigBegin+"\n"):
		kind, end = KindSSH, sshSigEnd
	case strings.HasPrefix(sig, "-----BEGIN PGP MESSAGE-----"):
		return "", errors.New("signature is a PGP message, not a detached signature; sign with git commit -S or git tag -s")
	case strings.HasPrefix(sig, "-----BEGIN CERTIFICATE-----"), strings.HasPrefix(sig, "-----BEGIN SIGNED MESSAGE-----"):
		return "", errors.New("X.509 (gpgsm) signatures are not accepted; sign with an OpenPGP or SSH key")
	default:
		return "", errors.New("signature is not an armored OpenPGP or SSH signature block")
	}
	if !strings.HasSuffix(body, "\n"+end) {
		return "", fmt.Errorf("signature block does not end with %s alone: trailing data is not accepted", end)
	}
	if strings.Count(sig, "-----END ") != 1 {
		return "", errors.New("signature block has more than one END line")
	}
	return kind, nil
}

// verifyOpenPGP checks an armored detached OpenPGP signature over payload.
func (k *Keys) verifyOpenPGP(payload, armored []byte, now time.Time, pol verifyPolicy, what string) (Signer, error) {
	block, err := armor.Decode(bytes.NewReader(armored))
	if err != nil {
		return Signer{}, fmt.Errorf("OpenPGP signature armor: %v", err)
	}
	body, err := io.ReadAll(io.LimitReader(block.Body, maxSignatureBytes))
	if err != nil {
		return Signer{}, fmt.Errorf("OpenPGP signature armor: %v", err)
	}
	if err := checkArmorChecksum(string(armored), body); err != nil {
		return Signer{}, fmt.Errorf("OpenPGP signature: %v", err)
	}
	sig, err := parseOneSignaturePacket(body)
	if err != nil {
		return Signer{}, err
	}
	if sig.IssuerKeyId == nil {
		return Signer{}, errors.New("OpenPGP signature names no issuer key")
	}
	issuer := fmt.Sprintf("with key ID %016X", *sig.IssuerKeyId)
	if len(sig.IssuerFingerprint) > 0 {
		issuer = fmt.Sprintf("%X", sig.IssuerFingerprint)
	}
	candidates := k.openpgp.KeysById(*sig.IssuerKeyId)
	if len(candidates) == 0 {
		return Signer{}, fmt.Errorf("signed by OpenPGP key %s which is not among the trusted keys", issuer)
	}
	if len(k.openpgp.KeysByIdUsage(*sig.IssuerKeyId, packet.KeyFlagSign)) == 0 {
		return Signer{}, fmt.Errorf("signed by OpenPGP key %s (primary key %s), which is trusted but not allowed to sign by its self-signature", issuer, fingerprint(candidates[0].Entity.PrimaryKey))
	}

	// A signer's clock may run a little ahead of this host's: a signature
	// dated up to maxClockSkew in the future is judged as of its own date
	// (beyond that it is refused below), so the key must be valid then too.
	// An object admitted before is judged as of its signature only.
	at := now
	if sig.CreationTime.After(now) || pol.admitted {
		at = sig.CreationTime
	}
	cfg := &packet.Config{Time: func() time.Time { return at }}
	_, entity, verr := openpgp.VerifyDetachedSignature(k.openpgp, bytes.NewReader(payload), bytes.NewReader(body), cfg)
	if entity == nil {
		if verr == nil {
			verr = errors.New("no verifying key")
		}
		return Signer{}, fmt.Errorf("OpenPGP signature by %s does not verify over this %s (%v): its content differs from what was signed", issuer, what, verr)
	}
	var key openpgp.Key
	for _, c := range k.openpgp.KeysByIdUsage(*sig.IssuerKeyId, packet.KeyFlagSign) {
		if c.Entity == entity {
			key = c
			break
		}
	}
	if key.Entity == nil {
		return Signer{}, errors.New("OpenPGP: verifying key not found in the keyring")
	}
	primary := fingerprint(entity.PrimaryKey)

	if sig.CreationTime.After(now.Add(maxClockSkew)) {
		return Signer{}, fmt.Errorf("OpenPGP signature by %s is dated %s, in the future", primary, sig.CreationTime.UTC().Format(timeFormat))
	}
	if err := checkKeyAt(key, sig, sig.CreationTime, "when it signed"); err != nil {
		return Signer{}, err
	}
	if !pol.admitted {
		if err := checkKeyAt(key, sig, at, "now"); err != nil {
			return Signer{}, err
		}
	}
	// The library's own checks (revocations, expiry, critical notations)
	// stay in force as a second line.
	if verr != nil {
		return Signer{}, fmt.Errorf("OpenPGP signature by %s: %v", primary, verr)
	}
	principal := ""
	if id := entity.PrimaryIdentity(); id != nil {
		principal = id.Name
	}
	return Signer{Kind: KindOpenPGP, Fingerprint: primary, Principal: principal}, nil
}

func parseOneSignaturePacket(body []byte) (*packet.Signature, error) {
	r := bytes.NewReader(body)
	p, err := packet.Read(r)
	if err != nil {
		return nil, fmt.Errorf("OpenPGP signature packet: %v", err)
	}
	if r.Len() != 0 {
		return nil, errors.New("OpenPGP signature block holds more than one packet: exactly one signature is accepted")
	}
	sig, ok := p.(*packet.Signature)
	if !ok {
		return nil, fmt.Errorf("OpenPGP signature block holds a %T, not a signature", p)
	}
	switch sig.SigType {
	case packet.SigTypeBinary:
	case packet.SigTypeText:
		// A canonical-text signature still verifies after the signed
		// object's line endings change (LF to CRLF), so two different
		// objects would carry one valid signature. git signs in binary.
		return nil, errors.New("OpenPGP signature is in text mode (canonical text): git signs commits and tags in binary mode, and a text-mode signature also verifies over the object with its line endings changed; sign again with git commit -S or git tag -s, without --textmode in gpg.conf")
	default:
		return nil, fmt.Errorf("OpenPGP signature of type 0x%02x is not a document signature", byte(sig.SigType))
	}
	switch sig.Hash {
	case crypto.SHA256, crypto.SHA384, crypto.SHA512, crypto.SHA224, crypto.SHA3_256, crypto.SHA3_512:
	default:
		return nil, fmt.Errorf("OpenPGP signature uses hash %v, which is not accepted; use SHA-256 or stronger", sig.Hash)
	}
	return sig, nil
}

// checkKeyAt checks that key, its primary key and sig are valid at t.
func checkKeyAt(key openpgp.Key, sig *packet.Signature, t time.Time, when string) error {
	e := key.Entity
	primary := fingerprint(e.PrimaryKey)
	if e.Revoked(t) {
		return fmt.Errorf("OpenPGP key %s is revoked (checked %s); the signer must use a new key and the keyring must list it", primary, when)
	}
	self, id := e.PrimarySelfSignature()
	if self == nil {
		return fmt.Errorf("OpenPGP key %s has no valid self-signature", primary)
	}
	if id != nil && id.Revoked(t) {
		return fmt.Errorf("OpenPGP key %s: its primary user ID %q is revoked (checked %s)", primary, id.Name, when)
	}
	if err := checkLifetime(e.PrimaryKey, self, t, "OpenPGP key "+primary, when); err != nil {
		return err
	}
	if key.PublicKey != e.PrimaryKey {
		sub := fingerprint(key.PublicKey)
		if key.Revoked(t) {
			return fmt.Errorf("OpenPGP signing subkey %s of key %s is revoked (checked %s)", sub, primary, when)
		}
		if err := checkLifetime(key.PublicKey, key.SelfSignature, t, "OpenPGP signing subkey "+sub+" of key "+primary, when); err != nil {
			return err
		}
		if key.SelfSignature.EmbeddedSignature != nil && key.SelfSignature.EmbeddedSignature.SigExpired(t) {
			return fmt.Errorf("OpenPGP signing subkey %s of key %s: its cross-signature is expired (checked %s)", sub, primary, when)
		}
	}
	if sig.SigExpired(t) {
		if sig.SigLifetimeSecs != nil && *sig.SigLifetimeSecs != 0 {
			exp := sig.CreationTime.Add(time.Duration(*sig.SigLifetimeSecs) * time.Second)
			return fmt.Errorf("OpenPGP signature by %s expired on %s", primary, exp.UTC().Format(timeFormat))
		}
		return fmt.Errorf("OpenPGP signature by %s is not valid %s", primary, when)
	}
	return nil
}

func checkLifetime(pk *packet.PublicKey, self *packet.Signature, t time.Time, name, when string) error {
	if pk.CreationTime.After(t) {
		return fmt.Errorf("%s was created on %s, after the signature was made", name, pk.CreationTime.UTC().Format(timeFormat))
	}
	if pk.KeyExpired(self, t) {
		exp := pk.CreationTime.Add(time.Duration(*self.KeyLifetimeSecs) * time.Second)
		return fmt.Errorf("%s expired on %s (checked %s); extend its expiry and re-export it, or sign with a valid key", name, exp.UTC().Format(timeFormat), when)
	}
	if self.SigExpired(t) {
		return fmt.Errorf("%s: its self-signature is expired (checked %s)", name, when)
	}
	return nil
}

func sshFingerprint(k ssh.PublicKey) string { return ssh.FingerprintSHA256(k) }

// gitWindowMargin is how far inside an allowed_signers validity window a
// git object's date must be. git hands ssh-keygen the commit or tag date
// as local wall-clock time, which ssh-keygen reads as standard time, so on
// a host whose zone keeps daylight saving time git judges the date one
// hour off (later in a northern summer; earlier where the zone data marks
// winter as the saving time). Keeping an hour from both ends, writ never
// admits a signature that git on some host would refuse.
const gitWindowMargin = time.Hour

// checkTime is a time a key's validity window must contain, at least
// margin inside it, and how a refusal names it.
type checkTime struct {
	t      time.Time
	margin time.Duration
	label  string
}

// verifySSH checks an armored SSHSIG over payload in namespace, by a key
// whose validity window contains every time in times.
func (k *Keys) verifySSH(payload, armored []byte, namespace string, times []checkTime, what string) (Signer, error) {
	block, rest := pem.Decode(armored)
	if block == nil || block.Type != sshsig.PEMType {
		return Signer{}, errors.New("SSH signature armor is not valid")
	}
	if len(rest) != 0 || len(block.Headers) != 0 {
		return Signer{}, errors.New("SSH signature armor has headers or trailing data")
	}
	sig, err := sshsig.ParseSignature(block.Bytes)
	if err != nil {
		return Signer{}, fmt.Errorf("SSH signature: %v", err)
	}
	fp := sshFingerprint(sig.PublicKey)
	if sig.Namespace != namespace {
		return Signer{}, fmt.Errorf("SSH signature namespace %q, want %q", sig.Namespace, namespace)
	}
	if _, ok := sig.PublicKey.(*ssh.Certificate); ok {
		return Signer{}, fmt.Errorf("signed with an SSH certificate (%s); writ does not accept certificates", fp)
	}
	pub := sig.PublicKey.Marshal()
	var matches []AllowedSigner
	for _, s := range k.ssh {
		if bytes.Equal(s.Key.Marshal(), pub) {
			matches = append(matches, s)
		}
	}
	if len(matches) == 0 {
		return Signer{}, fmt.Errorf("signed by SSH key %s which is not among the trusted keys", fp)
	}
	if err := sshsig.Verify(bytes.NewReader(payload), sig, matches[0].Key, sig.HashAlgorithm, namespace); err != nil {
		return Signer{}, fmt.Errorf("SSH signature by %s does not verify over this %s (%v): its content differs from what was signed", fp, what, err)
	}
	var reasons []string
	for _, s := range matches {
		if why := sshPolicy(s, namespace, times); why != "" {
			reasons = append(reasons, fmt.Sprintf("allowed_signers line %d: %s", s.Line, why))
			continue
		}
		return Signer{Kind: KindSSH, Fingerprint: fp, Principal: strings.Join(s.Principals, ",")}, nil
	}
	return Signer{}, fmt.Errorf("SSH key %s is trusted but not for this signature: %s", fp, strings.Join(reasons, "; "))
}

// sshPolicy says why s does not permit a signature in namespace at every
// time of times, each its margin inside the validity window, or "" if it
// does.
func sshPolicy(s AllowedSigner, namespace string, times []checkTime) string {
	if len(s.Namespaces) > 0 {
		ok := false
		for _, ns := range s.Namespaces {
			if ns == namespace {
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Sprintf("namespaces=%q does not include %q", strings.Join(s.Namespaces, ","), namespace)
		}
	}
	for _, at := range times {
		if !s.ValidAfter.IsZero() && at.t.Before(s.ValidAfter.Add(at.margin)) {
			return fmt.Sprintf("valid-after %s, but %s %s%s", s.ValidAfter.UTC().Format(timeFormat), at.label, at.t.UTC().Format(timeFormat), marginNote(at.margin))
		}
		if !s.ValidBefore.IsZero() && at.t.After(s.ValidBefore.Add(-at.margin)) {
			return fmt.Sprintf("valid-before %s, but %s %s (the key is retired)%s", s.ValidBefore.UTC().Format(timeFormat), at.label, at.t.UTC().Format(timeFormat), marginNote(at.margin))
		}
	}
	return ""
}

func marginNote(margin time.Duration) string {
	if margin == 0 {
		return ""
	}
	return fmt.Sprintf(" (a git object's date must be at least %s inside the window: on hosts with daylight saving time git reads it an hour off)", strings.TrimSuffix(strings.TrimSuffix(margin.String(), "0s"), "0m"))
}
