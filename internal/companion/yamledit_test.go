package companion

import (
	"strings"
	"testing"

	"gitlab.com/writ-ci/writ/allowlist"
)

const editHeader = "schema: writ/v2\nrepository: acme/deploy-allowlist\nversion: 3\nexpires: 2031-01-01T00:00:00Z\nsigners:\n  web-team:\n    ssh:\n      - " + bobKey + "\n"

func entry(name, job, script string) *allowlist.Entry {
	return &allowlist.Entry{
		Name:       name,
		Match:      allowlist.Match{Project: "acme/web", Job: job, Environments: []string{"production"}, Refs: []string{"refs/heads/main"}},
		Definition: allowlist.Definition{Script: []string{script}},
		Source:     allowlist.Source{Repository: "https://gitlab.example.com/acme/web.git", Signers: []string{"web-team"}, Mode: allowlist.ModeCommit},
	}
}

func TestEditAllowlist(t *testing.T) {
	t.Parallel()
	a, b, c := entry("a", "ja", "old a"), entry("b", "jb", "old b"), entry("c", "jc", "old c")
	file := editHeader + "jobs:\n  # entry a\n" + entryText(a, "  ") + "\n  # entry b, kept as a head comment\n" + entryText(b, "  ") + "  # foot of b\n" + entryText(c, "  ") + "# end\n"
	old, err := allowlist.Parse("allowlist.yaml", []byte(file), nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, file)
	}
	nb, d := entry("b", "jb", "new b\twith a tab"), entry("d", "jd", "new d")
	out, err := editAllowlist([]byte(file), []*allowlist.Entry{nb, d}, 4)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verifyEdit(out, old, []*allowlist.Entry{nb, d}, 4, nil); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := strings.Replace(editHeader, "version: 3", "version: 4", 1) + "jobs:\n  # entry a\n" + entryText(a, "  ") + "\n  # entry b, kept as a head comment\n" + entryText(nb, "  ") + "  # foot of b\n" + entryText(c, "  ") + "\n" + entryText(d, "  ") + "# end\n"
	if string(out) != want {
		t.Fatalf("got:\n%s\nwant:\n%s", out, want)
	}
	if !strings.Contains(string(out), `"new b\twith a tab"`) {
		t.Fatal("the tab is not escaped")
	}
}

func TestEditAllowlistEmptyJobs(t *testing.T) {
	t.Parallel()
	e := entry("a", "ja", "x")
	for _, tail := range []string{"jobs: []\n", "jobs: [] # none yet\n", "", "jobs: []\n# after\n"} {
		file := editHeader + tail
		old, err := allowlist.Parse("allowlist.yaml", []byte(file), nil)
		if err != nil {
			t.Fatalf("%q: %v", tail, err)
		}
		out, err := editAllowlist([]byte(file), []*allowlist.Entry{e}, 4)
		if err != nil {
			t.Fatalf("%q: %v", tail, err)
		}
		if _, err := verifyEdit(out, old, []*allowlist.Entry{e}, 4, nil); err != nil {
			t.Fatalf("%q: %v\n%s", tail, err, out)
		}
	}
}

func TestEditAllowlistRefusals(t *testing.T) {
	t.Parallel()
	e := entry("a", "ja", "x")
	for name, file := range map[string]string{
		"flow jobs":      editHeader + "jobs: [{name: z, match: {project: a/b, job: j, environments: [e], refs: [refs/heads/main]}, definition: {script: [x]}, source: {repository: r, signers: [web-team], mode: commit}}]\n",
		"quoted version": strings.Replace(editHeader, "version: 3", "version: \"3\"", 1) + "jobs: []\n",
		"not a mapping":  "- a\n",
		"invalid yaml":   "a: [\n",
	} {
		if _, err := editAllowlist([]byte(file), []*allowlist.Entry{e}, 4); err == nil {
			t.Errorf("%s: edited", name)
		}
	}
	// A text edit that does not produce the intended allowlist is caught.
	file := editHeader + "jobs: []\n"
	old, _ := allowlist.Parse("allowlist.yaml", []byte(file), nil)
	out, _ := editAllowlist([]byte(file), []*allowlist.Entry{e}, 4)
	tampered := strings.Replace(string(out), "script:\n        - x", "script:\n        - y", 1)
	if _, err := verifyEdit([]byte(tampered), old, []*allowlist.Entry{e}, 4, nil); err == nil || !strings.Contains(err.Error(), "differs") {
		t.Fatalf("tampered edit not caught: %v\n%s", err, tampered)
	}
	if _, err := verifyEdit([]byte(strings.Replace(string(out), "version: 4", "version: 5", 1)), old, []*allowlist.Entry{e}, 4, nil); err == nil {
		t.Fatal("wrong version not caught")
	}
	if _, err := verifyEdit(append(out, []byte("# \u202E\n")...), old, []*allowlist.Entry{e}, 4, nil); err == nil || !strings.Contains(err.Error(), "cannot see") {
		t.Fatalf("invisible character not caught: %v", err)
	}
}
