// Package glreport writes check results as GitLab report artifacts: Code
// Quality (artifacts:reports:codequality) and JUnit (artifacts:reports:junit),
// so that a merge request shows writ's findings in its widgets, at their
// file and line, instead of only in a job log.
//
// The Code Quality format is GitLab's subset of Code Climate's: a JSON array
// of issues, each with description, check_name, fingerprint, severity,
// location.path and location.lines.begin. GitLab compares the fingerprints of
// the merge request's report with the target branch's to tell new problems
// from old ones, so a fingerprint leaves out the line: moving a problem is
// not a new problem.
package glreport

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Severity is a Code Quality severity. Major and above fail a check.
type Severity string

// The severities GitLab's Code Quality report knows.
const (
	Info     Severity = "info"
	Minor    Severity = "minor"
	Major    Severity = "major"
	Critical Severity = "critical"
	Blocker  Severity = "blocker"
)

// fails reports whether a finding of severity s fails its check.
func (s Severity) fails() bool { return s == Major || s == Critical || s == Blocker }

// Finding is one problem at a position in the repository.
type Finding struct {
	Severity Severity
	// Path is relative to the repository root, as GitLab resolves it
	// against the merge request's diff.
	Path string
	// Line and Column are 1-based; zero means unknown (GitLab then shows the
	// finding at line 1).
	Line, Column int
	Message      string
}

// String renders the finding as path:line:column: message.
func (f Finding) String() string {
	var b strings.Builder
	b.WriteString(f.Path)
	if f.Line > 0 {
		b.WriteString(":" + strconv.Itoa(f.Line))
		if f.Column > 0 {
			b.WriteString(":" + strconv.Itoa(f.Column))
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	b.WriteString(f.Message)
	return b.String()
}

// Check is one check of a run: a JUnit test case, and the Code Quality
// issues it found. A check without a finding of severity Major or above
// passed.
type Check struct {
	// Name is the check's name, shown as the test case and, prefixed with
	// the report's Tool, as each issue's check_name ("writ/lint").
	Name string
	// File is the file the check judged, for the test case.
	File     string
	Findings []Finding
}

// Failed reports whether a finding fails the check.
func (c *Check) Failed() bool {
	for _, f := range c.Findings {
		if f.Severity.fails() {
			return true
		}
	}
	return false
}

// Report is the result of one run of a tool: its checks, in order.
type Report struct {
	// Tool names the run ("writ allowlist lint"); its first word prefixes
	// check names.
	Tool   string
	Checks []Check
}

type cqLines struct {
	Begin int `json:"begin"`
}

type cqLocation struct {
	Path  string  `json:"path"`
	Lines cqLines `json:"lines"`
}

type cqIssue struct {
	Description string     `json:"description"`
	CheckName   string     `json:"check_name"`
	Fingerprint string     `json:"fingerprint"`
	Severity    Severity   `json:"severity"`
	Location    cqLocation `json:"location"`
}

func (r *Report) prefix() string {
	tool, _, _ := strings.Cut(r.Tool, " ")
	if tool == "" {
		tool = "writ"
	}
	return tool
}

// WriteCodeQuality writes every finding as a GitLab Code Quality issue.
func (r *Report) WriteCodeQuality(w io.Writer) error {
	issues := []cqIssue{}
	seen := map[string]int{}
	for _, c := range r.Checks {
		name := r.prefix() + "/" + c.Name
		for _, f := range c.Findings {
			line := f.Line
			if line < 1 {
				line = 1
			}
			// Identical problems in one file are told apart by their order,
			// not their line, so that an edit above them keeps them "old".
			key := name + "\x00" + f.Path + "\x00" + f.Message
			seen[key]++
			sum := sha256.Sum256([]byte(key + "\x00" + strconv.Itoa(seen[key])))
			issues = append(issues, cqIssue{
				Description: f.Message,
				CheckName:   name,
				Fingerprint: hex.EncodeToString(sum[:16]),
				Severity:    f.Severity,
				Location:    cqLocation{Path: f.Path, Lines: cqLines{Begin: line}},
			})
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(issues)
}

type juFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

type juCase struct {
	Name      string     `xml:"name,attr"`
	Classname string     `xml:"classname,attr"`
	File      string     `xml:"file,attr,omitempty"`
	Line      int        `xml:"line,attr,omitempty"`
	Failure   *juFailure `xml:"failure,omitempty"`
	SystemOut string     `xml:"system-out,omitempty"`
}

type juSuite struct {
	XMLName  xml.Name `xml:"testsuite"`
	Name     string   `xml:"name,attr"`
	Tests    int      `xml:"tests,attr"`
	Failures int      `xml:"failures,attr"`
	Cases    []juCase `xml:"testcase"`
}

type juSuites struct {
	XMLName xml.Name `xml:"testsuites"`
	Suites  []juSuite
}

// WriteJUnit writes each check as a JUnit test case. A failed case's failure
// lists every finding as path:line:column: message; findings that do not
// fail the check go to its system-out.
func (r *Report) WriteJUnit(w io.Writer) error {
	s := juSuite{Name: r.Tool, Tests: len(r.Checks)}
	for _, c := range r.Checks {
		jc := juCase{Name: c.Name, Classname: r.Tool, File: c.File}
		var fail, other []string
		for _, f := range c.Findings {
			if f.Severity.fails() {
				if jc.Line == 0 && f.Path == c.File {
					jc.Line = f.Line
				}
				fail = append(fail, f.String())
			} else {
				other = append(other, string(f.Severity)+": "+f.String())
			}
		}
		if len(fail) > 0 {
			s.Failures++
			msg := fail[0]
			if len(fail) > 1 {
				msg = fmt.Sprintf("%s (and %d more)", fail[0], len(fail)-1)
			}
			jc.Failure = &juFailure{Message: msg, Type: c.Name, Text: strings.Join(fail, "\n")}
		}
		jc.SystemOut = strings.Join(other, "\n")
		s.Cases = append(s.Cases, jc)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(juSuites{Suites: []juSuite{s}}); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// WriteFiles writes the Code Quality report to codequality and the JUnit
// report to junit; an empty path skips that report. Each file is written
// whole or not at all, so a killed job leaves no half report for GitLab to
// reject.
func (r *Report) WriteFiles(codequality, junit string) error {
	if codequality != "" {
		if err := writeFile(codequality, r.WriteCodeQuality); err != nil {
			return fmt.Errorf("code quality report: %w", err)
		}
	}
	if junit != "" {
		if err := writeFile(junit, r.WriteJUnit); err != nil {
			return fmt.Errorf("JUnit report: %w", err)
		}
	}
	return nil
}

func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = write(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
