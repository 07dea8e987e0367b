package e2e

import (
	"fmt"
	"strings"
)

// Scenarios for what a signature authorises (issue #8): the ref's kind,
// a variable's kind, and names that control the loader, the shell or git.
// Each was admitted by writ/v1's rules with the canary firing; under
// writ/v2 each is refused by writ's specific rule.
func init() {
	Scenarios = append(Scenarios,
		Scenario{
			Name: "tag-on-signed-descendant-of-main", Category: CatSource,
			Description: "ref \"main\" with ref_type tag: a signed tag named main on a trusted-signed commit that descends from main's head (so descends_from holds) but was never merged, with a backdoored deploy.sh.",
			Mutate: func(f *Fixture) error {
				child, err := f.Repos.Commit(RepoApp, f.Hist.Head, map[string]string{"deploy.sh": backdoored(f.Canary)}, "wip: unreviewed", Trusted)
				if err != nil {
					return err
				}
				if _, err := f.Repos.Tag(RepoApp, LegitRef, child, Trusted); err != nil {
					return err
				}
				setRef(f.Payload, LegitRef, "tag")
				setSha(f.Payload, child)
				return nil
			},
			Writ: refuse("ref", `the job runs for tag "main" (refs/tags/main), but entry app-deploy-production admits the branch refs/heads/main`),
		},
		Scenario{
			Name: "branch-named-heads-main", Category: CatSource,
			Description: "ref \"heads/main\", a real branch refs/heads/heads/main at a trusted-signed descendant of main with a backdoored deploy.sh: a name git's revision lookup reads as refs/heads/main.",
			Mutate: func(f *Fixture) error {
				child, err := f.Repos.Commit(RepoApp, f.Hist.Head, map[string]string{"deploy.sh": backdoored(f.Canary)}, "wip: unreviewed", Trusted)
				if err != nil {
					return err
				}
				if err := f.Repos.SetBranch(RepoApp, "heads/"+LegitRef, child); err != nil {
					return err
				}
				setRef(f.Payload, "heads/"+LegitRef, "branch")
				setSha(f.Payload, child)
				return nil
			},
			Writ: refuse("ref", `git would read "heads/main" as another ref (refs/heads/main)`),
		},
		Scenario{
			Name: "var-pinned-empty-sent-as-file", Category: CatVariables,
			Description: "The notify job pins NOTIFY: {value: \"\"}; GitLab sends NOTIFY with the same empty value as a file variable, so $NOTIFY is a path and the notify branch the signature keeps off runs.",
			Mutate: func(f *Fixture) error {
				f.Payload = f.notifyPayload()
				f.Payload.Variables = append(f.Payload.Variables, Variable{Key: "NOTIFY", Value: "", File: true})
				return nil
			},
			Writ: refuse("variables", "variable NOTIFY is a file variable (the job sees a path), but the allowlist entry makes it a value variable"),
		},
		Scenario{
			Name: "allowlist-generated-bash-env-entry", Category: CatVariables,
			Description: "A maintainer approves version 8 as writ allowlist entry used to print it for a job with a BASH_ENV file variable (BASH_ENV: {pattern: '^.*$'}); GitLab then sends BASH_ENV holding code, which every bash sources.",
			Mutate: func(f *Fixture) error {
				if err := publishAllowlist(f, func(y string) string {
					y = versionLine.ReplaceAllString(y, "version: 8")
					return strings.Replace(y, "        DEPLOY_TARGET: {value: "+LegitTarget+"}\n",
						"        DEPLOY_TARGET: {value: "+LegitTarget+"}\n        BASH_ENV: {pattern: '^.*$', file: true}\n", 1)
				}); err != nil {
					return err
				}
				f.Payload.Variables = append(f.Payload.Variables, Variable{Key: "BASH_ENV", Value: f.Canary.Code() + "\n", File: true})
				return nil
			},
			Writ: Expectation{Verdict: Refuse, Reason: "Failed check: variables", Detail: "variable BASH_ENV is dangerous: bash sources the file it names before any script", AllowlistReject: "format"},
		},
	)
}

// notifyPayload is NotifyJob at main's head, as the allowlist admits it.
func (f *Fixture) notifyPayload() *Payload {
	return f.W.Payload(Job{
		Project: LegitProject, Name: NotifyJob, Environment: LegitEnvironment,
		RepoURL: f.Repos.URL(RepoApp), Ref: LegitRef, Sha: f.Hist.Head,
		Script: []string{NotifyScript(f.Canary.Code())},
	})
}

// publishAllowlist makes edit of the accepted allowlist the head of the
// allowlist repository, signed by the trusted root key and approved by the
// trusted approver: a version its maintainers meant to publish.
func publishAllowlist(f *Fixture, edit func(string) string) error {
	content := edit(f.AllowlistYAML)
	if content == f.AllowlistYAML {
		return fmt.Errorf("the allowlist edit changed nothing")
	}
	identity, version := allowlistHeader(content)
	path, data, err := f.Repos.Approve(identity, version, content, "carol", Trusted)
	if err != nil {
		return err
	}
	sha, err := f.Repos.Commit(RepoAllowlist, "refs/heads/main", map[string]string{"allowlist.yaml": content, path: data},
		fmt.Sprintf("allowlist version %d", version), Trusted)
	if err != nil {
		return err
	}
	return f.Repos.SetBranch(RepoAllowlist, "main", sha)
}
