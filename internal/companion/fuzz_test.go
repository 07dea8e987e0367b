package companion

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/companion/gitlabtest"
)

// FuzzDeriveJobs feeds hostile CI lint responses (GitLab is untrusted):
// deriving jobs must not panic, and every derived job must have tags that
// target the runners.
func FuzzDeriveJobs(f *testing.F) {
	f.Add(`{"valid":true,"merged_yaml":"deploy:\n  tags: [p]\n  image: a@sha256:`+strings.Repeat("0", 64)+`\n","jobs":[{"name":"deploy","tag_list":["p"],"script":["x"]}]}`, "p")
	f.Add(`{"merged_yaml":":a:\n  :needs: [{job: b}]\n:b: {script: [x], artifacts: {}}","jobs":[{"name":"a","tag_list":["p"]}]}`, "p")
	f.Fuzz(func(t *testing.T, body, tag string) {
		var res lintResult
		if json.Unmarshal([]byte(body), &res) != nil {
			return
		}
		jobs, err := deriveJobs(&res, []string{tag})
		if err != nil {
			return
		}
		for _, j := range jobs {
			if !targets(j.Tags, []string{tag}) {
				t.Fatalf("job %q with tags %v does not target %q", j.Name, j.Tags, tag)
			}
		}
	})
}

// FuzzGitLabDuration: no panic, and an accepted duration is positive.
func FuzzGitLabDuration(f *testing.F) {
	for _, s := range []string{"1h 30m", "3600", "2 days", "1.5 hours and 3 mins", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseGitLabDuration(s)
		if err == nil && d <= 0 {
			t.Fatalf("%q accepted as %v", s, d)
		}
	})
}

// FuzzEditAllowlist edits arbitrary allowlist files: no panic, and when the
// original parses and the edit succeeds, verifyEdit either confirms exactly
// the intended change or refuses it.
func FuzzEditAllowlist(f *testing.F) {
	f.Add(baseAllowlist, "deploy", "echo hi")
	f.Add("schema: writ/v2\nrepository: a/b\nversion: 1\nexpires: 2031-01-01T00:00:00Z\njobs: []\n", "j", "x")
	f.Add("schema: writ/v2\nrepository: a/b\nversion: 1\nexpires: 2031-01-01T00:00:00Z\n", "j", "x\ty")
	f.Fuzz(func(t *testing.T, file, job, script string) {
		if len(file) > 1<<16 || !utf8.ValidString(job) || !utf8.ValidString(script) {
			return
		}
		old, err := allowlist.Parse(allowlist.FileName, []byte(file), nil)
		if err != nil || old.Version >= 1<<62 {
			return
		}
		e := &allowlist.Entry{
			Name:  EntryName("acme/web", job, "production"),
			Match: allowlist.Match{Project: "acme/web", Job: job, Environments: []string{"production"}, Refs: []string{"refs/heads/main"}},
			Definition: allowlist.Definition{Script: []string{script}, Timeout: time.Minute,
				Variables: []allowlist.Variable{{Name: "CONF", Value: script, HasValue: true, File: true}, {Name: "LD_X", Pattern: "^a$", Dangerous: true}}},
			Source: allowlist.Source{Repository: "https://gitlab.example.com/acme/web.git", Mode: allowlist.ModeCommit},
		}
		for name := range old.Signers {
			e.Source.Signers = []string{name}
			break
		}
		content, err := editAllowlist([]byte(file), []*allowlist.Entry{e}, old.Version+1)
		if err != nil {
			return
		}
		nw, err := verifyEdit(content, old, []*allowlist.Entry{e}, old.Version+1, nil)
		if err != nil {
			return
		}
		if nw.Version != old.Version+1 || findEntry(nw, e.Name) == nil {
			t.Fatalf("verified edit lacks the change:\n%s", content)
		}
	})
}

// FuzzInertQuickActions: whatever text writ quotes (job scripts, GitLab's
// own messages), GitLab's quick action scanner, as the fake follows it,
// finds no command in the result; and the result differs from the input
// only by a "\" before a line's first "/" or one space at a line's start.
func FuzzInertQuickActions(f *testing.F) {
	for _, s := range []string{"/merge", "```\n/close\n```", "````sh\n/approve\n````\n", "~~~\n/label x\n~~~", "   ```\n/lock\n", "a\n  /unlock\n<p>\n/title t\n</p>", ">>>\n/merge\n>>>", "\r/merge"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		if len(in) > 1<<14 {
			return
		}
		out := inertQuickActions(in)
		if _, cmds := gitlabtest.QuickActionsIn(out); len(cmds) > 0 {
			t.Fatalf("GitLab would run %+v from %q", cmds, out)
		}
		// Carriage returns go, as GitLab deletes them anyway.
		a, b := strings.Split(strings.ReplaceAll(in, "\r", ""), "\n"), strings.Split(out, "\n")
		if len(a) != len(b) {
			t.Fatalf("line count changed: %q → %q", in, out)
		}
		for i := range a {
			if b[i] == a[i] || b[i] == " "+a[i] {
				continue
			}
			if j := strings.Index(a[i], "/"); j >= 0 && b[i] == a[i][:j]+`\`+a[i][j:] {
				continue
			}
			t.Fatalf("line %d changed beyond an escape: %q → %q", i, a[i], b[i])
		}
	})
}

// FuzzNextFromLink reads hostile Link headers: no panic, and a next page
// found is positive.
func FuzzNextFromLink(f *testing.F) {
	for _, s := range []string{`<https://g/api/v4/x?page=2&per_page=100>; rel="next", <https://g/x?page=9>; rel="last"`, `<>; rel=next`, `<https://g/x?cursor=abc>; rel="next"`, `;;,<`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		n, err := nextFromLink(h)
		if err == nil && n < 0 {
			t.Fatalf("%q: next page %d", h, n)
		}
	})
}
