package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// World is one test's hostile GitLab: a coordinator, a git server, a
// custom executor (the pass-through one unless the test sets another) and
// the real runner to connect them. Everything lives under a temporary
// directory and on 127.0.0.1, and is torn down when the test ends.
type World struct {
	T   testing.TB
	Dir string

	Coord *Coordinator
	Git   *GitServer

	// RunnerBin is the gitlab-runner binary.
	RunnerBin string
	// Executor is what [runners.custom] runs; the pass-through executor by
	// default. Replace it (e.g. with WritExecutor) before running jobs.
	Executor Executor
	// PassthroughDir holds the pass-through executor and its calls.log.
	PassthroughDir string
	// CacheDir is the runner's cache_dir, shared by all of the world's jobs
	// as on a real runner host.
	CacheDir string

	nextID     atomic.Int64
	runSeq     atomic.Int64
	stepRunner string
}

// NewWorld builds a World for t. Without a runner binary the test fails,
// naming the command that builds it; it is skipped instead only when
// WRIT_E2E_OPTIONAL=1 and WRIT_RUNNER_BIN is unset.
func NewWorld(t testing.TB) *World {
	t.Helper()
	bin, err := FindRunner()
	if err != nil {
		if errors.Is(err, ErrNoRunner) && os.Getenv(RunnerBinEnv) == "" && os.Getenv(OptionalEnv) == "1" {
			t.Skipf("skipping the end-to-end suite (%s=1): %v", OptionalEnv, err)
		}
		t.Fatalf("e2e: %v", err)
	}
	dir := t.TempDir()
	w := &World{T: t, Dir: dir, RunnerBin: bin, CacheDir: filepath.Join(dir, "cache")}
	w.nextID.Store(1000)

	if w.Coord, err = NewCoordinator(); err != nil {
		t.Fatalf("e2e: %v", err)
	}
	t.Cleanup(func() { _ = w.Coord.Close() })
	if w.Git, err = NewGitServer(filepath.Join(dir, "git")); err != nil {
		t.Fatalf("e2e: %v", err)
	}
	t.Cleanup(func() { _ = w.Git.Close() })
	w.PassthroughDir = filepath.Join(dir, "passthrough")
	if w.Executor, err = Passthrough(w.PassthroughDir); err != nil {
		t.Fatalf("e2e: %v", err)
	}
	if w.stepRunner, err = StepRunner(); err != nil {
		t.Fatalf("e2e: %v", err)
	}
	return w
}

// AddImage makes image name startable by the pass-through executor; see
// the package function AddImage.
func (w *World) AddImage(name, entrypoint string) {
	w.T.Helper()
	if err := AddImage(w.PassthroughDir, name, entrypoint); err != nil {
		w.T.Fatalf("e2e: %v", err)
	}
}

// NextID returns a fresh job ID.
func (w *World) NextID() int64 { return w.nextID.Add(1) }

// Payload returns NewPayload(j) with the world's defaults filled in: a fresh
// job ID, pipeline and project IDs, and the coordinator's URL.
func (w *World) Payload(j Job) *Payload {
	if j.ID == 0 {
		j.ID = w.NextID()
	}
	if j.PipelineID == 0 {
		j.PipelineID = 500 + j.ID
	}
	if j.ProjectID == 0 {
		j.ProjectID = 77
	}
	if j.ServerURL == "" {
		j.ServerURL = w.Coord.URL()
	}
	if j.Name == "" {
		j.Name = "deploy"
	}
	return NewPayload(j)
}

// RunOptions change how one job is run.
type RunOptions struct {
	// CancelWhenTrace requests cancellation (Job-Status: canceling) once the
	// job's trace contains this text. The runner hears it on its next trace
	// patch (about every second while the job prints) or, for a silent job,
	// on its 30-second keep-alive update.
	CancelWhenTrace string
	// Timeout bounds the job (default 90s).
	Timeout time.Duration
	// Executor overrides the world's executor for this job.
	Executor *Executor
}

// Outcome is how a job ended, as GitLab saw it, plus the runner's log.
type Outcome struct {
	JobID int64
	// Served is true when a runner fetched the job.
	Served bool
	// State is the final state the runner reported: "success", "failed",
	// or "" when it never reported one.
	State         string
	FailureReason string
	ExitCode      int
	Trace         string
	Updates       []JobUpdate
	Uploads       []Upload
	Runner        RunnerResult
}

// Succeeded reports a final "success".
func (o Outcome) Succeeded() bool { return o.State == "success" }

// String summarises the outcome for test failure messages.
func (o Outcome) String() string {
	return fmt.Sprintf("job %d: served=%v state=%q failure_reason=%q exit_code=%d runner_exit=%d killed=%v duration=%s\n--- trace (tail) ---\n%s\n--- runner log (tail) ---\n%s",
		o.JobID, o.Served, o.State, o.FailureReason, o.ExitCode, o.Runner.ExitCode, o.Runner.Killed,
		o.Runner.Duration.Round(time.Millisecond), tail(o.Trace, 3000), tail(o.Runner.Log, 3000))
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// RunJob serves p to a fresh `gitlab-runner run-single` and returns how the
// job ended.
func (w *World) RunJob(ctx context.Context, p *Payload) Outcome {
	return w.RunJobWith(ctx, p, RunOptions{})
}

// RunJobWith is RunJob with options.
func (w *World) RunJobWith(ctx context.Context, p *Payload, opts RunOptions) Outcome {
	w.T.Helper()
	if err := w.Coord.Enqueue(p); err != nil {
		w.T.Fatalf("e2e: %v", err)
	}
	return w.run(ctx, p.ID, opts)
}

// RunRaw serves body (not necessarily valid JSON) as job id with token.
func (w *World) RunRaw(ctx context.Context, id int64, token string, body []byte) Outcome {
	w.T.Helper()
	w.Coord.EnqueueRaw(id, token, body)
	return w.run(ctx, id, RunOptions{})
}

// RunJobs runs the payloads at the same time, one runner process each,
// sharing the world's cache directory, and returns their outcomes in order.
// A runner process takes whichever queued job it gets first, so each
// outcome is read from the coordinator once every process has exited; the
// Runner result in it is that of the process started for it, which may
// have run another of the payloads. Payloads sharing an ID share one
// coordinator record (the last trace and final state win).
func (w *World) RunJobs(ctx context.Context, ps ...*Payload) []Outcome {
	w.T.Helper()
	for _, p := range ps {
		if err := w.Coord.Enqueue(p); err != nil {
			w.T.Fatalf("e2e: %v", err)
		}
	}
	out := make([]Outcome, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = w.run(ctx, p.ID, RunOptions{})
		}()
	}
	wg.Wait()
	for i := range out {
		out[i] = w.outcome(out[i].JobID, out[i].Runner)
	}
	return out
}

// notStartedGrace: a runner that fetched a job but sent no update within
// this time has refused the payload itself (e.g. it was not valid JSON) and
// sits in its 5-minute "unhealthy" back-off; the suite stops it.
const notStartedGrace = 8 * time.Second

// payloadRejected is what the runner logs when it cannot use a job it
// fetched (e.g. the payload does not decode).
const payloadRejected = `msg="Checking for jobs... failed"`

func (w *World) run(ctx context.Context, id int64, opts RunOptions) Outcome {
	w.T.Helper()
	if opts.Timeout == 0 {
		opts.Timeout = 90 * time.Second
	}
	exe := w.Executor
	if opts.Executor != nil {
		exe = *opts.Executor
	}
	// One directory per runner process: two payloads may share a job ID.
	runDir := filepath.Join(w.Dir, "runs", fmt.Sprintf("%d-%d", id, w.runSeq.Add(1)))
	proc, err := StartRunner(ctx, RunnerConfig{
		Bin: w.RunnerBin, URL: w.Coord.URL(), Token: w.Coord.RunnerToken,
		BuildsDir: filepath.Join(runDir, "builds"), CacheDir: w.CacheDir,
		Executor: exe, Dir: runDir, Timeout: opts.Timeout + 30*time.Second,
		Tools: map[string]string{"step-runner": w.stepRunner},
	})
	if err != nil {
		w.T.Fatalf("e2e: %v", err)
	}
	deadline := time.Now().Add(opts.Timeout)
	var finalAt time.Time
	canceled := false
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
loop:
	for {
		select {
		case <-proc.Done():
			break loop
		case <-ctx.Done():
			proc.Stop(5 * time.Second)
			break loop
		case <-tick.C:
		}
		j := w.Coord.Job(id)
		now := time.Now()
		switch {
		case now.After(deadline):
			w.T.Logf("e2e: job %d did not finish within %s; stopping the runner", id, opts.Timeout)
			proc.Stop(5 * time.Second)
			break loop
		case j == nil || j.Served.IsZero():
			continue
		}
		if opts.CancelWhenTrace != "" && !canceled && strings.Contains(string(j.Trace), opts.CancelWhenTrace) {
			w.Coord.RequestCancel(id)
			canceled = true
		}
		if len(j.Updates) == 0 && (now.Sub(j.Served) > notStartedGrace || strings.Contains(proc.Log(), payloadRejected)) {
			proc.Stop(5 * time.Second)
			break loop
		}
		finals := 0
		for _, u := range j.Updates {
			if u.Final() {
				finals++
			}
		}
		if finalAt.IsZero() && finals >= j.Serves {
			finalAt = now
		}
		if !finalAt.IsZero() && now.Sub(finalAt) > 15*time.Second {
			w.T.Logf("e2e: runner still running 15s after job %d's final update; stopping it", id)
			proc.Stop(5 * time.Second)
			break loop
		}
	}
	return w.outcome(id, proc.Wait())
}

// outcome is how job id ended as the coordinator saw it, with res, the
// runner process's result.
func (w *World) outcome(id int64, res RunnerResult) Outcome {
	o := Outcome{JobID: id, Runner: res}
	if j := w.Coord.Job(id); j != nil {
		o.Served = !j.Served.IsZero()
		o.Trace = string(j.Trace)
		o.Updates = j.Updates
		o.Uploads = j.Uploads
		for i := len(j.Updates) - 1; i >= 0; i-- {
			if u := j.Updates[i]; u.Final() {
				o.State, o.FailureReason, o.ExitCode = u.State, u.FailureReason, u.ExitCode
				break
			}
		}
	}
	return o
}
