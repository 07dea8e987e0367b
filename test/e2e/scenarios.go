package e2e

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// Category groups scenarios by what a hostile GitLab changes.
type Category string

// The threat model's categories.
const (
	CatScript      Category = "script tampering"
	CatInjection   Category = "step/hook/run injection"
	CatVariables   Category = "variable injection"
	CatSource      Category = "source substitution"
	CatAllowlist   Category = "allowlist attacks"
	CatPoisoning   Category = "artifact/cache/dependency poisoning"
	CatImage       Category = "image/service injection"
	CatMalformed   Category = "malformed/oversized payloads"
	CatConcurrency Category = "concurrent jobs"
)

// Verdict is what writ must decide about a job. Refuse means none of the
// job's code runs (for a payload the runner itself rejects, writ is never
// asked, and that holds trivially).
type Verdict string

// Verdicts.
const (
	Admit  Verdict = "admit"
	Refuse Verdict = "refuse"
)

// Expectation is writ's required outcome for a scenario.
type Expectation struct {
	Verdict Verdict
	// Reason is a substring writ's refusal must contain. Empty until writ's
	// refusal texts are fixed; the writ suite then fills it in.
	Reason string
}

// Canary proves that injected code ran: the code prints Marker and creates
// File. The code's own text never contains Marker verbatim (it computes part
// of it), so the trace's echo of the script cannot fake a hit.
type Canary struct {
	Name   string
	Marker string
	File   string
}

// NewCanary makes the canary for scenario name, its file in dir.
func NewCanary(name, dir string) Canary {
	return Canary{
		Name:   name,
		Marker: "writ-canary-" + name + "-42",
		File:   filepath.Join(dir, "canary-"+name),
	}
}

// Code is the shell code an attack injects. It uses no quotes, so it can be
// embedded in YAML, JSON and shell strings unchanged.
func (c Canary) Code() string {
	return fmt.Sprintf("echo writ-canary-%s-$((40+2)); touch %s", c.Name, c.File)
}

// Fired reports whether the canary's file exists.
func (c Canary) Fired() bool {
	_, err := os.Stat(c.File)
	return err == nil
}

// Printed reports whether the trace shows the marker.
func (c Canary) Printed(o Outcome) bool { return strings.Contains(o.Trace, c.Marker) }

// Signer says who signs a commit or tag made through Repos.
type Signer int

// Signers.
const (
	// Trusted is the key the allowlist names for the application.
	Trusted Signer = iota
	// Unsigned makes no signature.
	Unsigned
	// Foreign is a valid key the allowlist does not name (the attacker's).
	Foreign
)

// Repository names for Repos.
const (
	RepoApp       = "app"       // acme/app, the application
	RepoAttacker  = "attacker"  // evil/app, the attacker's fork of it
	RepoAllowlist = "allowlist" // acme/deploy-allowlist
)

// Repos are the fixture's git repositories, served by the World's git
// server. The implementation lives in the tests (it uses real keys).
type Repos interface {
	// Commit makes a commit whose parent is parent (a hash or a ref) with
	// files changed (path → content; executable if the content starts with
	// "#!"), signed by by, and returns its hash. No branch moves.
	Commit(repo, parent string, files map[string]string, msg string, by Signer) (string, error)
	// SetBranch points refs/heads/branch at commit, as a force push does.
	SetBranch(repo, branch, commit string) error
	// Tag makes the annotated tag name on commit, signed by by.
	Tag(repo, name, commit string, by Signer) (string, error)
	// URL is the repository's clone URL on the git server.
	URL(repo string) string
}

// The legitimate application, job and allowlist every scenario starts from.
const (
	LegitProject     = "acme/app"
	LegitJob         = "deploy"
	LegitEnvironment = "production"
	LegitRef         = "main"
	// LegitImage is pinned by digest, as the allowlist entry requires.
	LegitImage = "registry.example.com/deploy@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	// LegitScript and LegitAfterScript are the allowlisted definition.
	LegitScript      = `./deploy.sh "$DEPLOY_TARGET"`
	LegitAfterScript = `echo "deploy of $CI_COMMIT_SHORT_SHA finished"`
	LegitTarget      = "app-prod"
	// LegitDone is printed by a legitimate deploy that ran to its end.
	LegitDone = "deployed version 1.4.2"
)

// DeployScript is the application's deploy.sh at the trusted head: a
// stand-in for a real deploy tool. Like kubectl, it runs the credential
// plugin named by the cluster config in $KUBECONFIG, and it leaves its
// credentials in the work tree, as deploy tools do.
const DeployScript = `#!/bin/bash
# Deploys acme/app (stand-in for a real deploy tool).
set -eu
echo "deploying acme/app to ${1:?usage: deploy.sh TARGET}"
if [ -n "${KUBECONFIG:-}" ] && [ -f "$KUBECONFIG" ]; then
	plugin=$(sed -n 's/^[[:space:]]*command:[[:space:]]*//p' "$KUBECONFIG" | head -n 1)
	if [ -n "$plugin" ]; then
		sh -c "$plugin" 1>&2
	fi
fi
echo "credential-for-$1" > .deploy-credentials
echo "deployed version $(cat VERSION)"
`

// History is the application's history, oldest first. Every commit is by
// the trusted signer unless noted.
type History struct {
	// Base is the first commit.
	Base string
	// Backdoored is an old commit whose deploy.sh still ran a debug hook
	// (the scenario's canary); Reviewed removed it.
	Backdoored string
	// Reviewed is the security-reviewed commit that the allowlist entry
	// requires every admitted commit to descend from.
	Reviewed string
	// Head is main's head, the legitimate job's commit.
	Head string
	// Experiment heads an unmerged branch off Base, also trusted-signed,
	// carrying the canary: signed, but never reviewed.
	Experiment string
}

// Fixture is one scenario's world: the legitimate job, its repositories,
// and what the scenario's Mutate changed.
type Fixture struct {
	W      *World
	Repos  Repos
	Hist   History
	Canary Canary
	// Scratch is a directory for files an attack plants on the host.
	Scratch string
	// AllowlistYAML is the allowlist at the accepted version.
	AllowlistYAML string

	// Payload is the job served to the runner; Mutate changes it.
	Payload *Payload
	// Raw, if set by Mutate, is served instead of Payload's JSON.
	Raw []byte
	// Before are served one at a time before Payload (e.g. a poisoning job).
	Before []*Payload
	// Concurrent are served at the same time as Payload.
	Concurrent []*Payload
}

// LegitPayload is the allowlisted job at head.
func (f *Fixture) LegitPayload() *Payload {
	p := f.W.Payload(Job{
		Project: LegitProject, Name: LegitJob, Environment: LegitEnvironment,
		RepoURL: f.Repos.URL(RepoApp), Ref: LegitRef, Sha: f.Hist.Head,
		Script: []string{LegitScript}, AfterScript: []string{LegitAfterScript},
	})
	p.SetVar("DEPLOY_TARGET", LegitTarget)
	p.Image = &Image{Name: LegitImage}
	return p
}

// AttackerPayload is a job of the attacker's own project (evil/app, not in
// the allowlist) running the canary.
func (f *Fixture) AttackerPayload() *Payload {
	return f.W.Payload(Job{
		Project: "evil/app", Name: "build", ProjectID: 666,
		RepoURL: f.Repos.URL(RepoAttacker), Ref: LegitRef, Sha: f.Hist.Head,
		Script: []string{f.Canary.Code()},
	})
}

// Scenario is one row of the threat model.
type Scenario struct {
	Name        string
	Category    Category
	Description string
	// Mutate turns the fixture's legitimate job into the attack.
	Mutate func(f *Fixture) error
	// Writ is the outcome writ must produce for Payload.
	Writ Expectation
	// Robustness marks a scenario without injected code: the runner itself
	// rejects the payload, or nothing is injected. PassThrough then says
	// what must happen instead of a canary.
	Robustness bool
	// PassThrough, if set, replaces the mutation check's default evidence
	// (the canary's file exists) for the run against the pass-through
	// executor: it returns an error when the run does not show what the
	// scenario expects.
	PassThrough func(f *Fixture, o Outcome) error
}

func refuse(reason string) Expectation { return Expectation{Verdict: Refuse, Reason: reason} }

// Scenarios is the catalog. Every non-robustness scenario's canary must
// fire against the pass-through executor and must not fire under writ.
var Scenarios = []Scenario{
	// --- script tampering -------------------------------------------------
	{
		Name: "script-line-replaced", Category: CatScript,
		Description: "GitLab replaces the allowlisted script line with its own command.",
		Mutate: func(f *Fixture) error {
			f.Payload.Step("script").Script[0] = f.Canary.Code()
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "script-line-appended", Category: CatScript,
		Description: "An extra line after the allowlisted script.",
		Mutate: func(f *Fixture) error {
			s := f.Payload.Step("script")
			s.Script = append(s.Script, f.Canary.Code())
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "script-line-prepended", Category: CatScript,
		Description: "An extra line before the allowlisted script.",
		Mutate: func(f *Fixture) error {
			s := f.Payload.Step("script")
			s.Script = append([]string{f.Canary.Code()}, s.Script...)
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "script-line-suffixed", Category: CatScript,
		Description: "The allowlisted line with a command chained after it: a near-match.",
		Mutate: func(f *Fixture) error {
			f.Payload.Step("script").Script[0] = LegitScript + " && " + f.Canary.Code()
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "script-embedded-newline", Category: CatScript,
		Description: "One script element holding the allowlisted line, a newline and a second command.",
		Mutate: func(f *Fixture) error {
			f.Payload.Step("script").Script[0] = LegitScript + "\n" + f.Canary.Code()
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "script-trailing-whitespace-hides-command", Category: CatScript,
		Description: "The command is pushed off-screen by whitespace after the allowlisted text; exact comparison must catch it.",
		Mutate: func(f *Fixture) error {
			f.Payload.Step("script").Script[0] = LegitScript + strings.Repeat(" ", 300) + "; " + f.Canary.Code()
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "after-script-replaced", Category: CatScript,
		Description: "after_script, which runs even when the job fails or is cancelled, replaced.",
		Mutate: func(f *Fixture) error {
			f.Payload.Step("after_script").Script = []string{f.Canary.Code()}
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "after-script-line-appended", Category: CatScript,
		Description: "An extra after_script line, which would run even if the script failed.",
		Mutate: func(f *Fixture) error {
			a := f.Payload.Step("after_script")
			a.Script = append(a.Script, f.Canary.Code())
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "after-script-on-failed-job", Category: CatScript,
		Description: "A script that fails at once, so only the injected after_script does anything.",
		Mutate: func(f *Fixture) error {
			f.Payload.Step("script").Script = []string{"exit 1"}
			f.Payload.Step("after_script").Script = []string{f.Canary.Code()}
			return nil
		},
		Writ: refuse(""),
	},

	// --- step/hook/run injection -----------------------------------------
	{
		Name: "extra-step-release", Category: CatInjection,
		Description: "An extra `release` step, which the runner runs as stage step_release.",
		Mutate: func(f *Fixture) error {
			f.Payload.Steps = append(f.Payload.Steps, Step{Name: "release", Script: []string{f.Canary.Code()}, Timeout: 3600, When: "on_success"})
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "extra-step-unknown-name", Category: CatInjection,
		Description: "An extra step with a name the allowlist has never seen (stage step_notify).",
		Mutate: func(f *Fixture) error {
			f.Payload.Steps = append(f.Payload.Steps, Step{Name: "notify", Script: []string{f.Canary.Code()}, Timeout: 3600, When: "always"})
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "hook-pre-get-sources", Category: CatInjection,
		Description: "hooks: pre_get_sources_script runs before the checkout, with the job's credentials.",
		Mutate: func(f *Fixture) error {
			f.Payload.Hooks = []Hook{{Name: "pre_get_sources_script", Script: []string{f.Canary.Code()}}}
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "hook-post-get-sources", Category: CatInjection,
		Description: "hooks: post_get_sources_script can rewrite the checked-out tree before the script runs.",
		Mutate: func(f *Fixture) error {
			f.Payload.Hooks = []Hook{{Name: "post_get_sources_script", Script: []string{f.Canary.Code()}}}
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "run-steps-replace-script", Category: CatInjection,
		Description: "The `run:` keyword (GitLab steps) instead of script. For a runner without native steps (the custom executor) GitLab sends it as the script `step-runner ci` with the steps in $STEPS, which the host's step-runner runs.",
		Mutate: func(f *Fixture) error {
			steps, err := json.Marshal([]map[string]string{{"name": "deploy", "script": f.Canary.Code()}})
			if err != nil {
				return err
			}
			f.Payload.Run = string(steps)
			f.Payload.Variables = append(f.Payload.Variables, Variable{Key: "STEPS", Value: string(steps), Raw: true})
			f.Payload.Step("script").Script = []string{"step-runner ci"}
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "hook-and-script-both", Category: CatInjection,
		Description: "The legitimate script, untouched, plus a pre-checkout hook: nothing in the script differs.",
		Mutate: func(f *Fixture) error {
			f.Payload.Hooks = []Hook{{Name: "pre_get_sources_script", Script: []string{"true"}}, {Name: "post_get_sources_script", Script: []string{f.Canary.Code()}}}
			return nil
		},
		Writ: refuse(""),
	},

	// --- variable injection ----------------------------------------------
	{
		Name: "var-bash-env", Category: CatVariables,
		Description: "BASH_ENV names a file variable holding code: every bash the job starts (deploy.sh) sources it.",
		Mutate: func(f *Fixture) error {
			f.Payload.Variables = append(f.Payload.Variables, Variable{Key: "BASH_ENV", Value: f.Canary.Code() + "\n", File: true})
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "var-ld-preload", Category: CatVariables,
		Description: "LD_PRELOAD names a shared library already on the host (planted earlier): it runs inside every process of the job.",
		Mutate: func(f *Fixture) error {
			lib, err := buildPreload(f.Scratch, f.Canary)
			if err != nil {
				return err
			}
			f.Payload.SetVar("LD_PRELOAD", lib)
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "var-git-ssh-command", Category: CatVariables,
		Description: "GIT_SSH_COMMAND with the clone URL switched to ssh://: git runs the command during get_sources.",
		Mutate: func(f *Fixture) error {
			f.Payload.SetVar("GIT_SSH_COMMAND", "sh -c '"+f.Canary.Code()+"' --")
			f.Payload.GitInfo.RepoURL = "ssh://git@127.0.0.1:1/acme/app.git"
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "var-git-config-fsmonitor", Category: CatVariables,
		Description: "GIT_CONFIG_COUNT/KEY/VALUE set core.fsmonitor to a command: git runs it on checkout.",
		Mutate: func(f *Fixture) error {
			f.Payload.SetVar("GIT_CONFIG_COUNT", "1")
			f.Payload.SetVar("GIT_CONFIG_KEY_0", "core.fsmonitor")
			f.Payload.SetVar("GIT_CONFIG_VALUE_0", f.Canary.Code()+" #")
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "var-kubeconfig", Category: CatVariables,
		Description: "KUBECONFIG names a file variable whose user exec plugin is attacker code; the deploy tool runs it.",
		Mutate: func(f *Fixture) error {
			kubeconfig := "apiVersion: v1\nkind: Config\nusers:\n- name: prod\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: " + f.Canary.Code() + "\n"
			f.Payload.Variables = append(f.Payload.Variables, Variable{Key: "KUBECONFIG", Value: kubeconfig, File: true})
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "var-pinned-value-changed", Category: CatVariables,
		Description: "The pinned DEPLOY_TARGET changed, plus a BASH_ENV: a value change must not pass on its own either.",
		Mutate: func(f *Fixture) error {
			f.Payload.SetVar("DEPLOY_TARGET", "attacker-cluster")
			f.Payload.Variables = append(f.Payload.Variables, Variable{Key: "BASH_ENV", Value: f.Canary.Code() + "\n", File: true})
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "var-shadowed-duplicate", Category: CatVariables,
		Description: "BASH_ENV sent twice, harmless first and code last: the runner uses the last, so a checker that reads the first is fooled.",
		Mutate: func(f *Fixture) error {
			f.Payload.Variables = append(f.Payload.Variables,
				Variable{Key: "BASH_ENV", Value: "/dev/null", Public: true},
				Variable{Key: "BASH_ENV", Value: f.Canary.Code() + "\n", File: true})
			return nil
		},
		Writ: refuse(""),
	},

	// --- source substitution ---------------------------------------------
	{
		Name: "repo-url-attacker-fork", Category: CatSource,
		Description: "repo_url points at the attacker's fork; sha is its unsigned commit with a modified deploy.sh.",
		Mutate: func(f *Fixture) error {
			sha, err := f.Repos.Commit(RepoAttacker, f.Hist.Head, map[string]string{"deploy.sh": backdoored(f.Canary)}, "perf tweaks", Unsigned)
			if err != nil {
				return err
			}
			if err := f.Repos.SetBranch(RepoAttacker, LegitRef, sha); err != nil {
				return err
			}
			f.Payload.GitInfo.RepoURL = withJobToken(f.Repos.URL(RepoAttacker), f.Payload.Token)
			setSha(f.Payload, sha)
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "repo-url-fork-foreign-signed", Category: CatSource,
		Description: "The attacker's fork with a commit validly signed by the attacker's own key.",
		Mutate: func(f *Fixture) error {
			sha, err := f.Repos.Commit(RepoAttacker, f.Hist.Head, map[string]string{"deploy.sh": backdoored(f.Canary)}, "signed tweak", Foreign)
			if err != nil {
				return err
			}
			if err := f.Repos.SetBranch(RepoAttacker, LegitRef, sha); err != nil {
				return err
			}
			f.Payload.GitInfo.RepoURL = withJobToken(f.Repos.URL(RepoAttacker), f.Payload.Token)
			setSha(f.Payload, sha)
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "unsigned-commit-on-main", Category: CatSource,
		Description: "An unsigned commit pushed to main of the real repository (e.g. by a stolen token).",
		Mutate: func(f *Fixture) error {
			sha, err := f.Repos.Commit(RepoApp, f.Hist.Head, map[string]string{"deploy.sh": backdoored(f.Canary)}, "hotfix", Unsigned)
			if err != nil {
				return err
			}
			setSha(f.Payload, sha)
			return f.Repos.SetBranch(RepoApp, LegitRef, sha)
		},
		Writ: refuse(""),
	},
	{
		Name: "foreign-signed-commit-on-main", Category: CatSource,
		Description: "A commit on main signed by a key the allowlist does not name.",
		Mutate: func(f *Fixture) error {
			sha, err := f.Repos.Commit(RepoApp, f.Hist.Head, map[string]string{"deploy.sh": backdoored(f.Canary)}, "hotfix", Foreign)
			if err != nil {
				return err
			}
			setSha(f.Payload, sha)
			return f.Repos.SetBranch(RepoApp, LegitRef, sha)
		},
		Writ: refuse(""),
	},
	{
		Name: "older-backdoored-commit", Category: CatSource,
		Description: "sha is an old, validly signed commit from before the security review (a rollback to a known-bad version).",
		Mutate: func(f *Fixture) error {
			setSha(f.Payload, f.Hist.Backdoored)
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "rewritten-history", Category: CatSource,
		Description: "main force-pushed to a signed but never-reviewed branch that does not descend from the reviewed commit.",
		Mutate: func(f *Fixture) error {
			setSha(f.Payload, f.Hist.Experiment)
			return f.Repos.SetBranch(RepoApp, LegitRef, f.Hist.Experiment)
		},
		Writ: refuse(""),
	},
	{
		Name: "sha-not-on-ref", Category: CatSource,
		Description: "ref says main, sha is a signed commit of an unmerged branch (fetched through an extra refspec); main is untouched.",
		Mutate: func(f *Fixture) error {
			if err := f.Repos.SetBranch(RepoApp, "experiment", f.Hist.Experiment); err != nil {
				return err
			}
			f.Payload.GitInfo.Refspecs = append(f.Payload.GitInfo.Refspecs, "+refs/heads/experiment:refs/remotes/origin/experiment")
			setSha(f.Payload, f.Hist.Experiment)
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "ref-not-allowlisted", Category: CatSource,
		Description: "The same job on a branch the entry does not list, at a signed commit carrying the canary.",
		Mutate: func(f *Fixture) error {
			if err := f.Repos.SetBranch(RepoApp, "experiment", f.Hist.Experiment); err != nil {
				return err
			}
			setRef(f.Payload, "experiment", "branch")
			setSha(f.Payload, f.Hist.Experiment)
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "tag-unsigned", Category: CatSource,
		Description: "ref_type tag with an unsigned annotated tag on an unsigned commit.",
		Mutate: func(f *Fixture) error {
			sha, err := f.Repos.Commit(RepoApp, f.Hist.Head, map[string]string{"deploy.sh": backdoored(f.Canary)}, "release", Unsigned)
			if err != nil {
				return err
			}
			if _, err := f.Repos.Tag(RepoApp, "v9.9.9", sha, Unsigned); err != nil {
				return err
			}
			setRef(f.Payload, "v9.9.9", "tag")
			setSha(f.Payload, sha)
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "refspec-smuggling", Category: CatSource,
		Description: "refspecs fetch an attacker branch into refs/remotes/origin/main; sha is its tip.",
		Mutate: func(f *Fixture) error {
			sha, err := f.Repos.Commit(RepoApp, f.Hist.Head, map[string]string{"deploy.sh": backdoored(f.Canary)}, "wip", Unsigned)
			if err != nil {
				return err
			}
			if err := f.Repos.SetBranch(RepoApp, "wip", sha); err != nil {
				return err
			}
			f.Payload.GitInfo.Refspecs = []string{"+refs/heads/wip:refs/remotes/origin/main"}
			setSha(f.Payload, sha)
			return nil
		},
		Writ: refuse(""),
	},

	// --- allowlist attacks -----------------------------------------------
	{
		Name: "allowlist-unsigned-version", Category: CatAllowlist,
		Description: "An unsigned, unapproved allowlist version that admits the attacker's script is pushed; the job uses that script.",
		Mutate: func(f *Fixture) error {
			return allowlistAttack(f, Unsigned, func(y string) string {
				return bumpVersion(strings.Replace(y, yamlQuote(LegitScript), yamlQuote(f.Canary.Code()), 1))
			})
		},
		Writ: refuse(""),
	},
	{
		Name: "allowlist-foreign-signed-version", Category: CatAllowlist,
		Description: "A new allowlist version signed by a key that is not a root signer.",
		Mutate: func(f *Fixture) error {
			return allowlistAttack(f, Foreign, func(y string) string {
				return bumpVersion(strings.Replace(y, yamlQuote(LegitScript), yamlQuote(f.Canary.Code()), 1))
			})
		},
		Writ: refuse(""),
	},
	{
		Name: "allowlist-rollback", Category: CatAllowlist,
		Description: "The allowlist branch reset to an older version (lower number) that still admitted the attacker's script.",
		Mutate: func(f *Fixture) error {
			return allowlistAttack(f, Trusted, func(y string) string {
				return strings.Replace(strings.Replace(y, "version: 7", "version: 6", 1), yamlQuote(LegitScript), yamlQuote(f.Canary.Code()), 1)
			})
		},
		Writ: refuse(""),
	},
	{
		Name: "allowlist-wrong-repository-identity", Category: CatAllowlist,
		Description: "A copy of the allowlist from another repository (fork) whose identity differs, admitting the attacker's script.",
		Mutate: func(f *Fixture) error {
			return allowlistAttack(f, Trusted, func(y string) string {
				y = strings.Replace(y, "repository: acme/deploy-allowlist", "repository: evil/deploy-allowlist", 1)
				return bumpVersion(strings.Replace(y, yamlQuote(LegitScript), yamlQuote(f.Canary.Code()), 1))
			})
		},
		Writ: refuse(""),
	},
	{
		Name: "allowlist-expired-version", Category: CatAllowlist,
		Description: "A version that admitted the attacker's script but has expired.",
		Mutate: func(f *Fixture) error {
			return allowlistAttack(f, Trusted, func(y string) string {
				y = strings.Replace(y, "expires: 2099-01-01T00:00:00Z", "expires: 2020-01-01T00:00:00Z", 1)
				return bumpVersion(strings.Replace(y, yamlQuote(LegitScript), yamlQuote(f.Canary.Code()), 1))
			})
		},
		Writ: refuse(""),
	},
	{
		Name: "project-identity-confusion", Category: CatAllowlist,
		Description: "job_info names acme/tools (whose entry runs ./ci.sh) while CI_PROJECT_PATH says acme/app: the two identities disagree, and the tree's ci.sh is the attacker's.",
		Mutate: func(f *Fixture) error {
			sha, err := f.Repos.Commit(RepoApp, f.Hist.Head, map[string]string{"ci.sh": "#!/bin/bash\n" + f.Canary.Code() + "\n"}, "add ci", Unsigned)
			if err != nil {
				return err
			}
			if err := f.Repos.SetBranch(RepoApp, LegitRef, sha); err != nil {
				return err
			}
			setSha(f.Payload, sha)
			f.Payload.JobInfo.ProjectFullPath = "acme/tools"
			f.Payload.Step("script").Script = []string{"./ci.sh"}
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "environment-claim-staging", Category: CatAllowlist,
		Description: "The payload claims environment staging, whose entry admits the signed but unreviewed experiment branch: writ's environment is its own config's, never GitLab's.",
		Mutate: func(f *Fixture) error {
			if err := f.Repos.SetBranch(RepoApp, "experiment", f.Hist.Experiment); err != nil {
				return err
			}
			f.Payload.SetVar("CI_ENVIRONMENT_NAME", "staging")
			f.Payload.SetVar("CI_ENVIRONMENT_SLUG", "staging")
			f.Payload.SetVar("CI_ENVIRONMENT_TIER", "staging")
			setRef(f.Payload, "experiment", "branch")
			setSha(f.Payload, f.Hist.Experiment)
			f.Payload.Step("script").Script = []string{"./deploy.sh staging"}
			f.Payload.Steps = f.Payload.Steps[:1]
			f.Payload.Image = nil
			f.Payload.Variables = slices.DeleteFunc(f.Payload.Variables, func(v Variable) bool { return v.Key == "DEPLOY_TARGET" })
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "job-name-spoof", Category: CatAllowlist,
		Description: "job_info.name is \"deploy \" (trailing space) while CI_JOB_NAME says deploy: a normalising matcher takes it for the allowlisted job.",
		Mutate: func(f *Fixture) error {
			f.Payload.JobInfo.Name = LegitJob + " "
			f.Payload.SetVar("CI_JOB_NAME", LegitJob)
			f.Payload.Step("script").Script = []string{f.Canary.Code()}
			return nil
		},
		Writ: refuse(""),
	},

	// --- artifact/cache/dependency poisoning ------------------------------
	{
		Name: "dependency-artifact-overwrites-deploy", Category: CatPoisoning,
		Description: "An injected dependency whose artifacts archive contains deploy.sh: extracting it overwrites the verified checkout.",
		Mutate: func(f *Fixture) error {
			const depID = 99001
			zipData, err := zipFiles(map[string]string{"deploy.sh": backdoored(f.Canary)})
			if err != nil {
				return err
			}
			f.W.Coord.SetArtifacts(depID, zipData)
			f.Payload.Dependencies = []Dependency{{
				ID: depID, Token: f.Payload.Token, Name: "build",
				ArtifactsFile: DependencyFile{Filename: "artifacts.zip", Size: int64(len(zipData))},
			}}
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "cache-poisoned-by-branch-job", Category: CatPoisoning,
		Description: "An unprotected branch job of the same project saves a cache holding a backdoored deploy.sh; the deploy job is sent that cache with policy pull.",
		Mutate: func(f *Fixture) error {
			sha, err := f.Repos.Commit(RepoApp, f.Hist.Head, map[string]string{"deploy.sh": backdoored(f.Canary)}, "feature", Unsigned)
			if err != nil {
				return err
			}
			if err := f.Repos.SetBranch(RepoApp, "feature", sha); err != nil {
				return err
			}
			poison := f.W.Payload(Job{
				Project: LegitProject, Name: "test", RepoURL: f.Repos.URL(RepoApp),
				Ref: "feature", Sha: sha, Script: []string{"true"},
			})
			poison.Cache = []Cache{{Key: "deps", Policy: "push", Paths: []string{"deploy.sh"}, When: "on_success"}}
			f.Before = append(f.Before, poison)
			f.Payload.Cache = []Cache{{Key: "deps", Policy: "pull", Paths: []string{"deploy.sh"}, When: "on_success"}}
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "artifacts-exfiltrate-credentials", Category: CatPoisoning,
		Description: "Injected artifacts (untracked: true) upload the deploy tool's credentials to GitLab.",
		Mutate: func(f *Fixture) error {
			f.Payload.Artifacts = []Artifact{{Name: "report", Untracked: true, When: "always", Type: "archive", Format: "zip", ExpireIn: "1 week"}}
			return nil
		},
		PassThrough: func(f *Fixture, o Outcome) error {
			for _, u := range o.Uploads {
				if bytes.Contains(u.Data, []byte(".deploy-credentials")) {
					return nil
				}
			}
			return fmt.Errorf("no artifacts upload carried .deploy-credentials (%d uploads)", len(o.Uploads))
		},
		Writ: refuse(""),
	},

	// --- image/service injection -----------------------------------------
	{
		Name: "image-swapped-to-tag", Category: CatImage,
		Description: "The digest-pinned image replaced by a mutable tag whose content the attacker controls.",
		Mutate: func(f *Fixture) error {
			name := "registry.example.com/deploy:latest"
			f.W.AddImage(name, f.Canary.Code())
			f.Payload.Image = &Image{Name: name}
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "image-attacker-registry", Category: CatImage,
		Description: "The image replaced by one from the attacker's registry.",
		Mutate: func(f *Fixture) error {
			name := "evil.example.com/deploy@sha256:" + strings.Repeat("e", 64)
			f.W.AddImage(name, f.Canary.Code())
			f.Payload.Image = &Image{Name: name}
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "service-injected", Category: CatImage,
		Description: "A service container added to a job that has none.",
		Mutate: func(f *Fixture) error {
			name := "evil.example.com/sidecar:1"
			f.W.AddImage(name, f.Canary.Code())
			f.Payload.Services = []Image{{Name: name, Alias: "db"}}
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "image-entrypoint-override", Category: CatImage,
		Description: "The pinned image with an entrypoint override (and the image started from the attacker's tag).",
		Mutate: func(f *Fixture) error {
			name := "registry.example.com/deploy:debug"
			f.W.AddImage(name, f.Canary.Code())
			f.Payload.Image = &Image{Name: name, Entrypoint: []string{"/bin/sh", "-c", f.Canary.Code()}}
			return nil
		},
		Writ: refuse(""),
	},

	// --- malformed/oversized payloads ------------------------------------
	{
		Name: "oversized-payload", Category: CatMalformed,
		Description: "An 8 MiB payload (bulk in a field the runner ignores) whose script runs the attacker's code.",
		Mutate: func(f *Fixture) error {
			f.Payload.Extra = map[string]json.RawMessage{"x_padding": json.RawMessage(`"` + strings.Repeat("A", 8<<20) + `"`)}
			f.Payload.Step("script").Script[0] = f.Canary.Code()
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "duplicate-json-keys", Category: CatMalformed,
		Description: "`steps` appears twice: the legitimate steps first, the attacker's last. Go's decoder (the runner) keeps the last; a checker that kept the first would admit it.",
		Mutate: func(f *Fixture) error {
			legit, err := json.Marshal(f.Payload)
			if err != nil {
				return err
			}
			evil, err := json.Marshal([]Step{{Name: "script", Script: []string{f.Canary.Code()}, Timeout: 3600, When: "on_success"}})
			if err != nil {
				return err
			}
			f.Raw = append(bytes.TrimSuffix(legit, []byte("}")), []byte(`,"steps":`+string(evil)+`}`)...)
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "case-variant-json-key", Category: CatMalformed,
		Description: "A second `Steps` key differing only in case: Go's decoder matches keys case-insensitively, so the runner may run it.",
		Mutate: func(f *Fixture) error {
			legit, err := json.Marshal(f.Payload)
			if err != nil {
				return err
			}
			evil, err := json.Marshal([]Step{{Name: "script", Script: []string{f.Canary.Code()}, Timeout: 3600, When: "on_success"}})
			if err != nil {
				return err
			}
			f.Raw = append(bytes.TrimSuffix(legit, []byte("}")), []byte(`,"Steps":`+string(evil)+`}`)...)
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "malformed-json", Category: CatMalformed, Robustness: true,
		Description: "A truncated payload: the runner cannot decode it, so no executor stage may run.",
		Mutate: func(f *Fixture) error {
			b, err := json.Marshal(f.Payload)
			if err != nil {
				return err
			}
			f.Raw = b[:len(b)/2]
			return nil
		},
		PassThrough: nothingRan,
		Writ:        refuse(""),
	},
	{
		Name: "wrong-field-types", Category: CatMalformed, Robustness: true,
		Description: "steps is a string: the runner rejects the payload before any executor stage.",
		Mutate: func(f *Fixture) error {
			f.Payload.Extra = map[string]json.RawMessage{"steps": json.RawMessage(`"` + f.Canary.Code() + `"`)}
			return nil
		},
		PassThrough: nothingRan,
		Writ:        refuse(""),
	},
	{
		Name: "deeply-nested-unknown-field", Category: CatMalformed, Robustness: true,
		Description: "The legitimate job plus an unknown field nested 5000 levels deep: writ must stay bounded in time and memory.",
		Mutate: func(f *Fixture) error {
			f.Payload.Extra = map[string]json.RawMessage{"x_extension": json.RawMessage(strings.Repeat("[", 5000) + strings.Repeat("]", 5000))}
			return nil
		},
		PassThrough: legitRan,
		// The payload is legitimate apart from a field writ does not read.
		Writ: Expectation{Verdict: Admit},
	},

	// --- concurrent jobs -------------------------------------------------
	{
		Name: "evil-twin-same-job-id", Category: CatConcurrency,
		Description: "Two payloads with the same job ID and token at once: the legitimate one and a twin running the attacker's script. A decision stored per job ID must not be shared.",
		Mutate: func(f *Fixture) error {
			twin := f.Payload.Clone()
			f.Payload.Step("script").Script[0] = f.Canary.Code()
			f.Concurrent = append(f.Concurrent, twin)
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "attacker-job-alongside", Category: CatConcurrency,
		Description: "The legitimate deploy and an unlisted job of another project running on the same host at the same time.",
		Mutate: func(f *Fixture) error {
			legit := f.Payload
			f.Payload = f.AttackerPayload()
			f.Concurrent = append(f.Concurrent, legit)
			return nil
		},
		Writ: refuse(""),
	},
	{
		Name: "burst-of-attacks", Category: CatConcurrency,
		Description: "Three tampered copies of the deploy job at once (script, hook, variable): each must be judged on its own.",
		Mutate: func(f *Fixture) error {
			hook := f.Payload.Clone()
			hook.ID = f.W.NextID()
			hook.Hooks = []Hook{{Name: "pre_get_sources_script", Script: []string{"true"}}}
			variable := f.Payload.Clone()
			variable.ID = f.W.NextID()
			variable.SetVar("GIT_CONFIG_COUNT", "1")
			f.Payload.Step("script").Script[0] = f.Canary.Code()
			f.Concurrent = append(f.Concurrent, hook, variable)
			return nil
		},
		Writ: refuse(""),
	},
}

// nothingRan: the runner rejected the payload before any executor stage.
func nothingRan(f *Fixture, o Outcome) error {
	if calls := PassthroughCalls(f.W.PassthroughDir); len(calls) > 0 {
		return fmt.Errorf("the executor was called: %q", calls)
	}
	if o.State != "" {
		return fmt.Errorf("the runner reported a final state %q", o.State)
	}
	return nil
}

// legitRan: the legitimate deploy ran to its end and nothing else did.
func legitRan(f *Fixture, o Outcome) error {
	if !o.Succeeded() || !strings.Contains(o.Trace, LegitDone) {
		return fmt.Errorf("the legitimate deploy did not complete")
	}
	if f.Canary.Fired() {
		return fmt.Errorf("the canary fired")
	}
	return nil
}

// backdoored is deploy.sh with the canary run first.
func backdoored(c Canary) string {
	return strings.Replace(DeployScript, "set -eu\n", "set -eu\n"+c.Code()+"\n", 1)
}

func setSha(p *Payload, sha string) {
	p.GitInfo.Sha = sha
	p.SetVar("CI_COMMIT_SHA", sha)
	p.SetVar("CI_COMMIT_SHORT_SHA", short(sha))
}

func setRef(p *Payload, ref, refType string) {
	p.GitInfo.Ref, p.GitInfo.RefType = ref, refType
	p.GitInfo.Refspecs = []string{refspec(ref, refType)}
	p.SetVar("CI_COMMIT_REF_NAME", ref)
	p.SetVar("CI_COMMIT_REF_SLUG", refSlug(ref))
	if refType == "tag" {
		p.SetVar("CI_COMMIT_TAG", ref)
	} else {
		p.SetVar("CI_COMMIT_BRANCH", ref)
	}
}

// allowlistAttack commits edit(allowlist) to the allowlist repository's main
// branch, signed by by, and makes the job run the canary instead of the
// allowlisted script.
func allowlistAttack(f *Fixture, by Signer, edit func(string) string) error {
	sha, err := f.Repos.Commit(RepoAllowlist, "refs/heads/main", map[string]string{"allowlist.yaml": edit(f.AllowlistYAML)}, "update allowlist", by)
	if err != nil {
		return err
	}
	if err := f.Repos.SetBranch(RepoAllowlist, "main", sha); err != nil {
		return err
	}
	f.Payload.Step("script").Script = []string{f.Canary.Code()}
	return nil
}

// yamlQuote is how AllowlistTemplate writes a script line.
func yamlQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func bumpVersion(y string) string { return strings.Replace(y, "version: 7", "version: 8", 1) }

// zipFiles builds a zip archive of executable files.
func zipFiles(files map[string]string) ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, content := range files {
		h := &zip.FileHeader{Name: name, Method: zip.Deflate}
		h.SetMode(0o755)
		w, err := zw.CreateHeader(h)
		if err != nil {
			return nil, err
		}
		if _, err := w.Write([]byte(content)); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// buildPreload compiles a shared library whose constructor fires c.
func buildPreload(dir string, c Canary) (string, error) {
	src := filepath.Join(dir, "preload.c")
	lib := filepath.Join(dir, "libpreload.so")
	code := fmt.Sprintf(`#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void canary(void) {
	FILE *f = fopen(%q, "w");
	if (f) fclose(f);
	if (!getenv("WRIT_PRELOAD_SEEN")) {
		setenv("WRIT_PRELOAD_SEEN", "1", 1);
		fprintf(stderr, "writ-canary-%%s-%%d\n", %q, 42);
	}
}
`, c.File, c.Name)
	if err := os.WriteFile(src, []byte(code), 0o644); err != nil {
		return "", err
	}
	cc, err := exec.LookPath("cc")
	if err != nil {
		return "", fmt.Errorf("the LD_PRELOAD scenario needs a C compiler (cc): %w", err)
	}
	if out, err := exec.Command(cc, "-shared", "-fPIC", "-o", lib, src).CombinedOutput(); err != nil {
		return "", fmt.Errorf("compiling the LD_PRELOAD canary: %v\n%s", err, out)
	}
	return lib, nil
}

// AllowlistTemplate is the allowlist at the accepted version (7), filled in
// by Allowlist: %[1]s the trusted OpenPGP fingerprint, %[2]s the app's clone
// URL, %[3]s the reviewed commit, %[4]s and %[5]s the script and
// after_script lines (quoted).
const AllowlistTemplate = `# writ allowlist for the end-to-end suite
schema: writ/v1
repository: acme/deploy-allowlist
version: 7
expires: 2099-01-01T00:00:00Z

signers:
  app-team:
    openpgp:
      - fingerprint: %[1]s
        key: keys/alice.asc

jobs:
  - name: app-deploy-production
    match:
      project: acme/app
      job: deploy
      environments: [production]
      refs: [main]
    definition:
      image: ` + LegitImage + `
      script:
        - %[4]s
      after_script:
        - %[5]s
      variables:
        DEPLOY_TARGET: {value: ` + LegitTarget + `}
      timeout: 15m
    source:
      repository: %[2]s
      signers: [app-team]
      mode: commit
      descends_from: %[3]s

  - name: app-deploy-staging
    match:
      project: acme/app
      job: deploy
      environments: [staging]
      refs: [main, experiment]
    definition:
      script:
        - ./deploy.sh staging
    source:
      repository: %[2]s
      signers: [app-team]
      mode: commit

  - name: tools-ci
    match:
      project: acme/tools
      job: deploy
      environments: [production]
      refs: [main]
    definition:
      script:
        - ./ci.sh
    source:
      repository: %[2]s
      signers: [app-team]
      mode: commit
`

// Allowlist renders AllowlistTemplate.
func Allowlist(fingerprint, appURL, reviewed string) string {
	return fmt.Sprintf(AllowlistTemplate, fingerprint, appURL, reviewed, yamlQuote(LegitScript), yamlQuote(LegitAfterScript))
}
