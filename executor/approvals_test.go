package executor

import (
	"strings"
	"testing"

	"gitlab.com/writ-ci/writ/allowlist"
)

// TestApprovalsFailureSaysWhatToDo checks the refusal block's content: the
// valid approvals, each ignored one with its reason, the number still
// needed, and the command an approver runs.
func TestApprovalsFailureSaysWhatToDo(t *testing.T) {
	t.Parallel()
	e := &allowlist.Entry{Name: "deploy", Source: allowlist.Source{Repository: "https://git.example.com/acme/app.git",
		Approvals: &allowlist.SourceApprovals{Signers: []string{"approvers"}, Threshold: 3}}}
	commit := strings.Repeat("ab", 20)
	tally := &allowlist.SourceTally{Threshold: 3,
		Valid:   []allowlist.CountedApproval{{Label: "carol", Kind: "ssh", Signer: "SHA256:c", Person: "person carol"}},
		Ignored: []allowlist.IgnoredApproval{{Label: "dave", Reason: allowlist.IgnoredOtherEnvironment, Detail: "approves environments staging, not production"}}}
	f := approvalsFailure(e, commit, "production", tally, 2)
	for _, want := range []string{
		"has 1 of the 3 approvals entry \"deploy\" requires for environment \"production\": 2 more needed",
		"valid:   carol: ssh key SHA256:c (person carol)",
		"ignored: dave: other environment: approves environments staging, not production",
	} {
		if !strings.Contains(f.Message, want) {
			t.Errorf("message lacks %q:\n%s", want, f.Message)
		}
	}
	if strings.Contains(f.Message, "withheld") {
		t.Errorf("published approvals reported as withheld:\n%s", f.Message)
	}
	if want := "writ source approve --repository https://git.example.com/acme/app.git --commit " + commit + " --environment production"; !strings.Contains(f.Hint, want) {
		t.Errorf("hint lacks %q: %s", want, f.Hint)
	}
	if f.Check != CheckApprovals {
		t.Errorf("check %q", f.Check)
	}
	if f := approvalsFailure(e, commit, "production", &allowlist.SourceTally{Threshold: 3}, 0); !strings.Contains(f.Message, "withheld") {
		t.Errorf("no approvals published, but the refusal does not say the server may withhold them:\n%s", f.Message)
	}
}
