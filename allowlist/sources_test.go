package allowlist

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"gitlab.com/writ-ci/writ/internal/testkeys"
)

// extraLines is source.git and one source.extra item appended to the base
// document's source (after line 22): lines 23 to 31.
func extraLines(item ...string) edit {
	lines := []string{
		"      git: read-only",           // 23
		"      extra:",                   // 24
		"        - path: settings",       // 25
		"          ref: refs/heads/main", // 26
		"          submodule: true",      // 27
		"          repository: https://gitlab.example.com/acme/settings.git", // 28
		"          signers: [web-team]",                                      // 29
		"          mode: commit",                                             // 30
	}
	return addAfter(22, append(lines, item...)...)
}

func TestParseExtraSources(t *testing.T) {
	t.Parallel()
	doc := edited(extraLines(
		"        - path: vendor/tools",
		"          ref: refs/tags/v2",
		"          repository: https://gitlab.example.com/acme/tools.git",
		"          signers: [web-team]",
		"          mode: tag",
		"          pin: 0123456789abcdef0123456789abcdef01234567",
		"          allow_rollback: true",
	))
	a, warns, err := Lint(FileName, []byte(doc), nil)
	if err != nil || len(warns) > 0 {
		t.Fatalf("%v %v", err, warns)
	}
	src := a.Jobs[0].Source
	if src.Git != GitReadOnly || len(src.Extra) != 2 {
		t.Fatalf("source %+v", src)
	}
	s, tools := src.Extra[0], src.Extra[1]
	if s.Path != "settings" || s.Ref != "refs/heads/main" || !s.Submodule || s.Policy.Repository != "https://gitlab.example.com/acme/settings.git" ||
		s.Policy.Mode != ModeCommit || s.Policy.Signers[0] != "web-team" || s.Pos != (Pos{Line: 25, Column: 11}) {
		t.Fatalf("settings %+v", s)
	}
	if tools.Submodule || tools.Policy.Pin != "0123456789abcdef0123456789abcdef01234567" || tools.Policy.Mode != ModeTag || !tools.Policy.AllowRollback {
		t.Fatalf("tools %+v", tools)
	}
	out, err := Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse(FileName, out, nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	requireSame(t, b, a)
	if !strings.Contains(string(out), "      git: read-only\n      extra:\n        - path: settings\n          ref: refs/heads/main\n          submodule: true\n") {
		t.Fatalf("layout:\n%s", out)
	}
}

// A signer set named only by an extra source is in use.
func TestExtraSourceSignersAreUsed(t *testing.T) {
	t.Parallel()
	doc := edited(addAfter(8, "  settings-team:", "    ssh:", "      - "+bobSSH), extraLines())
	doc = strings.Replace(doc, "          signers: [web-team]\n          mode: commit\n", "          signers: [settings-team]\n          mode: commit\n", 1)
	if _, warns, err := Lint(FileName, []byte(doc), nil); err != nil || len(warns) > 0 {
		t.Fatalf("%v %v", err, warns)
	}
}

func TestParseRefusesExtraSources(t *testing.T) {
	t.Parallel()
	for _, c := range []negCase{
		{"git mode", edited(setLine(22, "      mode: commit\n      git: writable")), []string{`23:12|git "writable": use read-only`}},
		{"extra not a list", edited(addAfter(22, "      extra: settings")), []string{"23:14|source.extra must be a list"}},
		{"unknown key", edited(extraLines("          git: read-only")), []string{`31:11|unknown key "git" in a source.extra item`}},
		{"missing policy", edited(addAfter(22, "      extra:", "        - path: settings", "          ref: refs/heads/main")),
			[]string{`24:11|source.extra item: missing required key "repository"`, `24:11|missing required key "signers"`, `24:11|missing required key "mode"`}},
		{"absolute path", edited(setLine(25, "        - path: /etc"), extraLines()), []string{`25:17|path "/etc" is absolute`}},
		{"path leaves", edited(setLine(25, "        - path: ../x"), extraLines()), []string{`25:17|path "../x" leaves the build directory`}},
		{"unclean path", edited(setLine(25, "        - path: a//b"), extraLines()), []string{`25:17|write it as a/b`}},
		{"dot path", edited(setLine(25, "        - path: ."), extraLines()), []string{`25:17|path "." is not a clean path`}},
		{"git path", edited(setLine(25, "        - path: sub/.GIT/hooks"), extraLines()), []string{`25:17|names a .git directory`}},
		{"short ref", edited(setLine(26, "          ref: main"), extraLines()), []string{`26:16|ref "main": write the full ref: refs/heads/main`}},
		{"bad repository", edited(setLine(28, "          repository: ftp://x/y"), extraLines()), []string{`28:23|repository "ftp://x/y"`}},
		{"undefined signers", edited(setLine(29, "          signers: [nobody]"), extraLines()), []string{`29:21|signer set "nobody" is not defined`}},
		{"bad pin", edited(extraLines("          pin: main")), []string{`31:16|pin "main": write a full commit id`}},
		{"tag mode on branch", edited(setLine(30, "          mode: tag"), extraLines()), []string{`25:11|mode tag verifies a signed tag, and ref "refs/heads/main" is a branch`}},
		{"nested paths", edited(extraLines(
			"        - path: settings/prod",
			"          ref: refs/heads/main",
			"          repository: https://gitlab.example.com/acme/prod.git",
			"          signers: [web-team]",
			"          mode: commit",
		)), []string{`31:11|source.extra path "settings/prod" overlaps path "settings" (line 25)`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse(FileName, []byte(c.doc), nil)
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error %v, want an ErrorList", err)
			}
			checkErrors(t, list, c.want)
		})
	}
}

func TestDiffShowsExtraSources(t *testing.T) {
	t.Parallel()
	old, err := Parse(FileName, []byte(edited(extraLines())), nil)
	if err != nil {
		t.Fatal(err)
	}
	doc := edited(setLine(23, "      git: none"), extraLines("          pin: 0123456789abcdef0123456789abcdef01234567"))
	next, err := Parse(FileName, []byte(doc), nil)
	if err != nil {
		t.Fatal(err)
	}
	ch := entryChanges(old.Jobs[0], next.Jobs[0])
	if len(ch) != 2 || ch[0].Field != "source.git" || ch[0].Old != "read-only" || ch[0].New != "none" ||
		ch[1].Field != "source.extra" || !strings.Contains(ch[1].New, "the submodule's gitlink, which must be 0123456789abcdef0123456789abcdef01234567") {
		t.Fatalf("changes %+v", ch)
	}
}

// A key change in a signer set only an extra source uses is shown on the
// entry, and the set is reported as used by it.
func TestDiffShowsExtraSignerSetChanges(t *testing.T) {
	t.Parallel()
	doc := func(key string) string {
		d := edited(addAfter(8, "  settings-team:", "    ssh:", "      - "+key), extraLines())
		return strings.Replace(d, "          signers: [web-team]\n          mode: commit\n", "          signers: [settings-team]\n          mode: commit\n", 1)
	}
	other := testkeys.SSHKey(t, "erin@example.com").AllowedSignersLine("")
	old, err := Parse(FileName, []byte(doc(bobSSH)), nil)
	if err != nil {
		t.Fatal(err)
	}
	next, err := Parse(FileName, []byte(doc(other)), nil)
	if err != nil {
		t.Fatal(err)
	}
	d := Diff(old, next)
	if len(d.Environments) != 1 || len(d.Environments[0].Changed) != 1 {
		t.Fatalf("diff %+v", d)
	}
	ch := d.Environments[0].Changed[0].Changes
	if len(ch) != 1 || ch[0].Field != "source.extra signer set settings-team" {
		t.Fatalf("changes %+v", ch)
	}
	for _, s := range d.Signers {
		if s.Name == "settings-team" && (len(s.UsedBy) != 1 || s.UsedBy[0] != "web-deploy") {
			t.Fatalf("settings-team used by %v", s.UsedBy)
		}
	}
}

// FuzzSourcePath: a source.extra path the allowlist accepts stays below
// the build directory it is joined to, names no .git, and has only
// ordinary components (what gitrepo.PathEntry and the executor's checkout
// expect of it).
func FuzzSourcePath(f *testing.F) {
	for _, s := range []string{"settings", "vendor/modules", "a/../b", "./x", "x/", ".GIT/hooks", "a//b", "/etc", "a\\b", "..", "a/.git", "é/ü", "a\x00b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if checkSourcePath(p) != "" {
			return
		}
		root := "/builds/123"
		full := filepath.Join(root, filepath.FromSlash(p))
		if !strings.HasPrefix(full, root+"/") || full != root+"/"+p {
			t.Fatalf("%q is joined to %q", p, full)
		}
		for _, c := range strings.Split(p, "/") {
			if c == "" || c == "." || c == ".." || strings.EqualFold(c, ".git") || strings.ContainsRune(c, 0) {
				t.Fatalf("%q: component %q accepted", p, c)
			}
		}
	})
}
