package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/config"
	"gitlab.com/writ-ci/writ/internal/fsutil"
	"gitlab.com/writ-ci/writ/internal/gitsig"
)

type configCmd struct {
	Check configCheckCmd `cmd:"" help:"Check writ's config and the files it names; print the effective config (defaults applied, paths resolved)."`
}

type configCheckCmd struct {
	outputFlags
}

func (*configCheckCmd) schema() string { return "writ/config-check/v1" }

// configCheckReport is the JSON body of writ config check.
type configCheckReport struct {
	Path      string        `json:"path"`
	Effective string        `json:"effective_toml"`
	Checks    []configCheck `json:"checks"`
}

// configCheck is one preflight finding. Level is "ok", "warning" (writ
// works, but not as the operator probably means) or "error" (writ cannot
// work).
type configCheck struct {
	Check  string `json:"check"`
	Level  string `json:"level"`
	Detail string `json:"detail"`
}

func (c *configCheckCmd) Run(g *globals) error {
	cfg, err := g.loadConfig()
	if err != nil {
		return err
	}
	eff, err := cfg.Effective()
	if err != nil {
		return fail(outcomeConfig, err)
	}
	r := configCheckReport{Path: cfg.Path, Effective: string(eff), Checks: preflight(cfg)}
	o := outcomeOK
	for _, ch := range r.Checks {
		switch {
		case ch.Level == "error":
			o = outcomeConfig
		case ch.Level == "warning" && o == outcomeOK:
			o = outcomeWarning
		}
	}
	if !c.jsonOutput() {
		fmt.Fprintf(g.stdout, "# effective config of %s\n%s\n", r.Path, r.Effective)
		for _, ch := range r.Checks {
			fmt.Fprintf(g.stdout, "[%-7s] %-16s %s\n", ch.Level, ch.Check, ch.Detail)
		}
	}
	return g.report(c, o, nil, r)
}

// preflight checks what a config names: the trust root loads, root SSH
// keys may sign approvals, writ's directories exist (or can be created),
// the log file opens and the job user exists.
func preflight(cfg *config.Config) []configCheck {
	var out []configCheck
	add := func(check, level, format string, a ...any) {
		out = append(out, configCheck{Check: check, Level: level, Detail: fmt.Sprintf(format, a...)})
	}
	if _, err := allowlist.LoadTrust(cfg); err != nil {
		add("trust", "error", "%v", err)
	} else {
		add("trust", "ok", "root keys load (threshold %d)", cfg.Trust.Threshold)
	}
	out = append(out, approvalNamespaces(cfg)...)
	for _, d := range []struct{ key, path string }{
		{"paths.state", cfg.Paths.State}, {"paths.cache", cfg.Paths.Cache},
		{"paths.builds", cfg.Paths.Builds}, {"paths.audit", filepath.Dir(cfg.Paths.Audit)},
	} {
		out = append(out, checkDir(d.key, d.path))
	}
	if cfg.Log.File != "" {
		f, err := os.OpenFile(cfg.Log.File, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			add("log.file", "error", "%v", err)
		} else {
			f.Close()
			add("log.file", "ok", "%s opens for appending", cfg.Log.File)
		}
	}
	if cfg.Job.User != "" {
		if _, err := user.Lookup(cfg.Job.User); err != nil {
			add("job.user", "error", "%v: create the account or unset job.user (it applies only with sandbox.unsafe_no_sandbox = true)", err)
		} else {
			add("job.user", "ok", "account %s exists", cfg.Job.User)
		}
	}
	return out
}

// approvalNamespaces warns about root SSH keys that may not sign
// approvals: with namespaces="git" on its line, a key's approvals are
// ignored, silently until now.
func approvalNamespaces(cfg *config.Config) []configCheck {
	if cfg.Trust.SSHAllowedSigners == "" {
		return nil
	}
	data, err := fsutil.ReadFileLimit(cfg.Trust.SSHAllowedSigners, 1<<20)
	if err != nil {
		return nil // reported by the trust check
	}
	signers, err := gitsig.ParseAllowedSigners(data)
	if err != nil {
		return nil
	}
	var out []configCheck
	for _, s := range signers {
		if len(s.Namespaces) > 0 && !slices.Contains(s.Namespaces, allowlist.ApprovalNamespace) {
			out = append(out, configCheck{Check: "trust.namespaces", Level: "warning", Detail: fmt.Sprintf(
				"%s line %d (%s) allows namespaces %q only: its approvals do not count; add %s to its namespaces",
				cfg.Trust.SSHAllowedSigners, s.Line, strings.Join(s.Principals, ","), strings.Join(s.Namespaces, ","), allowlist.ApprovalNamespace)})
		}
	}
	return out
}

func checkDir(key, path string) configCheck {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return configCheck{Check: key, Level: "warning", Detail: path + " does not exist yet: writ creates it on first use if it can (the packages create it with its owner and mode)"}
	case err != nil:
		return configCheck{Check: key, Level: "error", Detail: err.Error()}
	case !st.IsDir():
		return configCheck{Check: key, Level: "error", Detail: path + " is not a directory"}
	}
	return configCheck{Check: key, Level: "ok", Detail: fmt.Sprintf("%s (mode %s)", path, st.Mode().Perm())}
}
