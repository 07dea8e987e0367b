package e2e

// Scenarios of issue 18, approvals instead of an author signature: the
// production entry (allowlist version 8) requires no author signature
// (source.signature: none) and two people of the approvers set (carol,
// with two keys, and dave), as a merge-request flow on GitLab needs: the
// commits on main are GitLab's unsigned merge commits. Every attack merges
// a branch whose deploy.sh is backdoored (the scenario's canary).

import (
	"errors"
	"strings"
)

// MergeRepos are what the merge scenarios need beyond ApprovalRepos; the
// suite's Repos implement it.
type MergeRepos interface {
	// Merge makes the merge commit of second into first (git merge
	// --no-ff, first parent first), with msg, signed by by (Unsigned: as
	// GitLab makes it; Foreign: the forge's own key), and returns its
	// hash. No branch moves.
	Merge(repo, first, second, msg string, by Signer) (string, error)
}

func mergeRepos(f *Fixture) (MergeRepos, error) {
	mr, ok := f.Repos.(MergeRepos)
	if !ok {
		return nil, errors.New("the fixture's Repos do not implement MergeRepos")
	}
	return mr, nil
}

// GitLabMergeMessage is the message of GitLab's merge commits.
const GitLabMergeMessage = "Merge branch 'feature' into 'main'"

// requireMergeApprovals publishes allowlist version 8, whose production
// entry, in mode, requires no author signature and two people of the
// approvers set (carol's two keys, dave's).
func requireMergeApprovals(f *Fixture, ar ApprovalRepos, mode string) error {
	tr, err := trustRepos(f)
	if err != nil {
		return err
	}
	edit := func(y string) string {
		y = addApprovers(y, ar)
		// The production entry is the first; its signers line is the
		// first in the file.
		return strings.Replace(y, "      signers: [app-team]\n      mode: commit\n      descends_from: "+f.Hist.Reviewed+"\n",
			"      mode: "+mode+"\n      signature: none\n      descends_from: "+f.Hist.Reviewed+"\n"+
				"      approvals:\n        signers: [approvers]\n        threshold: 2\n", 1)
	}
	_, err = publishApproved(f, tr, edit, nil)
	return err
}

// addApprovers adds the approvers signer set (carol's two keys, dave's)
// and carol as a person to allowlist y.
func addApprovers(y string, ar ApprovalRepos) string {
	set := "  approvers:\n    ssh:\n"
	for _, k := range []Approver{Carol, Carol2, Dave} {
		set += "      - " + yamlQuote(ar.ApproverLine(k)) + "\n"
	}
	y = strings.Replace(y, "\nsigners:\n", "\nsigners:\n"+set, 1)
	return strings.Replace(y, "\njobs:\n", "\npeople:\n  carol: ["+yamlQuote(ar.ApproverFingerprint(Carol))+", "+yamlQuote(ar.ApproverFingerprint(Carol2))+"]\n\njobs:\n", 1)
}

// mergeToMain merges a feature branch off main's head carrying files (a
// commit alice signed, as developers sign their work) into main with a
// merge commit signed by by, moves main there and points the job at it.
// It returns the merge commit.
func mergeToMain(f *Fixture, parent string, files map[string]string, by Signer) (string, error) {
	mr, err := mergeRepos(f)
	if err != nil {
		return "", err
	}
	feature, err := f.Repos.Commit(RepoApp, parent, files, "feature work", Trusted)
	if err != nil {
		return "", err
	}
	m, err := mr.Merge(RepoApp, parent, feature, GitLabMergeMessage, by)
	if err != nil {
		return "", err
	}
	if err := f.Repos.SetBranch(RepoApp, LegitRef, m); err != nil {
		return "", err
	}
	setSha(f.Payload, m)
	return m, nil
}

// mergedBackdoor requires merge approvals (mode commit), merges the
// backdoored deploy.sh with a merge commit signed by by, and publishes
// approvals of the merge made by approvals (each given the merge commit,
// the entry's repository and production unless it says otherwise).
func mergedBackdoor(f *Fixture, by Signer, approvals ...SourceApproval) error {
	ar, err := approvalRepos(f)
	if err != nil {
		return err
	}
	if err := requireMergeApprovals(f, ar, "commit"); err != nil {
		return err
	}
	m, err := mergeToMain(f, f.Hist.Head, map[string]string{"deploy.sh": backdoored(f.Canary)}, by)
	if err != nil {
		return err
	}
	return publishApprovals(f, ar, m, approvals)
}

// carolAndDave are the two people the entry requires.
var carolAndDave = []SourceApproval{{Label: "carol", By: Carol}, {Label: "dave", By: Dave}}

func init() {
	Scenarios = append(Scenarios,
		Scenario{
			Name: "merge-approvals-two-approved", Category: CatSource, Robustness: true,
			Description: "GitLab's unsigned merge commit of a reviewed merge request, approved by carol and dave for production: admitted with no author signature, and the deploy runs.",
			Mutate: func(f *Fixture) error {
				ar, err := approvalRepos(f)
				if err != nil {
					return err
				}
				if err := requireMergeApprovals(f, ar, "commit"); err != nil {
					return err
				}
				m, err := mergeToMain(f, f.Hist.Head, map[string]string{"README.md": "# acme/app\n\nMerged and approved.\n"}, Unsigned)
				if err != nil {
					return err
				}
				return publishApprovals(f, ar, m, carolAndDave)
			},
			PassThrough: legitRan,
			Shows:       "the legitimate deploy ran",
			// Approvals count in label order: carol's, then dave's key.
			Writ: Expectation{Verdict: Admit, Reason: "no author signature: approved by person carol, key SHA256:", Detail: LegitDone},
		},
		Scenario{
			Name: "merge-approvals-one-approver", Category: CatSource,
			Description: "GitLab merges a backdoored branch with its unsigned merge commit, and only carol approved the merge: one of the two people the entry requires.",
			Mutate: func(f *Fixture) error {
				return mergedBackdoor(f, Unsigned, SourceApproval{Label: "carol", By: Carol})
			},
			Writ: refuse(CheckApprovalsName, "has 1 of the 2 approvals"),
		},
		Scenario{
			Name: "merge-approvals-other-commit", Category: CatSource,
			Description: "Carol's and dave's approvals of the reviewed head are copied under the backdoored merge commit's approval refs.",
			Mutate: func(f *Fixture) error {
				return mergedBackdoor(f, Unsigned,
					SourceApproval{Label: "carol", By: Carol, Commit: f.Hist.Head}, SourceApproval{Label: "dave", By: Dave, Commit: f.Hist.Head})
			},
			Writ: refuse(CheckApprovalsName, "carol: other commit"),
		},
		Scenario{
			Name: "merge-approvals-forge-signed", Category: CatSource,
			Description: "The forge signs the backdoored merge commit with its own key (in no signer set) and approves it with another key of its own; carol approved too.",
			Mutate: func(f *Fixture) error {
				return mergedBackdoor(f, Foreign, SourceApproval{Label: "carol", By: Carol}, SourceApproval{Label: "gitlab", By: Outsider})
			},
			Writ: refuse(CheckApprovalsName, "gitlab: key outside the approver sets"),
		},
		Scenario{
			Name: "merge-approvals-strict-direct-push", Category: CatSource,
			Description: "Strict mode: GitLab pushes the backdoor straight onto main, then merges a reviewed branch on top; carol and dave approve the merge (its merge request's diff does not show the backdoor).",
			Mutate: func(f *Fixture) error {
				ar, err := approvalRepos(f)
				if err != nil {
					return err
				}
				if err := requireMergeApprovals(f, ar, "strict"); err != nil {
					return err
				}
				// Main's head was approved when it was deployed.
				if err := publishApprovals(f, ar, f.Hist.Head, carolAndDave); err != nil {
					return err
				}
				x, err := f.Repos.Commit(RepoApp, f.Hist.Head, map[string]string{"deploy.sh": backdoored(f.Canary)}, "hotfix", Unsigned)
				if err != nil {
					return err
				}
				m, err := mergeToMain(f, x, map[string]string{"README.md": "# acme/app\n\nReviewed change.\n"}, Unsigned)
				if err != nil {
					return err
				}
				return publishApprovals(f, ar, m, carolAndDave)
			},
			Writ: refuse(CheckApprovalsName, "first-parent commit 1 of 2 (\"hotfix\")"),
		},
	)
}
