package companion

import (
	"strings"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/allowlist"
)

func TestDeriveJobsFromMergedYAML(t *testing.T) {
	t.Parallel()
	// Older GitLab versions emit Ruby symbol keys.
	merged := `---
:stages:
- build
- deploy
:variables:
  :GLOBAL: g
  :SKIPPED: s
:default:
  :image: ` + imageDigest + `
  :cache:
    :paths:
    - vendor/
:build:
  :stage: build
  :script: [make]
  :artifacts: {paths: [out/]}
:deploy-a:
  :stage: deploy
  :tags: [prod]
  :script: [a]
  :inherit:
    :default: false
    :variables: [GLOBAL]
  :image:
    :name: ` + imageDigest + `
    :entrypoint: [""]
  :services:
  - ` + imageDigest + `
  - :name: ` + imageDigest + `
    :alias: db
  :dependencies: []
  :variables:
    :N: 3
    :B: true
    :E: ""
:deploy-b:
  :stage: deploy
  :tags: [prod]
  :script: [b]
  :timeout: 1h 30m
  :needs: [{job: build, artifacts: false}]
:deploy-c:
  :stage: deploy
  :tags: [prod]
  :script: [c]
  :needs: [build]
:deploy-d:
  :stage: deploy
  :tags: [prod]
  :script: [d]
  :parallel:
    :matrix:
    - :R: [eu, us]
`
	res := &lintResult{Valid: true, MergedYAML: merged, Jobs: []lintJob{
		{Name: "build", Stage: "build", Script: []string{"make"}},
		{Name: "deploy-a", Stage: "deploy", Script: []string{"a"}, TagList: []string{"prod"}},
		{Name: "deploy-b", Stage: "deploy", Script: []string{"b"}, TagList: []string{"prod"}},
		{Name: "deploy-c", Stage: "deploy", Script: []string{"c"}, TagList: []string{"prod"}},
		{Name: "deploy-d: [eu]", Stage: "deploy", Script: []string{"d"}, TagList: []string{"prod"}},
		{Name: "deploy-x", Stage: "deploy", Script: []string{"x"}, TagList: []string{"prod", "gpu"}},
	}}
	jobs, err := deriveJobs(res, []string{"prod", "other"})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*ciJob{}
	for _, j := range jobs {
		byName[j.Name] = j
	}
	if len(jobs) != 4 || byName["deploy-x"] != nil || byName["build"] != nil {
		t.Fatalf("jobs %v: want deploy-a..d (deploy-x needs a gpu tag the runners lack)", names(jobs))
	}
	a := byName["deploy-a"]
	if len(a.Problems) != 0 || a.Def.Image != imageDigest || len(a.Def.Services) != 2 || a.Def.Cache || a.Def.Dependencies {
		t.Fatalf("deploy-a: %+v problems %v", a.Def, a.Problems)
	}
	if got := varString(a.Def.Variables); got != "B=true E= GLOBAL=g N=3" {
		t.Errorf("deploy-a variables %q", got)
	}
	if len(a.Notes) != 2 {
		t.Errorf("deploy-a notes %v: want entrypoint and alias noted", a.Notes)
	}
	b := byName["deploy-b"]
	if b.Def.Timeout != 90*time.Minute || b.Def.Dependencies || !b.Def.Cache || b.Def.Image != imageDigest {
		t.Errorf("deploy-b: %+v", b.Def)
	}
	if c := byName["deploy-c"]; !c.Def.Dependencies {
		t.Errorf("deploy-c needs build (with artifacts): dependencies should be true")
	}
	if d := byName["deploy-d: [eu]"]; len(d.Problems) != 0 || len(d.Notes) != 1 || !d.Def.Dependencies {
		t.Errorf("matrix job: %+v %v %v", d.Def, d.Problems, d.Notes)
	}
}

func names(jobs []*ciJob) []string {
	var out []string
	for _, j := range jobs {
		out = append(out, j.Name)
	}
	return out
}

func varString(vs []allowlist.Variable) string {
	var parts []string
	for _, v := range vs {
		parts = append(parts, v.Name+"="+v.Value)
	}
	return strings.Join(parts, " ")
}

func TestDeriveJobsProblems(t *testing.T) {
	t.Parallel()
	merged := `
deploy:
  image: alpine:3
  services: ["$SVC@sha256:` + strings.Repeat("a", 64) + `"]
  timeout: forever
  variables:
    L: [1, 2]
missing: {}
`
	res := &lintResult{MergedYAML: merged, Jobs: []lintJob{
		{Name: "deploy", Script: []string{"x"}, TagList: []string{"p"}},
		{Name: "ghost", Script: nil, TagList: []string{"p"}},
	}}
	jobs, err := deriveJobs(res, []string{"p"})
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(append(jobs[0].Problems, jobs[1].Problems...), "\n")
	for _, want := range []string{"alpine:3\" is not pinned", "$SVC", "timeout \"forever\"", "variable L", "no script", "missing from GitLab's merged configuration"} {
		if !strings.Contains(all, want) {
			t.Errorf("problems lack %q:\n%s", want, all)
		}
	}
	if _, err := deriveJobs(&lintResult{MergedYAML: "a: [b"}, nil); err == nil {
		t.Error("invalid merged YAML accepted")
	}
	dup := &lintResult{Jobs: []lintJob{{Name: "a", TagList: []string{"p"}}, {Name: "a", TagList: []string{"p"}}}}
	if _, err := deriveJobs(dup, []string{"p"}); err == nil {
		t.Error("duplicate jobs accepted")
	}
}

func TestTargets(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		job, runner []string
		want        bool
	}{
		{[]string{"a"}, []string{"a", "b"}, true},
		{[]string{"a", "b"}, []string{"a", "b"}, true},
		{[]string{"a", "c"}, []string{"a", "b"}, false},
		{nil, []string{"a"}, false},
		{[]string{"A"}, []string{"a"}, false},
	} {
		if got := targets(tc.job, tc.runner); got != tc.want {
			t.Errorf("targets(%v, %v) = %v", tc.job, tc.runner, got)
		}
	}
}

func TestParseGitLabDuration(t *testing.T) {
	t.Parallel()
	good := map[string]time.Duration{
		"3600": time.Hour, "15 minutes": 15 * time.Minute, "1h 30m": 90 * time.Minute,
		"1h30m": 90 * time.Minute, "2 hours and 5 mins": 125 * time.Minute, "1.5h": 90 * time.Minute,
		"1 day": 24 * time.Hour, "1 week": 7 * 24 * time.Hour, "45s": 45 * time.Second,
	}
	for in, want := range good {
		if got, err := parseGitLabDuration(in); err != nil || got != want {
			t.Errorf("%q: %v %v, want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "soon", "1 fortnight", "-5m", "0", "1e99 hours"} {
		if got, err := parseGitLabDuration(in); err == nil {
			t.Errorf("%q accepted as %v", in, got)
		}
	}
}

// TestDeriveJobsRawVariables: expand: false in .gitlab-ci.yml is the
// entry's raw: true, which admission checks, and a job-level variable
// without it is expanded even when the global one is not.
func TestDeriveJobsRawVariables(t *testing.T) {
	t.Parallel()
	merged := `
variables:
  TEMPLATE: {value: "hello $USER", expand: false}
  OTHER: {value: "$HOME", expand: false}
deploy:
  script: [x]
  variables:
    OTHER: "$TEMPLATE"
    PLAIN: {value: "p", expand: true}
`
	res := &lintResult{Valid: true, MergedYAML: merged, Jobs: []lintJob{{Name: "deploy", Script: []string{"x"}, TagList: []string{"p"}}}}
	jobs, err := deriveJobs(res, []string{"p"})
	if err != nil || len(jobs) != 1 {
		t.Fatalf("%v %v", jobs, err)
	}
	raw := map[string]bool{}
	for _, v := range jobs[0].Def.Variables {
		raw[v.Name] = v.Raw
	}
	if !raw["TEMPLATE"] || raw["OTHER"] || raw["PLAIN"] || len(raw) != 3 {
		t.Errorf("raw flags %v", raw)
	}
}
