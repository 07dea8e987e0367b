package e2e

import (
	"context"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/internal/testkeys"
)

func TestMain(m *testing.M) {
	code := m.Run()
	CleanupShared()
	os.Exit(code)
}

// appRepo publishes a small application repository as acme/app.git and returns
// its clone URL and head commit.
func appRepo(t testing.TB, w *World) (*testkeys.Repo, string, string) {
	t.Helper()
	repo := testkeys.GitRepo(t)
	sha := repo.Commit(t, map[string]string{
		"README.md": "the application\n",
		"deploy.sh": "#!/bin/sh\necho deploying\n",
	}, "initial", nil)
	if err := w.Git.Add("acme/app", filepath.Join(repo.Path, ".git")); err != nil {
		t.Fatal(err)
	}
	return repo, w.Git.URL("acme/app"), sha
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// checksum is the runner's trace checksum.
func checksum(trace string) string {
	return fmt.Sprintf("crc32:%08x", crc32.ChecksumIEEE([]byte(trace)))
}

func TestTrivialJobSucceeds(t *testing.T) {
	t.Parallel()
	w := NewWorld(t)
	_, url, sha := appRepo(t, w)
	p := w.Payload(Job{
		Project: "acme/app", Name: "deploy", Environment: "production",
		RepoURL: url, Ref: "main", Sha: sha,
		Script:      []string{"echo hello-writ", `echo "project=$CI_PROJECT_PATH sha=$CI_COMMIT_SHA"`, "cat README.md"},
		AfterScript: []string{`echo "after-script-ran-$CI_JOB_ID"`},
	})
	start := time.Now()
	o := w.RunJob(testCtx(t), p)
	t.Logf("job took %s end to end", time.Since(start).Round(time.Millisecond))
	if !o.Succeeded() {
		t.Fatalf("want success:\n%s", o)
	}
	for _, want := range []string{
		"hello-writ",
		"project=acme/app sha=" + sha,
		"the application", // the work tree was checked out from app.git
		fmt.Sprintf("after-script-ran-%d", p.ID),
		"Job succeeded",
	} {
		if !strings.Contains(o.Trace, want) {
			t.Errorf("trace lacks %q:\n%s", want, o)
		}
	}
	last := o.Updates[len(o.Updates)-1]
	if last.Output.Checksum != checksum(o.Trace) || last.Output.Bytesize != len(o.Trace) {
		t.Errorf("final update says trace %s/%d bytes, coordinator holds %s/%d: trace lost or reordered",
			last.Output.Checksum, last.Output.Bytesize, checksum(o.Trace), len(o.Trace))
	}
	if o.Updates[0].State != "running" {
		t.Errorf("first update state %q, want running", o.Updates[0].State)
	}
	if o.Runner.ExitCode != 0 || o.Runner.Killed {
		t.Errorf("runner exit %d killed=%v", o.Runner.ExitCode, o.Runner.Killed)
	}
	calls := PassthroughCalls(w.PassthroughDir)
	for _, want := range []string{"config", "prepare", "run prepare_script", "run get_sources", "run build_script", "run after_script", "cleanup"} {
		if !slices.Contains(calls, want) {
			t.Errorf("executor was not called for %q; calls: %q", want, calls)
		}
	}
	if fetched := w.Git.Fetches(); !slices.ContainsFunc(fetched, func(s string) bool { return strings.HasPrefix(s, "acme/app.git ") }) {
		t.Errorf("acme/app.git was never fetched: %q", fetched)
	}
}

func TestFailingScriptFails(t *testing.T) {
	t.Parallel()
	w := NewWorld(t)
	_, url, sha := appRepo(t, w)
	p := w.Payload(Job{
		Project: "acme/app", RepoURL: url, Ref: "main", Sha: sha,
		Script:      []string{"echo before-failure", "exit 7", "echo never-printed"},
		AfterScript: []string{"echo after-script-still-runs"},
	})
	o := w.RunJob(testCtx(t), p)
	if o.State != "failed" || o.FailureReason != "script_failure" || o.ExitCode != 7 {
		t.Fatalf("want failed/script_failure/7:\n%s", o)
	}
	if !strings.Contains(o.Trace, "before-failure") || strings.Contains(o.Trace, "never-printed") {
		t.Errorf("script did not stop at the failing line:\n%s", o)
	}
	if !strings.Contains(o.Trace, "after-script-still-runs") {
		t.Errorf("after_script did not run after a failure:\n%s", o)
	}
	// run-single exits 0 even though the job failed: the outcome comes from
	// the coordinator, never from the runner's exit code.
	if o.Runner.ExitCode != 0 {
		t.Logf("note: runner exited %d", o.Runner.ExitCode)
	}
}

func TestCancelStopsTheJob(t *testing.T) {
	t.Parallel()
	w := NewWorld(t)
	_, url, sha := appRepo(t, w)
	pidFile := filepath.Join(w.Dir, "sleeper.pid")
	p := w.Payload(Job{
		Project: "acme/app", RepoURL: url, Ref: "main", Sha: sha,
		Script: []string{
			fmt.Sprintf("sleep 300 & echo $! > %s", pidFile),
			"echo sleeper-started",
			// Output makes the runner patch the trace every second, which is
			// when it hears "canceling"; a silent job hears it only on the
			// 30-second keep-alive update.
			"while :; do echo tick; sleep 0.3; done",
			"echo must-not-finish",
		},
	})
	start := time.Now()
	o := w.RunJobWith(testCtx(t), p, RunOptions{CancelWhenTrace: "sleeper-started", Timeout: 60 * time.Second})
	took := time.Since(start)
	if o.State != "failed" || o.FailureReason != "job_canceled" && o.FailureReason != "unknown_failure" {
		t.Errorf("want a failed (canceled) job:\n%s", o)
	}
	if strings.Contains(o.Trace, "must-not-finish") {
		t.Errorf("job finished despite cancellation:\n%s", o)
	}
	if took > 20*time.Second {
		t.Errorf("cancellation took %s", took)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the job never started its sleeper: %v\n%s", err, o)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	// The runner kills the job's process tree; give the kernel a moment.
	dead := false
	for range 50 {
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			dead = true
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !dead {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		t.Errorf("the job's sleep (pid %d) survived cancellation:\n%s", pid, o)
	}
	t.Logf("cancelled in %s: %s/%s", took.Round(time.Millisecond), o.State, o.FailureReason)
}

func TestParseContentRange(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in         string
		start, end int
		ok         bool
	}{
		{"0-9", 0, 9, true},
		{"10-10", 10, 10, true},
		{"", 0, 0, false},
		{"5", 0, 0, false},
		{"9-3", 0, 0, false},
		{"-1-3", 0, 0, false},
		{"a-b", 0, 0, false},
		{"0-99999999999999999999", 0, 0, false},
	} {
		start, end, ok := parseContentRange(c.in)
		if ok != c.ok || ok && (start != c.start || end != c.end) {
			t.Errorf("parseContentRange(%q) = %d, %d, %v; want %d, %d, %v", c.in, start, end, ok, c.start, c.end, c.ok)
		}
	}
}

// FuzzParseContentRange: the header comes from the runner; whatever it
// says, the result is either rejected or a sane, ordered range.
func FuzzParseContentRange(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		start, end, ok := parseContentRange(s)
		if ok && (start < 0 || end < start) {
			t.Fatalf("parseContentRange(%q) = %d, %d accepted", s, start, end)
		}
	})
}

// FuzzSplitGitPath: request paths come from the git client.
func FuzzSplitGitPath(f *testing.F) {
	f.Fuzz(func(t *testing.T, p, service string) {
		repo, svc := splitGitPath(p, service)
		if strings.Contains(p, ".git/") && !strings.HasSuffix(repo, ".git") {
			t.Fatalf("splitGitPath(%q) = %q", p, repo)
		}
		_ = svc
	})
}
