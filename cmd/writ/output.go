package main

// One output contract for every reporting command: a text or JSON report on
// standard output, and an exit code from one table. The table lives here, in
// code, and docs/operations.md is checked against it by a test, so a script
// written against one release's codes keeps meaning the same thing.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// outcome is one row of the exit-code table.
type outcome struct {
	// Name is the outcome's stable name, the "outcome" member of JSON reports.
	Name string
	// Code is the process exit code.
	Code int
	// Meaning is the row's explanation in the docs and --help.
	Meaning string
}

// The exit-code table. Codes 0–5 are writ's own verdicts; 64 and up follow
// BSD sysexits.h, so an operator's wrapper can tell "writ said no" from
// "writ was not asked properly".
var (
	outcomeOK           = outcome{"ok", 0, "success: admitted, accepted, intact, no finding"}
	outcomeRefused      = outcome{"refused", 1, "policy refusal or finding: a job refused, an allowlist head rejected, lint errors, a broken audit chain, review checks failed, GitLab and writ disagree"}
	outcomeCannotDecide = outcome{"cannot-decide", 2, "no decision possible: no valid allowlist version, source unreachable and not cached"}
	outcomeChange       = outcome{"change-needed", 3, "propose --check: the allowlist does not admit the jobs yet"}
	outcomeWarning      = outcome{"warning", 4, "ok, but act soon: the allowlist in force expires within --warn-within, or lint warns"}
	outcomeStale        = outcome{"stale", 5, "the allowlist remote is unreachable; the cached verified version stays in force"}
	outcomeUsage        = outcome{"usage-error", 64, "bad command line: unknown flag or command, invalid value"}
	outcomeIO           = outcome{"io-error", 74, "a file or directory could not be read or written (missing, permission, disk)"}
	outcomeConfig       = outcome{"config-error", 78, "writ's config is missing or invalid, or the trust root cannot be loaded"}
)

// outcomes is the table in order, for docs and tests.
var outcomes = []outcome{outcomeOK, outcomeRefused, outcomeCannotDecide, outcomeChange, outcomeWarning, outcomeStale, outcomeUsage, outcomeIO, outcomeConfig}

func outcomeByCode(code int) outcome {
	for _, o := range outcomes {
		if o.Code == code {
			return o
		}
	}
	return outcome{Name: "error", Code: code}
}

// exitError carries a process exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// exitCode ends a command with code; err, if not nil, is printed on
// standard error (or as the "error" member of a JSON report).
func exitCode(code int, err error) error { return &exitError{code: code, err: err} }

// fail ends a command with an outcome of the table.
func fail(o outcome, err error) error { return exitCode(o.Code, err) }

// outputFlags is embedded by every reporting command.
type outputFlags struct {
	Output string `short:"o" help:"Report format: text or json (versioned shapes: docs/operations.md)." enum:"text,json" default:"text"`
}

func (f *outputFlags) jsonOutput() bool { return f.Output == "json" }

// reporter is a command with a JSON report: run() uses it to report an
// error that ends the command early in the same shape.
type reporter interface {
	jsonOutput() bool
	// schema names the report's JSON shape and its version, "writ/NAME/vN".
	schema() string
}

// header starts every JSON report.
type header struct {
	Schema   string `json:"schema"`
	Outcome  string `json:"outcome"`
	ExitCode int    `json:"exit_code"`
	Error    string `json:"error,omitempty"`
}

// writeJSON writes one JSON report: the header members, then body's (an
// object, or nil), on one line.
func writeJSON(w io.Writer, schema string, o outcome, err error, body any) error {
	h := header{Schema: schema, Outcome: o.Name, ExitCode: o.Code}
	if err != nil {
		h.Error = flatten(err)
	}
	hb, merr := json.Marshal(h)
	if merr != nil {
		return merr
	}
	if body != nil {
		bb, merr := json.Marshal(body)
		if merr != nil {
			return merr
		}
		if len(bb) > 2 && bb[0] == '{' {
			hb = append(append(hb[:len(hb)-1], ','), bb[1:]...)
		}
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, hb, "", "  "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, werr := w.Write(buf.Bytes())
	return werr
}

// report ends a reporting command: in JSON mode it writes body with the
// header; either way it returns o's exit code, with err for standard
// error in text mode.
func (g *globals) report(r reporter, o outcome, err error, body any) error {
	if r.jsonOutput() {
		if werr := writeJSON(g.stdout, r.schema(), o, err, body); werr != nil {
			return fail(outcomeIO, werr)
		}
		g.reported = true
	}
	if o.Code == 0 && err == nil {
		return nil
	}
	return exitCode(o.Code, err)
}

// flatten turns an error chain into one sentence: a wrapper that repeats
// the text of what it wraps ("writ cannot decide: writ cannot decide: …")
// says it once.
func flatten(err error) string {
	if err == nil {
		return ""
	}
	return dedupe(err.Error())
}

// dedupe removes a phrase repeated right after itself in a chain of
// "phrase: phrase: cause" ("a: a: b" → "a: b").
func dedupe(s string) string {
	parts := strings.Split(s, ": ")
	out := parts[:1]
	for _, p := range parts[1:] {
		if p != out[len(out)-1] {
			out = append(out, p)
		}
	}
	return strings.Join(out, ": ")
}

// errorOutcome maps an error no command classified.
func errorOutcome(err error) outcome {
	var ee *exitError
	if errors.As(err, &ee) {
		return outcomeByCode(ee.code)
	}
	return outcomeRefused
}
