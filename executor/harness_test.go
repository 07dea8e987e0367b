package executor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/audit"
	"gitlab.com/writ-ci/writ/internal/config"
	"gitlab.com/writ-ci/writ/internal/testkeys"
	"gitlab.com/writ-ci/writ/sandbox"
)

// The tests drive the executor as GitLab Runner does: one process per stage
// call, with the runner's environment variables and files. The process is
// this test binary, re-executed with envStage set; TestMain dispatches it
// into the stage functions, wired like cmd/writ wires them.
const (
	envStage          = "WRIT_EXECUTOR_TEST_STAGE"
	envTestConfig     = "WRIT_EXECUTOR_TEST_CONFIG"
	envTestAllowlist  = "WRIT_EXECUTOR_TEST_ALLOWLIST"
	envTestUnreadable = "WRIT_EXECUTOR_TEST_ALLOWLIST_UNAVAILABLE"
	envTestKillGrace  = "WRIT_EXECUTOR_TEST_KILL_GRACE"
)

func TestMain(m *testing.M) {
	sandbox.Main()
	if stage := os.Getenv(envStage); stage != "" {
		os.Exit(stageMain(stage, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// stageMain is the test stand-in for `writ executor <stage>`.
func stageMain(stage string, args []string) int {
	cfg, err := config.Load(os.Getenv(envTestConfig))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	opts := Options{
		Config:    cfg,
		Allowlist: &dirSource{dir: os.Getenv(envTestAllowlist), unavailable: os.Getenv(envTestUnreadable) != ""},
		Audit:     audit.Open(cfg.Paths.Audit),
		Version:   "test",
	}
	if g, err := time.ParseDuration(os.Getenv(envTestKillGrace)); err == nil {
		opts.KillGrace = g
	}
	switch stage {
	case "config":
		return Config(ctx, opts)
	case "prepare":
		return Prepare(ctx, opts)
	case "run":
		if len(args) != 2 {
			fmt.Fprintln(os.Stderr, "run needs <script> <stage>")
			return 2
		}
		return Run(ctx, opts, args[0], args[1])
	case "cleanup":
		return Cleanup(ctx, opts)
	}
	fmt.Fprintln(os.Stderr, "unknown stage", stage)
	return 2
}

// dirSource is an AllowlistSource over allowlist.yaml in a directory (the
// real acceptance, with signatures and approvals, is tested in allowlist).
type dirSource struct {
	dir         string
	unavailable bool
}

func (s *dirSource) Current(context.Context) (*allowlist.Accepted, error) {
	if s.unavailable {
		return nil, errors.New("allowlist repository unreachable and no verified cache")
	}
	data, err := os.ReadFile(filepath.Join(s.dir, allowlist.FileName))
	if err != nil {
		return nil, err
	}
	return acceptedFrom(s.dir, data)
}

func acceptedFrom(dir string, data []byte) (*allowlist.Accepted, error) {
	a, err := allowlist.Parse(allowlist.FileName, data, func(p string) ([]byte, error) {
		return os.ReadFile(filepath.Join(dir, filepath.FromSlash(p)))
	})
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	return &allowlist.Accepted{
		Allowlist: a, Index: allowlist.NewIndex(a),
		Commit: strings.Repeat("ab", 20), Digest: hex.EncodeToString(sum[:]),
		Signer: "TEST", Threshold: 1, AcceptedAt: time.Unix(0, 0),
	}, nil
}

// env is one isolated writ installation with an application repository.
type env struct {
	t          *testing.T
	root       string
	state      string
	cache      string
	builds     string
	auditPath  string
	cfgPath    string
	alDir      string
	src        *testkeys.Repo
	signer     *testkeys.SSH
	outsider   *testkeys.SSH
	canary     string
	mode       config.Mode
	killGrace  string
	extraEnv   []string
	head       string // signed head of main in src
	entry      entrySpec
	extraJobs  []entrySpec
	unreadable bool
	// extraSigners are YAML lines added under signers:.
	extraSigners string
	// jobUser is job.user in the config ("" for none).
	jobUser string
	// contained runs jobs in the sandbox; the other tests, about admission
	// and the stage protocol, run them on the host (unsafe_no_sandbox) so
	// their scripts can leave canaries in the test's directory.
	contained bool
	// sandboxExtra are TOML lines added under [sandbox].
	sandboxExtra []string
	// configTail is TOML appended to the config (whole tables).
	configTail string
}

// entrySpec describes one allowlist entry; render turns it into YAML.
type entrySpec struct {
	Name, Project, Job string
	Envs, Refs         []string
	Script, After      []string
	Vars               []string // YAML lines under variables:, e.g. `GREETING: {value: hello}`
	Timeout            string
	Extra              []string // YAML lines under definition:, e.g. `artifacts: true`
	Repo               string
	Signers            []string
	Mode               string
	SourceExtra        []string // YAML lines under source:
}

func q(s string) string { return strconv.Quote(s) }

func yamlList(indent string, items []string) string {
	if len(items) == 0 {
		return " []\n"
	}
	var b strings.Builder
	b.WriteString("\n")
	for _, it := range items {
		b.WriteString(indent + "- " + q(it) + "\n")
	}
	return b.String()
}

func (s entrySpec) render() string {
	var b strings.Builder
	fmt.Fprintf(&b, "  - name: %s\n", s.Name)
	fmt.Fprintf(&b, "    match:\n      project: %s\n      job: %s\n", q(s.Project), q(s.Job))
	fmt.Fprintf(&b, "      environments:%s", yamlList("        ", s.Envs))
	fmt.Fprintf(&b, "      refs:%s", yamlList("        ", s.Refs))
	fmt.Fprintf(&b, "    definition:\n      script:%s", yamlList("        ", s.Script))
	if len(s.After) > 0 {
		fmt.Fprintf(&b, "      after_script:%s", yamlList("        ", s.After))
	}
	if len(s.Vars) > 0 {
		b.WriteString("      variables:\n")
		for _, v := range s.Vars {
			b.WriteString("        " + v + "\n")
		}
	}
	if s.Timeout != "" {
		fmt.Fprintf(&b, "      timeout: %s\n", s.Timeout)
	}
	for _, x := range s.Extra {
		b.WriteString("      " + x + "\n")
	}
	fmt.Fprintf(&b, "    source:\n      repository: %s\n      signers: [%s]\n      mode: %s\n", q(s.Repo), strings.Join(s.Signers, ", "), s.Mode)
	for _, x := range s.SourceExtra {
		b.WriteString("      " + x + "\n")
	}
	return b.String()
}

// newEnv makes an environment "prod" in enforce mode with an application
// repository whose main branch has two SSH-signed commits, and an entry
// "app-build" for group/app's job "build" that admits them.
func newEnv(t *testing.T) *env {
	t.Helper()
	root := t.TempDir()
	e := &env{
		t: t, root: root,
		state: filepath.Join(root, "state"), cache: filepath.Join(root, "cache"),
		builds: filepath.Join(root, "builds"), auditPath: filepath.Join(root, "log", "audit.log"),
		cfgPath: filepath.Join(root, "config.toml"), alDir: filepath.Join(root, "allowlist"),
		canary: filepath.Join(root, "canary"), mode: config.Enforce, killGrace: "1s",
	}
	for _, d := range []string{e.alDir, filepath.Dir(e.auditPath)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	e.signer = testkeys.SSHKey(t, "dev@example.com")
	e.outsider = testkeys.SSHKey(t, "mallory@example.com")
	e.src = testkeys.GitRepo(t)
	e.src.Commit(t, map[string]string{"README.md": "app\n"}, "initial", e.signer)
	e.head = e.src.Commit(t, map[string]string{"main.sh": "echo main\n"}, "second", e.signer)
	e.entry = entrySpec{
		Name: "app-build", Project: "group/app", Job: "build",
		Envs: []string{"prod"}, Refs: []string{"refs/heads/main"},
		Script:  e.defaultScript(),
		Vars:    []string{"GREETING: {value: hello}"},
		Repo:    "file://" + e.src.Path,
		Signers: []string{"devs"}, Mode: "commit",
	}
	return e
}

func (e *env) defaultScript() []string {
	return []string{`echo "$GREETING from $CI_PROJECT_PATH"`, "test -f README.md", "touch " + e.canary}
}

// write renders the configuration and allowlist as they stand.
func (e *env) write() {
	t := e.t
	t.Helper()
	cfg := fmt.Sprintf(`environment = "prod"
mode = %q

[allowlist]
url = "file:///nonexistent/allowlist.git"
identity = "test/allowlist"

[trust]
ssh_allowed_signers = "/nonexistent/allowed_signers"

[paths]
state = %q
cache = %q
audit = %q
builds = %q

[job]
default_timeout = "1m"
user = %q

[job.env]
FROM_CONFIG = "config-value"

[sandbox]
unsafe_no_sandbox = %t
%s
%s
`, e.mode, e.state, e.cache, e.auditPath, e.builds, e.jobUser, !e.contained, strings.Join(e.sandboxExtra, "\n"), e.configTail)
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "schema: writ/v2\nrepository: test/allowlist\nversion: 7\nexpires: 2099-01-01T00:00:00Z\n")
	fmt.Fprintf(&b, "signers:\n  devs:\n    ssh:\n      - %s\n", q(e.signer.AllowedSignersLine("")))
	fmt.Fprintf(&b, "  others:\n    ssh:\n      - %s\n", q(e.outsider.AllowedSignersLine("")))
	b.WriteString(e.extraSigners)
	b.WriteString("jobs:\n")
	b.WriteString(e.entry.render())
	for _, x := range e.extraJobs {
		b.WriteString(x.render())
	}
	if err := os.WriteFile(filepath.Join(e.alDir, allowlist.FileName), []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := acceptedFrom(e.alDir, []byte(b.String())); err != nil {
		t.Fatalf("test allowlist does not parse: %v\n%s", err, b.String())
	}
}

// payload is testdata/payload.json (the runner's encoding of a job) for
// job id at commit sha, with the entry's script, then mods applied.
func (e *env) payload(id int, sha string, mods ...func(map[string]any)) []byte {
	e.t.Helper()
	return makePayload(e.t, id, sha, e.defaultScript(), mods...)
}

func makePayload(t testing.TB, id int, sha string, script []string, mods ...func(map[string]any)) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/payload.json")
	if err != nil {
		t.Fatal(err)
	}
	var p map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&p); err != nil {
		t.Fatal(err)
	}
	p["id"] = json.Number(strconv.Itoa(id))
	p["git_info"].(map[string]any)["sha"] = sha
	for _, v := range p["variables"].([]any) {
		v := v.(map[string]any)
		switch v["key"] {
		case "CI_JOB_ID":
			v["value"] = strconv.Itoa(id)
		case "CI_COMMIT_SHA":
			v["value"] = sha
		}
	}
	setScript(p, "script", script)
	for _, m := range mods {
		m(p)
	}
	out, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Payload modifiers.

func setScript(p map[string]any, step string, lines []string) {
	steps, _ := p["steps"].([]any)
	for _, s := range steps {
		s := s.(map[string]any)
		if s["name"] == step {
			s["script"] = lines
			return
		}
	}
	when, allow := "on_success", false
	if step == "after_script" {
		when, allow = "always", true
	}
	p["steps"] = append(steps, map[string]any{"name": step, "script": lines, "timeout": 3600, "when": when, "allow_failure": allow})
}

func withScript(lines ...string) func(map[string]any) {
	return func(p map[string]any) { setScript(p, "script", lines) }
}

func withAfter(lines ...string) func(map[string]any) {
	return func(p map[string]any) { setScript(p, "after_script", lines) }
}

func withVar(key, value string, opts ...string) func(map[string]any) {
	return func(p map[string]any) {
		v := map[string]any{"key": key, "value": value, "public": true, "file": false, "masked": false, "raw": false}
		for _, o := range opts {
			v[o] = true
			if o == "masked" {
				v["public"] = false
			}
		}
		p["variables"] = append(p["variables"].([]any), v)
	}
}

func withKey(key string, value any) func(map[string]any) {
	return func(p map[string]any) { p[key] = value }
}

func withGit(key string, value any) func(map[string]any) {
	return func(p map[string]any) { p["git_info"].(map[string]any)[key] = value }
}

// job is one job's run through the stages, as the runner makes it.
type job struct {
	e        *env
	id       string
	tmp      string
	payload  string
	codeFile string
	log      strings.Builder
}

func (e *env) newJob(payload []byte) *job {
	e.t.Helper()
	tmp := e.t.TempDir()
	j := &job{e: e, tmp: tmp, payload: filepath.Join(tmp, "response.json"), codeFile: filepath.Join(tmp, "build_exit_code")}
	if err := os.WriteFile(j.payload, payload, 0o600); err != nil {
		e.t.Fatal(err)
	}
	var p struct {
		ID json.Number `json:"id"`
	}
	_ = json.Unmarshal(payload, &p)
	j.id = p.ID.String()
	return j
}

// cmd builds the stage process with the runner's environment: its own
// environment plus the protocol variables and CUSTOM_ENV_ per job variable.
func (j *job) cmd(ctx context.Context, args ...string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		j.e.t.Fatal(err)
	}
	c := exec.CommandContext(ctx, exe, args[1:]...)
	c.Dir = j.tmp
	c.Env = append(os.Environ(),
		envStage+"="+args[0],
		envTestConfig+"="+j.e.cfgPath,
		envTestAllowlist+"="+j.e.alDir,
		envTestKillGrace+"="+j.e.killGrace,
		"TMPDIR="+j.tmp,
		"BUILD_FAILURE_EXIT_CODE=1",
		"SYSTEM_FAILURE_EXIT_CODE=2",
		"BUILD_EXIT_CODE_FILE="+j.codeFile,
		"JOB_RESPONSE_FILE="+j.payload,
	)
	if j.e.unreadable {
		c.Env = append(c.Env, envTestUnreadable+"=1")
	}
	c.Env = append(c.Env, j.e.extraEnv...)
	var p struct {
		Variables []struct{ Key, Value string } `json:"variables"`
	}
	if data, err := os.ReadFile(j.payload); err == nil && json.Unmarshal(data, &p) == nil {
		for _, v := range p.Variables {
			c.Env = append(c.Env, "CUSTOM_ENV_"+v.Key+"="+v.Value)
		}
	}
	return c
}

// stage runs one stage call and returns its output and exit code.
func (j *job) stage(args ...string) (string, int) {
	j.e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	c := j.cmd(ctx, args...)
	c.Stdout, c.Stderr = &out, &out
	err := c.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		j.e.t.Fatalf("stage %v: %v", args, err)
	}
	fmt.Fprintf(&j.log, "--- %s (exit %d)\n%s", strings.Join(args, " "), code, out.String())
	return out.String(), code
}

// runnerScript writes the runner's script for a stage (what audit mode's
// pass-through runs; writ ignores it otherwise). It touches the canary, so
// running it is visible.
func (j *job) runnerScript(stage string) string {
	p := filepath.Join(j.tmp, "script-"+stage)
	body := fmt.Sprintf("#!/usr/bin/env bash\necho RUNNER-SCRIPT %s\necho %s >> %s\n", stage, stage, j.e.canary)
	if err := os.WriteFile(p, []byte(body), 0o700); err != nil {
		j.e.t.Fatal(err)
	}
	return p
}

func (j *job) run(stage string) (string, int) {
	return j.stage("run", j.runnerScript(stage), stage)
}

// result is a whole job's outcome.
type result struct {
	prepare, build int
	exitCode       string // BUILD_EXIT_CODE_FILE content after build_script
}

// runAll drives every stage in the runner's order.
func (j *job) runAll() result {
	j.e.t.Helper()
	var r result
	out, code := j.stage("config")
	if code != 0 || !json.Valid([]byte(out)) {
		j.e.t.Fatalf("config: exit %d, output %q", code, out)
	}
	r.prepare = -1
	if _, r.prepare = j.stage("prepare"); r.prepare != 0 {
		j.stage("cleanup")
		return r
	}
	failed := false
	for _, s := range []string{"prepare_script", "get_sources", "restore_cache", "download_artifacts"} {
		if _, c := j.run(s); c != 0 {
			failed = true
			r.build = c
			break
		}
	}
	if !failed {
		_, r.build = j.run("build_script")
		failed = r.build != 0
		if data, err := os.ReadFile(j.codeFile); err == nil {
			r.exitCode = strings.TrimSpace(string(data))
		}
	}
	j.run("after_script")
	if failed {
		j.run("archive_cache_on_failure")
		j.run("upload_artifacts_on_failure")
	} else {
		j.run("archive_cache")
		j.run("upload_artifacts_on_success")
	}
	j.run("cleanup_file_variables")
	j.stage("cleanup")
	return r
}

// assertNothingRan proves a refused job left no trace of execution: no
// canary, no build directory, nothing checked out, and a run stage called
// anyway (by a broken or hostile runner) is refused too.
func (j *job) assertNothingRan() {
	t := j.e.t
	t.Helper()
	if _, err := os.Stat(j.e.canary); err == nil {
		t.Errorf("canary exists: something of the refused job ran\n%s", j.log.String())
	}
	if entries, err := os.ReadDir(j.e.builds); err == nil && len(entries) > 0 {
		t.Errorf("build directory created for a refused job: %v", entries)
	}
	for _, stage := range []string{"get_sources", "build_script"} {
		out, code := j.run(stage)
		if code != 1 {
			t.Errorf("run %s after refusal: exit %d, want 1\n%s", stage, code, out)
		}
	}
	if _, err := os.Stat(j.e.canary); err == nil {
		t.Errorf("canary exists after forced run stages of a refused job")
	}
	if _, err := os.Stat(filepath.Join(j.e.builds, j.id)); err == nil {
		t.Errorf("build directory exists after forced run stages of a refused job")
	}
}

// auditRecords verifies the audit log's chain and returns its records.
func (e *env) auditRecords() []audit.Record {
	e.t.Helper()
	if _, err := audit.VerifyFile(e.auditPath); err != nil {
		e.t.Fatalf("audit log broken: %v", err)
	}
	f, err := os.Open(e.auditPath)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	recs, err := audit.ReadAll(f)
	if err != nil {
		e.t.Fatal(err)
	}
	return recs
}

func eventsFor(recs []audit.Record, id string) []string {
	var out []string
	for _, r := range recs {
		if r.Job == id {
			out = append(out, r.Event)
		}
	}
	return out
}

func mustContain(t *testing.T, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

func mustNotContain(t *testing.T, out string, bad ...string) {
	t.Helper()
	for _, b := range bad {
		if strings.Contains(out, b) {
			t.Errorf("output contains %q:\n%s", b, out)
		}
	}
}

// processGone reports whether pid no longer runs (a zombie counts as gone:
// it runs nothing and only waits for a reaper).
func processGone(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(data)
	i := strings.LastIndex(s, ")")
	return i >= 0 && len(s) > i+2 && (s[i+2] == 'Z' || s[i+2] == 'X')
}

func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if processGone(pid) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return processGone(pid)
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}
