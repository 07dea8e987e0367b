package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"gitlab.com/writ-ci/writ/internal/gcstart"
)

// executorArgs is an executor stage's command line as GitLab Runner's
// config.toml spells it: [--config FILE] executor STAGE [SCRIPT NAME].
type executorArgs struct {
	config string
	// stage is config, prepare, run or cleanup; script and name are
	// run's two arguments.
	stage, script, name string
}

// parseExecutorArgs recognises exactly the command lines a runner runs for
// writ's executor stages, with an absolute --config (or WRIT_CONFIG), and
// nothing else. Every other command line goes through kong.
//
// Why: the runner starts writ once per stage, eight or more times per job,
// and building kong's model of the whole CLI (reflection over every
// command, help interpolated by regular expressions) is a tenth of each
// start. A test checks that kong reads each accepted line the same way.
func parseExecutorArgs(args []string, lookupEnv func(string) (string, bool)) (executorArgs, bool) {
	var a executorArgs
	cfg, cfgSet := "", false
	switch {
	case len(args) >= 2 && args[0] == "--config":
		cfg, cfgSet, args = args[1], true, args[2:]
	case len(args) >= 1 && strings.HasPrefix(args[0], "--config="):
		cfg, cfgSet, args = strings.TrimPrefix(args[0], "--config="), true, args[1:]
	}
	if !cfgSet {
		cfg, cfgSet = lookupEnv("WRIT_CONFIG")
	}
	if cfgSet {
		// kong's path type makes a relative path (even an empty one)
		// absolute; only the already absolute form is taken here.
		if !filepath.IsAbs(cfg) {
			return a, false
		}
		a.config = cfg
	}
	if len(args) < 2 || args[0] != "executor" {
		return a, false
	}
	a.stage = args[1]
	rest := args[2:]
	switch a.stage {
	case "config", "prepare", "cleanup":
		if len(rest) != 0 {
			return a, false
		}
	case "run":
		if len(rest) != 2 || plainArg(rest[0]) != nil || plainArg(rest[1]) != nil {
			return a, false
		}
		a.script, a.name = rest[0], rest[1]
	default:
		return a, false
	}
	return a, true
}

// plainArg refuses what kong would read as a flag or a separator.
func plainArg(s string) error {
	if s == "" || strings.HasPrefix(s, "-") {
		return fmt.Errorf("not a plain argument: %q", s)
	}
	return nil
}

// runExecutor runs a stage parsed by parseExecutorArgs, as kong would have
// run it, and returns the exit code.
func runExecutor(a executorArgs, stdout, stderr io.Writer) int {
	c := &cli{}
	c.stdout, c.stderr, c.Config = stdout, stderr, a.config
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var err error
	switch a.stage {
	case "config":
		err = configStage{}.Run(ctx, &c.globals)
	case "prepare":
		err = prepareStage{}.Run(ctx, &c.globals)
	case "cleanup":
		err = cleanupStage{}.Run(ctx, &c.globals)
	case "run":
		err = (&runCmd{Script: a.script, Stage: a.name}).Run(ctx, &c.globals)
	}
	if err == nil {
		return 0
	}
	// No executor stage writes a JSON report: finish's plain path.
	return c.finish(nil, err)
}

// fastRun is run for the runner's stage command lines, kong otherwise.
func fastRun(args []string, stdout, stderr io.Writer) int {
	if a, ok := parseExecutorArgs(args, os.LookupEnv); ok {
		// A stage is short: it keeps gcstart's postponed first
		// collection.
		return runExecutor(a, stdout, stderr)
	}
	// Other commands may run long with a large heap (allowlist verify's
	// peak memory is a goal): they collect as the environment says.
	gcstart.Restore()
	return run(args, stdout, stderr)
}
