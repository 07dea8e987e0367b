package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"gitlab.com/writ-ci/writ/internal/audit"
	"gitlab.com/writ-ci/writ/internal/companion"
)

type auditCmd struct {
	Verify auditVerifyCmd `cmd:"" help:"Check the audit log's hash chain; name the first broken record (exit 1: tampered, 74: unreadable)."`
	Show   auditShowCmd   `cmd:"" help:"Print audit records, filtered by job, time and event, after checking the chain."`
}

// auditPath is the file argument, or the config's paths.audit.
func (g *globals) auditPath(file string) (string, error) {
	if file != "" {
		return file, nil
	}
	cfg, err := g.loadConfig()
	if err != nil {
		return "", fail(outcomeConfig, fmt.Errorf("%v (or name the audit log file)", errors.Unwrap(err)))
	}
	return cfg.Paths.Audit, nil
}

type auditVerifyCmd struct {
	outputFlags
	File string `arg:"" optional:"" help:"Audit log file (default: the config's paths.audit)."`
}

func (*auditVerifyCmd) schema() string { return "writ/audit-verify/v1" }

// auditVerifyReport is the JSON body of writ audit verify.
type auditVerifyReport struct {
	File     string   `json:"file"`
	Records  int      `json:"records"`
	LastSeq  uint64   `json:"last_seq"`
	LastHash string   `json:"last_hash,omitempty"`
	Broken   *broken  `json:"broken,omitempty"`
	Notes    []string `json:"notes,omitempty"`
}

type broken struct {
	Line   int    `json:"line"`
	Seq    uint64 `json:"seq"`
	Reason string `json:"reason"`
}

func (c *auditVerifyCmd) Run(g *globals) error {
	path, err := g.auditPath(c.File)
	if err != nil {
		return err
	}
	rep, err := audit.CheckFile(path)
	body := auditVerifyReport{File: path}
	if rep != nil {
		body.Records, body.LastSeq, body.LastHash, body.Notes = rep.Records, rep.LastSeq, rep.LastHash, rep.Notes
	}
	var be *audit.BrokenError
	switch {
	case err == nil:
		if !c.jsonOutput() {
			fmt.Fprintf(g.stdout, "%s: ok, %d records, chain intact\n", path, body.Records)
			for _, n := range body.Notes {
				fmt.Fprintf(g.stdout, "  note: %s\n", n)
			}
		}
		return g.report(c, outcomeOK, nil, body)
	case errors.As(err, &be):
		body.Broken = &broken{Line: be.Line, Seq: be.Seq, Reason: be.Reason}
		if !c.jsonOutput() {
			fmt.Fprintf(g.stdout, "%s: BROKEN after %d good records: %v\n", path, body.Records, err)
		}
		return g.report(c, outcomeRefused, nil, body)
	default:
		// Not evidence of tampering: the file could not be read at all.
		return g.report(c, outcomeIO, fmt.Errorf("cannot read the audit log: %w", err), body)
	}
}

type auditShowCmd struct {
	outputFlags
	File        string   `arg:"" optional:"" help:"Audit log file (default: the config's paths.audit)."`
	Job         string   `help:"Only records of this job ID."`
	Event       []string `help:"Only these events (repeatable or comma-separated): admit, refuse, audit-mode-admit, stage, outcome, cleanup, allowlist-accept, allowlist-reject, allowlist-cache." sep:","`
	Environment string   `help:"Only records of this environment."`
	Since       string   `help:"Only records at or after: RFC 3339 time, or a duration back from now (24h)."`
	Until       string   `help:"Only records before: RFC 3339 time, or a duration back from now."`
	Limit       int      `help:"Print at most the last N matching records (0: all)." default:"0"`
}

func (*auditShowCmd) schema() string { return "writ/audit-show/v1" }

// auditShowReport is the JSON body of writ audit show. Records are the
// log's own records, unchanged, so their hashes can be checked again.
type auditShowReport struct {
	File    string         `json:"file"`
	Checked int            `json:"checked"`
	Records []audit.Record `json:"records"`
	Broken  *broken        `json:"broken,omitempty"`
}

// filter is the records audit show prints.
type auditFilter struct {
	job, env     string
	events       []string
	since, until time.Time
}

func (f auditFilter) match(r audit.Record) bool {
	return (f.job == "" || r.Job == f.job) && (f.env == "" || r.Env == f.env) &&
		(len(f.events) == 0 || slices.Contains(f.events, r.Event)) &&
		(f.since.IsZero() || !r.Time.Before(f.since)) && (f.until.IsZero() || r.Time.Before(f.until))
}

func (c *auditShowCmd) filter(now time.Time) (auditFilter, error) {
	f := auditFilter{job: c.Job, env: c.Environment, events: c.Event}
	var err error
	if c.Since != "" {
		if f.since, err = companion.ParseSince(c.Since, now); err != nil {
			return f, fail(outcomeUsage, fmt.Errorf("--since: %w", err))
		}
	}
	if c.Until != "" {
		if f.until, err = companion.ParseSince(c.Until, now); err != nil {
			return f, fail(outcomeUsage, fmt.Errorf("--until: %w", err))
		}
	}
	return f, nil
}

func (c *auditShowCmd) Run(g *globals) error {
	f, err := c.filter(time.Now())
	if err != nil {
		return err
	}
	path, err := g.auditPath(c.File)
	if err != nil {
		return err
	}
	file, err := os.Open(path)
	if err != nil {
		return g.report(c, outcomeIO, fmt.Errorf("cannot read the audit log: %w", err), nil)
	}
	defer file.Close()
	body := auditShowReport{File: path, Records: []audit.Record{}}
	rep, err := audit.Scan(file, func(r audit.Record) {
		if !f.match(r) {
			return
		}
		body.Records = append(body.Records, r)
		if c.Limit > 0 && len(body.Records) > 2*c.Limit {
			// Keep memory bounded by the limit, not the log.
			body.Records = append(body.Records[:0], body.Records[len(body.Records)-c.Limit:]...)
		}
	})
	if c.Limit > 0 && len(body.Records) > c.Limit {
		body.Records = body.Records[len(body.Records)-c.Limit:]
	}
	body.Checked = rep.Records
	o := outcomeOK
	var be *audit.BrokenError
	switch {
	case errors.As(err, &be):
		body.Broken, o = &broken{Line: be.Line, Seq: be.Seq, Reason: be.Reason}, outcomeRefused
		err = fmt.Errorf("the chain is broken; records from line %d on are not shown: %w", be.Line, err)
	case err != nil:
		return g.report(c, outcomeIO, fmt.Errorf("cannot read the audit log: %w", err), body)
	}
	if !c.jsonOutput() {
		for _, r := range body.Records {
			fmt.Fprintln(g.stdout, formatRecord(r))
		}
	}
	return g.report(c, o, err, body)
}

// formatRecord is one record on one line: time, seq, event, job,
// environment, reason and the fields in key order.
func formatRecord(r audit.Record) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s #%d %s", r.Time.UTC().Format(time.RFC3339), r.Seq, r.Event)
	if r.Job != "" {
		fmt.Fprintf(&b, " job=%s", r.Job)
	}
	if r.Env != "" {
		fmt.Fprintf(&b, " env=%s", r.Env)
	}
	keys := make([]string, 0, len(r.Fields))
	for k := range r.Fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%v", k, r.Fields[k])
	}
	if r.Reason != "" {
		fmt.Fprintf(&b, " reason=%q", r.Reason)
	}
	return b.String()
}
