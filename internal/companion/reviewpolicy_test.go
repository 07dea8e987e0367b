package companion

import (
	"strings"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/internal/testkeys"
)

// TestReviewShowsSourcePolicy: a merge request that adds an entry's
// two-person rule, or changes only who a person is, gets the rule as it
// will be enforced in the review note (people resolved, each once); one
// that changes neither shows no such section; removing the rule says so.
func TestReviewShowsSourcePolicy(t *testing.T) {
	t.Parallel()
	author, carol, carol2, dave := testkeys.SSHKey(t, "dev@example.com"), testkeys.SSHKey(t, "carol@example.com"),
		testkeys.SSHKey(t, "carol@example.com"), testkeys.SSHKey(t, "dave@example.com")
	now := time.Now()
	plain := approvalsAllowlist("https://gitlab.example.com/acme/web.git", author, carol, dave)
	// carol2 is a second approver key; with people it is carol's.
	withKey := strings.Replace(plain, "  approvers:\n    ssh:\n", "  approvers:\n    ssh:\n      - \""+strings.ReplaceAll(carol2.AllowedSignersLine(""), `"`, `\"`)+"\"\n", 1)
	withPeople := strings.Replace(withKey, "jobs:\n", "people:\n  carol: [\""+carol.Fingerprint+"\", \""+carol2.Fingerprint+"\"]\njobs:\n", 1)
	without := strings.Replace(plain, "      approvals:\n        signers: [approvers]\n        threshold: 2\n", "", 1)
	bump := func(s, v string) []byte { return []byte(strings.Replace(s, "version: 3", "version: "+v, 1)) }

	eval := func(base, head []byte) *ReviewReport {
		t.Helper()
		rep := Evaluate(Snapshot{Label: "head", Data: head}, Snapshot{Label: "base", Data: base}, nil, 0, now)
		if !rep.LintOK {
			t.Fatalf("lint: %v", rep.LintErrors)
		}
		return rep
	}
	const title = "Two-person rule (source approvals), as the runners will enforce it"

	added := eval([]byte(without), bump(plain, "4")).Markdown()
	for _, want := range []string{title, "Information only", "`acme-web-deploy-production`: 2 distinct people of `approvers`; the commit's signer does not count",
		"key " + carol.Fingerprint, "key " + dave.Fingerprint} {
		if !strings.Contains(added, want) {
			t.Errorf("added rule: note lacks %q:\n%s", want, added)
		}
	}
	if strings.Contains(added, author.Fingerprint) {
		t.Errorf("the author's key is not an approver:\n%s", added)
	}

	// Only people change: the same rule now counts carol's two keys once.
	people := eval(bump(withKey, "4"), bump(withPeople, "5"))
	if len(people.Policies) != 1 || len(people.Policies[0].Approvers) != 2 {
		t.Fatalf("people change: %+v", people.Policies)
	}
	if md := people.Markdown(); !strings.Contains(md, "person carol: `"+min(carol.Fingerprint, carol2.Fingerprint)) {
		t.Errorf("people change: note lacks carol's keys:\n%s", md)
	}

	// Nothing about the rule changes: no section.
	if rep := eval([]byte(plain), bump(plain, "4")); len(rep.Policies) != 0 || strings.Contains(rep.Markdown(), title) {
		t.Errorf("unchanged rule shown: %+v", rep.Policies)
	}

	unsigned := strings.Replace(plain, "      signers: [devs]\n      mode: commit\n", "      mode: commit\n      signature: none\n", 1)
	if md := eval([]byte(plain), bump(unsigned, "4")).Markdown(); !strings.Contains(md, "`acme-web-deploy-production`: 2 distinct people of `approvers`; **no author signature**") {
		t.Errorf("signature: none not shown:\n%s", md)
	}

	removed := eval([]byte(plain), bump(without, "4")).Markdown()
	if !strings.Contains(removed, "`acme-web-deploy-production`: **no longer requires approvals**") {
		t.Errorf("removed rule not shown:\n%s", removed)
	}
}
