package companion

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/internal/companion/gitlabtest"
)

// testToken is long and distinctive so a leak is easy to find in any output.
const testToken = "glpat-TESTTOKEN-do-not-print-0123456789abcdef"

const (
	imageDigest = "registry.example.com/deploy@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	bobKey      = "bob@example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBjIOV/BS6JM97dS43zzOp7fyifDILED8hT/pHDdvUO9"
)

func testConn(s *gitlabtest.Server) Connection {
	return Connection{URL: s.URL, Token: testToken, retryWait: time.Millisecond}
}

// baseAllowlist is an allowlist with comments and an entry of another
// project, so tests can check that propose leaves them byte for byte.
const baseAllowlist = `# writ allowlist for acme.
# Every change is a new version.
schema: writ/v2
repository: acme/deploy-allowlist
version: 7 # bumped by every change
expires: 2031-03-01T00:00:00Z

signers:
  # Who signs application commits.
  web-team:
    ssh:
      - ` + bobKey + `

jobs:
  # Infra releases, maintained by hand.
  - name: infra-release
    match:
      project: acme/infra
      job: "release: tag"
      environments: [production, staging]
      refs: [refs/tags/v1.4.0]
    definition:
      script:
        - make   release   # odd spacing kept
      dependencies: true
    source:
      repository: ssh://git@gitlab.example.com/acme/infra.git
      signers: [web-team]
      mode: tag

# trailing comment
`

// appMergedYAML is what GitLab's lint returns as merged_yaml for acme/web.
const appMergedYAML = `---
stages:
- build
- deploy
variables:
  GLOBAL_V: one
  DESCRIBED:
    value: "2"
    description: a described variable
default:
  image: ` + imageDigest + `
build:
  stage: build
  script:
  - make
  artifacts:
    paths:
    - out/
deploy:
  stage: deploy
  tags:
  - production
  variables:
    DEPLOY_TARGET: web-prod
  timeout: 15 minutes
  before_script:
  - echo start
  script:
  - ./deploy.sh "$DEPLOY_TARGET"
  - |
    if [ -n "$X" ]; then
      echo x
    fi
  environment: production
unit:
  stage: build
  tags:
  - docker
  script:
  - go test ./...
`

func appLint() *gitlabtest.Lint {
	env := "production"
	return &gitlabtest.Lint{
		Valid:      true,
		MergedYAML: appMergedYAML,
		Jobs: []gitlabtest.LintJob{
			{Name: "build", Stage: "build", Script: []string{"make"}, When: "on_success", TagList: []string{}},
			{Name: "deploy", Stage: "deploy", BeforeScript: []string{"echo start"}, Script: []string{"./deploy.sh \"$DEPLOY_TARGET\"", "if [ -n \"$X\" ]; then\n  echo x\nfi\n"}, TagList: []string{"production"}, Environment: &env, When: "on_success"},
			{Name: "unit", Stage: "build", Script: []string{"go test ./..."}, TagList: []string{"docker"}, When: "on_success"},
		},
	}
}

type world struct {
	s   *gitlabtest.Server
	app *gitlabtest.Project
	al  *gitlabtest.Project
}

// newWorld is a fake GitLab with an application project whose CI has one
// production deploy job, and an allowlist project holding baseAllowlist.
func newWorld(t *testing.T) *world {
	t.Helper()
	s := gitlabtest.New(t, testToken)
	w := &world{s: s}
	w.app = s.AddProject("acme/web", "main")
	s.Commit(w.app, "main", "init", map[string][]byte{".gitlab-ci.yml": []byte("# see merged_yaml\n")})
	s.SetLint(w.app, "main", appLint())
	w.al = s.AddProject("acme/deploy-allowlist", "main")
	s.Commit(w.al, "main", "init", map[string][]byte{"allowlist.yaml": []byte(baseAllowlist)})
	return w
}

func (w *world) proposeOpts() ProposeOptions {
	return ProposeOptions{
		Conn: testConn(w.s), Project: "acme/web", Ref: "main", Environment: "production",
		AllowlistProject: "acme/deploy-allowlist", Signers: []string{"web-team"},
	}
}

// assertNoToken fails if the token appears in any of outs.
func assertNoToken(t *testing.T, outs ...string) {
	t.Helper()
	for _, o := range outs {
		if strings.Contains(o, testToken) {
			t.Fatalf("the token leaked into output: %q", o)
		}
	}
}

func jsonBody(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("request body is not JSON: %v: %s", err, b)
	}
	return m
}
