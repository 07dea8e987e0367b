package executor

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/config"
)

func expandOptions(t *testing.T) *Options {
	o := &Options{Config: &config.Config{Environment: "production"}, Stdout: os.Stdout}
	o.Config.Sandbox.UnsafeNoSandbox = true
	o.Config.Paths.Builds = "/var/lib/writ/builds"
	o.Config.Paths.State = t.TempDir()
	o.Config.Job.ServerURL = "https://gitlab.example.com"
	return o
}

// TestProvidedIsTheCatalogue: the variables writ sets are exactly the ones
// allowlist.ProvidedNames lists (and docs/allowlist.md documents), for a
// branch job and a tag job with an image and a server URL.
func TestProvidedIsTheCatalogue(t *testing.T) {
	t.Parallel()
	o := expandOptions(t)
	o.Config.Sandbox.UnsafeNoSandbox, o.Config.Sandbox.Images = false, "run"
	got := map[string]bool{}
	for _, ref := range []string{"refs/heads/main", "refs/tags/v1.0"} {
		s := &Snapshot{Job: JobRef{ID: "42"}, Ref: ref, Commit: strings.Repeat("a", 40), Environment: "production",
			Entry: testEntry(), Image: "reg.example.com/app@sha256:" + strings.Repeat("b", 64), Timeout: time.Hour}
		for k := range o.provided(s, statusRunning) {
			got[k] = true
		}
	}
	if names := slices.Sorted(maps.Keys(got)); !slices.Equal(names, allowlist.ProvidedNames()) {
		t.Errorf("provided %q\ncatalogue %q", names, allowlist.ProvidedNames())
	}
}

func TestProvidedValues(t *testing.T) {
	t.Parallel()
	o := expandOptions(t)
	e := testEntry()
	e.Match.Project = "Group/Sub/My_App"
	s := &Snapshot{Job: JobRef{ID: "42", Project: "evil/other", Name: "evil"}, Ref: "refs/heads/feature/X-1", Commit: strings.Repeat("c", 40),
		Environment: "PRODUCTION", Entry: e, BuildDir: "/var/lib/writ/builds/42", Timeout: 90 * time.Second}
	m := o.provided(s, statusSuccess)
	for k, want := range map[string]string{
		"CI_JOB_URL":                "https://gitlab.example.com/Group/Sub/My_App/-/jobs/42",
		"CI_PROJECT_URL":            "https://gitlab.example.com/Group/Sub/My_App",
		"CI_SERVER_HOST":            "gitlab.example.com",
		"CI_SERVER_PORT":            "443",
		"CI_API_V4_URL":             "https://gitlab.example.com/api/v4",
		"CI_PROJECT_PATH":           "Group/Sub/My_App",
		"CI_PROJECT_NAMESPACE":      "Group/Sub",
		"CI_PROJECT_ROOT_NAMESPACE": "Group",
		"CI_PROJECT_NAME":           "My_App",
		"CI_PROJECT_PATH_SLUG":      "group-sub-my-app",
		"CI_JOB_NAME":               "build",
		"CI_COMMIT_REF_SLUG":        "feature-x-1",
		"CI_COMMIT_BRANCH":          "feature/X-1",
		"CI_ENVIRONMENT_NAME":       "PRODUCTION",
		"CI_ENVIRONMENT_SLUG":       "production-vl4voz",
		"CI_JOB_STATUS":             "success",
		"CI_JOB_TIMEOUT":            "90",
		"CI_PROJECT_DIR":            "/var/lib/writ/builds/42",
		"CI_BUILDS_DIR":             "/var/lib/writ/builds",
	} {
		if m[k] != want {
			t.Errorf("%s = %q, want %q", k, m[k], want)
		}
	}
	o.Config.Job.ServerURL = ""
	if m := o.provided(s, statusRunning); m["CI_JOB_URL"] != "" || m["CI_SERVER_URL"] != "" {
		t.Errorf("without job.server_url: %q %q", m["CI_JOB_URL"], m["CI_SERVER_URL"])
	}
}

// TestSlugs: GitLab's slugs (Gitlab::Utils.slugify and
// Gitlab::Slug::Environment); the suffixes are the base-36 SHA-256 of the
// name, computed independently.
func TestSlugs(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"main": "main", "feature/JIRA-1_x": "feature-jira-1-x", "--a--": "a", "é": "",
		strings.Repeat("a", 70): strings.Repeat("a", 63), strings.Repeat("a", 62) + "/b": strings.Repeat("a", 62),
	} {
		if got := slugify(in); got != want {
			t.Errorf("slugify(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"production":                "production",
		"staging-1234567890123456":  "staging-1234567890123456",
		"PRODUCTION":                "production-vl4voz",
		"review/1-foo":              "review-1-foo-9tdj0u",
		"9-staging":                 "env-9-staging-cnqix1",
		"staging-12345678901234567": "staging-123456789-s729ne",
	} {
		if got := environmentSlug(in); got != want {
			t.Errorf("environmentSlug(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestExpandVariables: values expand as the runner expands them, from
// admitted values and writ's own only; a reference to a value GitLab sends
// but the entry does not admit refuses the job.
func TestExpandVariables(t *testing.T) {
	t.Parallel()
	o := expandOptions(t)
	e := testEntry()
	e.Definition.Variables = []allowlist.Variable{
		{Name: "ENV_NAME", Value: "prod", HasValue: true},
		{Name: "HOST", Value: "idp.${ENV_NAME}.example.gov", HasValue: true},
		{Name: "CHAIN", Value: "$HOST", HasValue: true}, // one level: HOST's unexpanded text
		{Name: "LITERAL", Value: "$ENV_NAME", HasValue: true, Raw: true},
		{Name: "DOLLAR", Value: "a$$b", HasValue: true},
		{Name: "SHA", Value: "$CI_COMMIT_SHA", HasValue: true}, // writ's, never GitLab's
		{Name: "CONF", Value: "x", HasValue: true, File: true},
		{Name: "CONF_PATH", Value: "$CONF", HasValue: true},
		{Name: "NOBODY", Value: "[$UNSET]", HasValue: true},
		{Name: "RELEASE", Pattern: `^v[0-9]+$`},
		{Name: "GREETING", Value: "hello", HasValue: true},
	}
	sha := strings.Repeat("a", 40)
	p := decodeT(t, makePayload(t, 7, sha, e.Definition.Script,
		withVar("CONF", "x", "file"), withVar("LITERAL", "$ENV_NAME", "raw"), withVar("RELEASE", "v1")))
	d := &Decision{Environment: "production", Entry: e, Ref: "refs/heads/main"}
	vars := checkDefinition(d, p, e, nil)
	got := map[string]string{}
	for _, v := range o.expandVariables(d, p, e, vars, o.admissionSnapshot(d, p)) {
		got[v.Name] = v.Value
	}
	if len(d.Failures) > 0 {
		t.Fatalf("failures %+v", d.Failures)
	}
	for k, want := range map[string]string{
		"HOST": "idp.prod.example.gov", "CHAIN": "idp.${ENV_NAME}.example.gov", "LITERAL": "$ENV_NAME",
		"DOLLAR": "a$b", "SHA": sha, "CONF": "x", "CONF_PATH": o.fileVariablePath("7", "CONF"), "NOBODY": "[]", "RELEASE": "v1",
	} {
		if got[k] != want {
			t.Errorf("%s = %q, want %q", k, got[k], want)
		}
	}
}

func TestExpandVariablesRefuses(t *testing.T) {
	t.Parallel()
	o := expandOptions(t)
	for _, c := range []struct {
		name  string
		value string
		mods  []func(map[string]any)
		want  string
	}{
		// GitLab's predefined CI_JOB_TOKEN is dropped, never pulled in.
		{"predefined not provided", "$CI_JOB_TOKEN", nil, "refers to $CI_JOB_TOKEN, which GitLab sends but the allowlist entry does not admit"},
		{"unadmitted user variable", "x${SECRET}", []func(map[string]any){withVar("SECRET", "s3cr3t")}, "refers to $SECRET, which GitLab sends"},
		{"pattern fails once expanded", "$GREETING", nil, "once its $ references are expanded, does not match"},
	} {
		e := testEntry()
		e.Definition.Variables = append(e.Definition.Variables, allowlist.Variable{Name: "TARGET", Pattern: `^[$a-zA-Z{}_]*[${}_][$a-zA-Z{}_]*$`})
		p := decodeT(t, makePayload(t, 7, strings.Repeat("a", 40), e.Definition.Script, append(c.mods, withVar("TARGET", c.value), withVar("REGION", "eu"))...))
		d := &Decision{Environment: "production", Entry: e, Ref: "refs/heads/main"}
		vars := checkDefinition(d, p, e, nil)
		out := o.expandVariables(d, p, e, vars, o.admissionSnapshot(d, p))
		var msgs []string
		for _, f := range d.Failures {
			msgs = append(msgs, f.Message)
			if strings.Contains(f.Received+f.Expected+f.Message, "s3cr3t") {
				t.Errorf("%s: a failure shows GitLab's value: %+v", c.name, f)
			}
		}
		if !strings.Contains(strings.Join(msgs, "\n"), c.want) {
			t.Errorf("%s: failures %q, want %q (variables %+v)", c.name, msgs, c.want, out)
		}
	}
}

// TestCIUserVariable: a user variable with a CI_ prefix that GitLab does
// not define is refused unless the entry names it, never dropped; named,
// it reaches the job, and writ allowlist entry includes it.
func TestCIUserVariable(t *testing.T) {
	t.Parallel()
	e := testEntry()
	p := decodeT(t, makePayload(t, 1, strings.Repeat("a", 40), e.Definition.Script, withVar("REGION", "eu"), withVar("CI_ASG_TARGET", "asg-web")))
	d := &Decision{}
	checkDefinition(d, p, e, nil)
	if len(d.Failures) != 1 || !strings.Contains(d.Failures[0].Message, "CI_ASG_TARGET is not a variable GitLab defines") {
		t.Fatalf("failures %+v", d.Failures)
	}
	e.Definition.Variables = append(e.Definition.Variables, allowlist.Variable{Name: "CI_ASG_TARGET", Pattern: "^asg-[a-z]+$"})
	d = &Decision{}
	vars := checkDefinition(d, p, e, nil)
	if len(d.Failures) != 0 || !slices.ContainsFunc(vars, func(v AdmittedVariable) bool { return v.Name == "CI_ASG_TARGET" && v.Value == "asg-web" }) {
		t.Fatalf("named: %+v %+v", vars, d.Failures)
	}
	s := EntryFromPayload(p, "prod")
	if !slices.ContainsFunc(s.Definition.Variables, func(v allowlist.Variable) bool { return v.Name == "CI_ASG_TARGET" && v.Value == "asg-web" }) {
		t.Errorf("writ allowlist entry leaves CI_ASG_TARGET out: %+v", s.Definition.Variables)
	}
	if slices.ContainsFunc(s.Definition.Variables, func(v allowlist.Variable) bool { return allowlist.Predefined(v.Name) }) {
		t.Errorf("writ allowlist entry includes a predefined variable: %+v", s.Definition.Variables)
	}
}

// TestJobStatus: after_script sees how the script ended, from writ's own
// record; no record means failed.
func TestJobStatus(t *testing.T) {
	t.Parallel()
	o := expandOptions(t)
	if err := os.MkdirAll(filepath.Join(o.Config.Paths.State, "jobs", "5"), 0o700); err != nil {
		t.Fatal(err)
	}
	if got := o.jobStatus("5", "after_script"); got != statusFailed {
		t.Errorf("no record: %q", got)
	}
	for _, st := range []string{statusSuccess, statusFailed, statusCanceled, statusTimedout} {
		o.recordJobStatus("5", st)
		if got := o.jobStatus("5", "after_script"); got != st {
			t.Errorf("recorded %q, after_script sees %q", st, got)
		}
		if got := o.jobStatus("5", "build_script"); got != statusRunning {
			t.Errorf("script sees %q", got)
		}
	}
	o.recordJobStatus("5", "garbage")
	if got := o.jobStatus("5", "after_script"); got != statusFailed {
		t.Errorf("unknown record: %q", got)
	}
}

// TestImageComparedExpanded: GitLab Runner writes the payload's image
// already expanded; admission compares it with the entry's image expanded
// from its pinned values, and that is the image that runs.
func TestImageComparedExpanded(t *testing.T) {
	t.Parallel()
	digest := "sha256:" + strings.Repeat("d", 64)
	e := testEntry()
	e.Definition.Image = "reg.example.com/app@$DIGEST"
	e.Definition.Variables = append(e.Definition.Variables, allowlist.Variable{Name: "DIGEST", Value: digest, HasValue: true})
	for _, c := range []struct {
		image string
		ok    bool
	}{
		{"reg.example.com/app@" + digest, true},
		{"reg.example.com/app@$DIGEST", false}, // not what the runner writes
		{"reg.example.com/app@sha256:" + strings.Repeat("e", 64), false},
	} {
		p := decodeT(t, makePayload(t, 1, strings.Repeat("a", 40), e.Definition.Script, withVar("REGION", "eu"), withVar("DIGEST", digest),
			withKey("image", map[string]any{"name": c.image})))
		d := &Decision{}
		checkDefinition(d, p, e, nil)
		if ok := len(d.Failures) == 0; ok != c.ok || d.Image != "reg.example.com/app@"+digest {
			t.Errorf("image %q: admitted %v (image %q), failures %+v", c.image, ok, d.Image, d.Failures)
		}
	}
}

// TestExpandVariablesBounded: $A repeated, with A long, cannot make
// admission build an unbounded value; and a reference to a URL writ sets
// only with job.server_url refuses the job when GitLab sends one.
func TestExpandVariablesBounded(t *testing.T) {
	t.Parallel()
	o := expandOptions(t)
	e := testEntry()
	e.Definition.Variables = append(e.Definition.Variables,
		allowlist.Variable{Name: "A", Pattern: "^a*$"}, allowlist.Variable{Name: "X", Pattern: `^[$A]*$`})
	p := decodeT(t, makePayload(t, 7, strings.Repeat("a", 40), e.Definition.Script, withVar("REGION", "eu"),
		withVar("A", strings.Repeat("a", 1<<20)), withVar("X", strings.Repeat("$A", 100))))
	d := &Decision{Environment: "production", Entry: e, Ref: "refs/heads/main"}
	vars := o.expandVariables(d, p, e, checkDefinition(d, p, e, nil), o.admissionSnapshot(d, p))
	if vars != nil || len(d.Failures) != 1 || !strings.Contains(d.Failures[0].Message, "expand to more than") {
		t.Errorf("variables %d, failures %+v", len(vars), d.Failures)
	}

	o.Config.Job.ServerURL = ""
	e = testEntry()
	e.Definition.Variables = append(e.Definition.Variables, allowlist.Variable{Name: "LINK", Value: "see $CI_JOB_URL", HasValue: true})
	p = decodeT(t, makePayload(t, 7, strings.Repeat("a", 40), e.Definition.Script, withVar("REGION", "eu"), withVar("LINK", "see $CI_JOB_URL")))
	d = &Decision{Environment: "production", Entry: e, Ref: "refs/heads/main"}
	o.expandVariables(d, p, e, checkDefinition(d, p, e, nil), o.admissionSnapshot(d, p))
	if len(d.Failures) != 1 || !strings.Contains(d.Failures[0].Message, "job.server_url") {
		t.Errorf("failures %+v", d.Failures)
	}
}
