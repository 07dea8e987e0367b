package main

// Companion commands: thin wiring of internal/companion. Suggested by the
// companion engineer; drop in as cmd/writ/companion.go.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/companion"
	"gitlab.com/writ-ci/writ/internal/config"
)

// gitlabFlags are shared by propose, review --mr and reconcile. The token
// is never a flag value: it comes from a file or the environment.
type gitlabFlags struct {
	GitlabURL string `help:"GitLab API URL, e.g. https://gitlab.example.com/api/v4 (default $WRIT_GITLAB_URL, then $CI_API_V4_URL)."`
	TokenFile string `help:"File holding the GitLab token (default $WRIT_GITLAB_TOKEN, then $GITLAB_TOKEN)." type:"path"`
	TokenEnv  string `help:"Environment variable holding the GitLab token, e.g. WRIT_READ_TOKEN (default $WRIT_GITLAB_TOKEN, then $GITLAB_TOKEN)."`
	Retries   int    `help:"Retries of one request after 429/5xx (0: default 3; -1: none)." default:"0"`
}

func (f gitlabFlags) conn() (companion.Connection, error) {
	u, err := companion.ResolveURL(f.GitlabURL, nil)
	if err != nil {
		return companion.Connection{}, err
	}
	var tok companion.Token
	switch {
	case f.TokenEnv != "" && f.TokenFile != "":
		return companion.Connection{}, errors.New("use either --token-file or --token-env")
	case f.TokenEnv != "":
		tok, err = companion.LoadTokenEnv(f.TokenEnv, nil)
	default:
		tok, err = companion.LoadToken(f.TokenFile, nil)
	}
	if err != nil {
		return companion.Connection{}, err
	}
	return companion.Connection{URL: u, Token: tok, Retries: f.Retries}, nil
}

type proposeCmd struct {
	gitlabFlags
	outputFlags
	Project          string `required:"" help:"Application project (path or ID)."`
	Ref              string `required:"" help:"Branch or tag the deploy jobs run for: refs/heads/NAME or refs/tags/NAME (a short name is a branch)."`
	ContentRef       string `help:"Commit, branch or tag to read the CI configuration from (default --ref)."`
	Environment      string `required:"" help:"writ environment name."`
	RunnerTags       string `help:"Comma-separated tags of the environment's runners (default: the environment name)."`
	AllowlistProject string `required:"" help:"The allowlist repository's GitLab project."`
	AllowlistBranch  string `help:"Branch environments follow (default: the project's default branch)."`
	Signers          string `help:"Comma-separated signer sets for new entries."`
	Mode             string `help:"Source mode for new entries: commit, tag or strict (default commit)."`
	SourceRepository string `help:"URL writ fetches the application from (default: the project's http_url_to_repo)."`
	DryRun           bool   `help:"Show the change; write nothing."`
	Check            bool   `help:"Like --dry-run; exit 3 when the allowlist does not admit the jobs yet."`
	StaticLint       bool   `help:"With --check or --dry-run: read the jobs with CI lint's static check (Reporter and read_api suffice; rules are not evaluated) instead of simulating a pipeline for --ref (Developer and push or merge rights on --ref)."`
}

func (c *proposeCmd) Run(ctx context.Context, g *globals) error {
	if err := companion.CheckProposeRef(c.DryRun || c.Check, os.Getenv); err != nil {
		return err
	}
	conn, err := c.conn()
	if err != nil {
		return fail(outcomeConfig, err)
	}
	res, err := companion.Propose(ctx, companion.ProposeOptions{
		Conn: conn, Project: c.Project, Ref: c.Ref, ContentRef: c.ContentRef, Environment: c.Environment,
		RunnerTags: companion.SplitList(c.RunnerTags), AllowlistProject: c.AllowlistProject, AllowlistBranch: c.AllowlistBranch,
		Signers: companion.SplitList(c.Signers), Mode: allowlist.SourceMode(c.Mode), SourceRepository: c.SourceRepository,
		DryRun: c.DryRun || c.Check, StaticLint: c.StaticLint,
	})
	if err != nil {
		return err
	}
	o := outcomeOK
	if c.Check && res.Status == companion.StatusWouldChange {
		o = outcomeChange
	}
	if !c.jsonOutput() {
		res.WriteText(g.stdout)
	}
	return g.report(c, o, nil, newProposeReport(res))
}

func (*proposeCmd) schema() string { return "writ/propose/v1" }

// proposeReport is the JSON body of writ propose.
type proposeReport struct {
	Status          string   `json:"status"`
	BaseVersion     int64    `json:"base_version"`
	Version         int64    `json:"version"`
	Jobs            []string `json:"jobs"`
	Stale           []string `json:"stale,omitempty"`
	Notes           []string `json:"notes,omitempty"`
	Branch          string   `json:"branch,omitempty"`
	Commit          string   `json:"commit,omitempty"`
	MergeRequestIID int64    `json:"merge_request_iid,omitempty"`
	MergeRequestURL string   `json:"merge_request_url,omitempty"`
	Diff            string   `json:"diff"`
}

func newProposeReport(r *companion.ProposeResult) proposeReport {
	return proposeReport{Status: r.Status, BaseVersion: r.BaseVersion, Version: r.Version, Jobs: append([]string{}, r.Jobs...),
		Stale: r.Stale, Notes: r.Notes, Branch: r.Branch, Commit: r.Commit,
		MergeRequestIID: r.MergeRequestIID, MergeRequestURL: r.MergeRequestURL, Diff: r.Diff}
}

type reviewCmd struct {
	gitlabFlags
	outputFlags
	MR            int64         `name:"mr" help:"Merge request number (IID) to review and post the note on."`
	Project       string        `help:"The allowlist repository's GitLab project (with --mr)."`
	Local         bool          `help:"Review a local clone instead of a merge request; post nothing."`
	Dir           string        `help:"With --local: the repository." default:"."`
	HeadRev       string        `help:"With --local: the revision to review (default HEAD)."`
	BaseRev       string        `help:"With --local: the revision it would replace."`
	EnvConfig     []string      `help:"Environment config(s) whose approvals count: paths or globs, repeatable."`
	ExpiryHorizon time.Duration `help:"The expiry check fails within this of the expiry." default:"336h"`
	Require       string        `help:"Comma-separated checks that must pass: lint, version, approvals, expiry." default:"lint"`
	DryRun        bool          `help:"With --mr: print the note, post nothing."`
	CodeQuality   string        `name:"codequality" placeholder:"FILE" help:"Also write the --require checks' problems as a GitLab Code Quality report (artifacts:reports:codequality), at their lines of allowlist.yaml."`
	JUnit         string        `name:"junit" placeholder:"FILE" help:"Also write the --require checks as JUnit test cases (artifacts:reports:junit)."`
}

func (c *reviewCmd) Run(ctx context.Context, g *globals) error {
	require, err := companion.ParseChecks(c.Require)
	if err != nil {
		return fail(outcomeUsage, err)
	}
	envs, err := companion.ReadEnvironments(c.EnvConfig)
	if err != nil {
		return fail(outcomeConfig, err)
	}
	var rep *companion.ReviewReport
	var body reviewReport
	switch {
	case c.Local && c.MR != 0:
		return fail(outcomeUsage, errors.New("review: use either --local or --mr"))
	case c.Local:
		rep, err = companion.ReviewLocal(companion.LocalOptions{Dir: c.Dir, HeadRev: c.HeadRev, BaseRev: c.BaseRev, Environments: envs, ExpiryHorizon: c.ExpiryHorizon})
		if err != nil {
			return err
		}
		if !c.jsonOutput() {
			fmt.Fprint(g.stdout, rep.Markdown())
		}
	default:
		conn, err := c.conn()
		if err != nil {
			return fail(outcomeConfig, err)
		}
		res, err := companion.Review(ctx, companion.ReviewOptions{Conn: conn, Project: c.Project, MergeRequest: c.MR, Environments: envs, ExpiryHorizon: c.ExpiryHorizon, DryRun: c.DryRun})
		if err != nil {
			return err
		}
		rep, body.NoteID, body.NoteStatus = res.Report, res.NoteID, res.Status
		switch {
		case c.jsonOutput():
		case c.DryRun:
			fmt.Fprint(g.stdout, res.Note)
		default:
			fmt.Fprintf(g.stdout, "review note %d on !%d: %s\n", res.NoteID, c.MR, res.Status)
		}
		for _, w := range res.Warnings {
			fmt.Fprintf(g.stderr, "warning: %s\n", w)
		}
	}
	if err := rep.Report(require).WriteFiles(c.CodeQuality, c.JUnit); err != nil {
		return fail(outcomeIO, err)
	}
	body.Report, body.Failures = rep, rep.Failures(require)
	if len(body.Failures) > 0 {
		return g.report(c, outcomeRefused, fmt.Errorf("review: %s", strings.Join(body.Failures, "; ")), body)
	}
	return g.report(c, outcomeOK, nil, body)
}

func (*reviewCmd) schema() string { return "writ/review/v1" }

// reviewReport is the JSON body of writ review: the failed required checks
// and companion's full report.
type reviewReport struct {
	Failures   []string                `json:"failures"`
	NoteID     int64                   `json:"note_id,omitempty"`
	NoteStatus string                  `json:"note_status,omitempty"`
	Report     *companion.ReviewReport `json:"report"`
}

type reconcileCmd struct {
	gitlabFlags
	outputFlags
	Since       string   `required:"" help:"Start: RFC 3339 time, or a duration back from now (24h)."`
	Until       string   `help:"End: RFC 3339 time or duration back from now (default now)."`
	Runner      []int64  `required:"" help:"GitLab runner ID of the environment (repeatable)."`
	AuditLog    []string `help:"writ's audit log (default: paths.audit of the config); repeat for every host that shares the runners." type:"path" sep:"none"`
	SystemID    string   `name:"system-id" help:"Compare only the jobs of the runner host with this system ID (its .runner_system_id); then its audit log alone suffices."`
	AllowBlind  bool     `help:"Compare even when the token cannot see every project that used the runners; list those projects instead of refusing."`
	Environment string   `help:"Only this environment's records (default: the config's environment)."`
	MaxJobs     int      `help:"Most GitLab jobs read per runner." default:"10000"`
	JSON        bool     `help:"Same as --output json (kept for scripts written against earlier releases)."`
}

func (c *reconcileCmd) Run(ctx context.Context, g *globals) error {
	now := time.Now()
	since, err := companion.ParseSince(c.Since, now)
	if err != nil {
		return fail(outcomeUsage, fmt.Errorf("--since: %w", err))
	}
	var until time.Time
	if c.Until != "" {
		if until, err = companion.ParseSince(c.Until, now); err != nil {
			return fail(outcomeUsage, fmt.Errorf("--until: %w", err))
		}
	}
	logs, env := c.AuditLog, c.Environment
	if len(logs) == 0 || env == "" {
		cfg, err := config.Load(config.Resolve(g.Config))
		switch {
		case err == nil:
			if len(logs) == 0 {
				logs = []string{cfg.Paths.Audit}
			}
			if env == "" {
				env = cfg.Environment
			}
		case len(logs) == 0:
			return fail(outcomeConfig, fmt.Errorf("set --audit-log, or --config to read paths.audit: %w", err))
		}
	}
	conn, err := c.conn()
	if err != nil {
		return fail(outcomeConfig, err)
	}
	rep, err := companion.Reconcile(ctx, companion.ReconcileOptions{
		Conn: conn, RunnerIDs: c.Runner, AuditLogs: logs, Environment: env, Since: since, Until: until, MaxJobs: c.MaxJobs, AllowBlind: c.AllowBlind, SystemID: c.SystemID,
	})
	if err != nil {
		return fail(outcomeCannotDecide, err)
	}
	o := outcomeOK
	if !rep.OK() {
		o = outcomeRefused
	}
	if !c.jsonOutput() {
		if err := rep.WriteText(g.stdout); err != nil {
			return fail(outcomeIO, err)
		}
	}
	return g.report(c, o, nil, rep)
}

func (*reconcileCmd) schema() string { return "writ/reconcile/v1" }

func (c *reconcileCmd) jsonOutput() bool { return c.JSON || c.outputFlags.jsonOutput() }
