package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// FuzzVerify feeds Verify and ReadAll logs an attacker may have edited. They
// must not panic, must agree with each other, and every record they accept
// must re-encode to exactly the bytes it was read from.
func FuzzVerify(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("\n"))
	f.Add([]byte(`{"seq":1}` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := Verify(bytes.NewReader(data))
		var be *BrokenError
		if err != nil && !errors.As(err, &be) {
			t.Fatalf("error is not a *BrokenError: %v", err)
		}
		recs, err2 := ReadAll(bytes.NewReader(data))
		if len(recs) != n || (err == nil) != (err2 == nil) {
			t.Fatalf("Verify: %d, %v; ReadAll: %d, %v", n, err, len(recs), err2)
		}
		var buf bytes.Buffer
		prev := GenesisPrev
		for i, r := range recs {
			if r.Seq != uint64(i+1) || r.Prev != prev {
				t.Fatalf("record %d accepted out of chain", i+1)
			}
			prev = r.Hash
			line, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			buf.Write(line)
			buf.WriteByte('\n')
		}
		if !bytes.HasPrefix(data, buf.Bytes()) {
			t.Fatalf("accepted records do not re-encode to the input")
		}
		if err == nil && buf.Len() != len(data) {
			t.Fatalf("valid log has %d bytes after its records", len(data)-buf.Len())
		}
		if be != nil && be.Line != n+1 {
			t.Fatalf("broken line %d after %d good records", be.Line, n)
		}
	})
}
