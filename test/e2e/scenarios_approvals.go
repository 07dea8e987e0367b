package e2e

// Scenarios of issue 9, the two-person rule for what runs: the production
// entry requires approvals of the deployed commit by two distinct people
// of the "approvers" set (carol, with two keys, and dave), published in
// the application repository under refs/writ/approvals/<commit>/<label>.
// Every attack deploys a backdoored deploy.sh in a commit alice (the
// author, an entry signer) signed, as a developer signs every
// work-in-progress commit.

import (
	"errors"
	"strings"
)

// Approver names a key of the approval scenarios.
type Approver int

// Approval scenario keys.
const (
	// Carol is a person of the approvers set.
	Carol Approver = iota
	// Carol2 is carol's second key (her laptop's): the same person.
	Carol2
	// Dave is the second person of the approvers set.
	Dave
	// Outsider is a valid SSH key of no approver set.
	Outsider
)

// SourceApproval is one approval a scenario publishes.
type SourceApproval struct {
	Label string
	By    Approver
	// Repository, Commit and Environments are what the statement says.
	Repository   string
	Commit       string
	Environments []string
	// Tamper edits the statement after it was signed.
	Tamper func(statement string) string
}

// ApprovalRepos are what the approval scenarios need beyond Repos; the
// suite's Repos implement it.
type ApprovalRepos interface {
	// ApproverLine is k's allowed_signers line, ApproverFingerprint its
	// SHA256 fingerprint.
	ApproverLine(k Approver) string
	ApproverFingerprint(k Approver) string
	// PublishApproval signs a's statement with a.By's key as
	// `writ source approve` does and stores it in repo under
	// refs/writ/approvals/<commit>/<label>, where commit is the ref's
	// commit (which may differ from a.Commit).
	PublishApproval(repo, commit string, a SourceApproval) error
	// DeleteRef deletes a ref of repo.
	DeleteRef(repo, ref string) error
}

func approvalRepos(f *Fixture) (ApprovalRepos, error) {
	ar, ok := f.Repos.(ApprovalRepos)
	if !ok {
		return nil, errors.New("the fixture's Repos do not implement ApprovalRepos")
	}
	return ar, nil
}

// requireApprovals publishes allowlist version 8, whose production entry
// requires two people of the approvers set (carol's two keys, dave's).
func requireApprovals(f *Fixture, ar ApprovalRepos) error {
	tr, err := trustRepos(f)
	if err != nil {
		return err
	}
	edit := func(y string) string {
		set := "  approvers:\n    ssh:\n"
		for _, k := range []Approver{Carol, Carol2, Dave} {
			set += "      - " + yamlQuote(ar.ApproverLine(k)) + "\n"
		}
		y = strings.Replace(y, "\nsigners:\n", "\nsigners:\n"+set, 1)
		y = strings.Replace(y, "\njobs:\n", "\npeople:\n  carol: ["+yamlQuote(ar.ApproverFingerprint(Carol))+", "+yamlQuote(ar.ApproverFingerprint(Carol2))+"]\n\njobs:\n", 1)
		return strings.Replace(y, "      descends_from: "+f.Hist.Reviewed+"\n",
			"      descends_from: "+f.Hist.Reviewed+"\n      approvals:\n        signers: [approvers]\n        threshold: 2\n", 1)
	}
	_, err = publishApproved(f, tr, edit, nil)
	return err
}

// approvedBackdoor requires approvals, deploys the author-signed backdoor
// and publishes approvals of it made by approvals (each given the
// backdoor's commit, the entry's repository and production unless it says
// otherwise).
func approvedBackdoor(f *Fixture, approvals ...SourceApproval) error {
	ar, err := approvalRepos(f)
	if err != nil {
		return err
	}
	if err := requireApprovals(f, ar); err != nil {
		return err
	}
	if err := pushBackdoor(f, RepoApp, "faster deploys (work in progress)", Trusted); err != nil {
		return err
	}
	return publishApprovals(f, ar, f.Payload.GitInfo.Sha, approvals)
}

func publishApprovals(f *Fixture, ar ApprovalRepos, commit string, approvals []SourceApproval) error {
	for _, a := range approvals {
		if a.Commit == "" {
			a.Commit = commit
		}
		if a.Repository == "" {
			a.Repository = f.Repos.SourceURL(RepoApp)
		}
		if a.Environments == nil {
			a.Environments = []string{LegitEnvironment}
		}
		if err := ar.PublishApproval(RepoApp, commit, a); err != nil {
			return err
		}
	}
	return nil
}

func init() {
	Scenarios = append(Scenarios,
		Scenario{
			Name: "approvals-author-signed-alone", Category: CatSource,
			Description: "The production entry requires two approvers; GitLab serves as main a backdoored commit its author signed (as developers sign every work-in-progress commit), approved by nobody.",
			Mutate:      func(f *Fixture) error { return approvedBackdoor(f) },
			Writ:        refuse(CheckApprovalsName, "has 0 of the 2 approvals"),
		},
		Scenario{
			Name: "approvals-below-threshold", Category: CatSource,
			Description: "Only one of the two required people (carol) approved the backdoored commit.",
			Mutate:      func(f *Fixture) error { return approvedBackdoor(f, SourceApproval{Label: "carol", By: Carol}) },
			Writ:        refuse(CheckApprovalsName, "1 more needed"),
		},
		Scenario{
			Name: "approvals-key-outside-sets", Category: CatSource,
			Description: "Carol and a valid key of no approver set (the attacker's) approve the backdoored commit.",
			Mutate: func(f *Fixture) error {
				return approvedBackdoor(f, SourceApproval{Label: "carol", By: Carol}, SourceApproval{Label: "mallory", By: Outsider})
			},
			Writ: refuse(CheckApprovalsName, "mallory: key outside the approver sets"),
		},
		Scenario{
			Name: "approvals-other-commit", Category: CatSource,
			Description: "GitLab copies dave's approval of the reviewed head under the backdoored commit's approval ref.",
			Mutate: func(f *Fixture) error {
				return approvedBackdoor(f, SourceApproval{Label: "carol", By: Carol}, SourceApproval{Label: "dave", By: Dave, Commit: f.Hist.Head})
			},
			Writ: refuse(CheckApprovalsName, "dave: other commit"),
		},
		Scenario{
			Name: "approvals-other-repository", Category: CatSource,
			Description: "Dave's approval of the same commit in the attacker's fork is served as an approval of the application.",
			Mutate: func(f *Fixture) error {
				return approvedBackdoor(f, SourceApproval{Label: "carol", By: Carol}, SourceApproval{Label: "dave", By: Dave, Repository: f.Repos.SourceURL(RepoAttacker)})
			},
			Writ: refuse(CheckApprovalsName, "dave: other repository"),
		},
		Scenario{
			Name: "approvals-other-environment", Category: CatSource,
			Description: "Dave approved the commit for staging only; the job deploys production.",
			Mutate: func(f *Fixture) error {
				return approvedBackdoor(f, SourceApproval{Label: "carol", By: Carol}, SourceApproval{Label: "dave", By: Dave, Environments: []string{"staging"}})
			},
			Writ: refuse(CheckApprovalsName, "dave: other environment"),
		},
		Scenario{
			Name: "approvals-statement-tampered", Category: CatSource,
			Description: "Dave's approval for staging is edited to say production after he signed it.",
			Mutate: func(f *Fixture) error {
				return approvedBackdoor(f, SourceApproval{Label: "carol", By: Carol}, SourceApproval{Label: "dave", By: Dave, Environments: []string{"staging"},
					Tamper: func(s string) string {
						return strings.Replace(s, "environments: staging", "environments: production", 1)
					}})
			},
			Writ: refuse(CheckApprovalsName, "dave: bad signature"),
		},
		Scenario{
			Name: "approvals-withheld", Category: CatSource,
			Description: "Carol and dave approved the commit, but the server withholds their approval refs (GitLab can withhold approvals, not forge them); the backdoor is served anyway.",
			Mutate: func(f *Fixture) error {
				if err := approvedBackdoor(f, SourceApproval{Label: "carol", By: Carol}, SourceApproval{Label: "dave", By: Dave}); err != nil {
					return err
				}
				ar, _ := approvalRepos(f)
				for _, l := range []string{"carol", "dave"} {
					if err := ar.DeleteRef(RepoApp, "refs/writ/approvals/"+f.Payload.GitInfo.Sha+"/"+l); err != nil {
						return err
					}
				}
				return nil
			},
			Writ: refuse(CheckApprovalsName, "the server withheld them"),
		},
		Scenario{
			Name: "approvals-one-person-two-keys", Category: CatSource,
			Description: "Carol approves the backdoored commit twice, with each of her two keys, to make two approvals alone.",
			Mutate: func(f *Fixture) error {
				return approvedBackdoor(f, SourceApproval{Label: "carol", By: Carol}, SourceApproval{Label: "carol-laptop", By: Carol2})
			},
			Writ: refuse(CheckApprovalsName, "carol-laptop: duplicate person"),
		},
		Scenario{
			Name: "approvals-threshold-met", Category: CatSource, Robustness: true,
			Description: "Carol and dave approve a new reviewed commit for production: the entry's two people, so the job is admitted and runs.",
			Mutate: func(f *Fixture) error {
				ar, err := approvalRepos(f)
				if err != nil {
					return err
				}
				if err := requireApprovals(f, ar); err != nil {
					return err
				}
				sha, err := f.Repos.Commit(RepoApp, f.Hist.Head, map[string]string{"README.md": "# acme/app\n\nApproved by two people.\n"}, "docs: two-person rule", Trusted)
				if err != nil {
					return err
				}
				if err := f.Repos.SetBranch(RepoApp, LegitRef, sha); err != nil {
					return err
				}
				setSha(f.Payload, sha)
				return publishApprovals(f, ar, sha, []SourceApproval{{Label: "carol", By: Carol, Environments: []string{"production", "staging"}}, {Label: "dave", By: Dave}})
			},
			PassThrough: legitRan,
			Shows:       "the legitimate deploy ran",
			Writ:        admit,
		},
	)
}

// CheckApprovalsName is the check writ names when approvals are short.
const CheckApprovalsName = "approvals"
