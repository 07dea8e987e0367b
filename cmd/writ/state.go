package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"gitlab.com/writ-ci/writ/executor"
	"gitlab.com/writ-ci/writ/internal/audit"
	"gitlab.com/writ-ci/writ/internal/config"
	"gitlab.com/writ-ci/writ/internal/state"
)

type stateCmd struct {
	Show    stateShowCmd    `cmd:"" help:"Print the trust state: allowlist high-water mark, rejection, per-entry marks, job-id claims (the fleet store's and this host's)."`
	Export  stateExportCmd  `cmd:"" help:"Print the whole trust state as JSON (same as show -o json)."`
	Migrate stateMigrateCmd `cmd:"" help:"Copy this host's local marks into the fleet store (state.backend = \"etcd\"); never lowers a mark the store holds."`
	Repair  stateRepairCmd  `cmd:"" help:"Rebuild corrupt local state files from the audit log (its hash chain is checked first); corrupt files are kept as <name>.corrupt-<time>."`
}

type stateShowCmd struct {
	Output string `short:"o" help:"Output format: text or json." enum:"text,json" default:"text"`
}

type stateExportCmd struct{}

type stateMigrateCmd struct{}

type stateRepairCmd struct{}

// openState loads the config and its state store.
func (g *globals) openState() (*config.Config, state.Store, func(), error) {
	cfg, err := g.loadConfig()
	if err != nil {
		return nil, nil, nil, err
	}
	log, closeLog, err := g.logger(cfg, false)
	if err != nil {
		return nil, nil, nil, err
	}
	st, err := state.Open(cfg, log)
	if err != nil {
		closeLog()
		return nil, nil, nil, fail(outcomeConfig, err)
	}
	return cfg, st, func() { st.Close(); closeLog() }, nil
}

func (c *stateShowCmd) Run(ctx context.Context, g *globals) error {
	_, st, done, err := g.openState()
	if err != nil {
		return err
	}
	defer done()
	marks, err := state.Export(ctx, st)
	if err != nil {
		return exitCode(2, err)
	}
	if c.Output == "json" {
		// A bare array, as fleet tooling reads it (not yet the versioned
		// shape of docs/operations.md).
		return writeJSONValue(g.stdout, marks)
	}
	for i, m := range marks {
		if i > 0 {
			fmt.Fprintln(g.stdout)
		}
		writeMarks(g.stdout, m)
	}
	return problems(marks)
}

func (stateExportCmd) Run(ctx context.Context, g *globals) error {
	return (&stateShowCmd{Output: "json"}).Run(ctx, g)
}

func writeJSONValue(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func problems(marks []*state.Marks) error {
	for _, m := range marks {
		if len(m.Problems) > 0 {
			return exitCode(1, nil)
		}
	}
	return nil
}

func writeMarks(w io.Writer, m *state.Marks) {
	fmt.Fprintf(w, "%s\n", m.Where)
	if a := m.Allowlist; a != nil && a.Commit != "" {
		fmt.Fprintf(w, "  allowlist: version %d at %s (accepted %s)\n", a.Version, a.Commit, stamp(a.AcceptedAt))
		if !a.LastCheck.IsZero() {
			fmt.Fprintf(w, "  last check: %s\n", stamp(a.LastCheck))
		}
	} else {
		fmt.Fprintln(w, "  allowlist: no version accepted")
	}
	rej := m.Rejection
	if rej == nil && m.Allowlist != nil && m.Allowlist.RejectedHead != "" {
		rej = &state.Rejection{Head: m.Allowlist.RejectedHead, Why: m.Allowlist.RejectedWhy}
	}
	if rej != nil {
		fmt.Fprintf(w, "  rejected head: %s (%s)\n", rej.Head, rej.Why)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  entries: %d\n", len(m.Entries))
	for _, e := range m.Entries {
		fmt.Fprintf(tw, "    %s\t%s\t%s\tjob %s\t%s\t%s\n", e.Entry, e.Commit, e.Mode, e.Job, stamp(e.Time), e.Host)
	}
	tw.Flush()
	fmt.Fprintf(w, "  job-id claims: %d\n", len(m.Jobs))
	for _, c := range m.Jobs {
		fmt.Fprintf(w, "    job %s on %s since %s\n", c.ID, c.Host, stamp(c.Time))
	}
	for _, p := range m.Problems {
		fmt.Fprintf(w, "  PROBLEM: %s\n", p)
	}
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func (stateMigrateCmd) Run(ctx context.Context, g *globals) error {
	_, st, done, err := g.openState()
	if err != nil {
		return err
	}
	defer done()
	f, ok := st.(*state.Fleet)
	if !ok {
		return fail(outcomeConfig, fmt.Errorf("state.backend is not \"etcd\": configure the fleet store first (docs/install.md, fleet profile)"))
	}
	lines, err := state.Migrate(ctx, f)
	for _, l := range lines {
		fmt.Fprintln(g.stdout, l)
	}
	if err != nil {
		return exitCode(1, err)
	}
	return nil
}

func (stateRepairCmd) Run(ctx context.Context, g *globals) error {
	cfg, err := g.loadConfig()
	if err != nil {
		return err
	}
	marks, err := auditMarks(cfg.Paths.Audit)
	if err != nil {
		return exitCode(2, err)
	}
	lines, err := state.Repair(state.NewLocal(cfg.Paths.State), marks, time.Now())
	for _, l := range lines {
		fmt.Fprintln(g.stdout, l)
	}
	if err != nil {
		return exitCode(1, err)
	}
	if len(lines) == 0 {
		fmt.Fprintln(g.stdout, "state: nothing to repair")
	}
	return nil
}

// auditMarks reads the last accepted allowlist version and each entry's
// last admitted commit from the audit log, after checking its hash chain.
func auditMarks(path string) (state.AuditMark, error) {
	m := state.AuditMark{Entries: map[string]state.EntryMark{}}
	if _, err := audit.VerifyFile(path); err != nil {
		return m, fmt.Errorf("the audit log %s does not verify (%v): the state cannot be rebuilt from it; restore the state from a backup", path, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return m, err
	}
	defer f.Close()
	recs, err := audit.ReadAll(f)
	if err != nil {
		return m, err
	}
	str := func(r audit.Record, k string) string { s, _ := r.Fields[k].(string); return s }
	for _, r := range recs {
		switch r.Event {
		case "allowlist-accept":
			v, ok := number(r.Fields["in_force_version"])
			if c := str(r, "in_force_commit"); ok && c != "" && str(r, "in_force_digest") != "" {
				m.Allowlist = &state.AllowlistMark{Version: v, Commit: c, Digest: str(r, "in_force_digest"), AcceptedAt: r.Time}
			}
		case "admit":
			name, repo := str(r, "entry"), str(r, "repository")
			if name != "" && repo != "" && !strings.Contains(str(r, "sha"), " ") {
				m.Entries[name] = state.EntryMark{Entry: name, Repository: repo, Mode: str(r, "source_mode"),
					Commit: str(r, "sha"), Job: r.Job, Time: r.Time}
			}
			extraSourceMarks(m, r, name)
		}
	}
	return m, nil
}

// number reads an integer field of an audit record, however it was decoded.
func number(v any) (int64, bool) {
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		return i, err == nil
	case float64:
		return int64(n), n == float64(int64(n))
	case int64:
		return n, true
	case int:
		return int64(n), true
	}
	return 0, false
}

// extraSourceMarks adds the marks of the extra sources (source.extra) an
// admit record lists under "sources".
func extraSourceMarks(m state.AuditMark, r audit.Record, entry string) {
	list, _ := r.Fields["sources"].([]any)
	for _, item := range list {
		s, _ := item.(map[string]any)
		str := func(k string) string { v, _ := s[k].(string); return v }
		if entry == "" || str("path") == "" || str("repository") == "" || str("commit") == "" {
			continue
		}
		name := executor.ExtraSourceMark(entry, str("path"))
		m.Entries[name] = state.EntryMark{Entry: name, Repository: str("repository"), Mode: str("mode"),
			Commit: str("commit"), Job: r.Job, Time: r.Time}
	}
}
