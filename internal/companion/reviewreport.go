package companion

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/glreport"
)

// reportPositions is what a review knows about positions in allowlist.yaml.
type reportPositions struct {
	errs, warns              allowlist.ErrorList
	other                    string // a lint failure that is no ErrorList
	versionLine, expiresLine int
}

func newReportPositions(data []byte, warns allowlist.ErrorList, err error) reportPositions {
	p := reportPositions{warns: warns}
	if err != nil && !errors.As(err, &p.errs) {
		p.other = err.Error()
	}
	p.versionLine = topLevelKeyLine(data, "version")
	p.expiresLine = topLevelKeyLine(data, "expires")
	return p
}

// topLevelKeyLine is the 1-based line where key: starts a line, 0 if none.
// It only places a finding; nothing is decided on it.
func topLevelKeyLine(data []byte, key string) int {
	for i, line := range bytes.Split(data, []byte("\n")) {
		if bytes.HasPrefix(line, []byte(key+":")) {
			return i + 1
		}
	}
	return 0
}

func lintFindings(list allowlist.ErrorList, sev glreport.Severity) []glreport.Finding {
	out := make([]glreport.Finding, 0, len(list))
	for _, e := range list {
		out = append(out, glreport.Finding{Severity: sev, Path: allowlist.FileName, Line: e.Line, Column: e.Column, Message: e.Msg})
	}
	return out
}

// Report renders the checks in require as GitLab report artifacts (Code
// Quality and JUnit), each finding at its place in allowlist.yaml, so the
// merge request shows them in its widgets. Checks not in require are left
// out: each job of the allowlist component reports its own check.
func (r *ReviewReport) Report(require []string) *glreport.Report {
	rep := &glreport.Report{Tool: "writ review"}
	file := allowlist.FileName
	for _, c := range require {
		switch c {
		case CheckLint:
			ch := glreport.Check{Name: "lint", File: file}
			ch.Findings = append(lintFindings(r.pos.errs, glreport.Major), lintFindings(r.pos.warns, glreport.Minor)...)
			if r.pos.other != "" {
				ch.Findings = append(ch.Findings, glreport.Finding{Severity: glreport.Major, Path: file, Message: r.pos.other})
			}
			rep.Checks = append(rep.Checks, ch)
		case CheckVersion:
			ch := glreport.Check{Name: "version", File: file}
			if r.LintOK && !r.VersionOK {
				ch.Findings = append(ch.Findings, glreport.Finding{Severity: glreport.Major, Path: file, Line: r.pos.versionLine,
					Message: fmt.Sprintf("version %d is not greater than %d, the version it replaces: raise it", r.Version, r.BaseVersion)})
			}
			rep.Checks = append(rep.Checks, r.unjudged(ch))
		case CheckExpiry:
			ch := glreport.Check{Name: "expiry", File: file}
			if r.LintOK && !r.ExpiryOK {
				ch.Findings = append(ch.Findings, glreport.Finding{Severity: glreport.Major, Path: file, Line: r.pos.expiresLine,
					Message: fmt.Sprintf("expires %s, within %s: move expires: later", r.Expires.UTC().Format("2006-01-02T15:04:05Z"), humanDuration(r.Horizon))})
			}
			rep.Checks = append(rep.Checks, r.unjudged(ch))
		case CheckApprovals:
			rep.Checks = append(rep.Checks, r.approvalChecks()...)
		}
	}
	return rep
}

// unjudged fails a check that cannot be judged because the file does not
// lint, as Failures does.
func (r *ReviewReport) unjudged(ch glreport.Check) glreport.Check {
	if !r.LintOK {
		ch.Findings = append(ch.Findings, glreport.Finding{Severity: glreport.Major, Path: ch.File,
			Message: "the allowlist does not lint, so " + ch.Name + " cannot be checked: fix the lint errors first"})
	}
	return ch
}

// approvalChecks has one check per environment, placed at version: (the
// approvals sign the version).
func (r *ReviewReport) approvalChecks() []glreport.Check {
	file := allowlist.FileName
	if !r.LintOK {
		return []glreport.Check{r.unjudged(glreport.Check{Name: "approvals", File: file})}
	}
	var out []glreport.Check
	for _, e := range r.Envs {
		ch := glreport.Check{Name: "approvals " + e.Name, File: file}
		at := func(sev glreport.Severity, msg string) {
			ch.Findings = append(ch.Findings, glreport.Finding{Severity: sev, Path: file, Line: r.pos.versionLine, Message: msg})
		}
		switch {
		case !e.IdentityOK:
			at(glreport.Major, fmt.Sprintf("environment %s trusts another repository identity than %q: it would refuse this version", e.Name, r.Repository))
		case !e.Met:
			at(glreport.Major, fmt.Sprintf("%s has %d of %d approvals of version %d (%s)", e.Name, len(e.Approvers), e.Threshold, r.Version, approversText(e.Approvers)))
		}
		for _, ig := range e.Ignored {
			at(glreport.Info, "approval ignored for "+e.Name+": "+ig)
		}
		out = append(out, ch)
	}
	return out
}

func approversText(a []string) string {
	if len(a) == 0 {
		return "none"
	}
	return strings.Join(a, ", ")
}
