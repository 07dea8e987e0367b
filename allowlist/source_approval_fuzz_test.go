package allowlist

import (
	"bytes"
	"testing"
	"time"
)

// FuzzSourceApproval feeds the approval reader hostile statements, labels
// and signature files: it must never panic, never count an approval that
// is not a canonical statement of the job's commit, and a statement it
// parses must be canonical.
func FuzzSourceApproval(f *testing.F) {
	good, _ := SourceStatement{Repository: srcRepo, Commit: srcCommit, Environments: []string{"production", "staging"}}.Bytes()
	f.Add("alice", good, "signature.sshsig", []byte("-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----\n"))
	f.Add("bob", bytes.Replace(good, []byte("production staging"), []byte("staging production"), 1), "signature.asc", []byte("-----BEGIN PGP SIGNATURE-----\n\n=abcd\n-----END PGP SIGNATURE-----\n"))
	f.Add("../x", []byte("writ source approval v1\n"), "signature.sigstore.json", []byte("{}"))
	f.Add("c", good, "statement", good)
	v, err := NewApprovalVerifier(nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, label string, stmt []byte, sigName string, sig []byte) {
		if s, err := ParseSourceStatement(stmt); err == nil {
			canon, err := s.Bytes()
			if err != nil || !bytes.Equal(canon, stmt) {
				t.Fatalf("parsed a non-canonical statement %q (canonical %q, %v)", stmt, canon, err)
			}
		}
		files := map[string][]byte{SourceStatementFile: stmt, sigName: sig}
		pol := SourcePolicy{Repository: srcRepo, Commit: srcCommit, Environment: "production", Threshold: 1}
		tally := v.TallySource(pol, []SourceApproval{{Label: label, Files: files}}, time.Unix(1e9, 0))
		if len(tally.Valid) != 0 {
			t.Fatalf("counted %+v with no trusted key", tally.Valid)
		}
		if len(tally.Ignored) != 1 || tally.Ignored[0].Reason == "" {
			t.Fatalf("ignored %+v", tally.Ignored)
		}
	})
}
