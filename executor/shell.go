package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"time"

	"gitlab.com/writ-ci/writ/allowlist"
)

// ANSI sequences as GitLab Runner writes them into job logs.
const (
	ansiBoldGreen  = "\033[32;1m"
	ansiBoldRed    = "\033[31;1m"
	ansiBoldYellow = "\033[33;1m"
	ansiReset      = "\033[0;m"
)

// shellQuote quotes s for bash as one word.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// buildScript renders lines the way GitLab Runner's bash shell does for a
// user script: each line trimmed, echoed in bold green as "$ line" (a
// multi-line command shows its first line and a note), run under errexit
// and pipefail inside an eval'd subshell with stdin closed, so the job log
// and the exit status look as they would on any runner.
func buildScript(lines []string) string {
	var body strings.Builder
	for _, line := range lines {
		cmd := strings.TrimSpace(line)
		if cmd == "" {
			body.WriteString("echo\n")
			continue
		}
		shown := cmd
		if first, _, multi := strings.Cut(cmd, "\n"); multi {
			shown = first + " # collapsed multi-line command"
		}
		body.WriteString("printf '%s\\n' " + shellQuote(ansiBoldGreen+"$ "+shown+ansiReset) + "\n")
		body.WriteString(cmd + "\n")
	}
	var s strings.Builder
	s.WriteString("trap 'exit 1' TERM\n")
	s.WriteString("set -o pipefail\nset -o errexit\nset +o noclobber\n")
	s.WriteString("(trap 'exit 1' TERM; eval " + shellQuote(body.String()) + ") < /dev/null\n")
	s.WriteString("exit 0\n")
	return s.String()
}

// runResult is how a script ended.
type runResult struct {
	// Code is the exit status (meaningful when Status is "exited").
	Code int
	// Status: "exited", "timeout" or "canceled".
	Status string
}

// starter starts a job's process with its output on stdout and stderr,
// and returns its process group and how to wait for it.
type starter func(stdout, stderr *os.File) (pgid int, wait func() error, err error)

// hostStart runs argv directly on the host, in its own process group, as
// writ or as the job user: only with sandbox.unsafe_no_sandbox.
func hostStart(argv []string, dir string, env []string, as *jobUser) starter {
	return func(stdout, stderr *os.File) (int, func() error, error) {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Dir = dir
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = stdout, stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if as != nil {
			cmd.SysProcAttr.Credential = as.credential()
		}
		if err := cmd.Start(); err != nil {
			return 0, nil, fmt.Errorf("start %s: %w", argv[0], err)
		}
		return cmd.Process.Pid, cmd.Wait, nil
	}
}

// runProcess runs a job's process with stdin /dev/null and output to the
// job log. On timeout or cancellation the group gets SIGTERM, then SIGKILL
// after the grace. Whatever way the script ends, the rest of its process
// group is killed: nothing a job starts outlives its stage (in the
// sandbox, its PID namespace makes that hold for setsid daemons too).
func (o *Options) runProcess(ctx context.Context, start starter, timeout time.Duration) (runResult, error) {
	var copies []chan struct{}
	var pipes []*os.File
	attach := func(w io.Writer) (*os.File, error) {
		if f, ok := w.(*os.File); ok {
			return f, nil
		}
		// A non-file writer would make exec copy through a pipe and make
		// Wait wait for every holder of that pipe, including background
		// processes; copy ourselves instead, so the group can be killed
		// as soon as the script exits.
		r, wr, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = io.Copy(w, r)
		}()
		copies = append(copies, done)
		pipes = append(pipes, r, wr)
		return wr, nil
	}
	stdout, err := attach(o.Stdout)
	if err != nil {
		return runResult{}, err
	}
	stderr, err := attach(o.Stderr)
	if err != nil {
		return runResult{}, err
	}
	defer func() {
		for _, p := range pipes {
			_ = p.Close()
		}
	}()
	pgid, wait, err := start(stdout, stderr)
	if err != nil {
		return runResult{}, err
	}
	// Close our copies of the write ends so the readers see EOF when the
	// group is gone.
	for i := 1; i < len(pipes); i += 2 {
		_ = pipes[i].Close()
	}
	waitCh := make(chan error, 1)
	go func() { waitCh <- wait() }()

	var timer <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timer = t.C
	}
	res := runResult{Status: "exited"}
	var werr error
	select {
	case werr = <-waitCh:
	case <-timer:
		res.Status = "timeout"
		werr = o.terminate(pgid, waitCh)
	case <-ctx.Done():
		res.Status = "canceled"
		werr = o.terminate(pgid, waitCh)
	}
	// The script is done; anything left in its group is not.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	for _, done := range copies {
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			// A process that left the group still holds the pipe; stop
			// copying rather than hang the stage.
		}
	}
	var exitErr *exec.ExitError
	switch {
	case werr == nil:
		res.Code = 0
	case errors.As(werr, &exitErr):
		res.Code = exitErr.ExitCode()
		if res.Code < 0 {
			res.Code = 1 // killed by a signal
		}
	default:
		return res, werr
	}
	return res, nil
}

// terminate sends SIGTERM to the group, waits the grace, then SIGKILL.
func (o *Options) terminate(pgid int, waitCh <-chan error) error {
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	t := time.NewTimer(o.KillGrace)
	defer t.Stop()
	select {
	case err := <-waitCh:
		return err
	case <-t.C:
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		return <-waitCh
	}
}

// jobEnv is the clean environment of a stage's script: the entry's
// admitted variables, then fixed values from writ's configuration, then
// the values writ provides from verified data (provided), in increasing
// precedence, so that no admitted variable overrides what writ sets
// (admission refuses such names too). Nothing else from the runner's or
// GitLab's environment reaches it.
func (o *Options) jobEnv(s *Snapshot, stage string) []string {
	c := o.Config
	env := map[string]string{}
	for _, v := range s.Variables {
		if allowlist.ReservedName(v.Name) != "" {
			// Admission refuses these; a snapshot is still not trusted
			// to override what writ sets.
			continue
		}
		if v.File {
			env[v.Name] = o.fileVariablePath(s.Job.ID, v.Name)
		} else {
			env[v.Name] = v.Value
		}
	}
	env["PATH"], env["HOME"], env["LANG"] = c.Job.Path, c.Job.Home, c.Job.Lang
	if env["HOME"] == "" {
		env["HOME"] = o.projectDir(s)
	}
	for k, v := range c.Job.Env {
		env[k] = v
	}
	derived := o.provided(s, o.jobStatus(s.Job.ID, stage))
	derived["WRIT_ENVIRONMENT"] = s.Environment
	derived["WRIT_ALLOWLIST_VERSION"] = fmt.Sprint(s.Allowlist.Version)
	if s.Entry != nil {
		derived["WRIT_ENTRY"] = s.Entry.Name
	}
	for k, v := range derived {
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}
