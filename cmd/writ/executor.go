package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/executor"
	"gitlab.com/writ-ci/writ/internal/audit"
	"gitlab.com/writ-ci/writ/internal/fsutil"
	"gitlab.com/writ-ci/writ/internal/state"
	"gitlab.com/writ-ci/writ/internal/version"
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
	return runStage(ctx, g, "config", withTrust, executor.Config)
}

func (prepareStage) Run(ctx context.Context, g *globals) error {
	return runStage(ctx, g, "prepare", withTrust, executor.Prepare)
}

func (cleanupStage) Run(ctx context.Context, g *globals) error {
	return runStage(ctx, g, "cleanup", withoutTrust, executor.Cleanup)
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

// trustUse says whether a stage loads the environment's trust root (the
// allowlist Accepter and its keys).
type trustUse bool

const (
	// withTrust: prepare and check judge with the allowlist, and config
	// loads the trust root too, so that a broken one stops a job before
	// any of it runs.
	withTrust trustUse = true
	// withoutTrust: run and cleanup act on the decision prepare recorded
	// and never read the allowlist. Reading and parsing the trust files
	// (OpenPGP keyring, allowed signers, Sigstore keys and trusted root)
	// would only add to each of their starts, eight or more per job.
	withoutTrust trustUse = false
)

// executorOptions loads the config and builds everything a stage needs;
// Allowlist only if trust says so.
func (g *globals) executorOptions(trust trustUse) (executor.Options, func(), error) {
	cfg, err := g.loadConfig()
	if err != nil {
		return executor.Options{}, func() {}, err
	}
	log, closeLog, err := g.logger(cfg, true)
	if err != nil {
		return executor.Options{}, func() {}, err
	}
	al := audit.Open(cfg.Paths.Audit)
	st, err := state.Open(cfg, log)
	if err != nil {
		closeLog()
		return executor.Options{}, func() {}, fail(outcomeConfig, err)
	}
	var acc executor.AllowlistSource
	if trust {
		a, err := allowlist.NewAccepter(cfg, allowlist.WithLogger(log), allowlist.WithAudit(al), allowlist.WithState(st))
		if err != nil {
			st.Close()
			closeLog()
			return executor.Options{}, func() {}, fail(outcomeConfig, err)
		}
		acc = a
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
		Version:   version.Get().String(),
	}, done, nil
}

func stageError(err error) error {
	return exitCode(systemFailure(), fmt.Errorf("cannot start: %w", err))
}

func runStage(ctx context.Context, g *globals, name string, trust trustUse, stage func(context.Context, executor.Options) int) error {
	o, done, err := g.executorOptions(trust)
	if err != nil {
		return stageError(err)
	}
	defer done()
	start := time.Now()
	code := stage(ctx, o)
	o.Log.Debug("stage done", "stage", name, "duration", time.Since(start), "exit", code)
	if code != 0 {
		return exitCode(code, nil)
	}
	return nil
}

func (c *runCmd) Run(ctx context.Context, g *globals) error {
	o, done, err := g.executorOptions(withoutTrust)
	if err != nil {
		return stageError(err)
	}
	defer done()
	start := time.Now()
	code := executor.Run(ctx, o, c.Script, c.Stage)
	o.Log.Debug("stage done", "stage", c.Stage, "duration", time.Since(start), "exit", code)
	if code != 0 {
		return exitCode(code, nil)
	}
	return nil
}

type checkCmd struct {
	outputFlags
	Job   string `help:"A saved runner job payload (JSON)." required:"" type:"path"`
	Fetch bool   `help:"Fetch the allowlist and the job's source instead of using only what is cached."`
}

func (*checkCmd) schema() string { return "writ/check/v1" }

// checkReport is the JSON body of writ check: the decision as the audit
// log records it.
type checkReport struct {
	Decision *executor.Decision `json:"decision,omitempty"`
	// SuggestedEntry is the entry that would admit the job's definition
	// (YAML), when a definition check failed.
	SuggestedEntry string `json:"suggested_entry,omitempty"`
}

func newCheckReport(d *executor.Decision) checkReport {
	r := checkReport{Decision: d}
	if d != nil {
		r.SuggestedEntry = string(executor.SuggestedEntry(d))
	}
	return r
}

func (c *checkCmd) Run(ctx context.Context, g *globals) error {
	o, done, err := g.executorOptions(withTrust)
	if err != nil {
		return err
	}
	defer done()
	if !c.Fetch {
		o.Allowlist = cachedSource{o.Allowlist.(*allowlist.Accepter)}
		o.Offline = true
	}
	data, err := fsutil.ReadFileLimit(c.Job, o.Config.Job.MaxPayloadBytes)
	switch {
	case errors.Is(err, fsutil.ErrTooLarge):
		return g.report(c, outcomeRefused, fmt.Errorf("the job payload is larger than %d bytes (job.max_payload_bytes)", o.Config.Job.MaxPayloadBytes), nil)
	case err != nil:
		return g.report(c, outcomeIO, fmt.Errorf("read the job payload: %w", err), nil)
	}
	if c.jsonOutput() {
		o.Stdout = io.Discard
	}
	// Check prints its report (or why it cannot decide) itself.
	d, err := executor.Check(ctx, o, data)
	switch {
	case err != nil:
		if c.jsonOutput() {
			return g.report(c, outcomeCannotDecide, err, newCheckReport(d))
		}
		return fail(outcomeCannotDecide, nil)
	case !d.Admitted:
		return g.report(c, outcomeRefused, nil, newCheckReport(d))
	}
	return g.report(c, outcomeOK, nil, newCheckReport(d))
}

// cachedSource serves only the locally cached accepted allowlist.
type cachedSource struct{ a *allowlist.Accepter }

func (c cachedSource) Current(context.Context) (*allowlist.Accepted, error) { return c.a.Cached() }
