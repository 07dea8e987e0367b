package e2e

import (
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func newTestCoordinator(t *testing.T) *Coordinator {
	t.Helper()
	c, err := NewCoordinator()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func do(t *testing.T, method, url, body string, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = res.Body.Close() })
	return res
}

// The coordinator is a faithful enough GitLab that the runner's mistakes
// (or ours) show: wrong tokens are refused, traces must be contiguous.
func TestCoordinatorProtocol(t *testing.T) {
	t.Parallel()
	c := newTestCoordinator(t)
	api := c.URL() + "/api/v4"

	if res := do(t, "POST", api+"/jobs/request", `{"token":"wrong"}`, nil); res.StatusCode != http.StatusForbidden {
		t.Errorf("job request with a wrong runner token: %d, want 403", res.StatusCode)
	}
	if res := do(t, "POST", api+"/jobs/request", `{"token":"`+c.RunnerToken+`"}`, nil); res.StatusCode != http.StatusNoContent {
		t.Errorf("empty queue: %d, want 204", res.StatusCode)
	}
	c.EnqueueRaw(7, "job-token", []byte(`{"id":7}`))
	res := do(t, "POST", api+"/jobs/request", `{"token":"`+c.RunnerToken+`"}`, nil)
	if b, _ := io.ReadAll(res.Body); res.StatusCode != http.StatusCreated || string(b) != `{"id":7}` {
		t.Errorf("queued job: %d %q, want 201 and the payload verbatim", res.StatusCode, b)
	}

	if res := do(t, "PUT", api+"/jobs/7", `{"token":"nope","state":"running"}`, map[string]string{"JOB-TOKEN": "nope"}); res.StatusCode != http.StatusForbidden {
		t.Errorf("update with a wrong job token: %d, want 403", res.StatusCode)
	}
	tok := map[string]string{"JOB-TOKEN": "job-token"}
	if res := do(t, "PUT", api+"/jobs/7", `{"state":"running"}`, tok); res.StatusCode != 200 || res.Header.Get("Job-Status") != "running" {
		t.Errorf("running update: %d Job-Status=%q", res.StatusCode, res.Header.Get("Job-Status"))
	}

	patch := func(rng, body string) *http.Response {
		return do(t, "PATCH", api+"/jobs/7/trace", body, map[string]string{"JOB-TOKEN": "job-token", "Content-Range": rng})
	}
	if res := patch("0-4", "hello"); res.StatusCode != http.StatusAccepted || res.Header.Get("Range") != "0-5" {
		t.Errorf("first patch: %d Range=%q, want 202 0-5", res.StatusCode, res.Header.Get("Range"))
	}
	if res := patch("9-10", "xx"); res.StatusCode != http.StatusRequestedRangeNotSatisfiable || res.Header.Get("Range") != "0-5" {
		t.Errorf("patch with a gap: %d Range=%q, want 416 0-5", res.StatusCode, res.Header.Get("Range"))
	}
	if res := patch("5-7", "xx"); res.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("patch whose range and body disagree: %d, want 416", res.StatusCode)
	}
	c.RequestCancel(7)
	if res := patch("5-10", " world"); res.StatusCode != http.StatusAccepted || res.Header.Get("Job-Status") != "canceling" {
		t.Errorf("patch after cancel: %d Job-Status=%q, want 202 canceling", res.StatusCode, res.Header.Get("Job-Status"))
	}
	if res := do(t, "PUT", api+"/jobs/7", `{"state":"failed","failure_reason":"script_failure","exit_code":3}`, tok); res.StatusCode != 200 {
		t.Errorf("final update: %d", res.StatusCode)
	}
	j := c.Job(7)
	if string(j.Trace) != "hello world" {
		t.Errorf("trace %q, want %q", j.Trace, "hello world")
	}
	if len(j.Updates) != 2 || !j.Updates[1].Final() || j.Updates[1].ExitCode != 3 || j.Updates[1].FailureReason != "script_failure" {
		t.Errorf("updates %+v", j.Updates)
	}
}

func TestGitServerIsReadOnly(t *testing.T) {
	t.Parallel()
	appRepoDir := t.TempDir()
	git := func(dir string, args ...string) (string, error) {
		cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
			"GIT_AUTHOR_NAME=a", "GIT_AUTHOR_EMAIL=a@example.com", "GIT_COMMITTER_NAME=a", "GIT_COMMITTER_EMAIL=a@example.com")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := git(appRepoDir, "init", "-q", "-b", "main"); err != nil {
		t.Fatal(out)
	}
	if out, err := git(appRepoDir, "commit", "-q", "--allow-empty", "-m", "x"); err != nil {
		t.Fatal(out)
	}
	s, err := NewGitServer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Add("acme/app", filepath.Join(appRepoDir, ".git")); err != nil {
		t.Fatal(err)
	}
	if err := s.Add("../escape", appRepoDir); err == nil {
		t.Error("Add accepted a path-traversing name")
	}
	clone := filepath.Join(t.TempDir(), "clone")
	if out, err := git(".", "clone", "-q", s.URL("acme/app"), clone); err != nil {
		t.Fatalf("clone over smart HTTP: %v\n%s", err, out)
	}
	if out, err := git(clone, "push", "-q", "origin", "HEAD:refs/heads/evil"); err == nil {
		t.Fatalf("push succeeded; the git server must be read-only:\n%s", out)
	}
	if !strings.Contains(strings.Join(s.Fetches(), "\n"), "acme/app.git git-upload-pack") {
		t.Errorf("fetches not recorded: %q", s.Fetches())
	}
}

func TestFindRunnerRejectsABadBinary(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "gitlab-runner")
	if err := os.WriteFile(bad, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(RunnerBinEnv, bad)
	if _, err := FindRunner(); !errors.Is(err, ErrNoRunner) {
		t.Fatalf("FindRunner with a broken %s: %v, want ErrNoRunner", RunnerBinEnv, err)
	}
}
