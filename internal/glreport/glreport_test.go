package glreport

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func report(line int) *Report {
	return &Report{Tool: "writ review", Checks: []Check{
		{Name: "lint", File: "allowlist.yaml", Findings: []Finding{
			{Severity: Major, Path: "allowlist.yaml", Line: line, Column: 7, Message: "mode: use commit, tag or strict"},
			{Severity: Major, Path: "allowlist.yaml", Line: line + 9, Column: 7, Message: "mode: use commit, tag or strict"},
			{Severity: Minor, Path: "allowlist.yaml", Line: 3, Message: "signer set ops is not used"},
		}},
		{Name: "version", File: "allowlist.yaml"},
	}}
}

type issue struct {
	Description string `json:"description"`
	CheckName   string `json:"check_name"`
	Fingerprint string `json:"fingerprint"`
	Severity    string `json:"severity"`
	Location    struct {
		Path  string `json:"path"`
		Lines struct {
			Begin int `json:"begin"`
		} `json:"lines"`
	} `json:"location"`
}

func codeQuality(t *testing.T, r *Report) []issue {
	t.Helper()
	var b bytes.Buffer
	if err := r.WriteCodeQuality(&b); err != nil {
		t.Fatal(err)
	}
	var out []issue
	dec := json.NewDecoder(&b)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCodeQuality(t *testing.T) {
	got := codeQuality(t, report(12))
	if len(got) != 3 {
		t.Fatalf("%d issues", len(got))
	}
	i := got[0]
	if i.CheckName != "writ/lint" || i.Severity != "major" || i.Location.Path != "allowlist.yaml" || i.Location.Lines.Begin != 12 || i.Description != "mode: use commit, tag or strict" {
		t.Errorf("issue %+v", i)
	}
	// Same problem twice: two fingerprints. Moved: the same fingerprints,
	// so GitLab does not call a moved problem new.
	if got[0].Fingerprint == got[1].Fingerprint {
		t.Error("two problems share a fingerprint")
	}
	moved := codeQuality(t, report(40))
	for k := range got {
		if got[k].Fingerprint != moved[k].Fingerprint {
			t.Errorf("fingerprint %d changed when the problem moved", k)
		}
	}
	// No findings: an empty array, which GitLab reads as "no problems".
	var b bytes.Buffer
	(&Report{Tool: "writ"}).WriteCodeQuality(&b)
	if strings.TrimSpace(b.String()) != "[]" {
		t.Errorf("empty report %q", b.String())
	}
}

func TestJUnit(t *testing.T) {
	var b bytes.Buffer
	if err := report(12).WriteJUnit(&b); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Suites []struct {
			Tests    int `xml:"tests,attr"`
			Failures int `xml:"failures,attr"`
			Cases    []struct {
				Name    string `xml:"name,attr"`
				File    string `xml:"file,attr"`
				Line    int    `xml:"line,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
					Text    string `xml:",chardata"`
				} `xml:"failure"`
				SystemOut string `xml:"system-out"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	s := doc.Suites[0]
	if s.Tests != 2 || s.Failures != 1 {
		t.Fatalf("suite %+v", s)
	}
	lint, version := s.Cases[0], s.Cases[1]
	if lint.Failure == nil || lint.Line != 12 || lint.File != "allowlist.yaml" ||
		!strings.Contains(lint.Failure.Text, "allowlist.yaml:12:7: mode") || !strings.Contains(lint.Failure.Text, "allowlist.yaml:21:7: mode") ||
		!strings.Contains(lint.Failure.Message, "(and 1 more)") || !strings.Contains(lint.SystemOut, "minor: allowlist.yaml:3: signer set ops") {
		t.Errorf("lint case %+v", lint)
	}
	if version.Failure != nil {
		t.Errorf("version case failed: %+v", version)
	}
}

func TestWriteFiles(t *testing.T) {
	dir := t.TempDir()
	cq, ju := filepath.Join(dir, "cq.json"), filepath.Join(dir, "junit.xml")
	if err := report(1).WriteFiles(cq, ju); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{cq, ju} {
		if fi, err := os.Stat(p); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", p, err)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if err := report(1).WriteFiles(filepath.Join(dir, "missing", "cq.json"), ""); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
}
