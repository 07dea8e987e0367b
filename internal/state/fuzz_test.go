package state

import (
	"testing"
)

// FuzzStoreValue: the fleet store is not trusted, so each value read from
// it is untrusted input. Decoding never panics, and a value accepted as an
// entry's mark names that entry and a full commit.
func FuzzStoreValue(f *testing.F) {
	f.Add([]byte(`{"entry":"deploy","repository":"https://git.example/app.git","mode":"commit","commit":"0123456789abcdef0123456789abcdef01234567","job":"7"}`))
	f.Add([]byte(`{"version":3,"commit":"0123456789abcdef0123456789abcdef01234567","digest":"ab"}`))
	f.Add([]byte(`{"head":"x","why":"y","trust":"z"}`))
	f.Add([]byte(`{"id":"12","token":"t","host":"h","payload_sha256":"00","time":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"entry":"deploy","commit":"0123"}`))
	f.Add([]byte("\x00{"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m EntryMark
		if decode("k", b, &m) == nil && validEntryMark(&m, "deploy") && (m.Entry != "deploy" || !shaPattern.MatchString(m.Commit)) {
			t.Fatalf("accepted %q as deploy's mark", b)
		}
		var a AllowlistMark
		_ = decode("k", b, &a)
		var r Rejection
		_ = decode("k", b, &r)
		var c JobClaim
		_ = decode("k", b, &c)
	})
}
