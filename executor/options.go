// Package executor is writ's GitLab Runner custom executor: the four stage
// programs the runner calls (config_exec, prepare_exec, run_exec,
// cleanup_exec), the admission decision that refuses every job not matching
// the accepted allowlist, and the stage runner that executes only what the
// allowlist entry says.
//
// The data flows one way: the runner's job payload (JOB_RESPONSE_FILE) is
// decoded strictly, compared with the allowlist entry selected by project,
// job name, writ environment and ref, and the job's commit is fetched from the
// entry's own repository and verified against the entry's signers. Prepare
// writes the outcome as an immutable per-job snapshot; run and cleanup use
// only that snapshot and never re-read the allowlist or re-interpret the
// payload, so what runs is what was decided.
//
// Exit codes follow the custom executor protocol: BUILD_FAILURE_EXIT_CODE for
// a refused or failed job (the script's own exit code goes to
// BUILD_EXIT_CODE_FILE), SYSTEM_FAILURE_EXIT_CODE when writ cannot decide.
package executor

import (
	"context"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/audit"
	"gitlab.com/writ-ci/writ/internal/config"
	"gitlab.com/writ-ci/writ/internal/state"
)

// AllowlistSource yields the allowlist version this environment accepts.
type AllowlistSource interface {
	// Current returns the accepted version. An error means writ cannot
	// decide (no accepted version reachable, no valid cache): the job fails
	// as a system failure, never admitted.
	Current(ctx context.Context) (*allowlist.Accepted, error)
}

// Options are what every stage needs. Config, Allowlist (for Prepare and
// Check) and Audit (for the stages) are required; the rest have defaults.
type Options struct {
	// Config is the environment's trusted configuration.
	Config *config.Config
	// Log receives operational debug logs (default: discarded). Whatever
	// it writes to stdout or stderr ends up in the job log.
	Log hclog.Logger
	// Allowlist yields the accepted allowlist (Prepare and Check).
	Allowlist AllowlistSource
	// Audit is the audit log every decision and outcome is appended to.
	Audit *audit.Log
	// State holds the entries' rollback marks and job-id claims (default:
	// the local files under Config.Paths.State).
	State state.Store
	// Getenv reads the runner's environment (default os.Getenv).
	Getenv func(string) string
	// Stdout and Stderr reach the job log (default os.Stdout, os.Stderr).
	Stdout, Stderr io.Writer
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Version is writ's version, reported as the driver version by Config.
	Version string
	// Offline: never fetch source repositories; verify from what the
	// mirrors in the cache already hold. `writ check` sets it unless told
	// to fetch; the stages leave it false.
	Offline bool
	// KillGrace is how long a script has between SIGTERM and SIGKILL when
	// it is cancelled or times out (default 10s).
	KillGrace time.Duration

	// progress receives one line per finished phase (see phase); set by
	// the stages that write to the job log.
	progress io.Writer

	// claim is prepare's job-id claim, under way while it decides;
	// claimed is the job id it holds once joined (see joinClaim).
	claim   *pendingClaim
	claimed string
}

// Protocol environment variables set by GitLab Runner for every stage.
const (
	envBuildFailure  = "BUILD_FAILURE_EXIT_CODE"
	envSystemFailure = "SYSTEM_FAILURE_EXIT_CODE"
	envExitCodeFile  = "BUILD_EXIT_CODE_FILE"
	envJobResponse   = "JOB_RESPONSE_FILE"
)

// Protocol defaults, used when the runner's variables are absent or invalid.
const (
	defaultBuildFailure  = 1
	defaultSystemFailure = 2
	defaultKillGrace     = 10 * time.Second
	// afterScriptTimeout is the runner's default after_script bound.
	afterScriptTimeout = 5 * time.Minute
)

// withDefaults returns a copy of o with defaults filled in.
func (o Options) withDefaults() Options {
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.State == nil && o.Config != nil {
		o.State = state.NewLocal(o.Config.Paths.State)
	}
	if o.KillGrace <= 0 {
		o.KillGrace = defaultKillGrace
	}
	return o
}

func (o *Options) exitCode(name string, def int) int {
	if v, err := strconv.Atoi(o.Getenv(name)); err == nil && v > 0 && v < 256 {
		return v
	}
	return def
}

// buildFailure is the exit code for a refused or failed job.
func (o *Options) buildFailure() int { return o.exitCode(envBuildFailure, defaultBuildFailure) }

// systemFailure is the exit code for "writ cannot decide" and internal errors.
func (o *Options) systemFailure() int { return o.exitCode(envSystemFailure, defaultSystemFailure) }
