package allowlist

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/internal/gitsig"
	"gitlab.com/writ-ci/writ/internal/testkeys"
)

// gpgVerifier trusts the armored OpenPGP keys (the trust root's keyring).
func gpgVerifier(t *testing.T, armored ...[]byte) *ApprovalVerifier {
	t.Helper()
	keys, err := gitsig.NewKeys(armored, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewApprovalVerifier(keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Hole 7 of issue 8: OpenPGP root signers make detached approvals with the
// real gpg, and each key counts once, by its primary fingerprint.
func TestOpenPGPApprovals(t *testing.T) {
	t.Parallel()
	carol := testkeys.GPGKey(t, "Carol", "carol@example.com")
	erin := testkeys.GPGKey(t, "Erin", "erin@example.com", testkeys.SigningSubkey())
	mallory := testkeys.GPGKey(t, "Mallory", "mallory@example.com")
	v := gpgVerifier(t, carol.ArmoredPublic, erin.ArmoredPublic)
	stmt := mustStatement(t, testRepo, 6, testDigest)
	ctx := context.Background()

	carolSig, err := SignOpenPGP(ctx, stmt, strings.ToLower(carol.Fingerprint), carol.Program)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(carolSig, []byte("-----BEGIN PGP SIGNATURE-----\n")) {
		t.Fatalf("not an armored signature:\n%s", carolSig)
	}
	// A key that signs with a subkey is named by its primary fingerprint.
	erinSig, err := SignOpenPGP(ctx, stmt, erin.Fingerprint, erin.Program)
	if err != nil {
		t.Fatal(err)
	}
	got, errs := v.Verify(stmt, ApprovalDir(6), map[string][]byte{
		approvalPath(6, "carol.asc"):       carolSig,
		approvalPath(6, "carol-again.asc"): carolSig,
		approvalPath(6, "erin.asc"):        erinSig,
	}, time.Now())
	if len(errs) != 0 || len(got) != 2 {
		t.Fatalf("approvals %+v, errors %v; want carol and erin once each", got, errs)
	}
	if got[0].Signer != carol.Fingerprint || got[0].Kind != KindOpenPGP || got[1].Signer != erin.Fingerprint {
		t.Fatalf("approvals %+v", got)
	}

	t.Run("untrusted key", func(t *testing.T) {
		sig, err := SignOpenPGP(ctx, stmt, mallory.Fingerprint, mallory.Program)
		if err != nil {
			t.Fatal(err)
		}
		got, errs := verifyOne(t, v, stmt, approvalPath(6, "mallory.asc"), sig)
		wantRejected(t, got, errs, approvalPath(6, "mallory.asc"), mallory.Fingerprint, "not among the trusted keys")
	})
	t.Run("another statement", func(t *testing.T) {
		other := mustStatement(t, testRepo, 6, otherDigest)
		got, errs := verifyOne(t, v, other, approvalPath(6, "carol.asc"), carolSig)
		wantRejected(t, got, errs, approvalPath(6, "carol.asc"), "does not verify", "another statement")
	})
	t.Run("text mode", func(t *testing.T) {
		sig, err := runGPG(carol.Program, stmt, "--armor", "--detach-sign", "--textmode", "--local-user", carol.Fingerprint)
		if err != nil {
			t.Fatal(err)
		}
		got, errs := verifyOne(t, v, stmt, approvalPath(6, "carol.asc"), sig)
		wantRejected(t, got, errs, approvalPath(6, "carol.asc"), "text mode", "--textmode")
	})
	t.Run("no OpenPGP keyring", func(t *testing.T) {
		got, errs := verifyOne(t, newSSHVerifier(t), stmt, approvalPath(6, "carol.asc"), carolSig)
		wantRejected(t, got, errs, approvalPath(6, "carol.asc"), "trust.openpgp_keyring")
	})
	t.Run("expired key", func(t *testing.T) {
		old := testkeys.GPGKey(t, "Old", "old@example.com", testkeys.ExpiredKey())
		// gpg signs as of 2020 (faked time); verified at 2020 SignOpenPGP
		// itself would accept it, but a decision today refuses it.
		if _, err := SignOpenPGP(ctx, stmt, old.Fingerprint, old.Program); err == nil || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("SignOpenPGP with an expired key: %v", err)
		}
	})
	t.Run("bad fingerprint", func(t *testing.T) {
		for _, fp := range []string{"", "ABCD", carol.Fingerprint[:39], carol.Fingerprint + "0", "carol@example.com"} {
			if _, err := SignOpenPGP(ctx, stmt, fp, carol.Program); err == nil || !strings.Contains(err.Error(), "full fingerprint") {
				t.Errorf("SignOpenPGP(%q): %v", fp, err)
			}
		}
	})
}

// newSSHVerifier trusts SSH keys only.
func newSSHVerifier(t *testing.T) *ApprovalVerifier {
	t.Helper()
	v, err := NewApprovalVerifier(newSSHWorld(t).keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func runGPG(program string, stdin []byte, args ...string) ([]byte, error) {
	cmd := exec.Command(program, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	return cmd.Output()
}
