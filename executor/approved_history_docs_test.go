package executor

import (
	"strings"
	"testing"

	"gitlab.com/writ-ci/writ/allowlist"
)

// TestDocsApprovalsOnlyAdmission: the admission lines docs/allowlist.md
// shows for an entry with signature: none name who approved the commit.
func TestDocsApprovalsOnlyAdmission(t *testing.T) {
	e := docsEntry()
	e.Source.Signers, e.Source.Signature = nil, allowlist.SignatureNone
	e.Source.Approvals = &allowlist.SourceApprovals{Signers: []string{"approvers"}, Threshold: 2}
	tally := &allowlist.SourceTally{Threshold: 2, Valid: []allowlist.CountedApproval{
		{Label: "carol", Person: "person carol"}, {Label: "dave", Person: "key SHA256:oqcF18NdRxpA+Zb0NwljU2XGCvWgP3l3yJ+rSDlX3Gg"}}}
	s := &Snapshot{Entry: e, Environment: "production", Allowlist: AllowlistRef{Version: 12, Commit: "9d1e0c4a2b33f0e1d2c3b4a5968778695a4b3c2d"},
		Repository: e.Source.Repository, Commit: "5e0b8d4f3a2c1b0a9f8e7d6c5b4a39281706f5e4", Signer: approvedBy(tally)}
	var b strings.Builder
	writeAdmitted(&b, s, "")
	docsBlock(t, "allowlist.md", "admission-approvals-only", b.String())
}
