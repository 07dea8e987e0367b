package companion

// Tests of ci-templates/: every example .gitlab-ci.yml expands with
// gitlab-ci-local (which validates against GitLab's CI JSON schema) into the
// intended jobs, and the template jobs' scripts run, with the shell
// executor, against a real allowlist repository on disk and the fake GitLab.
//
// gitlab-ci-local comes from ci-templates/test/install-gitlab-ci-local.sh;
// $WRIT_GITLAB_CI_LOCAL overrides its path. Without it the tests skip,
// except under CI=true, where they fail. The writ binary is built from
// ./cmd/writ unless $WRIT_TEST_BINARY names one.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"gitlab.com/writ-ci/writ/internal/companion/gitlabtest"
	"gitlab.com/writ-ci/writ/internal/testkeys"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the source tree")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func gitlabCILocal(t *testing.T) string {
	t.Helper()
	p := os.Getenv("WRIT_GITLAB_CI_LOCAL")
	if p == "" {
		home, _ := os.UserHomeDir()
		p = filepath.Join(home, ".cache", "writ", "npm", "node_modules", ".bin", "gitlab-ci-local")
	}
	if _, err := os.Stat(p); err != nil {
		msg := "gitlab-ci-local is not installed: run ci-templates/test/install-gitlab-ci-local.sh (or set WRIT_GITLAB_CI_LOCAL)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if _, err := exec.LookPath("rsync"); err != nil {
		t.Fatal("gitlab-ci-local needs rsync: apt-get install rsync")
	}
	return p
}

var (
	writOnce sync.Once
	writPath string
	writErr  error
)

// writBinary builds ./cmd/writ once per test process.
func writBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("WRIT_TEST_BINARY"); p != "" {
		return p
	}
	writOnce.Do(func() {
		dir, err := os.MkdirTemp("", "writ-templates-test")
		if err != nil {
			writErr = err
			return
		}
		writPath = filepath.Join(dir, "writ")
		cmd := exec.Command("go", "build", "-o", writPath, "./cmd/writ")
		cmd.Dir = repoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			writErr = fmt.Errorf("go build ./cmd/writ: %v\n%s", err, out)
		}
	})
	if writErr != nil {
		t.Fatal(writErr)
	}
	return writPath
}

// gclRepo is a git repository gitlab-ci-local runs in, holding the
// templates as the component project lays them out.
type gclRepo struct {
	*testkeys.Repo
	gcl  string
	home string
}

func newGCLRepo(t *testing.T, gcl string) *gclRepo {
	t.Helper()
	r := &gclRepo{Repo: testkeys.GitRepo(t), gcl: gcl, home: t.TempDir()}
	root := repoRoot(t)
	for _, dir := range []string{"templates", "include"} {
		copyDir(t, filepath.Join(root, "ci-templates", dir), filepath.Join(r.Path, dir))
	}
	r.Git(t, "remote", "add", "origin", "https://gitlab.example.com/acme/app.git")
	return r
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// run runs gitlab-ci-local in the repository and returns its combined
// output and exit code.
func (r *gclRepo) run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.gcl, append([]string{"--no-color", "--ignore-predefined-vars", "CI_PIPELINE_SOURCE,CI_PROJECT_ID,CI_API_V4_URL,CI_COMMIT_SHA"}, args...)...)
	cmd.Dir = r.Path
	cmd.Env = append(os.Environ(), "HOME="+r.home, "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("gitlab-ci-local: %v\n%s", err, out.String())
	}
	return out.String(), code
}

var (
	componentInclude = regexp.MustCompile(`(?m)^(\s*)- component: \$CI_SERVER_FQDN/[^@\s]+/([a-z-]+)@\S+$`)
	classicInclude   = regexp.MustCompile(`(?m)^(\s*)- project: \S+\n\s+ref: \S+\n\s+file: /(include/\S+)$`)
	classicIncludes  = regexp.MustCompile(`(?m)^(\s*)- project: \S+\n\s+ref: \S+\n\s+file:\n((?:\s+- /include/\S+\n)+)`)
)

// localize turns an example's component and project includes into local
// includes of the same files, as gitlab-ci-local cannot reach a GitLab.
func localize(s string) string {
	s = componentInclude.ReplaceAllString(s, "${1}- local: templates/${2}.yml")
	s = classicInclude.ReplaceAllString(s, "${1}- local: ${2}")
	s = classicIncludes.ReplaceAllStringFunc(s, func(m string) string {
		sub := classicIncludes.FindStringSubmatch(m)
		var b strings.Builder
		for _, f := range regexp.MustCompile(`/(include/\S+)`).FindAllStringSubmatch(sub[2], -1) {
			b.WriteString(sub[1] + "- local: " + f[1] + "\n")
		}
		return b.String()
	})
	return s
}

type previewJob struct {
	Image        any               `yaml:"image"`
	Stage        string            `yaml:"stage"`
	Script       []string          `yaml:"script"`
	AfterScript  []string          `yaml:"after_script"`
	Variables    map[string]string `yaml:"variables"`
	Tags         []string          `yaml:"tags"`
	Dependencies *[]string         `yaml:"dependencies"`
	AllowFailure any               `yaml:"allow_failure"`
	Rules        []map[string]any  `yaml:"rules"`
}

func imageName(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case map[string]any:
		s, _ := x["name"].(string)
		return s
	}
	return ""
}

// preview expands the repository's .gitlab-ci.yml.
func (r *gclRepo) preview(t *testing.T) map[string]previewJob {
	t.Helper()
	out, code := r.run(t, "--preview")
	if code != 0 {
		t.Fatalf("gitlab-ci-local --preview failed (%d):\n%s", code, out)
	}
	if !strings.Contains(out, "json schema validated") {
		t.Fatalf("gitlab-ci-local did not validate against the schema:\n%s", out)
	}
	doc := out[strings.Index(out, "---\n"):]
	jobs := map[string]previewJob{}
	if err := yaml.Unmarshal([]byte(doc), &jobs); err != nil {
		// The document holds non-job keys (stages); decode loosely.
		var raw map[string]yaml.Node
		if err := yaml.Unmarshal([]byte(doc), &raw); err != nil {
			t.Fatalf("preview is not YAML: %v\n%s", err, doc)
		}
		for k, n := range raw {
			var j previewJob
			if n.Kind == yaml.MappingNode && n.Decode(&j) == nil {
				jobs[k] = j
			}
		}
	}
	return jobs
}

func TestTemplateExamplesExpand(t *testing.T) {
	gcl := gitlabCILocal(t)
	t.Parallel()
	root := repoRoot(t)
	const writImage = "registry.example.com/acme/writ@sha256:6b1a5e7c9d0f2e3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2"
	allowlistJobs := map[string]string{
		"writ-allowlist-lint":        "writ allowlist lint --codequality writ-lint-codequality.json --junit writ-lint-junit.xml allowlist.yaml",
		"writ-allowlist-version":     "writ review --local --base-rev \"refs/remotes/origin/${CI_MERGE_REQUEST_TARGET_BRANCH_NAME}\" --require version",
		"writ-allowlist-expiry":      "writ review --local --expiry-horizon \"$WRIT_EXPIRY_HORIZON\" --require expiry",
		"writ-allowlist-approvals":   "writ review --local --env-config \"$WRIT_ENVIRONMENTS\" --require approvals",
		"writ-allowlist-review-note": "writ review --token-env \"WRIT_REVIEW_TOKEN\" --mr \"$CI_MERGE_REQUEST_IID\" --project \"$CI_PROJECT_ID\"",
	}
	appJobs := map[string]string{
		"writ-allowlist-check":   "writ propose --check --static-lint --token-env \"WRIT_READ_TOKEN\" --project \"$CI_PROJECT_ID\" --ref \"$WRIT_DEPLOY_REF\" --content-ref \"$CI_COMMIT_SHA\"",
		"writ-allowlist-propose": "writ propose --token-env \"WRIT_PROPOSE_TOKEN\" --project \"$CI_PROJECT_ID\"",
		"writ-approvals":         "writ source status --token-env \"WRIT_READ_TOKEN\" --allowlist-project \"$WRIT_ALLOWLIST_PROJECT\"",
	}
	for _, tc := range []struct {
		example string
		jobs    map[string]string
		check   func(t *testing.T, jobs map[string]previewJob)
	}{
		{"allowlist-repository.gitlab-ci.yml", allowlistJobs, func(t *testing.T, jobs map[string]previewJob) {
			j := jobs["writ-allowlist-approvals"]
			if j.Variables["WRIT_ENVIRONMENTS"] != "/etc/writ/environments/*.toml" || j.Variables["WRIT_EXPIRY_HORIZON"] != "720h" || j.AllowFailure != true {
				t.Errorf("inputs not applied: %+v", j)
			}
		}},
		{"allowlist-repository-include.gitlab-ci.yml", allowlistJobs, func(t *testing.T, jobs map[string]previewJob) {
			j := jobs["writ-allowlist-approvals"]
			if j.Variables["WRIT_ENVIRONMENTS"] != "/etc/writ/environments/*.toml" || j.Variables["WRIT_BIN"] != "writ" {
				t.Errorf("overrides not merged: %+v", j.Variables)
			}
		}},
		{"application.gitlab-ci.yml", appJobs, func(t *testing.T, jobs map[string]previewJob) {
			d, ok := jobs["deploy"]
			if !ok || strings.Join(d.Script, "|") != "./deploy.sh production" || strings.Join(d.AfterScript, "|") != "./notify.sh production" ||
				strings.Join(d.Tags, ",") != "writ-production" || d.Dependencies == nil || len(*d.Dependencies) != 0 || d.Image != nil || len(d.Variables) != 0 {
				t.Errorf("deploy job: %+v", d)
			}
			c := jobs["writ-allowlist-check"]
			if c.Variables["WRIT_ENVIRONMENT"] != "production" || c.Variables["WRIT_SIGNERS"] != "web-team" || c.Variables["WRIT_ALLOWLIST_PROJECT"] != "acme/deploy-allowlist" {
				t.Errorf("check job variables %v", c.Variables)
			}
			if v := jobs["writ-approvals"].Variables; v["WRIT_APPROVALS_ENTRY"] != "acme-web-deploy-production" || v["GIT_STRATEGY"] != "fetch" || jobs["writ-approvals"].AllowFailure != true {
				t.Errorf("writ-approvals job: %+v", jobs["writ-approvals"])
			}
		}},
		{"application-include.gitlab-ci.yml", appJobs, func(t *testing.T, jobs map[string]previewJob) {
			d := jobs["deploy"]
			if strings.Join(d.Script, "|") != "./deploy.sh production" || d.Dependencies == nil || len(*d.Dependencies) != 0 || d.Stage != "deploy" {
				t.Errorf("deploy job: %+v", d)
			}
			if v := jobs["writ-allowlist-check"].Variables; v["WRIT_ENVIRONMENT"] != "production" || v["WRIT_DEPLOY_REF"] != "$CI_DEFAULT_BRANCH" {
				t.Errorf("check job variables %v", v)
			}
			if v := jobs["writ-approvals"].Variables; v["WRIT_APPROVALS_ENTRY"] != "acme-web-deploy-production" || v["GIT_STRATEGY"] != "fetch" || jobs["writ-approvals"].AllowFailure != true {
				t.Errorf("writ-approvals job: %+v", jobs["writ-approvals"])
			}
		}},
	} {
		t.Run(tc.example, func(t *testing.T) {
			t.Parallel()
			src, err := os.ReadFile(filepath.Join(root, "ci-templates", "examples", tc.example))
			if err != nil {
				t.Fatal(err)
			}
			local := localize(string(src))
			if regexp.MustCompile(`(?m)^\s*- (component|project):`).MatchString(local) {
				t.Fatalf("example not localized:\n%s", local)
			}
			r := newGCLRepo(t, gcl)
			os.WriteFile(filepath.Join(r.Path, ".gitlab-ci.yml"), []byte(local), 0o644)
			r.Commit(t, nil, "example", nil)
			jobs := r.preview(t)
			for name, script := range tc.jobs {
				j, ok := jobs[name]
				if !ok {
					t.Errorf("job %s missing", name)
					continue
				}
				if !strings.Contains(strings.Join(j.Script, "\n"), strings.Replace(script, "writ ", "$WRIT_BIN ", 1)) {
					t.Errorf("%s script %q lacks %q", name, j.Script, script)
				}
				if img := imageName(j.Image); img != writImage && (img != "$WRIT_IMAGE" || j.Variables["WRIT_IMAGE"] != writImage) {
					t.Errorf("%s image %v (WRIT_IMAGE %q)", name, j.Image, j.Variables["WRIT_IMAGE"])
				}
				if j.Dependencies == nil || len(*j.Dependencies) != 0 {
					t.Errorf("%s downloads artifacts", name)
				}
				if len(j.Rules) == 0 {
					t.Errorf("%s has no rules", name)
				}
			}
			tc.check(t, jobs)
			// One token per purpose; never the job token, never one
			// shared variable.
			for name, j := range jobs {
				all := strings.Join(j.Script, "\n")
				if strings.Contains(all, "CI_JOB_TOKEN") || strings.Contains(all, "WRIT_GITLAB_TOKEN") {
					t.Errorf("%s uses a shared or job token: %q", name, j.Script)
				}
			}
			if p, ok := jobs["writ-allowlist-propose"]; ok {
				for _, r := range p.Rules {
					if c, _ := r["if"].(string); !strings.Contains(c, `$CI_COMMIT_REF_PROTECTED == "true"`) || strings.Contains(c, "merge_request_event\"") && !strings.Contains(c, "!=") {
						t.Errorf("propose runs outside protected refs: %v", p.Rules)
					}
				}
			}
		})
	}
}

// TestTemplateRules checks which jobs each pipeline kind gets.
func TestTemplateRules(t *testing.T) {
	gcl := gitlabCILocal(t)
	t.Parallel()
	r := newGCLRepo(t, gcl)
	src, err := os.ReadFile(filepath.Join(repoRoot(t), "ci-templates", "examples", "allowlist-repository.gitlab-ci.yml"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(r.Path, ".gitlab-ci.yml"), []byte(localize(string(src))), 0o644)
	r.Commit(t, nil, "ci", nil)
	list := func(vars ...string) string {
		args := []string{"--list"}
		for _, v := range vars {
			args = append(args, "--variable", v)
		}
		out, code := r.run(t, args...)
		if code != 0 {
			t.Fatalf("--list: %d\n%s", code, out)
		}
		return out
	}
	mr := list("CI_PIPELINE_SOURCE=merge_request_event")
	for _, j := range []string{"writ-allowlist-lint", "writ-allowlist-version", "writ-allowlist-expiry", "writ-allowlist-approvals", "writ-allowlist-review-note"} {
		if !strings.Contains(mr, j) {
			t.Errorf("merge request pipeline lacks %s:\n%s", j, mr)
		}
	}
	branch := list("CI_PIPELINE_SOURCE=push", "CI_COMMIT_BRANCH=main", "CI_DEFAULT_BRANCH=main")
	if strings.Contains(branch, "writ-allowlist-version") || strings.Contains(branch, "writ-allowlist-review-note") || !strings.Contains(branch, "writ-allowlist-approvals") {
		t.Errorf("default branch pipeline:\n%s", branch)
	}
	other := list("CI_PIPELINE_SOURCE=push", "CI_COMMIT_BRANCH=feature", "CI_DEFAULT_BRANCH=main")
	if strings.Contains(other, "writ-allowlist") {
		t.Errorf("feature branch pipeline runs writ jobs:\n%s", other)
	}

	// The application: the check in merge requests (read-only token), the
	// proposal only on the protected default branch (protected token).
	src, err = os.ReadFile(filepath.Join(repoRoot(t), "ci-templates", "examples", "application.gitlab-ci.yml"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(r.Path, ".gitlab-ci.yml"), []byte(localize(string(src))), 0o644)
	r.Commit(t, nil, "app ci", nil)
	mr = list("CI_PIPELINE_SOURCE=merge_request_event", "CI_COMMIT_BRANCH=main", "CI_DEFAULT_BRANCH=main", "CI_COMMIT_REF_PROTECTED=true")
	if !strings.Contains(mr, "writ-allowlist-check") || strings.Contains(mr, "writ-allowlist-propose") || !strings.Contains(mr, "writ-approvals") {
		t.Errorf("application merge request pipeline:\n%s", mr)
	}
	if l := list("CI_PIPELINE_SOURCE=push", "CI_COMMIT_BRANCH=main", "CI_DEFAULT_BRANCH=main", "CI_COMMIT_REF_PROTECTED=true"); !strings.Contains(l, "writ-allowlist-propose") || !strings.Contains(l, "writ-approvals") {
		t.Errorf("protected default branch lacks propose:\n%s", l)
	}
	if l := list("CI_PIPELINE_SOURCE=push", "CI_COMMIT_BRANCH=main", "CI_DEFAULT_BRANCH=main", "CI_COMMIT_REF_PROTECTED=false"); strings.Contains(l, "writ-allowlist-propose") {
		t.Errorf("unprotected default branch gets propose:\n%s", l)
	}
	// Without approvals_entry there is no writ-approvals job.
	os.WriteFile(filepath.Join(r.Path, ".gitlab-ci.yml"), []byte(strings.Replace(localize(string(src)), "approvals_entry: acme-web-deploy-production", "", 1)), 0o644)
	r.Commit(t, nil, "app ci without approvals", nil)
	if l := list("CI_PIPELINE_SOURCE=push", "CI_COMMIT_BRANCH=main", "CI_DEFAULT_BRANCH=main", "CI_COMMIT_REF_PROTECTED=true"); strings.Contains(l, "writ-approvals") || !strings.Contains(l, "writ-allowlist-propose") {
		t.Errorf("writ-approvals without approvals_entry:\n%s", l)
	}
}

// TestAllowlistTemplateJobsRun runs the allowlist repository's jobs with the
// shell executor in a real allowlist repository: a merge request branch
// proposing version 8, signed and approved, against main at version 7.
func TestAllowlistTemplateJobsRun(t *testing.T) {
	gcl := gitlabCILocal(t)
	writ := writBinary(t)
	t.Parallel()
	alice := testkeys.SSHKey(t, "alice@example.com")
	carol := testkeys.SSHKey(t, "carol@example.com")
	envDir := t.TempDir()
	envConfig(t, envDir, "production", "acme/deploy-allowlist", 2, alice, carol)

	w := newWorld(t)
	prop, err := Propose(context.Background(), w.proposeOpts())
	if err != nil {
		t.Fatal(err)
	}

	r := newGCLRepo(t, gcl)
	origin := t.TempDir()
	r.Git(t, "init", "-q", "--bare", origin)
	r.Git(t, "remote", "set-url", "origin", origin)
	ci := fmt.Sprintf(`include:
  - local: templates/allowlist-repository.yml
    inputs:
      image: registry.example.com/writ@sha256:%s
      writ: %s
      environments: %s/*.toml
`, strings.Repeat("0", 64), writ, envDir)
	r.Commit(t, map[string]string{".gitlab-ci.yml": ci, "allowlist.yaml": baseAllowlist}, "version 7", alice)
	r.Git(t, "push", "-q", "origin", "main")
	r.Git(t, "checkout", "-q", "-b", "writ/propose/acme-web/production")
	r.Commit(t, map[string]string{
		"allowlist.yaml":            string(prop.Content),
		"approvals/v8/carol.sshsig": string(approve(t, carol, prop.Content, 8)),
	}, "version 8", alice)

	// The fake GitLab holds the same two commits' files for the review note.
	// GitLab mode cannot verify the commit signature, so alice approves
	// with a detached approval there.
	w.s.Commit(w.al, prop.Branch, "approve", map[string][]byte{
		"approvals/v8/carol.sshsig": approve(t, carol, prop.Content, 8),
		"approvals/v8/alice.sshsig": approve(t, alice, prop.Content, 8),
	})
	// The review note's token: api to post, Reporter only.
	const reviewToken = "glpat-REVIEWTOKEN-0123456789abcdef"
	reviewer := gitlabtest.User{ID: 40, Username: "writ-review"}
	w.s.AddToken(reviewToken, gitlabtest.TokenInfo{User: reviewer, Scopes: []string{gitlabtest.ScopeAPI}})
	w.s.SetRole(reviewer, w.al, gitlabtest.Reporter)
	mrVars := []string{
		"--variable", "CI_PIPELINE_SOURCE=merge_request_event",
		"--variable", "CI_MERGE_REQUEST_TARGET_BRANCH_NAME=main",
		"--variable", fmt.Sprintf("CI_MERGE_REQUEST_IID=%d", prop.MergeRequestIID),
		"--variable", fmt.Sprintf("CI_PROJECT_ID=%d", w.al.ID),
		"--variable", "CI_API_V4_URL=" + w.s.URL,
		"--variable", "WRIT_REVIEW_TOKEN=" + reviewToken,
	}
	args := append(append([]string{"--force-shell-executor"}, mrVars...),
		"writ-allowlist-lint", "writ-allowlist-version", "writ-allowlist-expiry", "writ-allowlist-approvals", "writ-allowlist-review-note")
	out, code := r.run(t, args...)
	if code != 0 {
		t.Fatalf("allowlist jobs failed (%d):\n%s", code, out)
	}
	for _, j := range []string{"writ-allowlist-lint", "writ-allowlist-version", "writ-allowlist-expiry", "writ-allowlist-approvals", "writ-allowlist-review-note"} {
		if !regexp.MustCompile(`PASS\s+` + j).MatchString(out) {
			t.Errorf("%s did not pass:\n%s", j, out)
		}
	}
	assertNoToken(t, out)
	if strings.Contains(out, reviewToken) {
		t.Fatal("the review token leaked into the job log")
	}
	var notes []gitlabtest.Note
	for _, mr := range w.al.MergeRequests {
		notes = w.s.NotesOf(mr)
	}
	if len(notes) != 1 || !strings.Contains(notes[0].Body, "approvals `production` | ✅ 2 of 2") || notes[0].Author.ID != reviewer.ID {
		t.Fatalf("review note not posted as expected: %+v", notes)
	}

	// Without carol's approval and with the version not bumped, the
	// approvals and version jobs fail, and say why.
	r.Commit(t, map[string]string{
		"allowlist.yaml":            strings.Replace(string(prop.Content), "version: 8", "version: 7", 1),
		"approvals/v8/carol.sshsig": "",
	}, "regress", alice)
	args = append(append([]string{"--force-shell-executor"}, mrVars...), "writ-allowlist-version", "writ-allowlist-approvals")
	out, code = r.run(t, args...)
	if code == 0 {
		t.Fatalf("regressed allowlist passed:\n%s", out)
	}
	for _, want := range []string{"version: 7 is not greater than 7", "approvals: production has 1 of 2", "FAIL"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestApplicationTemplateJobsRun runs the application project's jobs and
// its deploy job with the shell executor against the fake GitLab.
func TestApplicationTemplateJobsRun(t *testing.T) {
	gcl := gitlabCILocal(t)
	writ := writBinary(t)
	t.Parallel()
	w := newWorld(t)
	r := newGCLRepo(t, gcl)
	ci := fmt.Sprintf(`stages: [test, deploy]
include:
  - local: templates/application.yml
    inputs:
      image: registry.example.com/writ@sha256:%s
      writ: %s
      environment: production
      allowlist_project: acme/deploy-allowlist
      signers: web-team
      deploy_ref: main
  - local: templates/deploy.yml
    inputs:
      environment: production
      runner_tag: production
      script: ["echo deployed-by-writ $CI_COMMIT_REF_NAME"]
`, strings.Repeat("0", 64), writ)
	sha := r.Commit(t, map[string]string{".gitlab-ci.yml": ci}, "app", nil)
	w.s.SetLint(w.app, sha, appLint())
	// Two tokens as docs/ci-templates.md sets them up: the read-only one
	// in merge request pipelines, the propose one on the protected main.
	w.readOnly(t)
	const proposeToken = "glpat-PROPOSETOKEN-0123456789abcdef"
	proposer := gitlabtest.User{ID: 41, Username: "writ-propose"}
	w.s.AddToken(proposeToken, gitlabtest.TokenInfo{User: proposer, Scopes: []string{gitlabtest.ScopeAPI}})
	w.s.SetRole(proposer, w.al, gitlabtest.Developer)
	w.s.SetRole(proposer, w.app, gitlabtest.Developer)
	w.s.Protect(w.app, "main", gitlabtest.Maintainer, gitlabtest.Developer)
	vars := []string{
		"--variable", "CI_PIPELINE_SOURCE=merge_request_event",
		"--variable", fmt.Sprintf("CI_PROJECT_ID=%d", w.app.ID),
		"--variable", "CI_API_V4_URL=" + w.s.URL,
		"--variable", "WRIT_READ_TOKEN=" + readToken,
	}
	pushVars := []string{
		"--variable", "CI_PIPELINE_SOURCE=push",
		"--variable", "CI_COMMIT_BRANCH=main", "--variable", "CI_DEFAULT_BRANCH=main",
		"--variable", "CI_COMMIT_REF_PROTECTED=true", "--variable", "GITLAB_CI=true",
		"--variable", fmt.Sprintf("CI_PROJECT_ID=%d", w.app.ID),
		"--variable", "CI_API_V4_URL=" + w.s.URL,
		"--variable", "WRIT_PROPOSE_TOKEN=" + proposeToken,
	}
	// The allowlist lacks the deploy job: the check warns (exit code 3).
	out, code := r.run(t, append(append([]string{"--force-shell-executor"}, vars...), "writ-allowlist-check")...)
	if code != 0 || !regexp.MustCompile(`WARN\s+writ-allowlist-check`).MatchString(out) || !strings.Contains(out, "acme-web-deploy-production") {
		t.Fatalf("check should warn with the diff (%d):\n%s", code, out)
	}
	if len(w.s.Writes()) != 0 {
		t.Fatalf("the check wrote to GitLab: %v", paths(w.s.Writes()))
	}
	// Proposing, on the protected default branch, opens the allowlist
	// merge request.
	out, code = r.run(t, append(append([]string{"--force-shell-executor"}, pushVars...), "writ-allowlist-propose")...)
	if code != 0 || !strings.Contains(out, "propose: created") {
		t.Fatalf("propose (%d):\n%s", code, out)
	}
	mrs := w.s.MergeRequestsOf(w.al)
	if len(mrs) != 1 {
		t.Fatalf("%d merge requests", len(mrs))
	}
	assertNoToken(t, out)
	if strings.Contains(out, proposeToken) {
		t.Fatal("the propose token leaked into the job log")
	}
	if mrs[0].Author.ID != proposer.ID {
		t.Fatalf("merge request opened by %+v", mrs[0].Author)
	}
	// Merged: the check passes.
	content, _ := w.s.File(w.al, mrs[0].SourceBranch, "allowlist.yaml")
	w.s.Commit(w.al, "main", "merge", map[string][]byte{"allowlist.yaml": content})
	out, code = r.run(t, append(append([]string{"--force-shell-executor"}, vars...), "writ-allowlist-check")...)
	if code != 0 || !regexp.MustCompile(`PASS\s+writ-allowlist-check`).MatchString(out) {
		t.Fatalf("check after merge (%d):\n%s", code, out)
	}
	// A broken token fails the check (not a warning).
	badVars := append([]string(nil), vars...)
	badVars[len(badVars)-1] = "WRIT_READ_TOKEN=wrong"
	out, code = r.run(t, append(append([]string{"--force-shell-executor"}, badVars...), "writ-allowlist-check")...)
	if !regexp.MustCompile(`FAIL\s+writ-allowlist-check`).MatchString(out) || !strings.Contains(out, "401 Unauthorized") {
		t.Fatalf("bad token (%d):\n%s", code, out)
	}
	// The deploy job runs its script.
	out, code = r.run(t, "--force-shell-executor", "--variable", "CI_PIPELINE_SOURCE=push", "deploy")
	if code != 0 || !strings.Contains(out, "deployed-by-writ") {
		t.Fatalf("deploy (%d):\n%s", code, out)
	}
}
