package allowlist

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// uploadsDoc is an allowlist whose one entry has definition lines extra.
func uploadsDoc(extra string) string {
	return minimalHeader + "signers:\n  web-team:\n    ssh: [" + bobSSH + "]\njobs:\n" +
		"  - name: plan\n    match:\n      project: acme/infra\n      job: plan\n      environments: [production]\n      refs: [refs/heads/main]\n" +
		"    definition:\n      script: [terraform plan -out=plan.tfplan]\n" + extra +
		"    source:\n      repository: https://gitlab.example.com/acme/infra.git\n      signers: [web-team]\n      mode: commit\n"
}

const goodUploads = `      uploads:
        max_bytes: 10485760
        artifacts:
          - type: archive
            name: plan
            paths: [plan.tfplan, "out/**/*.json"]
            when: always
            expire_in: 1 year
          - type: junit
            paths: [reports/junit.xml]
          - type: terraform
            paths: [plan.json]
            when: on_failure
`

func TestParseUploads(t *testing.T) {
	t.Parallel()
	a, err := Parse(FileName, []byte(uploadsDoc(goodUploads)), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := &Uploads{MaxBytes: 10 << 20, Artifacts: []Artifact{
		{Type: ArtifactArchive, Name: "plan", Paths: []string{"plan.tfplan", "out/**/*.json"}, When: "always", ExpireIn: "1 year"},
		{Type: ArtifactJUnit, Paths: []string{"reports/junit.xml"}},
		{Type: ArtifactTerraform, Paths: []string{"plan.json"}, When: "on_failure"},
	}}
	got := a.Jobs[0].Definition.Uploads
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("uploads %+v, want %+v", got, want)
	}
	for i, c := range []struct {
		format           string
		success, failure bool
	}{{"zip", true, true}, {"gzip", true, false}, {"gzip", false, true}} {
		a := got.Artifacts[i]
		if a.Format() != c.format || a.UploadsAfter(true) != c.success || a.UploadsAfter(false) != c.failure {
			t.Errorf("artifact %d: format %s, after success %t, after failure %t", i, a.Format(), a.UploadsAfter(true), a.UploadsAfter(false))
		}
	}

	out, err := Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse(FileName, out, nil)
	if err != nil {
		t.Fatalf("marshalled uploads do not parse: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(b.Jobs[0].Definition.Uploads, want) {
		t.Fatalf("round trip: %+v", b.Jobs[0].Definition.Uploads)
	}
	if m2, _ := Marshal(b); !bytes.Equal(m2, out) {
		t.Fatalf("marshal round trip differs:\n%s\n%s", out, m2)
	}

	plain, err := Parse(FileName, []byte(uploadsDoc("")), nil)
	if err != nil {
		t.Fatal(err)
	}
	ch := fmtChanges(entryChanges(plain.Jobs[0], a.Jobs[0]))
	if !strings.Contains(ch, "definition.uploads") {
		t.Fatalf("diff misses definition.uploads: %s", ch)
	}
	if md := DescribeUploads(got); !strings.Contains(md, "junit [reports/junit.xml]") || !strings.Contains(md, "at most 10485760 bytes") {
		t.Fatalf("DescribeUploads: %s", md)
	}
}

func TestParseUploadsErrors(t *testing.T) {
	t.Parallel()
	// Line 17 is "uploads:" in uploadsDoc; the first artifact's keys start
	// at line 20.
	head := "      uploads:\n        max_bytes: 1024\n        artifacts:\n          - type: archive\n"
	for name, tc := range map[string]struct{ extra, want string }{
		"dotdot":          {head + "            paths: [../etc/passwd]\n", `21:21: path "../etc/passwd" has a ".." segment`},
		"dotdot inside":   {head + "            paths: [out/../../x]\n", `has a ".." segment`},
		"absolute":        {head + "            paths: [/etc/passwd]\n", `21:21: path "/etc/passwd" is absolute`},
		"dot":             {head + "            paths: [./plan]\n", `has a "." segment`},
		"variable":        {head + "            paths: [$CI_PROJECT_DIR/plan]\n", "writ never expands variables in upload paths"},
		"double star":     {head + "            paths: [out/**.json]\n", "write ** as a whole segment"},
		"bad glob":        {head + "            paths: [\"out/[a\"]\n", "malformed pattern"},
		"braces":          {head + "            paths: [\"out/{a,b}\"]\n", "brace alternatives are not supported"},
		"two slashes":     {head + "            paths: [out//]\n", "empty segment"},
		"no paths":        {head, `missing required key "paths"`},
		"empty paths":     {head + "            paths: []\n", "paths is empty"},
		"duplicate path":  {head + "            paths: [a, a]\n", `path "a" is listed twice`},
		"dotenv":          {"      uploads:\n        max_bytes: 1024\n        artifacts:\n          - type: dotenv\n            paths: [x.env]\n", `20:19: artifact type "dotenv": write one of archive, junit, terraform`},
		"when":            {head + "            paths: [a]\n            when: never\n", `when "never": write on_success, on_failure or always`},
		"expire_in":       {head + "            paths: [a]\n            expire_in: \"1 week; rm -rf /\"\n", "expire_in \"1 week; rm -rf /\""},
		"name with slash": {head + "            paths: [a]\n            name: ../x\n", `artifact name "../x" holds /`},
		"name variable":   {head + "            paths: [a]\n            name: $CI_JOB_NAME\n", "never expands variables"},
		"typo":            {head + "            path: [a]\n", `did you mean "paths"`},
		"max_bytes zero":  {"      uploads:\n        max_bytes: 0\n        artifacts: [{type: archive, paths: [a]}]\n", "18:20: max_bytes must be a whole number of bytes from 1 to 4294967296 (4 GiB), not 0"},
		"max_bytes text":  {"      uploads:\n        max_bytes: 10MiB\n        artifacts: [{type: archive, paths: [a]}]\n", "max_bytes must be a whole number"},
		"max_bytes huge":  {"      uploads:\n        max_bytes: 99999999999999\n        artifacts: [{type: archive, paths: [a]}]\n", "max_bytes must be a whole number"},
		"no max_bytes":    {"      uploads:\n        artifacts: [{type: archive, paths: [a]}]\n", `missing required key "max_bytes"`},
		"no artifacts":    {"      uploads:\n        max_bytes: 1\n        artifacts: []\n", "uploads.artifacts is empty"},
		"with artifacts":  {"      artifacts: true\n" + head + "            paths: [a]\n", "artifacts: true lets GitLab's artifacts through without uploading them"},
		"not a mapping":   {"      uploads: [a]\n", "uploads must be a mapping"},
	} {
		_, err := Parse(FileName, []byte(uploadsDoc(tc.extra)), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}

func TestUploadsWholeTreeWarns(t *testing.T) {
	t.Parallel()
	_, warns, err := Lint(FileName, []byte(uploadsDoc("      uploads:\n        max_bytes: 1\n        artifacts: [{type: archive, paths: ['**/*', out]}]\n")), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 1 || !strings.Contains(warns.Error(), `19:45: path "**/*" uploads every file of the build directory`) {
		t.Fatalf("warnings: %v", warns)
	}
}

func TestCheckUploadPath(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"plan.tfplan", "out", "out/**/*.json", "**/junit.xml", "reports/[a-z]*.xml", ".terraform.lock.hcl", "a b/c", "public/", "out/**/"} {
		if msg := CheckUploadPath(ok); msg != "" {
			t.Errorf("%q refused: %s", ok, msg)
		}
	}
	for _, bad := range []string{"", "/", "..", "a/..", "./a", "a//b", "a//", "/", "/a", `a\b`, "a\x00b", "a\nb", "$X", "a/**b", "a{b}", "[", strings.Repeat("a", 1025)} {
		if CheckUploadPath(bad) == "" {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzCheckUploadPath: a path the parser accepts never leaves the
// directory it is read from, however it is split.
func FuzzCheckUploadPath(f *testing.F) {
	for _, s := range []string{"out/**/*.json", "../x", "a/./b", "a/b/..", "*", "**", "a\\..\\b", "%2e%2e/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if CheckUploadPath(s) != "" {
			return
		}
		if strings.HasPrefix(s, "/") || strings.Contains(s, "$") || strings.Contains(s, `\`) || strings.Contains(s, "\x00") {
			t.Fatalf("accepted %q", s)
		}
		for _, seg := range strings.Split(strings.TrimSuffix(s, "/"), "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("accepted %q with segment %q", s, seg)
			}
		}
	})
}

// TestDocsUploadsExample: the worked example in docs/allowlist.md's
// Uploads section is an entry Parse accepts, with the uploads it describes.
func TestDocsUploadsExample(t *testing.T) {
	t.Parallel()
	md, err := os.ReadFile(filepath.Join("..", "docs", "allowlist.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(md), "### Uploads: what the job sends to GitLab\n")
	if !ok {
		t.Fatal("docs/allowlist.md has no Uploads section")
	}
	_, block, _ := strings.Cut(section, "```yaml\n")
	block, _, _ = strings.Cut(block, "```\n")
	doc := minimalHeader + "signers:\n  infra-team:\n    ssh: [" + bobSSH + "]\njobs:\n" + block
	a, err := Parse(FileName, []byte(doc), nil)
	if err != nil {
		t.Fatalf("the docs' uploads example does not parse: %v\n%s", err, doc)
	}
	u := a.Jobs[0].Definition.Uploads
	if u == nil || u.MaxBytes != 50<<20 || len(u.Artifacts) != 3 || u.Artifacts[2].Type != ArtifactTerraform {
		t.Fatalf("uploads %+v", u)
	}
}

// FuzzMarshalUploads: an entry whose uploads hold s as a path and a name
// marshals to text that parses back to the same uploads whenever Parse
// accepts them, and is refused otherwise.
func FuzzMarshalUploads(f *testing.F) {
	for _, s := range append(trickyStrings, "a\u202eb", "a\u200bb", "out/**/*.json", "plan", "[a-z]*.xml", "a b", "#x", "- x", "'q'", `"q"`, "a: b") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := &Uploads{MaxBytes: 1, Artifacts: []Artifact{{Type: ArtifactJUnit, Name: s, Paths: []string{s}, When: "always"}}}
		e := &Entry{
			Name:       "fuzz",
			Match:      Match{Project: "acme/web", Job: "job", Environments: []string{"production"}, Refs: []string{"refs/heads/main"}},
			Definition: Definition{Script: []string{"true"}, Uploads: want},
			Source:     Source{Repository: "https://gitlab.example.com/acme/web.git", Signers: []string{"web-team"}, Mode: ModeCommit},
		}
		out, err := MarshalEntry(e)
		if err != nil {
			return // not UTF-8: refused before any text is written
		}
		a, err := Parse(FileName, []byte(minimalHeader+"signers:\n  web-team:\n    ssh: ["+bobSSH+"]\njobs:\n"+string(out)), nil)
		acceptable := s != "" && CheckUploadPath(s) == "" && checkArtifactName(s) == "" && len(s) <= MaxStringBytes
		if !acceptable {
			if err == nil {
				t.Fatalf("Parse accepted uploads %q", s)
			}
			return
		}
		if err != nil {
			t.Fatalf("Parse(MarshalEntry(%q)): %v\n%s", s, err, out)
		}
		if got := a.Jobs[0].Definition.Uploads; !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip of %q: %+v\n%s", s, got, out)
		}
	})
}
