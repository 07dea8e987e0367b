package executor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/config"
	"gitlab.com/writ-ci/writ/internal/testkeys"
)

func decodeT(t testing.TB, data []byte) *Payload {
	t.Helper()
	p, err := DecodePayload(data)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func testEntry() *allowlist.Entry {
	return &allowlist.Entry{
		Name:  "e",
		Match: allowlist.Match{Project: "group/app", Job: "build", Environments: []string{"prod"}, Refs: []string{"refs/heads/main"}},
		Definition: allowlist.Definition{
			Script:    []string{"make", "make test"},
			Variables: []allowlist.Variable{{Name: "GREETING", Value: "hello", HasValue: true}, {Name: "REGION", Pattern: "^[a-z]+$"}},
		},
	}
}

func TestCheckDefinitionAdmitsExactMatch(t *testing.T) {
	t.Parallel()
	e := testEntry()
	p := decodeT(t, makePayload(t, 1, strings.Repeat("a", 40), e.Definition.Script, withVar("REGION", "eu")))
	d := &Decision{}
	vars := checkDefinition(d, p, e, nil)
	if len(d.Failures) != 0 {
		t.Fatalf("failures: %+v", d.Failures)
	}
	got := fmt.Sprint(vars)
	if got != "[{GREETING hello false false} {REGION eu false false}]" {
		t.Errorf("admitted variables %s (predefined CI_/GITLAB_ ones must not be admitted)", got)
	}
}

func TestCompareLines(t *testing.T) {
	t.Parallel()
	cases := []struct {
		want, got      []string
		line, column   int
		expected, recv string
	}{
		{[]string{"a", "b"}, []string{"a", "c"}, 2, 1, "b", "c"},
		{[]string{"a"}, []string{"a", "b"}, 2, 0, "(no line)", "b"},
		{[]string{"a", "b"}, []string{"a"}, 2, 0, "b", "(no line)"},
		{[]string{"echo x"}, []string{"echo x "}, 1, 7, "echo x", "echo x<SP>"},
		{[]string{"echo x"}, []string{"echo\u00a0x"}, 1, 5, "echo x", "echo<U+00A0>x"},
		{[]string{"a\tb"}, []string{"a b"}, 1, 2, `a\tb`, "a b"},
		{[]string{"abc"}, []string{"a\u202ecb"}, 1, 2, "abc", "a<U+202E>cb"},
	}
	for _, c := range cases {
		d := &Decision{}
		compareLines(d, CheckScript, "script", c.want, c.got)
		if len(d.Failures) != 1 {
			t.Fatalf("%q vs %q: %d failures", c.want, c.got, len(d.Failures))
		}
		f := d.Failures[0]
		if f.Line != c.line || f.Column != c.column || f.Expected != c.expected || f.Received != c.recv {
			t.Errorf("%q vs %q: got line %d col %d %q / %q", c.want, c.got, f.Line, f.Column, f.Expected, f.Received)
		}
	}
	d := &Decision{}
	compareLines(d, CheckScript, "script", []string{"x"}, []string{"x"})
	compareLines(d, CheckAfterScript, "after_script", nil, nil)
	compareLines(d, CheckAfterScript, "after_script", nil, []string{})
	if len(d.Failures) != 0 {
		t.Errorf("equal lines refused: %+v", d.Failures)
	}
	// Strings Visible renders alike still differ, and say so in bytes.
	d = &Decision{}
	compareLines(d, CheckScript, "script", []string{"a<U+200B>"}, []string{"a\u200b"})
	if len(d.Failures) != 1 || d.Failures[0].Expected == d.Failures[0].Received {
		t.Errorf("look-alike lines: %+v", d.Failures)
	}
}

func TestPredefinedVariables(t *testing.T) {
	t.Parallel()
	for _, k := range []string{"CI", "CI_JOB_TOKEN", "GITLAB_USER_EMAIL", "CHAT_INPUT", "CHAT_CHANNEL", "CHAT_USER_ID", "TRIGGER_PAYLOAD"} {
		if !IsPredefined(k) {
			t.Errorf("%s not predefined", k)
		}
	}
	for _, k := range []string{"CIX", "BASH_ENV", "ci_job_id", "GITLAB", "CHAT", "LD_PRELOAD", "KUBECONFIG"} {
		if IsPredefined(k) {
			t.Errorf("%s predefined", k)
		}
	}
}

func TestEntryFromPayloadRoundTrip(t *testing.T) {
	t.Parallel()
	p := decodeT(t, makePayload(t, 1, strings.Repeat("a", 40), []string{"make", "echo \u200b"},
		withAfter("cleanup"), withVar("PUB", "v"), withVar("SECRET", "s3cr3t", "masked"), withVar("F", "file-content", "file")))
	e := EntryFromPayload(p, "prod")
	if e.Match.Project != "group/app" || e.Match.Job != "build" || e.Match.Environments[0] != "prod" || e.Match.Refs[0] != "refs/heads/main" {
		t.Errorf("match: %+v", e.Match)
	}
	if e.Source.Repository != "https://gitlab.example.com/group/app.git" {
		t.Errorf("repository %q", e.Source.Repository)
	}
	for _, v := range e.Definition.Variables {
		if v.Name == "SECRET" || v.Name == "F" {
			if v.HasValue || v.Value != "" || v.Pattern != allowlist.TODOPattern {
				t.Errorf("%s: want a TODO with no value, got %+v", v.Name, v)
			}
			if v.File != (v.Name == "F") {
				t.Errorf("%s: kind not carried into the suggestion: %+v", v.Name, v)
			}
		}
	}
	// The suggestion admits the definition it was made from, except the
	// variables whose values it cannot show: their TODO admits nothing
	// until a maintainer writes a rule.
	d := &Decision{}
	checkDefinition(d, p, e, nil)
	if got := fmt.Sprint(d.FailedChecks()); got != "[variables]" || len(d.Failures) != 2 {
		t.Errorf("suggested entry: want exactly the two TODO variables refused, got %+v", d.Failures)
	}
	text, err := allowlist.MarshalEntry(e)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(text), "s3cr3t") || strings.Contains(string(text), "file-content") {
		t.Errorf("marshalled suggestion shows a secret:\n%s", text)
	}
}

// staticSource serves one accepted allowlist from memory.
type staticSource struct{ acc *allowlist.Accepted }

func (s staticSource) Current(context.Context) (*allowlist.Accepted, error) { return s.acc, nil }

// bigAllowlist writes an allowlist of n entries, entry i for group/app<i>,
// all from repo signed by signer.
func bigAllowlist(tb testing.TB, dir string, n int, signer *testkeys.SSH, repo string) []byte {
	tb.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "schema: writ/v2\nrepository: test/allowlist\nversion: 7\nexpires: 2099-01-01T00:00:00Z\n")
	fmt.Fprintf(&b, "signers:\n  devs:\n    ssh:\n      - %q\njobs:\n", signer.AllowedSignersLine(""))
	for i := range n {
		s := entrySpec{
			Name: fmt.Sprintf("app%d-build", i), Project: fmt.Sprintf("group/app%d", i), Job: "build",
			Envs: []string{"prod"}, Refs: []string{"refs/heads/main"},
			Script: []string{"make", "make test", fmt.Sprintf("echo %d", i)},
			Vars:   []string{"GREETING: {value: hello}"},
			Repo:   repo, Signers: []string{"devs"}, Mode: "commit",
		}
		b.WriteString(s.render())
	}
	data := []byte(b.String())
	if err := os.WriteFile(filepath.Join(dir, allowlist.FileName), data, 0o600); err != nil {
		tb.Fatal(err)
	}
	return data
}

// BenchmarkAdmission10000 is the admission decision (payload decoding,
// entry lookup, definition checks, fetch of the entry's repository into a
// warm mirror, signature verification) against a 10,000-entry allowlist.
// "parse" also parses the allowlist each time, as a fresh process reading
// its accepted cache would.
func BenchmarkAdmission10000(b *testing.B) {
	signer := testkeys.SSHKey(b, "dev@example.com")
	repo := testkeys.GitRepo(b)
	repo.Commit(b, map[string]string{"README.md": "x"}, "one", signer)
	head := repo.Commit(b, map[string]string{"main.go": "package main"}, "two", signer)
	dir := b.TempDir()
	data := bigAllowlist(b, dir, 10000, signer, "file://"+repo.Path)
	acc, err := acceptedFrom(dir, data)
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Parse([]byte(`environment = "prod"
[allowlist]
url = "file:///x"
identity = "test/allowlist"
[trust]
ssh_allowed_signers = "/x"
`))
	if err != nil {
		b.Fatal(err)
	}
	cfg.Paths.State, cfg.Paths.Cache = filepath.Join(dir, "state"), filepath.Join(dir, "cache")
	payload := makePayload(b, 1, head, []string{"make", "make test", "echo 5000"}, func(p map[string]any) {
		p["job_info"].(map[string]any)["project_full_path"] = "group/app5000"
		for _, v := range p["variables"].([]any) {
			if v := v.(map[string]any); v["key"] == "CI_PROJECT_PATH" {
				v["value"] = "group/app5000"
			}
		}
	})
	ctx := context.Background()
	decide := func(b *testing.B, o Options) {
		d, _, err := o.decide(ctx, payload, false)
		if err != nil || !d.Admitted {
			b.Fatalf("not admitted: %v %+v", err, d.Failures)
		}
	}
	// Loading the accepted allowlist itself is measured by the allowlist
	// package's BenchmarkCachedAllowlist10000 (what a job pays); here the
	// decision alone.
	for _, bc := range []struct {
		name    string
		offline bool
	}{{"fetch", false}, {"offline", true}} {
		b.Run(bc.name, func(b *testing.B) {
			o := Options{Config: cfg, Allowlist: staticSource{acc}, Offline: bc.offline}.withDefaults()
			decide(b, Options{Config: cfg, Allowlist: staticSource{acc}}.withDefaults()) // warm the mirror
			b.ResetTimer()
			for b.Loop() {
				decide(b, o)
			}
		})
	}
}

func TestCheckCollectsAllFailuresAndRecordsNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.write()
	cfg, err := config.Load(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	opts := Options{Config: cfg, Allowlist: &dirSource{dir: e.alDir}, Stdout: &out}

	// Offline with an empty cache: writ cannot decide.
	offline := opts
	offline.Offline = true
	if _, err := Check(context.Background(), offline, e.payload(1, e.head)); err == nil {
		t.Errorf("offline check with no mirror decided:\n%s", out.String())
	}

	// Fetching: admitted, and printed.
	out.Reset()
	d, err := Check(context.Background(), opts, e.payload(1, e.head))
	if err != nil || !d.Admitted {
		t.Fatalf("check: %v %+v\n%s", err, d, out.String())
	}
	mustContain(t, out.String(), "writ check: ADMITTED", "Signer:     ssh "+e.signer.Fingerprint)

	// Now offline works from the warm mirror.
	out.Reset()
	if d, err := Check(context.Background(), offline, e.payload(1, e.head)); err != nil || !d.Admitted {
		t.Fatalf("offline check with warm mirror: %v\n%s", err, out.String())
	}

	// Many problems at once: every one is reported.
	out.Reset()
	s := e.defaultScript()
	s[2] = "rm -rf /"
	d, err = Check(context.Background(), opts, e.payload(2, e.head, withScript(s...), withVar("LD_PRELOAD", "/x.so"),
		withKey("artifacts", []any{map[string]any{"paths": []string{"x"}}}), withKey("image", map[string]any{"name": "evil"})))
	if err != nil {
		t.Fatal(err)
	}
	if d.Admitted {
		t.Fatal("admitted")
	}
	if got := strings.Join(d.FailedChecks(), ","); got != "script,image,artifacts,variables" {
		t.Errorf("failed checks %s", got)
	}
	mustContain(t, out.String(), "writ check: REFUSED", "1. script:", "4. variables:", "Entry that would admit")

	// Check never records: no job state, no audit log, no high-water mark.
	for _, p := range []string{filepath.Join(e.state, "jobs"), e.auditPath, filepath.Join(e.state, "entries", entryKey("app-build")+".json")} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("check wrote %s", p)
		}
	}
}
