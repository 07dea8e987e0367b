package gitsig

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

// The fixtures in testdata/fuzzkeys are public keys of throw-away keys made
// once with gpg and ssh-keygen; the seed corpora hold their signatures over
// fuzzPayload, so the fuzzers start from signatures that verify.
const fuzzPayload = "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n" +
	"author A <a@example.com> 1735689600 +0000\n" +
	"committer A <a@example.com> 1735689600 +0000\n\nfuzz payload\n"

func fuzzKeys(f *testing.F) *Keys {
	f.Helper()
	pgp, err := os.ReadFile("testdata/fuzzkeys/openpgp.asc")
	if err != nil {
		f.Fatal(err)
	}
	allowed, err := os.ReadFile("testdata/fuzzkeys/allowed_signers")
	if err != nil {
		f.Fatal(err)
	}
	as, err := ParseAllowedSigners(allowed)
	if err != nil {
		f.Fatal(err)
	}
	k, err := NewKeys([][]byte{pgp}, as)
	if err != nil {
		f.Fatal(err)
	}
	return k
}

// FuzzVerifySignature feeds arbitrary signature text and payloads to the
// commit signature path. Besides not panicking, nothing may verify over a
// payload other than the one the fixture keys signed.
func FuzzVerifySignature(f *testing.F) {
	k := fuzzKeys(f)
	f.Add([]byte(fuzzPayload), []byte("-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n"))
	at := time.Unix(1735689600, 0)
	now := time.Now()
	f.Fuzz(func(t *testing.T, payload, sig []byte) {
		s, err := k.verifyText(string(sig), payload, 0, at, now, verifyPolicy{}, "commit")
		if err != nil {
			return
		}
		if !bytes.Equal(payload, []byte(fuzzPayload)) {
			t.Fatalf("signature verified over a different payload %q (signer %+v)", payload, s)
		}
		if s.Kind != KindOpenPGP && s.Kind != KindSSH {
			t.Fatalf("signer %+v", s)
		}
		if countBlocks(sig) != 1 {
			t.Fatalf("accepted %d signature blocks", countBlocks(sig))
		}
	})
}

// FuzzNewKeys feeds arbitrary keyring text to the OpenPGP key reader.
func FuzzNewKeys(f *testing.F) {
	pgp, err := os.ReadFile("testdata/fuzzkeys/openpgp.asc")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(pgp)
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := NewKeys([][]byte{data}, nil)
		if err != nil {
			return
		}
		for _, fp := range k.Fingerprints() {
			if fp == "" || strings.ToUpper(fp) != fp {
				t.Fatalf("bad fingerprint %q", fp)
			}
		}
	})
}

// The fixture signatures verify: the fuzz seeds are meaningful.
func TestFuzzFixturesVerify(t *testing.T) {
	t.Parallel()
	pgp, err := os.ReadFile("testdata/fuzzkeys/openpgp.asc")
	if err != nil {
		t.Fatal(err)
	}
	allowed, err := os.ReadFile("testdata/fuzzkeys/allowed_signers")
	if err != nil {
		t.Fatal(err)
	}
	as, err := ParseAllowedSigners(allowed)
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewKeys([][]byte{pgp}, as)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"openpgp.sig", "ssh.sig"} {
		sig, err := os.ReadFile("testdata/fuzzkeys/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := k.verifyText(string(sig), []byte(fuzzPayload), 0, time.Unix(1735689600, 0), time.Now(), verifyPolicy{}, "commit"); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
