package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/executor"
	"gitlab.com/writ-ci/writ/internal/audit"
	"gitlab.com/writ-ci/writ/internal/config"
	"gitlab.com/writ-ci/writ/internal/fsutil"
	"gitlab.com/writ-ci/writ/internal/glreport"
	"gitlab.com/writ-ci/writ/internal/state"
)

type allowlistCmd struct {
	Lint      lintCmd      `cmd:"" help:"Check allowlist files; print every error with its position (exit 1 on any)."`
	Verify    verifyCmd    `cmd:"" help:"Fetch and accept the allowlist as this environment would; print the result. Exit 0: head accepted; 1: head rejected, an earlier version stays in force; 2: no valid version; 4: expires within --warn-within; 5: remote unreachable, cached version in force (docs/operations.md)."`
	Approve   approveCmd   `cmd:"" help:"Write a detached approval of the current allowlist content."`
	Statement statementCmd `cmd:"" help:"Print the exact bytes an approval of the current allowlist content signs (for cosign sign-blob and verify-blob)."`
	Diff      diffCmd      `cmd:"" help:"Summarise, per environment, what changes between two allowlists (Markdown)."`
	Entry     entryCmd     `cmd:"" help:"Print the allowlist entry that would admit a runner job payload."`
}

// readAllowlistFile parses an allowlist file, loading key files relative to
// its directory (the repository root) and never outside it.
func readAllowlistFile(path string) (*allowlist.Allowlist, []byte, error) {
	a, data, _, err := readAllowlistFiles(path)
	return a, data, err
}

// readAllowlistFiles is readAllowlistFile that also returns the files the
// parser read (path → content), which approvals cover.
func readAllowlistFiles(path string) (*allowlist.Allowlist, []byte, map[string][]byte, error) {
	a, data, loaded, _, err := loadAllowlistFile(path, path)
	return a, data, loaded, err
}

// lintAllowlistFile is readAllowlistFile that also returns warnings; name is
// the file's name in messages.
func lintAllowlistFile(path, name string) (*allowlist.Allowlist, []byte, allowlist.ErrorList, error) {
	a, data, _, warns, err := loadAllowlistFile(path, name)
	return a, data, warns, err
}

func loadAllowlistFile(path, name string) (*allowlist.Allowlist, []byte, map[string][]byte, allowlist.ErrorList, error) {
	data, err := fsutil.ReadFileLimit(path, 64<<20)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	root := filepath.Dir(path)
	load, loaded := allowlist.RecordLoads(func(p string) ([]byte, error) {
		if filepath.IsAbs(p) || strings.HasPrefix(filepath.Clean(p), "..") {
			return nil, fmt.Errorf("%s: key path must stay inside the repository", p)
		}
		return fsutil.ReadFileLimit(filepath.Join(root, p), 1<<20)
	})
	a, warns, err := allowlist.Lint(name, data, load)
	return a, data, loaded, warns, err
}

type lintCmd struct {
	outputFlags
	Files       []string      `arg:"" help:"allowlist.yaml files to check." type:"path"`
	WarnWithin  time.Duration `help:"Exit 4 (warning) when a file's version expires within this, e.g. 336h. Without it, lint still prints a warning within 14 days but exits 0." default:"0"`
	CodeQuality string        `name:"codequality" placeholder:"FILE" help:"Also write the problems as a GitLab Code Quality report (artifacts:reports:codequality), paths relative to the working directory."`
	JUnit       string        `name:"junit" placeholder:"FILE" help:"Also write one JUnit test case per file (artifacts:reports:junit)."`
}

// lintWarnHorizon is how close to expiry lint prints a warning when
// --warn-within is not given.
const lintWarnHorizon = 14 * 24 * time.Hour

func (*lintCmd) schema() string { return "writ/lint/v1" }

// lintFile is one file's result in writ lint's JSON report.
type lintFile struct {
	File       string      `json:"file"`
	OK         bool        `json:"ok"`
	Version    int64       `json:"version,omitempty"`
	Jobs       int         `json:"jobs,omitempty"`
	SignerSets int         `json:"signer_sets,omitempty"`
	Expires    *time.Time  `json:"expires,omitempty"`
	Errors     []lintError `json:"errors,omitempty"`
	Warnings   []string    `json:"warnings,omitempty"`
}

type lintError struct {
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Message string `json:"message"`
}

// lintOne checks one file. A version already expired is an error (no
// environment accepts it); one expiring within warn a warning.
func lintOne(path string, warn time.Duration, now time.Time) (lintFile, glreport.Check) {
	r := lintFile{File: path}
	name := reportPath(path)
	a, _, warns, err := lintAllowlistFile(path, name)
	// The parser's warnings (an unused signer set, …) go to the merge
	// request's Code Quality report; the text and JSON keep expiry's.
	check := lintCheck(name, warns, err)
	if err != nil {
		var list allowlist.ErrorList
		if errors.As(err, &list) {
			for _, e := range list {
				r.Errors = append(r.Errors, lintError{Line: e.Line, Column: e.Column, Message: e.Msg})
			}
		} else {
			r.Errors = append(r.Errors, lintError{Message: err.Error()})
		}
		return r, check
	}
	exp := a.Expires.UTC()
	r.Version, r.Jobs, r.SignerSets, r.Expires = a.Version, len(a.Jobs), len(a.Signers), &exp
	switch words := allowlist.DescribeExpiry(a.Expires, now); {
	case !a.Expires.After(now):
		msg := "the version " + words + ": no environment accepts it; set expires to a future date and raise version"
		r.Errors = append(r.Errors, lintError{Message: msg})
		check.Findings = append(check.Findings, glreport.Finding{Severity: glreport.Major, Path: name, Message: msg})
	case a.Expires.Sub(now) <= warn:
		msg := "the version " + words + ": every deploy stops then unless a newer version is approved first"
		r.Warnings = append(r.Warnings, msg)
		check.Findings = append(check.Findings, glreport.Finding{Severity: glreport.Minor, Path: name, Message: msg})
	}
	r.OK = len(r.Errors) == 0
	return r, check
}

func (c *lintCmd) Run(g *globals) error {
	now := time.Now()
	var files []lintFile
	o := outcomeOK
	horizon := c.WarnWithin
	if horizon == 0 {
		horizon = lintWarnHorizon
	}
	rep := &glreport.Report{Tool: "writ allowlist lint"}
	for _, f := range c.Files {
		r, check := lintOne(f, horizon, now)
		files = append(files, r)
		rep.Checks = append(rep.Checks, check)
		switch {
		case !r.OK:
			o = outcomeRefused
		case len(r.Warnings) > 0 && c.WarnWithin > 0 && o == outcomeOK:
			o = outcomeWarning
		}
		if !c.jsonOutput() {
			writeLintText(g, r)
		}
	}
	if err := rep.WriteFiles(c.CodeQuality, c.JUnit); err != nil {
		return fail(outcomeIO, err)
	}
	return g.report(c, o, nil, struct {
		Files []lintFile `json:"files"`
	}{files})
}

func writeLintText(g *globals, r lintFile) {
	for _, e := range r.Errors {
		switch {
		case e.Line > 0 && e.Column > 0:
			fmt.Fprintf(g.stdout, "%s:%d:%d: %s\n", r.File, e.Line, e.Column, e.Message)
		case e.Line > 0:
			fmt.Fprintf(g.stdout, "%s:%d: %s\n", r.File, e.Line, e.Message)
		default:
			fmt.Fprintf(g.stdout, "%s: %s\n", r.File, e.Message)
		}
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(g.stdout, "%s: warning: %s\n", r.File, w)
	}
	if r.OK {
		fmt.Fprintf(g.stdout, "%s: ok (version %d, %d jobs, %d signer sets, expires %s)\n",
			r.File, r.Version, r.Jobs, r.SignerSets, r.Expires.Format(time.RFC3339))
	}
}

type verifyCmd struct {
	outputFlags
	WarnWithin time.Duration `help:"Exit 4 (warning) when the version in force expires within this, e.g. 168h (0: never)." default:"0"`
}

func (*verifyCmd) schema() string { return "writ/verify/v1" }

// verifyReport is the JSON body of writ allowlist verify.
type verifyReport struct {
	Environment  string        `json:"environment"`
	Repository   verifyRepo    `json:"repository"`
	RemoteHead   string        `json:"remote_head,omitempty"`
	HeadAccepted bool          `json:"head_accepted"`
	FirstContact string        `json:"first_contact,omitempty"`
	Checks       []verifyCheck `json:"checks"`
	InForce      *inForce      `json:"in_force,omitempty"`
	Warning      string        `json:"warning,omitempty"`
}

type verifyRepo struct {
	Identity string `json:"identity"`
	URL      string `json:"url"`
	Branch   string `json:"branch"`
}

type verifyCheck struct {
	Rule   string `json:"rule"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

type inForce struct {
	Version          int64     `json:"version"`
	Commit           string    `json:"commit"`
	Digest           string    `json:"sha256"`
	Signer           string    `json:"signer"`
	Approvers        []string  `json:"approvers"`
	Threshold        int       `json:"threshold"`
	Expires          time.Time `json:"expires"`
	ExpiresInSeconds int64     `json:"expires_in_seconds"`
	FromCache        bool      `json:"from_cache"`
}

func newVerifyReport(cfg *config.Config, cur *allowlist.Accepted, rep *allowlist.Report, now time.Time) verifyReport {
	r := verifyReport{Environment: cfg.Environment, Checks: []verifyCheck{},
		Repository: verifyRepo{Identity: cfg.Allowlist.Identity, URL: cfg.Allowlist.URL, Branch: cfg.Allowlist.Branch}}
	if rep != nil {
		r.RemoteHead, r.HeadAccepted, r.FirstContact = rep.Head, rep.Accepted, rep.FirstContact
		for _, ch := range rep.Checks {
			r.Checks = append(r.Checks, verifyCheck{Rule: ch.Rule, OK: ch.OK, Detail: ch.Detail})
		}
	}
	if cur != nil {
		r.InForce = &inForce{Version: cur.Allowlist.Version, Commit: cur.Commit, Digest: cur.Digest, Signer: cur.Signer,
			Approvers: append([]string{}, cur.Approvers...), Threshold: cur.Threshold, Expires: cur.Allowlist.Expires.UTC(),
			ExpiresInSeconds: int64(cur.Allowlist.Expires.Sub(now) / time.Second), FromCache: cur.FromCache}
		r.Warning = cur.Warning
	}
	return r
}

// verifyOutcome ranks what verify found, most severe first: no valid
// version (nothing runs), a rejected head (possibly an attack), an
// unreachable remote (the cache serves), expiry within the window.
func verifyOutcome(cur *allowlist.Accepted, rep *allowlist.Report, err error, warn time.Duration, now time.Time) outcome {
	switch {
	case err != nil:
		return outcomeCannotDecide
	case rep != nil && !rep.Accepted && rep.Failed() != nil && rep.Failed().Rule != allowlist.RuleFetch:
		return outcomeRefused
	case cur != nil && cur.FromCache:
		return outcomeStale
	case cur != nil && warn > 0 && cur.Allowlist.Expires.Sub(now) <= warn:
		return outcomeWarning
	}
	return outcomeOK
}

// reportPath names a file as GitLab's reports want it: relative to the
// working directory (the project directory in a CI job) when it is inside it.
func reportPath(p string) string {
	wd, err := os.Getwd()
	if err != nil {
		return p
	}
	if rel, err := filepath.Rel(wd, p); err == nil && filepath.IsLocal(rel) {
		return filepath.ToSlash(rel)
	}
	return p
}

// lintCheck is one file's lint result as a report check.
func lintCheck(name string, warns allowlist.ErrorList, err error) glreport.Check {
	ch := glreport.Check{Name: "lint " + name, File: name}
	add := func(list allowlist.ErrorList, sev glreport.Severity) {
		for _, e := range list {
			ch.Findings = append(ch.Findings, glreport.Finding{Severity: sev, Path: name, Line: e.Line, Column: e.Column, Message: e.Msg})
		}
	}
	var list allowlist.ErrorList
	switch {
	case errors.As(err, &list):
		add(list, glreport.Major)
	case err != nil:
		ch.Findings = append(ch.Findings, glreport.Finding{Severity: glreport.Major, Path: name, Message: err.Error()})
	}
	add(warns, glreport.Minor)
	return ch
}

func (c *verifyCmd) Run(ctx context.Context, g *globals) error {
	cfg, err := g.loadConfig()
	if err != nil {
		return err
	}
	log, closeLog, err := g.logger(cfg, false)
	if err != nil {
		return err
	}
	defer closeLog()
	st, err := state.Open(cfg, log)
	if err != nil {
		return fail(outcomeConfig, err)
	}
	defer st.Close()
	acc, err := allowlist.NewAccepter(cfg, allowlist.WithLogger(log), allowlist.WithAudit(audit.Open(cfg.Paths.Audit)), allowlist.WithState(st))
	if err != nil {
		return fail(outcomeConfig, err)
	}
	start := time.Now()
	cur, rep, err := acc.Refresh(ctx)
	log.Debug("allowlist refresh", "duration", time.Since(start), "accepted", rep != nil && rep.Accepted)
	now := time.Now()
	o := verifyOutcome(cur, rep, err, c.WarnWithin, now)
	r := newVerifyReport(cfg, cur, rep, now)
	if !c.jsonOutput() {
		writeVerifyText(g, r, now)
		if o == outcomeWarning {
			fmt.Fprintf(g.stdout, "WARNING:     the version in force %s, within --warn-within %s: approve a newer version before then\n",
				allowlist.DescribeExpiry(r.InForce.Expires, now), c.WarnWithin)
		}
	}
	return g.report(c, o, err, r)
}

func writeVerifyText(g *globals, r verifyReport, now time.Time) {
	w := g.stdout
	fmt.Fprintf(w, "environment: %s\nrepository:  %s (%s, branch %s)\n", r.Environment, r.Repository.Identity, r.Repository.URL, r.Repository.Branch)
	if r.RemoteHead != "" {
		fmt.Fprintf(w, "remote head: %s\n", r.RemoteHead)
	}
	for _, ch := range r.Checks {
		mark := "ok  "
		if !ch.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "  [%s] %-9s %s\n", mark, ch.Rule, ch.Detail)
	}
	if r.FirstContact != "" {
		fmt.Fprintf(w, "first contact: %s\n", r.FirstContact)
	}
	if f := r.InForce; f != nil {
		fmt.Fprintf(w, "in force:    version %d at commit %s\n", f.Version, f.Commit)
		fmt.Fprintf(w, "signer:      %s\n", f.Signer)
		fmt.Fprintf(w, "approvals:   %d of %d required (%s)\n", len(f.Approvers), f.Threshold, strings.Join(f.Approvers, ", "))
		fmt.Fprintf(w, "expires:     %s\n", allowlist.DescribeExpiry(f.Expires, now))
		if r.Warning != "" {
			fmt.Fprintf(w, "WARNING:     %s\n", r.Warning)
		}
	}
}

type approveCmd struct {
	Dir         string `help:"Checkout of the allowlist repository." default:"." type:"existingdir"`
	SSHKey      string `help:"Sign with this SSH private key (ssh-keygen -Y sign)." xor:"key" type:"existingfile"`
	GPGKey      string `help:"Sign with this OpenPGP key, its primary key's full fingerprint (gpg --detach-sign)." xor:"key" name:"gpg-key"`
	GPGProgram  string `help:"The gpg to run for --gpg-key." default:"gpg" name:"gpg-program"`
	SigstoreKey string `help:"Sign a Sigstore bundle with this PEM private key (ECDSA P-256 or Ed25519; a cosign key file is decrypted with $COSIGN_PASSWORD)." xor:"key" type:"existingfile"`
	Label       string `help:"File name of the approval, usually your name (default: $USER)."`
}

func (c *approveCmd) Run(ctx context.Context, g *globals) error {
	if c.SSHKey == "" && c.SigstoreKey == "" && c.GPGKey == "" {
		return fail(outcomeUsage, errors.New("choose a key: --ssh-key FILE, --gpg-key FINGERPRINT or --sigstore-key FILE (cosign: sign `writ allowlist statement` with cosign sign-blob)"))
	}
	label := c.Label
	if label == "" {
		label = os.Getenv("USER")
	}
	if !allowlist.ValidLabel(label) {
		return fail(outcomeUsage, fmt.Errorf("label %q: use letters, digits, '.', '_' or '-' (set --label)", label))
	}
	a, stmt, err := currentStatement(c.Dir)
	if err != nil {
		return err
	}
	var sig []byte
	var name string
	switch {
	case c.SSHKey != "":
		sig, err = allowlist.SignSSH(ctx, stmt, c.SSHKey)
		name = label + ".sshsig"
	case c.GPGKey != "":
		sig, err = allowlist.SignOpenPGP(ctx, stmt, c.GPGKey, c.GPGProgram)
		name = label + ".asc"
	default:
		key, kerr := allowlist.LoadSigstoreKeyWithPassword(c.SigstoreKey, cosignPassword)
		if kerr != nil {
			return kerr
		}
		sig, err = allowlist.SignSigstore(stmt, key)
		name = label + ".sigstore.json"
	}
	if err != nil {
		return err
	}
	dir := filepath.Join(c.Dir, filepath.FromSlash(allowlist.ApprovalDir(a.Version)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	out := filepath.Join(dir, name)
	if err := fsutil.WriteFileAtomic(out, sig, 0o644); err != nil {
		return err
	}
	rel, _ := filepath.Rel(c.Dir, out)
	fmt.Fprintf(g.stdout, "approved this statement:\n%s\nwrote %s — commit it to the allowlist repository\n", indent(string(stmt)), rel)
	return nil
}

// indent prefixes every line of s with two spaces.
func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n  ")
}

type diffCmd struct {
	outputFlags
	Old string `arg:"" help:"The allowlist before (a file; \"-\" or a missing file for none)."`
	New string `arg:"" help:"The allowlist after."`
}

func (*diffCmd) schema() string { return "writ/diff/v1" }

func (c *diffCmd) Run(g *globals) error {
	load := func(p string) (*allowlist.Allowlist, error) {
		if p == "-" {
			return nil, nil
		}
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		a, _, err := readAllowlistFile(p)
		return a, err
	}
	oldA, err := load(c.Old)
	if err != nil {
		return g.report(c, outcomeRefused, err, nil)
	}
	newA, err := load(c.New)
	if err != nil {
		return g.report(c, outcomeRefused, err, nil)
	}
	d := allowlist.Diff(oldA, newA)
	if !c.jsonOutput() {
		fmt.Fprint(g.stdout, d.Markdown())
	}
	return g.report(c, outcomeOK, nil, newDiffReport(d))
}

type entryCmd struct {
	Job          string   `help:"A runner job payload (the JSON in JOB_RESPONSE_FILE)." required:"" type:"existingfile"`
	Environment  string   `help:"writ environment the entry applies to (default: the config's)."`
	VariableSets []string `name:"variable-sets" help:"Include these variable sets of --allowlist (comma-separated): the job's variables a set admits as they are are left to the set." sep:","`
	Allowlist    string   `help:"The allowlist.yaml that defines --variable-sets." type:"existingfile"`
}

func (c *entryCmd) Run(g *globals) error {
	env := c.Environment
	if env == "" {
		cfg, err := g.loadConfig()
		if err != nil {
			return fail(outcomeConfig, fmt.Errorf("%v (or pass --environment)", errors.Unwrap(err)))
		}
		env = cfg.Environment
	}
	data, err := fsutil.ReadFileLimit(c.Job, 64<<20)
	if err != nil {
		return err
	}
	p, err := executor.DecodePayload(data)
	if err != nil {
		return exitCode(1, err)
	}
	e := executor.EntryFromPayload(p, env)
	if len(c.VariableSets) > 0 {
		if err := c.includeSets(e, p); err != nil {
			return exitCode(1, err)
		}
	}
	out, err := allowlist.MarshalEntry(e)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "# Entry that would admit job %q of %s; review source.signers and source.mode before proposing it.\n", p.JobName, p.Project)
	g.stdout.Write(out)
	if n := strings.Count(string(out), "# TODO:"); n > 0 {
		// The entry is printed whole, so it can be edited in place; lint
		// refuses it until every TODO is resolved.
		fmt.Fprintf(g.stderr, "writ allowlist entry: %d TODO(s) in the entry above need a maintainer's decision; writ allowlist lint refuses the entry until they are resolved\n", n)
	}
	return nil
}

// includeSets makes e include the variable sets the command names.
func (c *entryCmd) includeSets(e *allowlist.Entry, p *executor.Payload) error {
	if c.Allowlist == "" {
		return errors.New("--variable-sets needs --allowlist, the allowlist.yaml that defines them")
	}
	a, _, err := readAllowlistFile(c.Allowlist)
	if err != nil {
		return err
	}
	var included []allowlist.Variable
	for _, name := range c.VariableSets {
		set := a.VariableSets[name]
		if set == nil {
			return fmt.Errorf("%s defines no variable set %q", c.Allowlist, name)
		}
		included = append(included, set.Variables...)
	}
	executor.IncludeVariableSets(e, p, c.VariableSets, included)
	return nil
}

// currentStatement lints the allowlist checked out in dir and returns it
// with the statement an approval of it signs: allowlist.yaml and every key
// file it loads.
func currentStatement(dir string) (*allowlist.Allowlist, []byte, error) {
	file := filepath.Join(dir, allowlist.FileName)
	a, data, loaded, err := readAllowlistFiles(file)
	if err != nil {
		return nil, nil, fail(outcomeRefused, fmt.Errorf("%s does not lint; fix it before approving:\n%v", file, err))
	}
	stmt, err := allowlist.VersionStatement(a, data, loaded)
	return a, stmt, err
}
