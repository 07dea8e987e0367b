package allowlist

import (
	"bytes"
	"errors"
	"io"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"gitlab.com/writ-ci/writ/internal/testkeys"
)

// openpgpDoc is an allowlist whose only signer set pins fpr to keys/k.asc.
func openpgpDoc(fpr string) string {
	return edited(setLine(7, "    openpgp:"), setLine(8, "      - fingerprint: "+fpr), addAfter(8, "        key: keys/k.asc"))
}

// rearmor puts the packets of several armored keys into one armor block.
func rearmor(t *testing.T, keys ...[]byte) []byte {
	t.Helper()
	var body bytes.Buffer
	for _, k := range keys {
		blk, err := armor.Decode(bytes.NewReader(k))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(&body, blk.Body); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	w, err := armor.Encode(&out, "PGP PUBLIC KEY BLOCK", nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(body.Bytes())
	w.Close()
	return out.Bytes()
}

func TestOpenPGPKeys(t *testing.T) {
	t.Parallel()
	alice := testkeys.GPGKey(t, "Alice", "alice@example.com", testkeys.SigningSubkey())
	mallory := testkeys.GPGKey(t, "Mallory", "mallory@example.com")
	secret, err := exec.Command("gpg", "--homedir", alice.Home, "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
		"--armor", "--export-secret-keys", alice.Fingerprint).Output()
	if err != nil {
		t.Fatal(err)
	}
	sig := alice.Sign(t, []byte("hello"))

	for _, c := range []struct {
		name string
		fpr  string
		file []byte
		err  error
		want string // "" for success
	}{
		{"valid", alice.Fingerprint, alice.ArmoredPublic, nil, ""},
		{"lower-case fingerprint", strings.ToLower(alice.Fingerprint), alice.ArmoredPublic, nil, ""},
		{"leading text is ignored", alice.Fingerprint, append([]byte("Alice's key, exported 2026-01-01\n\n"), alice.ArmoredPublic...), nil, ""},
		{"other key", alice.Fingerprint, mallory.ArmoredPublic, nil, "holds the key " + mallory.Fingerprint + ", not " + alice.Fingerprint},
		{"subkey fingerprint", alice.SigningFingerprint, alice.ArmoredPublic, nil, "holds the key " + alice.Fingerprint + ", not " + alice.SigningFingerprint},
		{"second armor block", alice.Fingerprint, append(append([]byte{}, alice.ArmoredPublic...), mallory.ArmoredPublic...), nil, "holds 2 keys"},
		{"second key in one block", alice.Fingerprint, rearmor(t, alice.ArmoredPublic, mallory.ArmoredPublic), nil, "holds 2 keys"},
		{"private key", alice.Fingerprint, secret, nil, "contains a PRIVATE key"},
		{"private key after the public key", alice.Fingerprint, append(append([]byte{}, alice.ArmoredPublic...), secret...), nil, "contains a PRIVATE key"},
		{"signature block", alice.Fingerprint, sig, nil, `contains a "PGP SIGNATURE" armor block`},
		{"not armored", alice.Fingerprint, []byte("ssh-ed25519 AAAA…\n"), nil, "holds no armored OpenPGP public key"},
		{"empty", alice.Fingerprint, nil, nil, "holds no armored OpenPGP public key"},
		{"corrupt body", alice.Fingerprint, bytes.Replace(alice.ArmoredPublic, []byte("\n\n"), []byte("\n\n!!!!"), 1), nil, "holds a key that cannot be read"},
		{"too large", alice.Fingerprint, append(bytes.Repeat([]byte("#\n"), MaxKeyFileBytes/2), alice.ArmoredPublic...), nil, "bytes; the limit is 1048576"},
		{"missing", alice.Fingerprint, nil, errors.New("open keys/k.asc: no such file"), "cannot be read (open keys/k.asc: no such file)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			load := func(p string) ([]byte, error) {
				if p != "keys/k.asc" {
					t.Fatalf("loaded %q", p)
				}
				return c.file, c.err
			}
			a, err := Parse(FileName, []byte(openpgpDoc(c.fpr)), load)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				k := a.Signers["web-team"].OpenPGP[0]
				if k.Fingerprint != alice.Fingerprint || k.File != "keys/k.asc" || !bytes.Equal(k.Armored, c.file) {
					t.Fatalf("key = %+v", k)
				}
				return
			}
			var list ErrorList
			if !errors.As(err, &list) || len(list) != 1 {
				t.Fatalf("want one error containing %q, got %v", c.want, err)
			}
			if e := list[0]; e.Line != 9 || e.Column != 14 || !strings.Contains(e.Msg, c.want) || !strings.HasPrefix(e.Msg, `key file "keys/k.asc" `) {
				t.Fatalf("got %v, want 9:14 … %q", e, c.want)
			}
		})
	}

	t.Run("shared key file is loaded once", func(t *testing.T) {
		var loads atomic.Int32
		load := func(string) ([]byte, error) { loads.Add(1); return alice.ArmoredPublic, nil }
		text := openpgpDoc(alice.Fingerprint) + "  # second set\n"
		text = strings.Replace(text, "jobs:\n", "  ops:\n    openpgp:\n      - fingerprint: "+alice.Fingerprint+"\n        key: keys/k.asc\njobs:\n", 1)
		text = strings.Replace(text, "signers: [web-team]", "signers: [web-team, ops]", 1)
		if _, err := Parse(FileName, []byte(text), load); err != nil {
			t.Fatal(err)
		}
		if loads.Load() != 1 {
			t.Fatalf("loaded %d times", loads.Load())
		}
	})
}
