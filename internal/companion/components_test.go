package companion

// Tests of the components as a component project: they inherit nothing from
// the including project, refuse invalid inputs at expansion, the component
// project's own pipeline tests and releases them, and the allowlist jobs
// upload merge request reports.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

const testImage = "registry.example.com/writ@sha256:6b1a5e7c9d0f2e3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2"

// previewRaw expands the repository's .gitlab-ci.yml and returns the
// preview document and every job as GitLab would hold it.
func (r *gclRepo) previewRaw(t *testing.T) (string, map[string]map[string]any) {
	t.Helper()
	out, code := r.run(t, "--preview")
	if code != 0 {
		t.Fatalf("gitlab-ci-local --preview failed (%d):\n%s", code, out)
	}
	doc := out[strings.Index(out, "---\n"):]
	var all map[string]any
	if err := yaml.Unmarshal([]byte(doc), &all); err != nil {
		t.Fatalf("preview is not YAML: %v\n%s", err, doc)
	}
	jobs := map[string]map[string]any{}
	for k, v := range all {
		if m, ok := v.(map[string]any); ok && k != "variables" && k != "default" && k != "workflow" {
			jobs[k] = m
		}
	}
	return doc, jobs
}

// payloads derives, from an expanded configuration, the allowlist entry
// definition of every job targeting runnerTags, as propose does from
// GitLab's CI lint: what writ judges.
func payloads(t *testing.T, doc string, jobs map[string]map[string]any, runnerTags []string) map[string]*ciJob {
	t.Helper()
	strs := func(v any) []string {
		var out []string
		list, _ := v.([]any)
		for _, x := range list {
			out = append(out, fmt.Sprint(x))
		}
		return out
	}
	res := &lintResult{Valid: true, MergedYAML: doc}
	for name, j := range jobs {
		st, _ := j["stage"].(string)
		res.Jobs = append(res.Jobs, lintJob{Name: name, Stage: st, BeforeScript: strs(j["before_script"]), Script: strs(j["script"]), AfterScript: strs(j["after_script"]), TagList: strs(j["tags"])})
	}
	derived, err := deriveJobs(res, runnerTags)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*ciJob{}
	for _, j := range derived {
		out[j.Name] = j
	}
	return out
}

const componentsCI = `stages: [build, test, deploy]
include:
  - local: templates/allowlist-repository.yml
    inputs:
      image: ` + testImage + `
      environments: /etc/writ/environments/*.toml
  - local: templates/application.yml
    inputs:
      image: ` + testImage + `
      environment: production
      allowlist_project: acme/deploy-allowlist
      approvals_entry: acme-web-deploy-production
  - local: templates/deploy.yml
    inputs:
      environment: production
      runner_tag: writ-production
      script: ["./deploy.sh production"]
      after_script: ["./notify.sh"]
`

// hostileGlobals is what an unrelated CI edit adds to a project: every
// default: key that changes a job, and global variables, some of them with
// the names the components' jobs use.
const hostileGlobals = `default:
  image: registry.example.com/other@sha256:1111111111111111111111111111111111111111111111111111111111111111
  services: [registry.example.com/db@sha256:2222222222222222222222222222222222222222222222222222222222222222]
  before_script: ["echo injected-before"]
  after_script: ["echo injected-after"]
  tags: [writ-production]
  timeout: 3h
  cache: {paths: [vendor/]}
  artifacts: {paths: [out/]}
  interruptible: true
  retry: 2
variables:
  INJECTED: "1"
  WRIT_BIN: /tmp/evil-writ
  GIT_STRATEGY: clone
# A job of the project itself, tagged for the environment: it takes the
# globals, which proves they are in effect.
canary:
  stage: deploy
  tags: [writ-production]
  script: ["./canary.sh"]
`

// TestComponentsIgnoreProjectGlobals: a project with default: and global
// variables includes the components; every component job, and the entry
// writ derives for the deploy job, is exactly what it is without them. The
// project's own job in the same pipeline does take them (the paired case:
// without inherit: false, the deploy job would be refused).
func TestComponentsIgnoreProjectGlobals(t *testing.T) {
	gcl := gitlabCILocal(t)
	t.Parallel()
	expand := func(ci string) (string, map[string]map[string]any) {
		r := newGCLRepo(t, gcl)
		os.WriteFile(filepath.Join(r.Path, ".gitlab-ci.yml"), []byte(ci), 0o644)
		r.Commit(t, nil, "ci", nil)
		return r.previewRaw(t)
	}
	plainDoc, plain := expand(componentsCI)
	hostileDoc, hostile := expand(componentsCI + hostileGlobals)

	want := []string{"deploy", "writ-allowlist-lint", "writ-allowlist-version", "writ-allowlist-expiry", "writ-allowlist-approvals", "writ-allowlist-review-note", "writ-allowlist-check", "writ-allowlist-propose", "writ-approvals"}
	for _, name := range want {
		p, ok := plain[name]
		if !ok {
			t.Fatalf("job %s missing from the expansion", name)
		}
		if !reflect.DeepEqual(p, hostile[name]) {
			a, _ := yaml.Marshal(p)
			b, _ := yaml.Marshal(hostile[name])
			t.Errorf("project globals changed component job %s:\nwithout:\n%s\nwith:\n%s", name, a, b)
		}
		if n, ok := p["needs"].([]any); name != "deploy" && (!ok || len(n) != 0) {
			t.Errorf("%s waits for other jobs (needs %v)", name, p["needs"])
		}
	}

	// What writ judges: the entry derived for the deploy job.
	tags := []string{"writ-production"}
	before := payloads(t, plainDoc, plain, tags)["deploy"]
	after := payloads(t, hostileDoc, hostile, tags)
	if before == nil || after["deploy"] == nil {
		t.Fatalf("deploy job not derived: %v %v", before, after)
	}
	if !reflect.DeepEqual(before.Def, after["deploy"].Def) {
		t.Errorf("the deploy payload changed with project globals:\nwithout: %+v\nwith:    %+v", before.Def, after["deploy"].Def)
	}
	if strings.Join(before.Def.Script, "|") != "./deploy.sh production" || before.Def.Image != "" || len(before.Def.Variables) != 0 {
		t.Errorf("deploy payload: %+v", before.Def)
	}
	c := after["canary"]
	if c == nil || c.Def.Script[0] != "echo injected-before" || c.Def.Image == "" || len(c.Def.Variables) == 0 {
		t.Fatalf("the globals did not reach the project's own job, so the test proves nothing: %+v", c)
	}
}

// inputSpec is one input of a component's spec:inputs.
type inputSpec struct {
	Description string `yaml:"description"`
	Type        string `yaml:"type"`
	Default     any    `yaml:"default"`
	Options     []any  `yaml:"options"`
	Regex       string `yaml:"regex"`
}

func componentSpec(t *testing.T, name string) map[string]inputSpec {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "ci-templates", "templates", name+".yml"))
	if err != nil {
		t.Fatal(err)
	}
	head, _, ok := strings.Cut(string(b), "\n---\n")
	if !ok {
		t.Fatalf("%s: no spec header", name)
	}
	var doc struct {
		Spec struct {
			Inputs map[string]inputSpec `yaml:"inputs"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal([]byte(head), &doc); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return doc.Spec.Inputs
}

// checkInputs applies a spec's regex rules as GitLab does at expansion
// (Gitlab::UntrustedRegexp, RE2, unanchored unless the pattern anchors), with
// GitLab's message. gitlab-ci-local 4.70.1 checks required inputs, types and
// options but ignores regex ("spec:inputs:regex is currently not
// supported"), so the test applies the patterns itself with Go's RE2.
func checkInputs(spec map[string]inputSpec, inputs map[string]any) error {
	for name, in := range spec {
		v, ok := inputs[name]
		if !ok {
			v, ok = in.Default, in.Default != nil
		}
		if !ok {
			return fmt.Errorf("`%s` input: required value has not been provided", name)
		}
		if in.Regex != "" {
			s, _ := v.(string)
			if !regexp.MustCompile(in.Regex).MatchString(s) {
				return fmt.Errorf("`%s` input: provided value does not match required RegEx pattern", name)
			}
		}
	}
	return nil
}

// TestComponentInputs: every input is typed and described, and invalid
// inputs fail at expansion with a clear message.
func TestComponentInputs(t *testing.T) {
	for _, c := range []string{"allowlist-repository", "application", "deploy"} {
		for name, in := range componentSpec(t, c) {
			if in.Description == "" || in.Type == "" {
				t.Errorf("%s input %s: description %q, type %q", c, name, in.Description, in.Type)
			}
			if in.Regex != "" {
				regexp.MustCompile(in.Regex)
				if s, ok := in.Default.(string); ok && !regexp.MustCompile(in.Regex).MatchString(s) {
					// GitLab validates defaults too.
					t.Errorf("%s input %s: default %q does not match its own regex", c, name, s)
				}
			}
		}
	}

	al := componentSpec(t, "allowlist-repository")
	app := componentSpec(t, "application")
	digest := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		spec   map[string]inputSpec
		inputs map[string]any
		err    string
	}{
		{al, map[string]any{"image": testImage, "environments": "/etc/writ/environments/*.toml"}, ""},
		{al, map[string]any{"image": "registry.example.com:5000/acme/writ:1.2.0@sha256:" + digest, "environments": "/etc/writ/*.toml"}, ""},
		{al, map[string]any{"image": "writ@sha256:" + digest, "environments": "/etc/writ/*.toml"}, ""},
		{al, map[string]any{"image": "registry.example.com/acme/writ:latest", "environments": "/etc/writ/*.toml"}, "`image` input: provided value does not match"},
		{al, map[string]any{"image": "registry.example.com/acme/writ", "environments": "/etc/writ/*.toml"}, "`image` input: provided value does not match"},
		{al, map[string]any{"image": "registry.example.com/acme/writ@sha256:abc", "environments": "/etc/writ/*.toml"}, "`image` input: provided value does not match"},
		{al, map[string]any{"image": "registry.example.com/acme/writ@sha256:" + digest + " ", "environments": "/etc/writ/*.toml"}, "`image` input: provided value does not match"},
		{al, map[string]any{"image": "$WRIT_IMAGE", "environments": "/etc/writ/*.toml"}, "`image` input: provided value does not match"},
		{al, map[string]any{"image": testImage}, "`environments` input: required value has not been provided"},
		{al, map[string]any{"image": testImage, "environments": "environments/*.toml"}, "`environments` input: provided value does not match"},
		{app, map[string]any{"image": "registry.example.com/acme/writ:v1", "environment": "production", "allowlist_project": "acme/allowlist"}, "`image` input: provided value does not match"},
		{app, map[string]any{"image": testImage, "environment": "production", "allowlist_project": "acme/allowlist"}, ""},
	} {
		err := checkInputs(tc.spec, tc.inputs)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%v: got %v, want %q", tc.inputs, err, tc.err)
		}
	}

	// Every example's inputs satisfy the specs.
	examples, _ := filepath.Glob(filepath.Join(repoRoot(t), "ci-templates", "examples", "*.yml"))
	for _, ex := range examples {
		b, _ := os.ReadFile(ex)
		var doc struct {
			Include []struct {
				Component string         `yaml:"component"`
				Inputs    map[string]any `yaml:"inputs"`
			} `yaml:"include"`
		}
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		for _, inc := range doc.Include {
			if inc.Component == "" {
				continue
			}
			name := regexp.MustCompile(`/([a-z-]+)@`).FindStringSubmatch(inc.Component)[1]
			if err := checkInputs(componentSpec(t, name), inc.Inputs); err != nil {
				t.Errorf("%s: %s: %v", filepath.Base(ex), name, err)
			}
		}
	}
}

// TestComponentInputsRefusedAtExpansion: gitlab-ci-local refuses a missing
// required input when it expands the include, naming the input.
func TestComponentInputsRefusedAtExpansion(t *testing.T) {
	gcl := gitlabCILocal(t)
	t.Parallel()
	for _, tc := range []struct{ ci, want string }{
		{"include:\n  - local: templates/allowlist-repository.yml\n    inputs:\n      image: " + testImage + "\n",
			"`templates/allowlist-repository.yml`: `environments` input: required value has not been provided"},
		{"include:\n  - local: templates/application.yml\n    inputs:\n      environment: production\n      allowlist_project: acme/al\n",
			"`templates/application.yml`: `image` input: required value has not been provided"},
		{"include:\n  - local: templates/deploy.yml\n    inputs:\n      environment: production\n      runner_tag: t\n      script: [x]\n      when: always\n",
			"`when` input"},
	} {
		r := newGCLRepo(t, gcl)
		os.WriteFile(filepath.Join(r.Path, ".gitlab-ci.yml"), []byte(tc.ci), 0o644)
		r.Commit(t, nil, "ci", nil)
		out, code := r.run(t, "--preview")
		if code == 0 || !strings.Contains(out, tc.want) {
			t.Errorf("expansion should fail with %q (%d):\n%s", tc.want, code, out)
		}
	}
}

// TestComponentProjectPipeline lists the component project's own pipeline:
// every component included at the pipeline's commit, a test job, and a
// release job (release keyword) only on semantic version tags.
func TestComponentProjectPipeline(t *testing.T) {
	gcl := gitlabCILocal(t)
	t.Parallel()
	src, err := os.ReadFile(filepath.Join(repoRoot(t), "ci-templates", ".gitlab-ci.yml"))
	if err != nil {
		t.Fatal(err)
	}
	templates, _ := filepath.Glob(filepath.Join(repoRoot(t), "ci-templates", "templates", "*.yml"))
	for _, tpl := range templates {
		name := strings.TrimSuffix(filepath.Base(tpl), ".yml")
		if !strings.Contains(string(src), "- component: $CI_SERVER_FQDN/$CI_PROJECT_PATH/"+name+"@$CI_COMMIT_SHA\n") {
			t.Errorf("the component project's pipeline does not test %s at its own commit", name)
		}
	}
	r := newGCLRepo(t, gcl)
	os.WriteFile(filepath.Join(r.Path, ".gitlab-ci.yml"), []byte(localize(string(src))), 0o644)
	r.Commit(t, nil, "ci", nil)
	list := func(vars ...string) string {
		args := []string{"--list"}
		for _, v := range vars {
			args = append(args, "--variable", v)
		}
		out, code := r.run(t, args...)
		if code != 0 {
			t.Fatalf("--list %v: %d\n%s", vars, code, out)
		}
		return out
	}
	tag := list("CI_COMMIT_TAG=1.2.0", "CI_PIPELINE_SOURCE=push")
	for _, j := range []string{"writ-components-test", "writ-components-release", "writ-allowlist-lint", "writ-allowlist-check", "writ-allowlist-propose", "writ-component-test-deploy"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(j) + `\s`).MatchString(tag) {
			t.Errorf("tag pipeline lacks %s:\n%s", j, tag)
		}
	}
	branch := list("CI_COMMIT_BRANCH=main", "CI_DEFAULT_BRANCH=main", "CI_PIPELINE_SOURCE=push")
	if !strings.Contains(branch, "writ-components-test") || strings.Contains(branch, "writ-components-release") {
		t.Errorf("branch pipeline:\n%s", branch)
	}
	if l := list("CI_COMMIT_TAG=v1.2", "CI_PIPELINE_SOURCE=push"); strings.Contains(l, "writ-components-release") {
		t.Errorf("a non-semantic tag is released:\n%s", l)
	}

	_, jobs := r.previewRaw(t)
	rel, _ := jobs["writ-components-release"]["release"].(map[string]any)
	if rel["tag_name"] != "$CI_COMMIT_TAG" {
		t.Errorf("release job does not use the release keyword: %v", jobs["writ-components-release"])
	}
}

// TestAllowlistJobsReports: the lint job of the component writes a GitLab
// Code Quality report and a JUnit report with the problem's position, and
// uploads them as report artifacts.
func TestAllowlistJobsReports(t *testing.T) {
	gcl := gitlabCILocal(t)
	writ := writBinary(t)
	t.Parallel()
	r := newGCLRepo(t, gcl)
	ci := fmt.Sprintf("include:\n  - local: templates/allowlist-repository.yml\n    inputs:\n      image: %s\n      writ: %s\n      environments: /nonexistent/*.toml\n", testImage, writ)
	broken := strings.Replace(baseAllowlist, "      mode: tag\n", "      mode: sometimes\n", 1)
	r.Commit(t, map[string]string{".gitlab-ci.yml": ci, "allowlist.yaml": broken}, "broken", nil)
	out, code := r.run(t, "--force-shell-executor", "--variable", "CI_PIPELINE_SOURCE=merge_request_event", "writ-allowlist-lint")
	if code == 0 {
		t.Fatalf("lint passed a broken allowlist:\n%s", out)
	}
	_, jobs := r.previewRaw(t)
	reports, _ := jobs["writ-allowlist-lint"]["artifacts"].(map[string]any)["reports"].(map[string]any)
	cqPath, _ := reports["codequality"].(string)
	juPath, _ := reports["junit"].(string)
	find := func(name string) []byte {
		// gitlab-ci-local copies a job's artifacts back into the project.
		var found []byte
		filepath.Walk(r.Path, func(p string, info os.FileInfo, err error) error {
			if err == nil && !info.IsDir() && filepath.Base(p) == name && found == nil {
				found, _ = os.ReadFile(p)
			}
			return nil
		})
		if found == nil {
			t.Fatalf("report %s not written:\n%s", name, out)
		}
		return found
	}
	var issues []struct {
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
	if err := json.Unmarshal(find(cqPath), &issues); err != nil {
		t.Fatal(err)
	}
	wantLine := strings.Count(broken[:strings.Index(broken, "mode: sometimes")], "\n") + 1
	if len(issues) == 0 || issues[0].Location.Path != "allowlist.yaml" || issues[0].Location.Lines.Begin != wantLine ||
		issues[0].Severity != "major" || issues[0].Fingerprint == "" || !strings.Contains(issues[0].Description, "sometimes") {
		t.Errorf("code quality report (want allowlist.yaml:%d): %+v", wantLine, issues)
	}
	ju := string(find(juPath))
	if !strings.Contains(ju, `failures="1"`) || !strings.Contains(ju, fmt.Sprintf("allowlist.yaml:%d:", wantLine)) {
		t.Errorf("junit report:\n%s", ju)
	}
}

// TestReviewReportPositions: each required check becomes a JUnit case, and
// its problems Code Quality issues at the line of allowlist.yaml they
// concern.
func TestReviewReportPositions(t *testing.T) {
	now := time.Date(2031, 2, 20, 0, 0, 0, 0, time.UTC)
	head := Snapshot{Label: "head", Data: []byte(baseAllowlist)}
	base := Snapshot{Label: "base", Data: []byte(baseAllowlist)}
	rep := Evaluate(head, base, nil, 0, now)
	r := rep.Report([]string{CheckVersion, CheckExpiry})
	if len(r.Checks) != 2 {
		t.Fatalf("checks %+v", r.Checks)
	}
	v, e := r.Checks[0], r.Checks[1]
	if !v.Failed() || v.Findings[0].Line != 5 || !strings.Contains(v.Findings[0].Message, "version 7 is not greater than 7") {
		t.Errorf("version check %+v", v)
	}
	if !e.Failed() || e.Findings[0].Line != 6 || e.Findings[0].Path != "allowlist.yaml" {
		t.Errorf("expiry check %+v", e)
	}
	// Lint problems keep their positions.
	bad := Evaluate(Snapshot{Label: "head", Data: []byte(strings.Replace(baseAllowlist, "mode: tag", "mode: sometimes", 1))}, base, nil, 0, now)
	l := bad.Report([]string{CheckLint, CheckVersion})
	if !l.Checks[0].Failed() || l.Checks[0].Findings[0].Line == 0 || !l.Checks[1].Failed() {
		t.Errorf("lint report %+v", l.Checks)
	}
}
