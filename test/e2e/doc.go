// Package e2e is writ's hostile-GitLab suite: it runs real jobs through the
// real GitLab Runner (built by test/runner/build.sh, `make runner`) against a
// fake GitLab coordinator that this package controls completely, so a test
// can serve any payload a compromised GitLab could send and read back exactly
// what the runner reported.
//
// # Pieces
//
// Each is usable on its own (a demo can reuse them) or through World:
//
//   - Coordinator: the runner-facing GitLab API on 127.0.0.1 — POST
//     /api/v4/jobs/request (201 with a queued payload, served verbatim, or
//     204), PUT /api/v4/jobs/:id (every update recorded), PATCH
//     /api/v4/jobs/:id/trace (Content-Range checked, 202 with Range, 416 on a
//     gap), artifacts upload and download, and cancellation by answering
//     "Job-Status: canceling".
//   - GitServer: git repositories over smart HTTP through the real `git
//     http-backend`, read-only, at http://127.0.0.1:port/<group>/<name>.git.
//   - StartRunner: a config.toml with one [[runners]] section (executor
//     "custom", builds_dir, cache_dir, [runners.custom] *_exec and *_args),
//     then `gitlab-runner run-single --config … --runner writ-e2e
//     --max-builds 1` with a scrubbed environment (PATH, HOME, LANG, TMPDIR
//     and Executor.Env only) in its own process group, bounded in time.
//   - Passthrough: a naive custom executor that starts whatever image GitLab
//     names and runs every script it is handed; every attack in Scenarios must
//     succeed against it (the suite's mutation check).
//   - Outcome: how a job ended as GitLab saw it — final state, failure_reason
//     and exit_code from the last final PUT, the full trace, uploads — plus the
//     runner's own log. `run-single` exits 0 even when the job failed; the
//     outcome always comes from the coordinator.
//   - Scenarios: the threat model as data — name, category, description, a
//     Mutate that turns the legitimate job into the attack, writ's required
//     verdict, and a Canary (a marker the injected code prints and a file it
//     creates).
//
// # The suites
//
//   - TestScenarios runs every scenario twice, each run in a World of its
//     own: with writ as the executor (writ_test.go: installWrit writes an
//     environment config as docs/install.md describes, with the allowlist
//     repository on the World's git server over plain http, auth "none",
//     root signers alice (OpenPGP) and carol (SSH approvals), threshold 2,
//     and the environment accepts version 7 before the job unless the
//     scenario is Fresh), and with the pass-through executor. Under writ an
//     attack must fail with Expectation.Reason and Detail in the trace, its
//     canary silent (no file, no marker), the refusal (or, for Undecided,
//     the system-failure outcome) in the audit log under the job's id, the
//     log's hash chain intact, and for allowlist attacks an allowlist-reject
//     record naming the rule. Against the pass-through executor the same
//     attack must work (its canary fires): the mutation check. With -v the
//     test logs a table of both outcomes per scenario.
//   - TestWritHappyPaths: the allowlisted deploy (output, after_script,
//     audit trail), the checkout compared file by file with the verified
//     commit, a failing script's exit code, and cancellation, which must
//     kill the job's background process.
//   - TestWritConcurrentJobs: admitted and refused jobs at once on one host.
//   - BenchmarkTrivialJob/{writ,passthrough}: one job end to end; reports
//     ms/job-median over at least ten jobs.
//   - TestDemo (WRIT_DEMO=1, `make demo`): the story, on standard output.
//
// Entries of an allowlist must name an https (or ssh, file) source
// repository, so the git server also serves https with a certificate of its
// own (GitServer.CAFile), which writ trusts through SSL_CERT_FILE in
// Executor.Env. GitLab's payloads name the plain-http URLs, as before.
//
// # Running writ instead of the pass-through executor
//
//	w := e2e.NewWorld(t)                  // coordinator, git server, runner binary
//	writ, err := e2e.WritBinary()         // go build ./cmd/writ, once per process
//	w.Executor = e2e.WritExecutor(writ, "/path/to/writ/config.toml")
//	o := w.RunJob(ctx, payload)           // e2e.Outcome
//	if o.State != "failed" || !strings.Contains(o.Trace, "Failed check: script") { … }
//
// WritExecutor makes the runner call `writ --config <file> executor
// config|prepare|run|cleanup` (run gets the script path and stage appended).
// Anything writ needs in its environment goes in Executor.Env; the runner
// passes its own environment on to the executor.
package e2e
