package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"
)

// RunnerBinEnv names the environment variable holding the path of the
// runner binary built by test/runner/build.sh (`make runner`).
const RunnerBinEnv = "WRIT_RUNNER_BIN"

// OptionalEnv, set to 1, lets the suite skip (instead of fail) when no
// runner binary is available. Only for machines that cannot build it.
const OptionalEnv = "WRIT_E2E_OPTIONAL"

// ErrNoRunner means no runner binary is available.
var ErrNoRunner = errors.New("the GitLab Runner binary is not built: run `make runner` " +
	"(test/runner/build.sh) and set " + RunnerBinEnv + " to the path it prints")

// FindRunner returns the runner binary: $WRIT_RUNNER_BIN if set, else the
// binary test/runner/build.sh has already built for the current tree (it
// never builds here). The error wraps ErrNoRunner when there is none.
func FindRunner() (string, error) {
	if p := os.Getenv(RunnerBinEnv); p != "" {
		if err := checkRunner(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", RunnerBinEnv, p, err)
		}
		return p, nil
	}
	script := filepath.Join(moduleRoot(), "test", "runner", "build.sh")
	out, err := exec.Command("bash", script, "--path").Output()
	if err != nil {
		return "", ErrNoRunner
	}
	p := strings.TrimSpace(string(out))
	if err := checkRunner(p); err != nil {
		return "", fmt.Errorf("%s: %w", p, err)
	}
	return p, nil
}

func checkRunner(p string) error {
	out, err := exec.Command(p, "--version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w (%v: %s)", ErrNoRunner, err, bytes.TrimSpace(out))
	}
	return nil
}

// moduleRoot is the repository root (this file is test/e2e/runner.go).
func moduleRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "."
	}
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

// Executor is a custom executor: what the runner's [runners.custom]
// section runs for each of the four stages. The runner appends the script
// path and the stage name to RunArgs.
type Executor struct {
	ConfigExec  string
	ConfigArgs  []string
	PrepareExec string
	PrepareArgs []string
	RunExec     string
	RunArgs     []string
	CleanupExec string
	CleanupArgs []string
	// Env is added to the runner's (scrubbed) environment, which the runner
	// passes on to every executor call.
	Env []string
}

// WritExecutor runs `writ --config <config> executor <stage>` for every stage.
func WritExecutor(writBin, config string) Executor {
	args := func(stage string) []string { return []string{"--config", config, "executor", stage} }
	return Executor{
		ConfigExec: writBin, ConfigArgs: args("config"),
		PrepareExec: writBin, PrepareArgs: args("prepare"),
		RunExec: writBin, RunArgs: args("run"),
		CleanupExec: writBin, CleanupArgs: args("cleanup"),
	}
}

// RunnerConfig is one runner process's configuration.
type RunnerConfig struct {
	Bin       string // the gitlab-runner binary
	URL       string // the coordinator URL
	Token     string // the runner token
	BuildsDir string
	CacheDir  string
	Executor  Executor
	// Dir holds config.toml, the runner's HOME and its logs.
	Dir string
	// Timeout bounds the whole process (default 2 minutes).
	Timeout time.Duration
	// Tools are extra programs put on the runner's PATH, by name.
	Tools map[string]string
}

// runnerTOML mirrors the parts of the runner's config.toml the suite sets.
type runnerTOML struct {
	Concurrent    int            `toml:"concurrent"`
	CheckInterval int            `toml:"check_interval"`
	LogLevel      string         `toml:"log_level"`
	Runners       []runnerSecTOM `toml:"runners"`
}

type runnerSecTOM struct {
	Name      string    `toml:"name"`
	URL       string    `toml:"url"`
	Token     string    `toml:"token"`
	Executor  string    `toml:"executor"`
	Shell     string    `toml:"shell"`
	BuildsDir string    `toml:"builds_dir"`
	CacheDir  string    `toml:"cache_dir"`
	Custom    customTOM `toml:"custom"`
}

type customTOM struct {
	ConfigExec          string   `toml:"config_exec"`
	ConfigArgs          []string `toml:"config_args"`
	PrepareExec         string   `toml:"prepare_exec"`
	PrepareArgs         []string `toml:"prepare_args"`
	RunExec             string   `toml:"run_exec"`
	RunArgs             []string `toml:"run_args"`
	CleanupExec         string   `toml:"cleanup_exec"`
	CleanupArgs         []string `toml:"cleanup_args"`
	GracefulKillTimeout int      `toml:"graceful_kill_timeout"`
	ForceKillTimeout    int      `toml:"force_kill_timeout"`
}

// RunnerName is the name of the [[runners]] section the suite writes.
const RunnerName = "writ-e2e"

// WriteConfig writes cfg.Dir/config.toml and returns its path.
func WriteConfig(cfg RunnerConfig) (string, error) {
	e := cfg.Executor
	doc := runnerTOML{
		Concurrent:    1,
		CheckInterval: 1,
		LogLevel:      "info",
		Runners: []runnerSecTOM{{
			Name: RunnerName, URL: cfg.URL, Token: cfg.Token,
			Executor: "custom", Shell: "bash",
			BuildsDir: cfg.BuildsDir, CacheDir: cfg.CacheDir,
			Custom: customTOM{
				ConfigExec: e.ConfigExec, ConfigArgs: e.ConfigArgs,
				PrepareExec: e.PrepareExec, PrepareArgs: e.PrepareArgs,
				RunExec: e.RunExec, RunArgs: e.RunArgs,
				CleanupExec: e.CleanupExec, CleanupArgs: e.CleanupArgs,
				// Short, so cancellation tests finish quickly.
				GracefulKillTimeout: 2,
				ForceKillTimeout:    2,
			},
		}},
	}
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(doc); err != nil {
		return "", err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return "", err
	}
	path := filepath.Join(cfg.Dir, "config.toml")
	return path, os.WriteFile(path, buf.Bytes(), 0o600)
}

// RunnerResult is how one runner process ended.
type RunnerResult struct {
	ExitCode int
	Log      string // the runner's combined stdout and stderr
	Duration time.Duration
	// Killed is true when the suite had to stop the runner (timeout or stop).
	Killed bool
	// CPU is the user and system time of the runner and every process it
	// waited for (its executor's stages and their children): a cost that
	// load from other processes changes far less than Duration.
	CPU time.Duration
}

// RunnerProcess is a started `gitlab-runner run-single`.
type RunnerProcess struct {
	cmd     *exec.Cmd
	out     *lockedBuffer
	start   time.Time
	done    chan struct{}
	result  RunnerResult
	stopped bool
	mu      sync.Mutex
}

// StartRunner writes the config and starts `gitlab-runner run-single` for
// one job, with a scrubbed environment: PATH, HOME (cfg.Dir/home), LANG,
// TMPDIR and cfg.Executor.Env, nothing inherited from the test process.
func StartRunner(ctx context.Context, cfg RunnerConfig) (*RunnerProcess, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Minute
	}
	confPath, err := WriteConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("runner: writing config.toml: %w", err)
	}
	home := filepath.Join(cfg.Dir, "home")
	tmp := filepath.Join(cfg.Dir, "tmp")
	for _, d := range []string{home, tmp, cfg.BuildsDir, cfg.CacheDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("runner: %w", err)
		}
	}
	// The runner's helper commands (artifacts, cache) are run as
	// "gitlab-runner" from PATH by the job script.
	binDir := filepath.Join(cfg.Dir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return nil, fmt.Errorf("runner: %w", err)
	}
	tools := map[string]string{"gitlab-runner": cfg.Bin}
	maps.Copy(tools, cfg.Tools)
	for name, target := range tools {
		link := filepath.Join(binDir, name)
		_ = os.Remove(link)
		if err := os.Symlink(target, link); err != nil {
			return nil, fmt.Errorf("runner: %w", err)
		}
	}

	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	cmd := exec.CommandContext(ctx, cfg.Bin,
		"--log-format", "text",
		"run-single",
		"--config", confPath,
		"--runner", RunnerName,
		"--max-builds", "1",
		"--wait-timeout", "10",
	)
	cmd.Dir = cfg.Dir
	cmd.Env = append([]string{
		"PATH=" + binDir + ":/usr/local/bin:/usr/bin:/bin",
		"HOME=" + home,
		"LANG=C.UTF-8",
		"TMPDIR=" + tmp,
	}, cfg.Executor.Env...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	// Own process group, so a stop reaches every executor child too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	p := &RunnerProcess{cmd: cmd, out: out, start: time.Now(), done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("runner: starting %s: %w", cfg.Bin, err)
	}
	go func() {
		defer cancel()
		err := cmd.Wait()
		// Whatever the job left running in the runner's process group
		// (a background `sleep &`) goes with it.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		p.mu.Lock()
		defer p.mu.Unlock()
		p.result.Duration = time.Since(p.start)
		p.result.Log = out.String()
		p.result.Killed = p.stopped || ctx.Err() != nil
		if ps := cmd.ProcessState; ps != nil {
			p.result.CPU = ps.UserTime() + ps.SystemTime()
		}
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			p.result.ExitCode = ee.ExitCode()
		default:
			p.result.ExitCode = -1
			p.result.Log += "\n[e2e] wait: " + err.Error()
		}
		close(p.done)
	}()
	return p, nil
}

// Stop asks the runner to shut down (SIGTERM, as an operator would), then
// kills its process group if it is still there after grace.
func (p *RunnerProcess) Stop(grace time.Duration) {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// Done is closed when the process has exited.
func (p *RunnerProcess) Done() <-chan struct{} { return p.done }

// Wait waits for the process to exit and returns how it ended.
func (p *RunnerProcess) Wait() RunnerResult {
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.result
}

// Log is the output so far.
func (p *RunnerProcess) Log() string { return p.out.String() }

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	// Bound what a runaway runner can make us hold.
	if l.b.Len() > 16<<20 {
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// tools are programs this package builds from the main module once per
// process (see buildTool), removed by CleanupShared.
var tools struct {
	mu    sync.Mutex
	dir   string
	built map[string]toolResult
}

type toolResult struct {
	path string
	err  error
}

// buildTool runs `go build -o <tmp>/name ./pkg` in the repository once per
// process and returns the binary's path. It builds without cgo, as the
// release does (release/build.go): the suite runs the static binary users
// install, not one that also loads libc through the dynamic linker at each
// of the eight or more starts per job.
func buildTool(name, pkg string) (string, error) {
	tools.mu.Lock()
	defer tools.mu.Unlock()
	if r, ok := tools.built[name]; ok {
		return r.path, r.err
	}
	if tools.dir == "" {
		dir, err := os.MkdirTemp("", "writ-e2e-tools-")
		if err != nil {
			return "", err
		}
		tools.dir, tools.built = dir, map[string]toolResult{}
	}
	path := filepath.Join(tools.dir, name)
	cmd := exec.Command("go", "build", "-o", path, pkg)
	cmd.Dir = moduleRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var r toolResult
	if out, err := cmd.CombinedOutput(); err != nil {
		r.err = fmt.Errorf("building %s (%s): %v\n%s", name, pkg, err, out)
	} else {
		r.path = path
	}
	tools.built[name] = r
	return r.path, r.err
}

// StepRunner builds the suite's step-runner stand-in (test/e2e/steprunner)
// once per process and returns its path.
func StepRunner() (string, error) { return buildTool("step-runner", "./test/e2e/steprunner") }

// WritBinary builds writ (./cmd/writ) from the working tree once per
// process and returns its path, for WritExecutor.
func WritBinary() (string, error) {
	// The sandbox's init, beside writ as an install puts it.
	if _, err := buildTool("writ-sandbox-init", "./cmd/writ-sandbox-init"); err != nil {
		return "", err
	}
	return buildTool("writ", "./cmd/writ")
}

// CleanupShared removes what the package built for the whole process; call
// it from TestMain after m.Run.
func CleanupShared() {
	tools.mu.Lock()
	defer tools.mu.Unlock()
	if tools.dir != "" {
		_ = os.RemoveAll(tools.dir)
		tools.dir, tools.built = "", nil
	}
}
