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
	"gitlab.com/writ-ci/writ/internal/fsutil"
	"gitlab.com/writ-ci/writ/internal/glreport"
	"gitlab.com/writ-ci/writ/internal/state"
)

type allowlistCmd struct {
	Lint      lintCmd      `cmd:"" help:"Check allowlist files; print every error with its position (exit 1 on any)."`
	Verify    verifyCmd    `cmd:"" help:"Fetch and accept the allowlist as this environment would; print the result. Exit 0: head accepted; 1: head rejected, an earlier version stays in force; 2: no valid version."`
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
	Files       []string `arg:"" help:"allowlist.yaml files to check." type:"path"`
	CodeQuality string   `name:"codequality" placeholder:"FILE" help:"Also write the problems as a GitLab Code Quality report (artifacts:reports:codequality), paths relative to the working directory."`
	JUnit       string   `name:"junit" placeholder:"FILE" help:"Also write one JUnit test case per file (artifacts:reports:junit)."`
}

func (c *lintCmd) Run(g *globals) error {
	bad := 0
	rep := &glreport.Report{Tool: "writ allowlist lint"}
	for _, f := range c.Files {
		name := reportPath(f)
		a, _, warns, err := lintAllowlistFile(f, name)
		rep.Checks = append(rep.Checks, lintCheck(name, warns, err))
		if err != nil {
			bad++
			var list allowlist.ErrorList
			if errors.As(err, &list) {
				for _, e := range list {
					fmt.Fprintln(g.stdout, e.Error())
				}
			} else {
				fmt.Fprintf(g.stdout, "%s: %v\n", f, err)
			}
			continue
		}
		fmt.Fprintf(g.stdout, "%s: ok (version %d, %d jobs, %d signer sets, expires %s)\n",
			f, a.Version, len(a.Jobs), len(a.Signers), a.Expires.UTC().Format(time.RFC3339))
	}
	if err := rep.WriteFiles(c.CodeQuality, c.JUnit); err != nil {
		return err
	}
	if bad > 0 {
		return exitCode(1, nil)
	}
	return nil
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

type verifyCmd struct{}

func (c *verifyCmd) Run(ctx context.Context, g *globals) error {
	cfg, err := g.loadConfig()
	if err != nil {
		return err
	}
	log, closeLog := g.logger(cfg, false)
	defer closeLog()
	st, err := state.Open(cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	acc, err := allowlist.NewAccepter(cfg, allowlist.WithLogger(log), allowlist.WithAudit(audit.Open(cfg.Paths.Audit)), allowlist.WithState(st))
	if err != nil {
		return err
	}
	cur, rep, err := acc.Refresh(ctx)
	w := g.stdout
	fmt.Fprintf(w, "environment: %s\nrepository:  %s (%s, branch %s)\n", cfg.Environment, cfg.Allowlist.Identity, cfg.Allowlist.URL, cfg.Allowlist.Branch)
	if rep != nil {
		if rep.Head != "" {
			fmt.Fprintf(w, "remote head: %s\n", rep.Head)
		}
		for _, ch := range rep.Checks {
			mark := "ok  "
			if !ch.OK {
				mark = "FAIL"
			}
			fmt.Fprintf(w, "  [%s] %-9s %s\n", mark, ch.Rule, ch.Detail)
		}
	}
	if rep != nil && rep.FirstContact != "" {
		fmt.Fprintf(w, "first contact: %s\n", rep.FirstContact)
	}
	if cur != nil {
		fmt.Fprintf(w, "in force:    version %d at commit %s\n", cur.Allowlist.Version, cur.Commit)
		fmt.Fprintf(w, "signer:      %s\n", cur.Signer)
		fmt.Fprintf(w, "approvals:   %d of %d required (%s)\n", len(cur.Approvers), cur.Threshold, strings.Join(cur.Approvers, ", "))
		fmt.Fprintf(w, "expires:     %s (in %s)\n", cur.Allowlist.Expires.UTC().Format(time.RFC3339), time.Until(cur.Allowlist.Expires).Round(time.Minute))
		if cur.Warning != "" {
			fmt.Fprintf(w, "WARNING:     %s\n", cur.Warning)
		}
	}
	if err != nil {
		return exitCode(2, err)
	}
	if rep != nil && !rep.Accepted {
		return exitCode(1, nil)
	}
	return nil
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
		return exitCode(2, errors.New("choose a key: --ssh-key FILE, --gpg-key FINGERPRINT or --sigstore-key FILE (cosign: sign `writ allowlist statement` with cosign sign-blob)"))
	}
	label := c.Label
	if label == "" {
		label = os.Getenv("USER")
	}
	if !allowlist.ValidLabel(label) {
		return exitCode(2, fmt.Errorf("label %q: use letters, digits, '.', '_' or '-' (set --label)", label))
	}
	file := filepath.Join(c.Dir, allowlist.FileName)
	a, data, loaded, err := readAllowlistFiles(file)
	if err != nil {
		return exitCode(1, fmt.Errorf("%s does not lint; fix it before approving:\n%v", file, err))
	}
	// The statement covers allowlist.yaml and every key file it loads.
	stmt, err := allowlist.VersionStatement(a, data, loaded)
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
	Old string `arg:"" help:"The allowlist before (a file; \"-\" or a missing file for none)."`
	New string `arg:"" help:"The allowlist after."`
}

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
		return exitCode(1, err)
	}
	newA, err := load(c.New)
	if err != nil {
		return exitCode(1, err)
	}
	fmt.Fprint(g.stdout, allowlist.Diff(oldA, newA).Markdown())
	return nil
}

type entryCmd struct {
	Job         string `help:"A runner job payload (the JSON in JOB_RESPONSE_FILE)." required:"" type:"existingfile"`
	Environment string `help:"writ environment the entry applies to (default: the config's)."`
}

func (c *entryCmd) Run(g *globals) error {
	env := c.Environment
	if env == "" {
		cfg, err := g.loadConfig()
		if err != nil {
			return exitCode(2, fmt.Errorf("%v (or pass --environment)", err))
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
	out, err := allowlist.MarshalEntry(executor.EntryFromPayload(p, env))
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
