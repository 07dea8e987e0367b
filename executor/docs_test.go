package executor

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/config"
)

var update = flag.Bool("update", false, "rewrite the generated examples in docs/ (make docs)")

var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

// docsBlock checks (or with -update rewrites) the fenced example between
// <!-- BEGIN GENERATED: name --> and <!-- END GENERATED: name --> in a
// docs file against what the code prints, colours removed.
func docsBlock(t *testing.T, file, name, printed string) {
	t.Helper()
	docsFenced(t, file, name, "text", printed)
}

// docsFenced is docsBlock for a fenced block of language lang.
func docsFenced(t *testing.T, file, name, lang, printed string) {
	t.Helper()
	content := "```" + lang + "\n" + ansi.ReplaceAllString(printed, "") + "```\n"
	path := filepath.Join("..", "docs", file)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	begin, end := "<!-- BEGIN GENERATED: "+name+" -->\n", "<!-- END GENERATED: "+name+" -->"
	i, j := strings.Index(string(data), begin), strings.Index(string(data), end)
	if i < 0 || j < i {
		t.Fatalf("docs/%s has no generated block %q", file, name)
	}
	if string(data[i+len(begin):j]) == content {
		return
	}
	if !*update {
		t.Fatalf("docs/%s example %q differs from what writ prints (run `make docs`):\n--- docs\n%s--- writ\n%s", file, name, data[i+len(begin):j], content)
	}
	out := string(data[:i+len(begin)]) + content + string(data[j:])
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
}

// docsEntry is the entry the examples use: it admits the fixture payload's
// definition (executor/testdata/payload.json).
func docsEntry() *allowlist.Entry {
	return &allowlist.Entry{
		Name:  "app-build-production",
		Match: allowlist.Match{Project: "group/app", Job: "build", Environments: []string{"production"}, Refs: []string{"refs/heads/main"}},
		Definition: allowlist.Definition{
			Script:    []string{`echo "$GREETING from $CI_PROJECT_PATH"`, "test -f README.md"},
			Variables: []allowlist.Variable{{Name: "GREETING", Value: "hello", HasValue: true}},
		},
		Source: allowlist.Source{Repository: "https://gitlab.example.com/group/app.git", Signers: []string{"devs"}, Mode: allowlist.ModeCommit},
	}
}

// TestDocsRefusalExample: the refusal block in docs/executor.md is what
// writ prints for the fixture payload whose second script line carries an
// invisible character.
func TestDocsRefusalExample(t *testing.T) {
	data, err := os.ReadFile("testdata/payload.json")
	if err != nil {
		t.Fatal(err)
	}
	data = []byte(strings.Replace(string(data), `"test -f README.md"`, `"test -f README.md\u200b"`, 1))
	p, err := DecodePayload(data)
	if err != nil {
		t.Fatal(err)
	}
	e := docsEntry()
	d := &Decision{Mode: config.Enforce, Environment: "production",
		Job:       JobRef{ID: p.ID, Project: p.Project, Name: p.JobName, Ref: p.Ref, RefType: p.RefType, SHA: p.SHA},
		Allowlist: AllowlistRef{Version: 7, Commit: "9d1e0c4a2b33f0e1d2c3b4a5968778695a4b3c2d"},
		Entry:     e, EntryName: e.Name}
	checkDefinition(d, p, e, nil)
	d.Suggestion = suggestion(p, "production", e, nil)
	if len(d.Failures) == 0 {
		t.Fatal("the example payload is not refused")
	}
	var b strings.Builder
	writeRefusal(&b, d, false)
	docsBlock(t, "executor.md", "refusal", b.String())
}

// TestDocsAdmissionExample: the admission lines in docs/executor.md.
func TestDocsAdmissionExample(t *testing.T) {
	e := docsEntry()
	s := &Snapshot{Entry: e, Environment: "production", Allowlist: AllowlistRef{Version: 7, Commit: "9d1e0c4a2b33f0e1d2c3b4a5968778695a4b3c2d"},
		Repository: e.Source.Repository, Commit: "3f2a9c1d0b7e4f5a6b7c8d9e0f1a2b3c4d5e6f70",
		Signer: "ssh SHA256:hZarcUr+9NDwul+vIePVvqWLD8No7gf+nCYUXElRyoA (dev@example.com)"}
	var b strings.Builder
	writeAdmitted(&b, s, "v0.1.0 (commit 0123456789ab)")
	docsBlock(t, "executor.md", "admission", b.String())
}
