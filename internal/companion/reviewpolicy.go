package companion

import (
	"fmt"
	"reflect"
	"strings"

	"gitlab.com/writ-ci/writ/allowlist"
)

// SourcePolicy is one entry's two-person rule (source.approvals) as the
// proposed allowlist states it, with the people its approver sets admit.
// The review shows it for every entry whose rule, approver keys or people
// the merge request changes: a reviewer of the allowlist cannot see the
// application commits' approvals (they are refs of the application's
// repository), only the rule the runners will enforce.
type SourcePolicy struct {
	Entry string `json:"entry"`
	// Removed: the entry no longer requires approvals (or is gone).
	Removed      bool     `json:"removed,omitempty"`
	Signers      []string `json:"signers,omitempty"`
	Threshold    int      `json:"threshold,omitempty"`
	AuthorCounts bool     `json:"author_counts,omitempty"`
	// NoAuthorSignature: the entry has signature: none, so these approvals
	// alone admit a commit.
	NoAuthorSignature bool                       `json:"no_author_signature,omitempty"`
	Approvers         []allowlist.SourceApprover `json:"approvers,omitempty"`
}

func sourcePolicy(a *allowlist.Allowlist, name string) *SourcePolicy {
	for _, e := range a.Jobs {
		if e.Name == name && e.Source.Approvals != nil {
			ap := e.Source.Approvals
			return &SourcePolicy{Entry: name, Signers: ap.Signers, Threshold: ap.Threshold, AuthorCounts: ap.AuthorCounts,
				NoAuthorSignature: e.Source.ApprovalsOnly(), Approvers: a.SourceApprovers(ap.Signers)}
		}
	}
	return nil
}

// changedSourcePolicies compares every entry's policy, as enforced (the
// people and keys resolved), between old (nil: none) and nw.
func changedSourcePolicies(old, nw *allowlist.Allowlist) []SourcePolicy {
	names := []string{}
	seen := map[string]bool{}
	for _, a := range []*allowlist.Allowlist{nw, old} {
		if a == nil {
			continue
		}
		for _, e := range a.Jobs {
			if !seen[e.Name] {
				seen[e.Name] = true
				names = append(names, e.Name)
			}
		}
	}
	var out []SourcePolicy
	for _, n := range names {
		p := sourcePolicy(nw, n)
		var q *SourcePolicy
		if old != nil {
			q = sourcePolicy(old, n)
		}
		switch {
		case p == nil && q == nil:
		case p == nil:
			out = append(out, SourcePolicy{Entry: n, Removed: true})
		case q == nil || !reflect.DeepEqual(p, q):
			out = append(out, *p)
		}
	}
	return out
}

// policyMarkdown renders the changed policies for the review note.
func policyMarkdown(ps []SourcePolicy) string {
	if len(ps) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\n#### Two-person rule (source approvals), as the runners will enforce it\n\n")
	b.WriteString("Information only. Whether a commit has its approvals is shown by the application pipeline's " + code("writ-approvals") +
		" job (" + code("writ source status") + "); only the runner's own count, at deploy time, decides. GitLab's approvals never count.\n\n")
	for _, p := range ps {
		if p.Removed {
			fmt.Fprintf(&b, "- %s: **no longer requires approvals**\n", code(p.Entry))
			continue
		}
		author := "the commit's signer does not count"
		switch {
		case p.NoAuthorSignature:
			author = "**no author signature** (signature: none): these approvals alone admit a commit"
		case p.AuthorCounts:
			author = "the commit's signer counts as one"
		}
		fmt.Fprintf(&b, "- %s: %d distinct people of %s; %s\n", code(p.Entry), p.Threshold, codeList(p.Signers), author)
		for _, a := range p.Approvers {
			fmt.Fprintf(&b, "  - %s: %s\n", escapeMarkdown(a.Person), codeList(a.Keys))
		}
	}
	return b.String()
}
