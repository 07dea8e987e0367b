package allowlist

import (
	"bytes"
	"crypto/sha256"
	"io"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"gitlab.com/writ-ci/writ/internal/gitsig"
)

// fuzzOpenPGPEntity is a fixed OpenPGP key for fuzzing, made from a
// constant seed so runs are repeatable. It exists only for fuzzing.
func fuzzOpenPGPEntity(tb testing.TB) (*openpgp.Entity, []byte) {
	seed := sha256.Sum256([]byte("writ approval fuzz openpgp key"))
	cfg := &packet.Config{
		Rand:      &repeatReader{seed: seed[:]},
		Time:      func() time.Time { return time.Unix(1600000000, 0) },
		Algorithm: packet.PubKeyAlgoEdDSA,
	}
	e, err := openpgp.NewEntity("Fuzz", "", "fuzz@example.com", cfg)
	if err != nil {
		tb.Fatal(err)
	}
	var pub bytes.Buffer
	w, err := armor.Encode(&pub, "PGP PUBLIC KEY BLOCK", nil)
	if err != nil {
		tb.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return e, pub.Bytes()
}

// repeatReader is a deterministic byte stream: SHA-256 in counter mode.
type repeatReader struct {
	seed []byte
	n    uint64
	buf  []byte
}

func (r *repeatReader) Read(p []byte) (int, error) {
	for len(r.buf) < len(p) {
		h := sha256.New()
		h.Write(r.seed)
		h.Write([]byte{byte(r.n), byte(r.n >> 8), byte(r.n >> 16), byte(r.n >> 24)})
		r.n++
		r.buf = h.Sum(r.buf)
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// FuzzApprovalOpenPGP feeds .asc approval files an attacker may have
// written. Nothing may panic, and a file that counts must be a signature by
// the trusted key over the statement.
func FuzzApprovalOpenPGP(f *testing.F) {
	e, pub := fuzzOpenPGPEntity(f)
	keys, err := gitsig.NewKeys([][]byte{pub}, nil)
	if err != nil {
		f.Fatal(err)
	}
	v, err := NewApprovalVerifier(keys, nil)
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1700000000, 0)
	sign := func(msg []byte) []byte {
		var b bytes.Buffer
		cfg := &packet.Config{Time: func() time.Time { return now }}
		if err := openpgp.ArmoredDetachSign(&b, e, bytes.NewReader(msg), cfg); err != nil {
			f.Fatal(err)
		}
		return b.Bytes()
	}
	valid := sign(fuzzStatement)
	f.Add(valid)
	f.Add(sign(append(append([]byte{}, fuzzStatement...), "x\n"...)))
	f.Add([]byte("-----BEGIN PGP SIGNATURE-----\n\n-----END PGP SIGNATURE-----\n"))
	name := ApprovalDir(3) + "/fuzz.asc"
	if got, errs := v.Verify(fuzzStatement, ApprovalDir(3), map[string][]byte{name: valid}, now); len(got) != 1 {
		f.Fatalf("the valid seed does not count: %v", errs)
	}
	fp := keys.Fingerprints()[0]
	f.Fuzz(func(t *testing.T, data []byte) {
		got, errs := v.Verify(fuzzStatement, ApprovalDir(3), map[string][]byte{name: data}, now)
		if len(got)+len(errs) != 1 {
			t.Fatalf("%d approvals and %d errors for one file", len(got), len(errs))
		}
		if len(got) == 1 {
			if got[0].Signer != fp || got[0].Kind != KindOpenPGP {
				t.Fatalf("accepted as %+v", got[0])
			}
			if _, err := openpgp.CheckArmoredDetachedSignature(openpgp.EntityList{e}, bytes.NewReader(fuzzStatement), bytes.NewReader(data), &packet.Config{Time: func() time.Time { return now }}); err != nil {
				t.Fatalf("accepted a signature the library refuses: %v", err)
			}
		}
	})
}

var _ io.Reader = (*repeatReader)(nil)
