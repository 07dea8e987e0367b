package e2e

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
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

// Verdict is what writ must decide about a job.
type Verdict string

// Verdicts.
const (
	// Admit: the job runs as the allowlist entry says.
	Admit Verdict = "admit"
	// Refuse: writ refuses the job at prepare (a build failure); none of
	// its code runs.
	Refuse Verdict = "refuse"
	// Undecided: writ cannot decide (no valid accepted allowlist), so the
	// job ends as a system failure; none of its code runs.
	Undecided Verdict = "cannot decide"
	// RunnerRejects: the runner itself rejects the payload before any
	// executor stage; writ is never asked, and nothing runs.
	RunnerRejects Verdict = "runner rejects"
)

// Expectation is writ's required outcome for a scenario.
type Expectation struct {
	Verdict Verdict
	// Reason must appear in the job's trace: for a refusal, the first
	// failed check as writ prints it ("Failed check: script"); for
	// Undecided, writ's "cannot decide" line.
	Reason string
	// Detail must appear in the trace too: the specific difference writ
	// names (a variable, a step, the allowlist rule that rejected a head).
	Detail string
	// AllowlistReject, if set, is the acceptance rule ("signature",
	// "version", …) an allowlist-reject audit record must name: the scenario
	// pushed an allowlist head that writ must not accept.
	AllowlistReject string
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
	// URL is the repository's clone URL on the git server (plain http, as
	// GitLab's payloads name it).
	URL(repo string) string
	// SourceURL is the repository's https clone URL, as an allowlist entry
	// names it.
	SourceURL(repo string) string
	// Approve makes an approval of an allowlist version: the file's path in
	// the allowlist repository (approvals/v<version>/<label>.sshsig) and its
	// content, signing the statement for identity, version and the files
	// the version loads (content as allowlist.yaml, and the fixture's
	// keys/alice.asc) with by's SSH key (Trusted: the environments' root
	// approver; Foreign: the attacker's key).
	Approve(identity string, version int64, content, label string, by Signer) (path, data string, err error)
	// ApproveFiles is Approve for a version that loads files (path →
	// content, allowlist.yaml among them).
	ApproveFiles(identity string, version int64, files map[string]string, label string, by Signer) (path, data string, err error)
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
	LegitAfterScript = `echo "deploy of $CI_COMMIT_SHA finished"`
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
	// AllowlistYAML is the allowlist at the accepted version (7).
	AllowlistYAML string
	// AllowlistCommits are the allowlist repository's versions by number:
	// 6, an older version that still admitted the canary as a debug script,
	// and 7, the accepted one (main's head). Both are signed by the trusted
	// key and approved by the trusted approver.
	AllowlistCommits map[int64]string
	// AcceptAllowlist, set when writ is the executor, makes the environment
	// fetch and judge the allowlist head now, as its next job would. The
	// suite calls it before Mutate (the environment has accepted version 7)
	// unless the scenario is Fresh.
	AcceptAllowlist func() error
	// SetFloor, set when writ is the executor, writes allowlist.min_version
	// into the environment's configuration (a floor for first contact).
	SetFloor func(minVersion int64) error

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
	// WritConcurrent, for a scenario that sets Fixture.Concurrent, are the
	// outcomes writ must produce for those payloads, in order.
	WritConcurrent []Expectation
	// Fresh: the environment has never accepted an allowlist version when
	// the job arrives (a new runner host).
	Fresh bool
	// Robustness marks a scenario without injected code: the runner itself
	// rejects the payload, or nothing is injected. PassThrough then says
	// what must happen instead of a canary.
	Robustness bool
	// Shows says, for the summary, what PassThrough establishes.
	Shows string
	// PassThrough, if set, replaces the mutation check's default evidence
	// (the canary's file exists) for the run against the pass-through
	// executor: it returns an error when the run does not show what the
	// scenario expects.
	PassThrough func(f *Fixture, o Outcome) error
	// WritCheck, if set, is more evidence the run with writ must show
	// (what arrived at GitLab, for uploads); it returns an error if not.
	WritCheck func(f *Fixture, o Outcome) error
}

// refuse is a refusal whose first failed check is check, with detail in the trace.
func refuse(check, detail string) Expectation {
	return Expectation{Verdict: Refuse, Reason: "Failed check: " + check, Detail: detail}
}

// refuseKeeping is an allowlist attack: writ rejects the pushed head by rule,
// keeps the accepted version 7 in force (the job's trace notes the
// rejection) and refuses the job's script by it.
func refuseKeeping(rule string) Expectation {
	return Expectation{Verdict: Refuse, Reason: "Failed check: script", Detail: "rejected, " + rule + ":", AllowlistReject: rule}
}

// undecided is a job writ cannot judge: it fails as a system failure.
func undecided(detail, rule string) Expectation {
	return Expectation{Verdict: Undecided, Reason: "writ cannot decide whether to admit this job", Detail: detail, AllowlistReject: rule}
}

// admit is an admitted job.
var admit = Expectation{Verdict: Admit, Reason: "writ: admitted", Detail: LegitDone}

// lineDiffers is the detail of a script line that differs from the entry's.
func lineDiffers(what string, line int) string {
	return fmt.Sprintf("%s line %d differs from the allowlist entry", what, line)
}

// notAllowed is the detail of a variable the entry does not name.
func notAllowed(name string) string {
	return "variable " + name + " is not allowed by the allowlist entry"
}

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
		Writ: refuse("script", lineDiffers("script", 1)),
	},
	{
		Name: "script-line-appended", Category: CatScript,
		Description: "An extra line after the allowlisted script.",
		Mutate: func(f *Fixture) error {
			s := f.Payload.Step("script")
			s.Script = append(s.Script, f.Canary.Code())
			return nil
		},
		Writ: refuse("script", "script line 2 is not in the allowlist entry"),
	},
	{
		Name: "script-line-prepended", Category: CatScript,
		Description: "An extra line before the allowlisted script.",
		Mutate: func(f *Fixture) error {
			s := f.Payload.Step("script")
			s.Script = append([]string{f.Canary.Code()}, s.Script...)
			return nil
		},
		Writ: refuse("script", lineDiffers("script", 1)),
	},
	{
		Name: "script-line-suffixed", Category: CatScript,
		Description: "The allowlisted line with a command chained after it: a near-match.",
		Mutate: func(f *Fixture) error {
			f.Payload.Step("script").Script[0] = LegitScript + " && " + f.Canary.Code()
			return nil
		},
		Writ: refuse("script", "script line 1 differs from the allowlist entry (first difference at byte 29)"),
	},
	{
		Name: "script-embedded-newline", Category: CatScript,
		Description: "One script element holding the allowlisted line, a newline and a second command.",
		Mutate: func(f *Fixture) error {
			f.Payload.Step("script").Script[0] = LegitScript + "\n" + f.Canary.Code()
			return nil
		},
		Writ: refuse("script", "script line 1 differs from the allowlist entry (first difference at byte 29)"),
	},
	{
		Name: "script-trailing-whitespace-hides-command", Category: CatScript,
		Description: "The command is pushed off-screen by whitespace after the allowlisted text; exact comparison must catch it.",
		Mutate: func(f *Fixture) error {
			f.Payload.Step("script").Script[0] = LegitScript + strings.Repeat(" ", 300) + "; " + f.Canary.Code()
			return nil
		},
		Writ: refuse("script", "script line 1 differs from the allowlist entry (first difference at byte 29)"),
	},
	{
		Name: "script-invisible-bidi-characters", Category: CatScript,
		Description: "Trojan Source: invisible bidirectional isolates (U+2067 … U+2069) around an injected command, which bidi-aware viewers render as part of the quoted argument, so the line reads as the allowlisted one.",
		Mutate: func(f *Fixture) error {
			f.Payload.Step("script").Script[0] = InvisibleTamper(f.Canary)
			return nil
		},
		Writ: refuse("script", "$DEPLOY_TARGET<U+2067>\"; echo writ-canary-"),
	},
	{
		Name: "after-script-replaced", Category: CatScript,
		Description: "after_script, which runs even when the job fails or is cancelled, replaced.",
		Mutate: func(f *Fixture) error {
			f.Payload.Step("after_script").Script = []string{f.Canary.Code()}
			return nil
		},
		Writ: refuse("after_script", lineDiffers("after_script", 1)),
	},
	{
		Name: "after-script-line-appended", Category: CatScript,
		Description: "An extra after_script line, which would run even if the script failed.",
		Mutate: func(f *Fixture) error {
			a := f.Payload.Step("after_script")
			a.Script = append(a.Script, f.Canary.Code())
			return nil
		},
		Writ: refuse("after_script", "after_script line 2 is not in the allowlist entry"),
	},
	{
		Name: "after-script-on-failed-job", Category: CatScript,
		Description: "A script that fails at once, so only the injected after_script does anything.",
		Mutate: func(f *Fixture) error {
			f.Payload.Step("script").Script = []string{"exit 1"}
			f.Payload.Step("after_script").Script = []string{f.Canary.Code()}
			return nil
		},
		Writ: refuse("script", "- after_script: "+lineDiffers("after_script", 1)),
	},

	// --- step/hook/run injection -----------------------------------------
	{
		Name: "extra-step-release", Category: CatInjection,
		Description: "An extra `release` step, which the runner runs as stage step_release.",
		Mutate: func(f *Fixture) error {
			f.Payload.Steps = append(f.Payload.Steps, Step{Name: "release", Script: []string{f.Canary.Code()}, Timeout: 3600, When: "on_success"})
			return nil
		},
		Writ: refuse("steps", `the job has a step "release"`),
	},
	{
		Name: "extra-step-unknown-name", Category: CatInjection,
		Description: "An extra step with a name the allowlist has never seen (stage step_notify).",
		Mutate: func(f *Fixture) error {
			f.Payload.Steps = append(f.Payload.Steps, Step{Name: "notify", Script: []string{f.Canary.Code()}, Timeout: 3600, When: "always"})
			return nil
		},
		Writ: refuse("steps", `the job has a step "notify"`),
	},
	{
		Name: "hook-pre-get-sources", Category: CatInjection,
		Description: "hooks: pre_get_sources_script runs before the checkout, with the job's credentials.",
		Mutate: func(f *Fixture) error {
			f.Payload.Hooks = []Hook{{Name: "pre_get_sources_script", Script: []string{f.Canary.Code()}}}
			return nil
		},
		Writ: refuse("hooks", "the job has hooks"),
	},
	{
		Name: "hook-post-get-sources", Category: CatInjection,
		Description: "hooks: post_get_sources_script can rewrite the checked-out tree before the script runs.",
		Mutate: func(f *Fixture) error {
			f.Payload.Hooks = []Hook{{Name: "post_get_sources_script", Script: []string{f.Canary.Code()}}}
			return nil
		},
		Writ: refuse("hooks", "the job has hooks"),
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
		Writ: refuse("script", "- run: the job uses run: (GitLab steps), which writ never executes"),
	},
	{
		Name: "hook-and-script-both", Category: CatInjection,
		Description: "The legitimate script, untouched, plus a pre-checkout hook: nothing in the script differs.",
		Mutate: func(f *Fixture) error {
			f.Payload.Hooks = []Hook{{Name: "pre_get_sources_script", Script: []string{"true"}}, {Name: "post_get_sources_script", Script: []string{f.Canary.Code()}}}
			return nil
		},
		Writ: refuse("hooks", "the job has hooks"),
	},

	// --- variable injection ----------------------------------------------
	{
		Name: "var-bash-env", Category: CatVariables,
		Description: "BASH_ENV names a file variable holding code: every bash the job starts (deploy.sh) sources it.",
		Mutate: func(f *Fixture) error {
			f.Payload.Variables = append(f.Payload.Variables, Variable{Key: "BASH_ENV", Value: f.Canary.Code() + "\n", File: true})
			return nil
		},
		Writ: refuse("variables", notAllowed("BASH_ENV")),
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
		Writ: refuse("variables", notAllowed("LD_PRELOAD")),
	},
	{
		Name: "var-git-ssh-command", Category: CatVariables,
		Description: "GIT_SSH_COMMAND with the clone URL switched to ssh://: git runs the command during get_sources.",
		Mutate: func(f *Fixture) error {
			f.Payload.SetVar("GIT_SSH_COMMAND", "sh -c '"+f.Canary.Code()+"' --")
			f.Payload.GitInfo.RepoURL = "ssh://git@127.0.0.1:1/acme/app.git"
			return nil
		},
		Writ: refuse("variables", notAllowed("GIT_SSH_COMMAND")),
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
		Writ: refuse("variables", notAllowed("GIT_CONFIG_COUNT")),
	},
	{
		Name: "var-kubeconfig", Category: CatVariables,
		Description: "KUBECONFIG names a file variable whose user exec plugin is attacker code; the deploy tool runs it.",
		Mutate: func(f *Fixture) error {
			kubeconfig := "apiVersion: v1\nkind: Config\nusers:\n- name: prod\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: " + f.Canary.Code() + "\n"
			f.Payload.Variables = append(f.Payload.Variables, Variable{Key: "KUBECONFIG", Value: kubeconfig, File: true})
			return nil
		},
		Writ: refuse("variables", notAllowed("KUBECONFIG")),
	},
	{
		Name: "var-pinned-value-changed", Category: CatVariables,
		Description: "The pinned DEPLOY_TARGET changed, plus a BASH_ENV: a value change must not pass on its own either.",
		Mutate: func(f *Fixture) error {
			f.Payload.SetVar("DEPLOY_TARGET", "attacker-cluster")
			f.Payload.Variables = append(f.Payload.Variables, Variable{Key: "BASH_ENV", Value: f.Canary.Code() + "\n", File: true})
			return nil
		},
		Writ: refuse("variables", "variable DEPLOY_TARGET differs from the value pinned by the allowlist entry"),
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
		Writ: refuse("variables", "variable BASH_ENV is defined twice in the payload"),
	},

	// --- source substitution ---------------------------------------------
	{
		Name: "repo-url-attacker-fork", Category: CatSource,
		Description: "repo_url points at the attacker's fork; sha is its unsigned commit with a modified deploy.sh.",
		Mutate: func(f *Fixture) error {
			if err := pushBackdoor(f, RepoAttacker, "perf tweaks", Unsigned); err != nil {
				return err
			}
			f.Payload.GitInfo.RepoURL = withJobToken(f.Repos.URL(RepoAttacker), f.Payload.Token)
			return nil
		},
		Writ: refuse("source", `is not on branch "main" of the entry's repository`),
	},
	{
		Name: "repo-url-fork-foreign-signed", Category: CatSource,
		Description: "The attacker's fork with a commit validly signed by the attacker's own key.",
		Mutate: func(f *Fixture) error {
			if err := pushBackdoor(f, RepoAttacker, "signed tweak", Foreign); err != nil {
				return err
			}
			f.Payload.GitInfo.RepoURL = withJobToken(f.Repos.URL(RepoAttacker), f.Payload.Token)
			return nil
		},
		Writ: refuse("source", `is not on branch "main" of the entry's repository`),
	},
	{
		Name: "unsigned-commit-on-main", Category: CatSource,
		Description: "An unsigned commit pushed to main of the real repository (e.g. by a stolen token).",
		Mutate:      func(f *Fixture) error { return pushBackdoor(f, RepoApp, "hotfix", Unsigned) },
		Writ:        refuse("signature", "is not signed by the entry's signers (app-team)"),
	},
	{
		Name: "foreign-signed-commit-on-main", Category: CatSource,
		Description: "A commit on main signed by a key the allowlist does not name.",
		Mutate:      func(f *Fixture) error { return pushBackdoor(f, RepoApp, "hotfix", Foreign) },
		Writ:        refuse("signature", "is not signed by the entry's signers (app-team)"),
	},
	{
		Name: "older-backdoored-commit", Category: CatSource,
		Description: "sha is an old, validly signed commit from before the security review (a rollback to a known-bad version).",
		Mutate: func(f *Fixture) error {
			setSha(f.Payload, f.Hist.Backdoored)
			return nil
		},
		Writ: refuse("descends_from", "does not descend from"),
	},
	{
		Name: "rewritten-history", Category: CatSource,
		Description: "main force-pushed to a signed but never-reviewed branch that does not descend from the reviewed commit.",
		Mutate: func(f *Fixture) error {
			setSha(f.Payload, f.Hist.Experiment)
			return f.Repos.SetBranch(RepoApp, LegitRef, f.Hist.Experiment)
		},
		Writ: refuse("descends_from", "does not descend from"),
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
		Writ: refuse("source", `is not on branch "main" of the entry's repository`),
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
		Writ: refuse("entry", `ref "refs/heads/experiment"`),
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
		Writ: refuse("entry", `ref "refs/tags/v9.9.9"`),
	},
	{
		Name: "tag-named-like-the-branch", Category: CatSource,
		Description: "ref_type tag with ref \"main\": a tag named main on the signed but unreviewed experiment commit. The ref name matches the entry; the ref type is GitLab's word.",
		Mutate: func(f *Fixture) error {
			if _, err := f.Repos.Tag(RepoApp, LegitRef, f.Hist.Experiment, Trusted); err != nil {
				return err
			}
			setRef(f.Payload, LegitRef, "tag")
			setSha(f.Payload, f.Hist.Experiment)
			return nil
		},
		Writ: refuse("ref", `the job runs for tag "main" (refs/tags/main), but entry app-deploy-production admits the branch refs/heads/main`),
	},
	{
		Name: "source-rollback-after-fix", Category: CatSource,
		Description: "A signed commit on main re-added the debug hook and a later one removed it; after the fix was deployed, GitLab sends a job for the older commit, which is still signed, on main and after the review.",
		Mutate: func(f *Fixture) error {
			vulnerable, err := f.Repos.Commit(RepoApp, f.Hist.Head, map[string]string{"deploy.sh": backdoored(f.Canary)}, "debug: more logging", Trusted)
			if err != nil {
				return err
			}
			fixed, err := f.Repos.Commit(RepoApp, vulnerable, map[string]string{"deploy.sh": DeployScript}, "remove the debug hook again", Trusted)
			if err != nil {
				return err
			}
			if err := f.Repos.SetBranch(RepoApp, LegitRef, fixed); err != nil {
				return err
			}
			deployFix := f.LegitPayload()
			setSha(deployFix, fixed)
			f.Before = append(f.Before, deployFix)
			setSha(f.Payload, vulnerable)
			return nil
		},
		Writ: refuse("rollback", "this looks like a rollback"),
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
		Writ: refuse("source", `is not on branch "main" of the entry's repository`),
	},

	// --- allowlist attacks -----------------------------------------------
	// The environment has accepted version 7 (signed by the trusted key,
	// approved by the trusted approver: threshold 2) before each of these,
	// unless the scenario is Fresh. The job runs the canary, which only the
	// attacker's version would admit.
	{
		Name: "allowlist-unsigned-version", Category: CatAllowlist,
		Description: "An unsigned allowlist version 8 that admits the attacker's script is pushed onto main; the job uses that script.",
		Mutate: func(f *Fixture) error {
			return allowlistAttack(f, allowlistVersion{SignedBy: Unsigned, Edit: admitCanary(f, 8)})
		},
		Writ: refuseKeeping("signature"),
	},
	{
		Name: "allowlist-foreign-signed-version", Category: CatAllowlist,
		Description: "A new allowlist version signed by a valid key that is not a root signer, with an approval by another foreign key.",
		Mutate: func(f *Fixture) error {
			return allowlistAttack(f, allowlistVersion{SignedBy: Foreign, ApprovedBy: []Signer{Foreign}, Edit: admitCanary(f, 8)})
		},
		Writ: refuseKeeping("signature"),
	},
	{
		Name: "allowlist-rollback", Category: CatAllowlist,
		Description: "The allowlist branch reset to version 6, a genuinely signed and approved older version that still admitted the canary as a debug script.",
		Mutate: func(f *Fixture) error {
			if err := f.Repos.SetBranch(RepoAllowlist, "main", f.AllowlistCommits[6]); err != nil {
				return err
			}
			f.Payload.Step("script").Script = []string{f.Canary.Code()}
			return nil
		},
		Writ: refuseKeeping("version"),
	},
	{
		Name: "allowlist-rewritten-history", Category: CatAllowlist,
		Description: "main force-pushed to a signed and approved version 8 from an abandoned branch forked off version 6: it does not descend from the accepted version 7.",
		Mutate: func(f *Fixture) error {
			return allowlistAttack(f, allowlistVersion{Parent: f.AllowlistCommits[6], SignedBy: Trusted, ApprovedBy: []Signer{Trusted}, Edit: admitCanary(f, 8)})
		},
		Writ: refuseKeeping("ancestry"),
	},
	{
		Name: "allowlist-forged-approvals", Category: CatAllowlist,
		Description: "Version 8 signed by a root key but not approved: the trusted approver's version-7 approval replayed under v8, plus an approval by the attacker's key named after the approver (threshold 2).",
		Mutate: func(f *Fixture) error {
			return allowlistAttack(f, allowlistVersion{SignedBy: Trusted, Edit: admitCanary(f, 8), Files: func(content string) (map[string]string, error) {
				_, replayed, err := f.Repos.Approve(AllowlistIdentity, 7, f.AllowlistYAML, "carol", Trusted)
				if err != nil {
					return nil, err
				}
				_, forged, err := f.Repos.Approve(AllowlistIdentity, 8, content, "dave", Foreign)
				if err != nil {
					return nil, err
				}
				return map[string]string{"approvals/v8/carol.sshsig": replayed, "approvals/v8/dave.sshsig": forged}, nil
			}})
		},
		Writ: refuseKeeping("approvals"),
	},
	{
		Name: "allowlist-wrong-repository-identity", Category: CatAllowlist,
		Description: "The content of another allowlist repository (evil/deploy-allowlist, signed and approved there by the same people) served as this one.",
		Mutate: func(f *Fixture) error {
			return allowlistAttack(f, allowlistVersion{SignedBy: Trusted, ApprovedBy: []Signer{Trusted}, Edit: func(y string) string {
				return strings.Replace(admitCanary(f, 8)(y), "repository: "+AllowlistIdentity, "repository: evil/deploy-allowlist", 1)
			}})
		},
		Writ: refuseKeeping("identity"),
	},
	{
		Name: "allowlist-expired-version", Category: CatAllowlist,
		Description: "A signed and approved version 8 that admitted the attacker's script but has expired.",
		Mutate: func(f *Fixture) error {
			return allowlistAttack(f, allowlistVersion{SignedBy: Trusted, ApprovedBy: []Signer{Trusted}, Edit: func(y string) string {
				return withExpiry(admitCanary(f, 8)(y), time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))
			}})
		},
		Writ: refuseKeeping("expiry"),
	},
	{
		Name: "allowlist-frozen-past-expiry", Category: CatAllowlist,
		Description: "GitLab freezes the allowlist at version 8, which admitted the canary as a debug script, hiding the version that removed it; once version 8 expires, nothing may run.",
		Mutate: func(f *Fixture) error {
			expires := time.Now().UTC().Truncate(time.Second).Add(8 * time.Second)
			err := allowlistAttack(f, allowlistVersion{SignedBy: Trusted, ApprovedBy: []Signer{Trusted}, Edit: func(y string) string {
				return withExpiry(admitCanary(f, 8)(y), expires)
			}})
			if err != nil || f.AcceptAllowlist == nil {
				return err
			}
			// The environment accepts version 8 while it is valid…
			if err := f.AcceptAllowlist(); err != nil {
				return err
			}
			// …and GitLab never shows it a newer one.
			time.Sleep(time.Until(expires) + time.Second)
			return nil
		},
		Writ: undecided("the accepted version 8 expired at", "expiry"),
	},
	{
		Name: "allowlist-first-contact-forged", Category: CatAllowlist, Fresh: true,
		Description: "A new runner host's first allowlist fetch gets a version signed by the attacker's key: with no version ever accepted, nothing may run.",
		Mutate: func(f *Fixture) error {
			return allowlistAttack(f, allowlistVersion{SignedBy: Foreign, ApprovedBy: []Signer{Foreign}, Edit: admitCanary(f, 8)})
		},
		Writ: undecided("this environment has never accepted a version", "signature"),
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
		Writ: refuse("entry", "the payload names two different projects"),
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
		Writ: refuse("entry", `environment "production", ref "refs/heads/experiment"`),
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
		Writ: refuse("entry", `job "deploy<SP>"`),
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
		Writ: refuse("dependencies", "the job has 1 dependencies item(s); the entry allows none"),
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
		Writ: refuse("cache", "the job has 1 cache item(s); the entry allows none"),
	},
	{
		Name: "artifacts-exfiltrate-credentials", Category: CatPoisoning,
		Description: "Injected artifacts (untracked: true) upload the deploy tool's credentials to GitLab.",
		Mutate: func(f *Fixture) error {
			f.Payload.Artifacts = []Artifact{{Name: "report", Untracked: true, When: "always", Type: "archive", Format: "zip", ExpireIn: "1 week"}}
			return nil
		},
		Shows: "the deploy tool's credentials uploaded as an artifact",
		PassThrough: func(f *Fixture, o Outcome) error {
			for _, u := range o.Uploads {
				if bytes.Contains(u.Data, []byte(".deploy-credentials")) {
					return nil
				}
			}
			return fmt.Errorf("no artifacts upload carried .deploy-credentials (%d uploads)", len(o.Uploads))
		},
		Writ: refuse("artifacts", "the job has 1 artifacts item(s); the entry allows none"),
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
		Writ: refuse("image", "registry.example.com/deploy:latest"),
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
		Writ: refuse("image", "evil.example.com/deploy@sha256:"),
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
		Writ: refuse("services", "the job has 1 service(s), the entry allows 0"),
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
		Writ: refuse("image", "image sets entrypoint"),
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
		Writ: refuse("script", lineDiffers("script", 1)),
	},
	{
		Name: "oversized-script", Category: CatMalformed,
		Description: "The canary, then a 5 MiB comment in the script: unlike the padding above, the runner keeps it, so the payload writ reads is larger than its bound (job.max_payload_bytes, 4 MiB).",
		Mutate: func(f *Fixture) error {
			f.Payload.Step("script").Script = []string{f.Canary.Code(), "# " + strings.Repeat("A", 5<<20)}
			return nil
		},
		Writ: refuse("payload", "the job payload is larger than 4194304 bytes (job.max_payload_bytes)"),
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
		Writ: refuse("script", lineDiffers("script", 1)),
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
		Writ: refuse("script", lineDiffers("script", 1)),
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
		Shows:       "runner rejected the payload; no executor stage ran",
		Writ:        Expectation{Verdict: RunnerRejects},
	},
	{
		Name: "wrong-field-types", Category: CatMalformed, Robustness: true,
		Description: "steps is a string: the runner rejects the payload before any executor stage.",
		Mutate: func(f *Fixture) error {
			f.Payload.Extra = map[string]json.RawMessage{"steps": json.RawMessage(`"` + f.Canary.Code() + `"`)}
			return nil
		},
		PassThrough: nothingRan,
		Shows:       "runner rejected the payload; no executor stage ran",
		Writ:        Expectation{Verdict: RunnerRejects},
	},
	{
		Name: "deeply-nested-unknown-field", Category: CatMalformed, Robustness: true,
		Description: "The legitimate job plus an unknown field nested 5000 levels deep: writ must stay bounded in time and memory.",
		Mutate: func(f *Fixture) error {
			f.Payload.Extra = map[string]json.RawMessage{"x_extension": json.RawMessage(strings.Repeat("[", 5000) + strings.Repeat("]", 5000))}
			return nil
		},
		PassThrough: legitRan,
		Shows:       "the legitimate deploy ran",
		// The payload is legitimate apart from a field the runner drops
		// (writ sees the runner's re-encoding of the job).
		Writ: admit,
	},

	// --- concurrent jobs -------------------------------------------------
	{
		Name: "evil-twin-same-job-id", Category: CatConcurrency,
		Description: "Two payloads with the same job ID and token at once: the legitimate one and a twin running the attacker's script. A decision stored per job ID must not be shared; the twin that arrives while the ID is held is refused as a duplicate.",
		Mutate: func(f *Fixture) error {
			twin := f.Payload.Clone()
			f.Payload.Step("script").Script[0] = f.Canary.Code()
			f.Concurrent = append(f.Concurrent, twin)
			return nil
		},
		Writ:           refuse("script", lineDiffers("script", 1)),
		WritConcurrent: []Expectation{admit},
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
		Writ:           refuse("entry", `project "evil/app"`),
		WritConcurrent: []Expectation{admit},
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
		Writ:           refuse("script", lineDiffers("script", 1)),
		WritConcurrent: []Expectation{refuse("hooks", "the job has hooks"), refuse("variables", notAllowed("GIT_CONFIG_COUNT"))},
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

// InvisibleTamper is the allowlisted script line with c's code hidden
// between invisible bidirectional isolates: bash runs it after deploy.sh,
// and the trailing comment swallows the closing isolate and quote.
func InvisibleTamper(c Canary) string {
	return `./deploy.sh "$DEPLOY_TARGET` + "\u2067" + `"; ` + c.Code() + ` #` + "\u2069" + `"`
}

// backdoored is deploy.sh with the canary run first.
func backdoored(c Canary) string {
	return strings.Replace(DeployScript, "set -eu\n", "set -eu\n"+c.Code()+"\n", 1)
}

// pushBackdoor commits the backdoored deploy.sh on top of the legitimate
// head of repo, signed by signer, moves the job's branch there and points the
// job at that commit.
func pushBackdoor(f *Fixture, repo string, msg string, signer Signer) error {
	sha, err := f.Repos.Commit(repo, f.Hist.Head, map[string]string{"deploy.sh": backdoored(f.Canary)}, msg, signer)
	if err != nil {
		return err
	}
	if err := f.Repos.SetBranch(repo, LegitRef, sha); err != nil {
		return err
	}
	setSha(f.Payload, sha)
	return nil
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

// allowlistVersion is an allowlist version an attack publishes.
type allowlistVersion struct {
	// Parent is the commit it is made on; "" is main's head.
	Parent string
	// Edit turns the accepted allowlist.yaml into this version's.
	Edit func(string) string
	// SignedBy signs the commit.
	SignedBy Signer
	// ApprovedBy each approve the new content (under the identity and
	// version it names), as approvals/v<version>/approver-<n>.sshsig.
	ApprovedBy []Signer
	// Files, if set, adds files given the new content (forged approvals).
	Files func(content string) (map[string]string, error)
}

// allowlistAttack publishes v on the allowlist repository's main branch
// and makes the job run the canary instead of the allowlisted script.
func allowlistAttack(f *Fixture, v allowlistVersion) error {
	content := v.Edit(f.AllowlistYAML)
	files := map[string]string{"allowlist.yaml": content}
	identity, version := allowlistHeader(content)
	for i, by := range v.ApprovedBy {
		path, data, err := f.Repos.Approve(identity, version, content, fmt.Sprintf("approver-%d", i+1), by)
		if err != nil {
			return err
		}
		files[path] = data
	}
	if v.Files != nil {
		extra, err := v.Files(content)
		if err != nil {
			return err
		}
		maps.Copy(files, extra)
	}
	parent := v.Parent
	if parent == "" {
		parent = "refs/heads/main"
	}
	sha, err := f.Repos.Commit(RepoAllowlist, parent, files, fmt.Sprintf("allowlist version %d", version), v.SignedBy)
	if err != nil {
		return err
	}
	if err := f.Repos.SetBranch(RepoAllowlist, "main", sha); err != nil {
		return err
	}
	f.Payload.Step("script").Script = []string{f.Canary.Code()}
	return nil
}

var (
	versionLine    = regexp.MustCompile(`(?m)^version: ([0-9]+)$`)
	repositoryLine = regexp.MustCompile(`(?m)^repository: (\S+)$`)
	expiresLine    = regexp.MustCompile(`(?m)^expires: \S+$`)
)

// allowlistHeader returns the repository identity and version an
// allowlist.yaml names.
func allowlistHeader(y string) (string, int64) {
	var version int64
	if m := versionLine.FindStringSubmatch(y); m != nil {
		version, _ = strconv.ParseInt(m[1], 10, 64)
	}
	identity := ""
	if m := repositoryLine.FindStringSubmatch(y); m != nil {
		identity = m[1]
	}
	return identity, version
}

// admitCanary returns an edit that makes the allowlist version n and lets
// the production deploy entry run the canary as its script.
func admitCanary(f *Fixture, n int64) func(string) string {
	return func(y string) string {
		y = versionLine.ReplaceAllString(y, fmt.Sprintf("version: %d", n))
		return strings.Replace(y, "        - "+yamlQuote(LegitScript)+"\n", "        - "+yamlQuote(f.Canary.Code())+"\n", 1)
	}
}

// withExpiry sets the allowlist's expires.
func withExpiry(y string, t time.Time) string {
	return expiresLine.ReplaceAllString(y, "expires: "+t.UTC().Format(time.RFC3339))
}

// yamlQuote writes s as a YAML double-quoted scalar (JSON's string syntax
// is a subset of it).
func yamlQuote(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}

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

// AllowlistIdentity is the allowlist repository's identity: its
// allowlist.yaml's repository and the environments' allowlist.identity.
const AllowlistIdentity = "acme/deploy-allowlist"

// Jobs of the allowlist's extra production entries, for writ's own
// end-to-end tests (the catalog uses LegitJob).
const (
	// SmokeJob prints, fails with exit code SmokeExitCode (its script says
	// exit 7), and its after_script runs.
	SmokeJob      = "smoke"
	SmokeExitCode = 7
	// LongJob starts a background sleep, writes its pid to the file the
	// allowlist names, then prints "tick" until it is cancelled.
	LongJob = "long-task"
	// TreeJob prints the SHA-256 and mode of every file of its checkout.
	TreeJob = "tree"
	// NotifyJob runs its notify branch only when NOTIFY is not empty; the
	// entry pins NOTIFY to "", so the branch never runs under the signed
	// definition (see NotifyScript).
	NotifyJob = "notify"
)

// NotifyScript is NotifyJob's script: notify is the branch the signed
// NOTIFY: {value: ""} must keep from running (the catalog makes it the
// scenario's canary).
func NotifyScript(notify string) string {
	return `if [ -n "$NOTIFY" ]; then ` + notify + `; fi`
}

// AllowlistParams fill in AllowlistTemplate.
type AllowlistParams struct {
	// Fingerprint is the app-team's (trusted) OpenPGP fingerprint.
	Fingerprint string
	// SourceURL is the application's https URL, the entries' source.
	SourceURL string
	// Reviewed is the commit the production deploy must descend from.
	Reviewed string
	// Version and Expires (default 7 and 2099-01-01).
	Version int64
	Expires time.Time
	// Script is the production deploy's script (default LegitScript).
	Script []string
	// Notify is NotifyJob's notify branch (default "echo notified").
	Notify string
}

// SleeperScript is LongJob's first line: it starts a background sleep and
// prints the job's uid, which no process may have once the job is
// cancelled (the job runs in writ's sandbox and cannot write the host).
const SleeperScript = `sleep 300 & echo "sleeper-pid=$! uid=$(id -u)"`

// AllowlistTemplate is the allowlist, with {{…}} placeholders Allowlist
// fills in.
const AllowlistTemplate = `# writ allowlist for the end-to-end suite
schema: writ/v2
repository: ` + AllowlistIdentity + `
version: {{version}}
expires: {{expires}}

signers:
  app-team:
    openpgp:
      - fingerprint: {{fingerprint}}
        key: keys/alice.asc

jobs:
  - name: app-deploy-production
    match:
      project: acme/app
      job: deploy
      environments: [production]
      refs: [refs/heads/main]
    definition:
      image: ` + LegitImage + `
      script:
{{script}}
      after_script:
        - {{after_script}}
      variables:
        DEPLOY_TARGET: {value: ` + LegitTarget + `}
      timeout: 15m
    source:
      repository: {{source}}
      signers: [app-team]
      mode: commit
      descends_from: {{reviewed}}

  - name: app-deploy-staging
    match:
      project: acme/app
      job: deploy
      environments: [staging]
      refs: [refs/heads/main, refs/heads/experiment]
    definition:
      script:
        - ./deploy.sh staging
    source:
      repository: {{source}}
      signers: [app-team]
      mode: commit

  - name: tools-ci
    match:
      project: acme/tools
      job: deploy
      environments: [production]
      refs: [refs/heads/main]
    definition:
      script:
        - ./ci.sh
    source:
      repository: {{source}}
      signers: [app-team]
      mode: commit

  - name: app-smoke-production
    match:
      project: acme/app
      job: ` + SmokeJob + `
      environments: [production]
      refs: [refs/heads/main]
    definition:
      script:
        - echo before-failure
        - exit 7
        - echo never-printed
      after_script:
        - echo after-script-still-runs
    source:
      repository: {{source}}
      signers: [app-team]
      mode: commit

  - name: app-long-task-production
    match:
      project: acme/app
      job: ` + LongJob + `
      environments: [production]
      refs: [refs/heads/main]
    definition:
      script:
        - {{sleeper}}
        - echo sleeper-started
        - "while :; do echo tick; sleep 0.3; done"
        - echo must-not-finish
      timeout: 2m
    source:
      repository: {{source}}
      signers: [app-team]
      mode: commit

  - name: app-tree-production
    match:
      project: acme/app
      job: ` + TreeJob + `
      environments: [production]
      refs: [refs/heads/main]
    definition:
      script:
        - {{tree}}
    source:
      repository: {{source}}
      signers: [app-team]
      mode: commit

  - name: app-notify-production
    match:
      project: acme/app
      job: ` + NotifyJob + `
      environments: [production]
      refs: [refs/heads/main]
    definition:
      script:
        - {{notify}}
      variables:
        NOTIFY: {value: ""}
    source:
      repository: {{source}}
      signers: [app-team]
      mode: commit
`

// TreeScript is TreeJob's script: "tree-file <mode> <sha256> <path>" per file.
const TreeScript = `find . -type f -printf '%P\n' | LC_ALL=C sort | while read -r f; do echo "tree-file $(stat -c %a "$f") $(sha256sum < "$f" | cut -c1-64) $f"; done`

// Allowlist renders AllowlistTemplate.
func Allowlist(p AllowlistParams) string {
	if p.Version == 0 {
		p.Version = 7
	}
	if p.Expires.IsZero() {
		p.Expires = time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if p.Script == nil {
		p.Script = []string{LegitScript}
	}
	if p.Notify == "" {
		p.Notify = "echo notified"
	}
	var script strings.Builder
	for i, l := range p.Script {
		if i > 0 {
			script.WriteString("\n")
		}
		script.WriteString("        - " + yamlQuote(l))
	}
	return strings.NewReplacer(
		"{{version}}", strconv.FormatInt(p.Version, 10),
		"{{expires}}", p.Expires.UTC().Format(time.RFC3339),
		"{{fingerprint}}", p.Fingerprint,
		"{{script}}", script.String(),
		"{{after_script}}", yamlQuote(LegitAfterScript),
		"{{source}}", p.SourceURL,
		"{{reviewed}}", p.Reviewed,
		"{{sleeper}}", yamlQuote(SleeperScript),
		"{{tree}}", yamlQuote(TreeScript),
		"{{notify}}", yamlQuote(NotifyScript(p.Notify)),
	).Replace(AllowlistTemplate)
}
