// Command writ is a GitLab Runner custom executor that runs only jobs on a
// signed, versioned allowlist, and the tools that maintain that allowlist.
//
// The command line is parsed with github.com/alecthomas/kong: the whole CLI
// is declared as one struct, so flags, help and environment overrides
// (WRIT_CONFIG) live next to the code that uses them, with no global state.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"
	"github.com/hashicorp/go-hclog"

	"gitlab.com/writ-ci/writ/internal/config"
	"gitlab.com/writ-ci/writ/internal/version"
	"gitlab.com/writ-ci/writ/sandbox"
)

// globals are the flags every command shares.
type globals struct {
	Config    string           `help:"Path of writ's environment config (default /etc/writ/config.toml)." env:"WRIT_CONFIG" type:"path"`
	LogFormat string           `help:"Operational log format: text or json (overrides the config)." enum:",text,json" default:""`
	LogLevel  string           `help:"Operational log level: trace, debug, info, warn or error (overrides the config)." enum:",trace,debug,info,warn,error" default:""`
	Version   kong.VersionFlag `help:"Print writ's version and exit."`

	stdout, stderr io.Writer
	// reported is set once a JSON report is written, so an error after it
	// is not reported twice.
	reported bool
}

// loadConfig reads the environment config the flags point at. Its error
// ends the command as a config error (exit 78).
func (g *globals) loadConfig() (*config.Config, error) {
	cfg, err := config.Load(config.Resolve(g.Config))
	if err != nil {
		return nil, fail(outcomeConfig, err)
	}
	return cfg, nil
}

// logger builds the operational logger: go-hclog, text or JSON. Executor
// stages' standard error is the job log, so there, without a log file,
// only warnings and errors are written. A log.file that cannot be opened
// is an error: an operator who asked for a log file must not find it empty.
func (g *globals) logger(cfg *config.Config, jobLog bool) (hclog.Logger, func(), error) {
	format, level, out := "text", "info", g.stderr
	closeFn := func() {}
	if cfg != nil {
		format, level = cfg.Log.Format, cfg.Log.Level
		if jobLog && cfg.Log.File == "" && g.LogLevel == "" && (level == "info" || level == "debug" || level == "trace") {
			level = "warn"
		}
		if cfg.Log.File != "" {
			f, err := os.OpenFile(cfg.Log.File, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
			if err != nil {
				return nil, closeFn, fail(outcomeConfig, fmt.Errorf("log.file: %w (fix the path or its directory's permissions in %s)", err, cfg.Path))
			}
			out = f
			closeFn = func() { f.Close() }
		}
	}
	if g.LogFormat != "" {
		format = g.LogFormat
	}
	if g.LogLevel != "" {
		level = g.LogLevel
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:       "writ",
		Level:      hclog.LevelFromString(level),
		JSONFormat: format == "json",
		Output:     out,
	}), closeFn, nil
}

type cli struct {
	globals

	Executor  executorCmd  `cmd:"" help:"GitLab Runner custom executor stages (config, prepare, run, cleanup)."`
	Allowlist allowlistCmd `cmd:"" help:"Lint, verify, approve, diff allowlists; derive entries from jobs."`
	Source    sourceCmd    `cmd:"" help:"Approve application commits (the two-person rule) and show their approvals."`
	Check     checkCmd     `cmd:"" help:"Decide offline whether a saved job payload would be admitted (exit 0 admit, 1 refuse)."`
	Audit     auditCmd     `cmd:"" help:"Inspect the audit log."`
	State     stateCmd     `cmd:"" help:"Inspect, export, migrate or repair the trust state (local or the fleet store)."`
	Propose   proposeCmd   `cmd:"" help:"Propose allowlist entries for a project's deploy jobs as a merge request."`
	Review    reviewCmd    `cmd:"" help:"Post or update the review note on an allowlist merge request."`
	Reconcile reconcileCmd `cmd:"" help:"Compare GitLab's job history with writ's audit log."`
	Version   versionCmd   `cmd:"" help:"Print writ's version, commit and toolchain."`
	ConfigCmd configCmd    `cmd:"" name:"config" help:"Check writ's config; print the effective config."`
}

type versionCmd struct {
	outputFlags
}

func (*versionCmd) schema() string { return "writ/version/v1" }

func (c *versionCmd) Run(g *globals) error {
	info := version.Get()
	if !c.jsonOutput() {
		fmt.Fprintf(g.stdout, "writ %s\ncommit %s\nbuilt with %s for %s\n", info.Version, orUnknown(info.Commit, info.Modified), info.GoVersion, info.Platform)
		return nil
	}
	return g.report(c, outcomeOK, nil, info)
}

func orUnknown(commit string, modified bool) string {
	switch {
	case commit == "":
		return "unknown"
	case modified:
		return commit + " (modified tree)"
	}
	return commit
}

func main() {
	// The sandbox re-executes writ as its init: that process never returns.
	sandbox.Main()
	os.Exit(fastRun(os.Args[1:], os.Stdout, os.Stderr))
}

// run parses args and runs the chosen command, returning the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	var c cli
	c.stdout, c.stderr = stdout, stderr
	parser, err := kong.New(&c,
		kong.Name("writ"),
		kong.Description("writ: run only allowlisted GitLab CI jobs on signed commits."),
		kong.UsageOnError(),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { panic(exitPanic(code)) }),
		kong.Vars{"version": "writ " + version.Get().String()},
	)
	if err != nil {
		fmt.Fprintln(stderr, "writ:", err)
		return outcomeUsage.Code
	}
	code := 0
	func() {
		defer func() {
			if r := recover(); r != nil {
				if ec, ok := r.(exitPanic); ok {
					code = int(ec)
					return
				}
				panic(r)
			}
		}()
		kctx, err := parser.Parse(args)
		if err != nil {
			fmt.Fprintln(stderr, "writ:", err)
			code = outcomeUsage.Code
			return
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		kctx.BindTo(ctx, (*context.Context)(nil))
		err = kctx.Run(&c.globals)
		code = c.finish(kctx, err)
	}()
	return code
}

// finish reports a command's error and returns the exit code. A reporting
// command in JSON mode that ended before writing its report gets one with
// the outcome and the error, so a monitor always parses JSON.
func (c *cli) finish(kctx *kong.Context, err error) int {
	if err == nil {
		return 0
	}
	o := errorOutcome(err)
	var ee *exitError
	msg := err
	if errors.As(err, &ee) {
		msg = ee.err
	}
	if r, ok := selectedReporter(kctx); ok && r.jsonOutput() && !c.reported {
		if werr := writeJSON(c.stdout, r.schema(), o, msg, nil); werr == nil {
			return o.Code
		}
	}
	if msg != nil {
		fmt.Fprintln(c.stderr, "writ:", flatten(msg))
	}
	return o.Code
}

// selectedReporter is the chosen command if it has a JSON report.
func selectedReporter(kctx *kong.Context) (reporter, bool) {
	if kctx == nil {
		// An executor stage run without kong (fastpath.go).
		return nil, false
	}
	node := kctx.Selected()
	if node == nil || !node.Target.CanAddr() {
		return nil, false
	}
	r, ok := node.Target.Addr().Interface().(reporter)
	return r, ok
}

// exitPanic lets kong's --help and usage errors end run() with a code
// instead of exiting the process, so run stays testable.
type exitPanic int
