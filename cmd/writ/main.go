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
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// exitError carries a process exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func exitCode(code int, err error) error { return &exitError{code: code, err: err} }

// globals are the flags every command shares.
type globals struct {
	Config    string `help:"Path of writ's environment config (default /etc/writ/config.toml)." env:"WRIT_CONFIG" type:"path"`
	LogFormat string `help:"Operational log format: text or json (overrides the config)." enum:",text,json" default:""`
	LogLevel  string `help:"Operational log level (overrides the config)." default:""`

	stdout, stderr io.Writer
}

// loadConfig reads the environment config the flags point at.
func (g *globals) loadConfig() (*config.Config, error) {
	return config.Load(config.Resolve(g.Config))
}

// logger builds the operational logger: go-hclog, text or JSON. Executor
// stages' standard error is the job log, so there, without a log file,
// only warnings and errors are written.
func (g *globals) logger(cfg *config.Config, jobLog bool) (hclog.Logger, func()) {
	format, level, out := "text", "info", g.stderr
	closeFn := func() {}
	if cfg != nil {
		format, level = cfg.Log.Format, cfg.Log.Level
		if jobLog && cfg.Log.File == "" && (level == "info" || level == "debug" || level == "trace") {
			level = "warn"
		}
		if cfg.Log.File != "" {
			if f, err := os.OpenFile(cfg.Log.File, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err == nil {
				out = f
				closeFn = func() { f.Close() }
			}
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
	}), closeFn
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
	Version   versionCmd   `cmd:"" help:"Print writ's version."`
}

type versionCmd struct{}

func (versionCmd) Run(g *globals) error {
	fmt.Fprintln(g.stdout, "writ", version)
	return nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
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
	)
	if err != nil {
		fmt.Fprintln(stderr, "writ:", err)
		return 2
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
			code = 2
			return
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		kctx.BindTo(ctx, (*context.Context)(nil))
		err = kctx.Run(&c.globals)
		var ee *exitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			if ee.err != nil {
				fmt.Fprintln(stderr, "writ:", ee.err)
			}
			code = ee.code
		default:
			fmt.Fprintln(stderr, "writ:", err)
			code = 1
		}
	}()
	return code
}

// exitPanic lets kong's --help and usage errors end run() with a code
// instead of exiting the process, so run stays testable.
type exitPanic int
