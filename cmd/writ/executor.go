package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/executor"
	"gitlab.com/writ-ci/writ/internal/audit"
	"gitlab.com/writ-ci/writ/internal/fsutil"
	"gitlab.com/writ-ci/writ/internal/state"
)

type executorCmd struct {
	Config  configStage  `cmd:"" help:"config_exec: print the driver configuration."`
	Prepare prepareStage `cmd:"" help:"prepare_exec: admission — refuse or admit the job before anything runs."`
	Run     runCmd       `cmd:"" help:"run_exec: run a stage of an admitted job as the admitted entry says."`
	Cleanup cleanupStage `cmd:"" help:"cleanup_exec: remove the job's build directory and state."`
}

type (
	configStage  struct{}
	prepareStage struct{}
	cleanupStage struct{}
)

func (configStage) Run(ctx context.Context, g *globals) error {
	return runStage(ctx, g, executor.Config)
}

func (prepareStage) Run(ctx context.Context, g *globals) error {
	return runStage(ctx, g, executor.Prepare)
}

func (cleanupStage) Run(ctx context.Context, g *globals) error {
	return runStage(ctx, g, executor.Cleanup)
}

type runCmd struct {
	Script string `arg:"" help:"The runner's script file for the stage (writ does not execute it)."`
	Stage  string `arg:"" help:"The stage name."`
}

// systemFailure is the exit code the runner treats as a system failure; writ
// uses it whenever it cannot decide, so that nothing runs.
func systemFailure() int {
	if v := os.Getenv("SYSTEM_FAILURE_EXIT_CODE"); v != "" {
		var n int
		if _, err := fmt.Sscanf(v, "%d", &n); err == nil && n > 0 && n < 256 {
			return n
		}
	}
	return 2
}

// executorOptions loads the config and builds everything a stage needs.
func (g *globals) executorOptions() (executor.Options, func(), error) {
	cfg, err := g.loadConfig()
	if err != nil {
		return executor.Options{}, func() {}, err
	}
	log, closeLog := g.logger(cfg, true)
	al := audit.Open(cfg.Paths.Audit)
	st, err := state.Open(cfg, log)
	if err != nil {
		closeLog()
		return executor.Options{}, func() {}, err
	}
	acc, err := allowlist.NewAccepter(cfg, allowlist.WithLogger(log), allowlist.WithAudit(al), allowlist.WithState(st))
	if err != nil {
		closeLog()
		return executor.Options{}, func() {}, err
	}
	done := func() {
		st.Close()
		closeLog()
	}
	return executor.Options{
		Config:    cfg,
		Log:       log,
		Allowlist: acc,
		Audit:     al,
		State:     st,
		Getenv:    os.Getenv,
		Stdout:    g.stdout,
		Stderr:    g.stderr,
		Now:       time.Now,
		Version:   version,
	}, done, nil
}

func stageError(err error) error {
	return exitCode(systemFailure(), fmt.Errorf("cannot start: %w", err))
}

func runStage(ctx context.Context, g *globals, stage func(context.Context, executor.Options) int) error {
	o, done, err := g.executorOptions()
	if err != nil {
		return stageError(err)
	}
	defer done()
	if code := stage(ctx, o); code != 0 {
		return exitCode(code, nil)
	}
	return nil
}

func (c *runCmd) Run(ctx context.Context, g *globals) error {
	o, done, err := g.executorOptions()
	if err != nil {
		return stageError(err)
	}
	defer done()
	if code := executor.Run(ctx, o, c.Script, c.Stage); code != 0 {
		return exitCode(code, nil)
	}
	return nil
}

type checkCmd struct {
	Job   string `help:"A saved runner job payload (JSON)." required:"" type:"existingfile"`
	Fetch bool   `help:"Fetch the allowlist and the job's source instead of using only what is cached."`
}

func (c *checkCmd) Run(ctx context.Context, g *globals) error {
	o, done, err := g.executorOptions()
	if err != nil {
		return exitCode(2, err)
	}
	defer done()
	if !c.Fetch {
		o.Allowlist = cachedSource{o.Allowlist.(*allowlist.Accepter)}
		o.Offline = true
	}
	data, err := fsutil.ReadFileLimit(c.Job, o.Config.Job.MaxPayloadBytes)
	if err != nil {
		return exitCode(1, err)
	}
	// Check prints its report (or why it cannot decide) itself.
	d, err := executor.Check(ctx, o, data)
	if err != nil {
		return exitCode(2, nil)
	}
	if !d.Admitted {
		return exitCode(1, nil)
	}
	return nil
}

// cachedSource serves only the locally cached accepted allowlist.
type cachedSource struct{ a *allowlist.Accepter }

func (c cachedSource) Current(context.Context) (*allowlist.Accepted, error) { return c.a.Cached() }

type auditCmd struct {
	Verify auditVerifyCmd `cmd:"" help:"Check the audit log's hash chain; name the first broken record."`
}

type auditVerifyCmd struct {
	File string `arg:"" optional:"" help:"Audit log file (default: the config's paths.audit)."`
}

func (c *auditVerifyCmd) Run(g *globals) error {
	path := c.File
	if path == "" {
		cfg, err := g.loadConfig()
		if err != nil {
			return exitCode(2, fmt.Errorf("%v (or name the audit log file)", err))
		}
		path = cfg.Paths.Audit
	}
	n, err := audit.VerifyFile(path)
	if err != nil {
		fmt.Fprintf(g.stdout, "%s: BROKEN after %d good records: %v\n", path, n, err)
		return exitCode(1, nil)
	}
	fmt.Fprintf(g.stdout, "%s: ok, %d records, chain intact\n", path, n)
	return nil
}
