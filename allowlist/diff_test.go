package allowlist

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDiffIdentical(t *testing.T) {
	t.Parallel()
	d := Diff(parseExample(t), parseExample(t))
	if !d.Empty() {
		t.Fatalf("identical allowlists differ: %+v", d)
	}
	if md := d.Markdown(); !strings.Contains(md, "No changes to jobs or signer sets.") {
		t.Fatalf("markdown:\n%s", md)
	}
	if !Diff(nil, nil).Empty() {
		t.Fatal("nil vs nil differs")
	}
	if Diff(nil, parseExample(t)).Empty() || Diff(parseExample(t), nil).Empty() {
		t.Fatal("adding or removing an allowlist is empty")
	}
}

func TestDiffVersionOnly(t *testing.T) {
	t.Parallel()
	a, b := parseExample(t), parseExample(t)
	b.Version = 8
	d := Diff(a, b)
	if d.Empty() || len(d.Environments) != 0 || len(d.Signers) != 0 {
		t.Fatalf("version-only change: %+v", d)
	}
	b.Version, b.Expires = 7, b.Expires.Add(time.Hour)
	if Diff(a, b).Empty() {
		t.Fatal("expiry change is empty")
	}
	md := Diff(a, b).Markdown()
	for _, want := range []string{"**Version does not increase** (7 → 7)", "Expires: `2027-03-01T00:00:00Z` → `2027-03-01T01:00:00Z`", "No job changes in any environment."} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	b.Repository = "evil/fork"
	if md := Diff(a, b).Markdown(); !strings.Contains(md, "**Repository identity changes**: `acme/deploy-allowlist` → `evil/fork`") {
		t.Errorf("identity change not flagged:\n%s", md)
	}
}

func TestDiffPerEnvironment(t *testing.T) {
	t.Parallel()
	a, b := parseExample(t), parseExample(t)
	prod := b.Jobs[0]
	prod.Definition.Script = []string{"./deploy.sh --force", prod.Definition.Script[1], "echo done\u202e"}
	prod.Definition.Variables[1].Pattern = "^.*$"
	prod.Definition.Variables = append(prod.Definition.Variables, Variable{Name: "EXTRA", Value: "x", HasValue: true})
	prod.Definition.Image = ""
	prod.Definition.Timeout = 0
	prod.Definition.Artifacts = true
	prod.Source.Mode = ModeStrict
	prod.Source.AllowRollback = true
	b.Jobs[1].Match.Environments = []string{"staging", "canary"}
	b.Jobs = b.Jobs[:2] // infra-release disappears from production and staging
	b.Signers["web-team"].SSH = append(b.Signers["web-team"].SSH, strings.Replace(bobSSH, "bob@", "eve@", 1))
	b.Signers["web-team"].OpenPGP[0].Armored = append([]byte{}, b.Signers["web-team"].OpenPGP[0].Armored...)
	b.Signers["web-team"].OpenPGP[0].Armored[40] ^= 1

	d := Diff(a, b)
	var envs []string
	for _, e := range d.Environments {
		envs = append(envs, e.Environment)
	}
	if !reflect.DeepEqual(envs, []string{"canary", "production", "staging"}) {
		t.Fatalf("environments %v", envs)
	}
	canary, production, staging := d.Environments[0], d.Environments[1], d.Environments[2]
	if len(canary.Added) != 1 || canary.Added[0].Name != "web-deploy-staging" || len(canary.Changed)+len(canary.Removed) != 0 {
		t.Fatalf("canary: %+v", canary)
	}
	if len(production.Added) != 0 || len(production.Changed) != 1 || len(production.Removed) != 1 || production.Removed[0].Name != "infra-release" {
		t.Fatalf("production: %+v", production)
	}
	var fields []string
	for _, c := range production.Changed[0].Changes {
		fields = append(fields, c.Field)
	}
	want := []string{
		"definition.image", "definition.script", "definition.variables.EXTRA", "definition.variables.RELEASE",
		"definition.timeout", "definition.artifacts", "source.mode", "source.allow_rollback", "signer set web-team",
	}
	if !reflect.DeepEqual(fields, want) {
		t.Fatalf("changed fields\n got %q\nwant %q", fields, want)
	}
	script := production.Changed[0].Changes[1].Diff
	wantDiff := "@@ -1,2 +1,3 @@\n" +
		"-./deploy.sh --target \"$DEPLOY_TARGET\" --release \"$RELEASE\"\n" +
		"+./deploy.sh --force\n" +
		" if [ -n \"$NOTIFY\" ]; then\\n  ./notify.sh \"deployed $RELEASE\"\\nfi\\n\n" +
		"+echo done<U+202E>\n"
	if script != wantDiff {
		t.Fatalf("script diff:\n%s\nwant:\n%s", script, wantDiff)
	}
	if len(staging.Changed) != 1 || staging.Changed[0].Changes[0].Field != "match.environments" || len(staging.Removed) != 1 {
		t.Fatalf("staging: %+v", staging)
	}
	if len(d.Signers) != 1 {
		t.Fatalf("signers: %+v", d.Signers)
	}
	s := d.Signers[0]
	if s.Name != "web-team" || s.Added || s.Removed || len(s.AddedKeys) != 1 || !strings.HasPrefix(s.AddedKeys[0], "ssh eve@example.com ") ||
		len(s.ChangedKeys) != 1 || s.ChangedKeys[0] != "openpgp 40C8C819C0DCCD991D8E05859F55F7974B5C971B (keys/alice.asc)" ||
		!reflect.DeepEqual(s.UsedBy, []string{"web-deploy-production", "web-deploy-staging"}) {
		t.Fatalf("web-team diff: %+v", s)
	}

	md := d.Markdown()
	for _, w := range []string{
		"## Allowlist `acme/deploy-allowlist`: version 7 → 7",
		"### Environment `canary`\n\n#### Newly allowed (1)\n\n**`web-deploy-staging`**: job `deploy` of `acme/web`",
		"### Environment `production`",
		"- `definition.image`: `registry.example.com/deploy@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08` → *empty*",
		"- `definition.variables.RELEASE`: `pattern ^v[0-9]+\\.[0-9]+\\.[0-9]+$` → `pattern ^.*$`",
		"- `definition.variables.EXTRA`: `(not passed)` → `value \"x\"`",
		"- `definition.timeout`: `15m` → `(environment default)`",
		"- `source.allow_rollback`: `false` → `true`",
		"```diff\n@@ -1,2 +1,3 @@\n",
		"+echo done<U+202E>\n```",
		"#### No longer allowed (1)\n\n- `infra-release`: job `release: tag` of `acme/infra` on `refs/tags/v1.4.0`",
		"### Signer sets\n\n- `web-team` changed, used by `web-deploy-production`, `web-deploy-staging`\n  - added: `ssh eve@example.com ",
		"  - key file changed (user IDs, subkeys or revocations): `openpgp 40C8C819C0DCCD991D8E05859F55F7974B5C971B (keys/alice.asc)`",
	} {
		if !strings.Contains(md, w) {
			t.Errorf("markdown lacks %q", w)
		}
	}
	if strings.ContainsRune(md, '\u202e') {
		t.Error("markdown carries a raw RIGHT-TO-LEFT OVERRIDE")
	}
	if t.Failed() {
		t.Log(md)
	}
}

func TestDiffNewAndRemoved(t *testing.T) {
	t.Parallel()
	a := parseExample(t)
	d := Diff(nil, a)
	md := d.Markdown()
	for _, w := range []string{
		"## New allowlist `acme/deploy-allowlist`, version 7",
		"### Environment `production`\n\n#### Newly allowed (2)",
		"```sh\n./deploy.sh --target \"$DEPLOY_TARGET\" --release \"$RELEASE\"\nif [ -n \"$NOTIFY\" ]; then\\n  ./notify.sh \"deployed $RELEASE\"\\nfi\\n\n```",
		"- variables: `DEPLOY_TARGET` `value \"web-prod\"`; `RELEASE` `pattern ^v[0-9]+\\.[0-9]+\\.[0-9]+$`; `NOTIFY` `value \"\"`",
		"- source: `ssh://git@gitlab.example.com/acme/infra.git`, mode `tag`, signed by `release-managers`, pinned to `3f786850e387550fdab836ed7e6dc881de23001b`",
		"- `release-managers` added, used by `infra-release`",
	} {
		if !strings.Contains(md, w) {
			t.Errorf("markdown lacks %q", w)
		}
	}
	if t.Failed() {
		t.Log(md)
	}
	md = Diff(a, nil).Markdown()
	for _, w := range []string{
		"## Allowlist `acme/deploy-allowlist` removed (was version 7)",
		"#### No longer allowed (2)",
		"- `release-managers` removed, used by `infra-release`",
	} {
		if !strings.Contains(md, w) {
			t.Errorf("markdown lacks %q:\n%s", w, md)
		}
	}
}

// TestMarkdownInjection: hostile values stay inside code spans and blocks.
func TestMarkdownInjection(t *testing.T) {
	t.Parallel()
	a := parseExample(t)
	b := parseExample(t)
	e := b.Jobs[0]
	e.Name = "x"
	e.Match.Job = "deploy` <img src=x onerror=alert(1)> @all `"
	e.Definition.Script = []string{"```", "echo ````", "</code></pre><script>alert(1)</script>"}
	md := Diff(a, b).Markdown()
	for _, w := range []string{
		"job `` deploy` <img src=x onerror=alert(1)> @all ` `` of",
		"`````sh\n```\necho ````\n</code></pre><script>alert(1)</script>\n`````\n",
	} {
		if !strings.Contains(md, w) {
			t.Errorf("markdown lacks %q:\n%s", w, md)
		}
	}
}

func TestCodeSpan(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"a":         "`a`",
		"a`b":       "``a`b``",
		"`":         "`` ` ``",
		"a``b`":     "``` a``b` ```",
		"":          "*empty*",
		"x\u202ey":  "`x<U+202E>y`",
		"two\nline": "`two\\nline`",
	} {
		if got := code(in); got != want {
			t.Errorf("code(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUnifiedDiff(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		a, b []string
		want string
	}{
		{nil, []string{"a"}, "@@ -0,0 +1,1 @@\n+a\n"},
		{[]string{"a"}, nil, "@@ -1,1 +0,0 @@\n-a\n"},
		{[]string{"a", "b", "c"}, []string{"a", "x", "c"}, "@@ -1,3 +1,3 @@\n a\n-b\n+x\n c\n"},
		{
			[]string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"},
			[]string{"1", "X", "3", "4", "5", "6", "7", "8", "9", "10", "Y", "12"},
			"@@ -1,5 +1,5 @@\n 1\n-2\n+X\n 3\n 4\n 5\n@@ -8,5 +8,5 @@\n 8\n 9\n 10\n-11\n+Y\n 12\n",
		},
		{[]string{"a", "b"}, []string{"b", "a"}, "@@ -1,2 +1,2 @@\n+b\n a\n-b\n"},
		{[]string{"x\t"}, []string{"x "}, "@@ -1,1 +1,1 @@\n-x\\t\n+x<SP>\n"},
	} {
		if got := unifiedDiff(c.a, c.b); got != c.want {
			t.Errorf("unifiedDiff(%q, %q) =\n%s\nwant\n%s", c.a, c.b, got, c.want)
		}
	}
	// Past the LCS bound the diff is everything out, everything in.
	a := make([]string, 3000)
	b := make([]string, 3000)
	for i := range a {
		a[i], b[i] = "a"+strings.Repeat("x", i%7), "b"
	}
	got := unifiedDiff(a, b)
	if strings.Count(got, "\n-") != 3000 || strings.Count(got, "\n+") != 3000 {
		t.Fatal("large diff is not a full replacement")
	}
}

// TestDiffShowsKindsAndMarkers: a variable's kind, the dangerous marker and
// a ref's kind change what a job sees, so a review shows each.
func TestDiffShowsKindsAndMarkers(t *testing.T) {
	t.Parallel()
	a, b := parseExample(t), parseExample(t)
	prod := b.Jobs[0]
	prod.Definition.Variables[2].File = true // NOTIFY becomes a file variable
	prod.Definition.Variables = append(prod.Definition.Variables, Variable{Name: "LD_LIBRARY_PATH", Value: "/opt/lib", HasValue: true, Dangerous: true})
	prod.Match.Refs = []string{"refs/tags/main"}
	md := Diff(a, b).Markdown()
	for _, want := range []string{
		"`value \"\"` → `file, value \"\"`",
		"`(not passed)` → `value \"/opt/lib\" (dangerous: true)`",
		"`[refs/heads/main]` → `[refs/tags/main]`",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}
