package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"gitlab.com/writ-ci/writ/internal/audit"
)

// writEnv is writ installed as a World's custom executor, configured as an
// operator would (docs/install.md): its own trust root, state, cache, audit
// log and build directories, all under the World's directory.
type writEnv struct {
	Bin    string
	Config string
	Audit  string
	State  string
	Cache  string
	Builds string
	// UIDFirst and UIDCount are the sandbox's job uids.
	UIDFirst, UIDCount uint32
	// Env is what writ's processes get besides the runner's environment:
	// SSL_CERT_FILE, so writ trusts the git server's https certificate.
	Env []string
}

// writConfig is the part of writ's config.toml the suite writes (the
// schema is internal/config).
type writConfig struct {
	Environment string `toml:"environment"`
	Mode        string `toml:"mode"`
	Allowlist   struct {
		URL          string `toml:"url"`
		Branch       string `toml:"branch"`
		Identity     string `toml:"identity"`
		Auth         string `toml:"auth"`
		FetchTimeout string `toml:"fetch_timeout"`
		MinVersion   int64  `toml:"min_version,omitempty"`
	} `toml:"allowlist"`
	Trust struct {
		OpenPGPKeyring    string `toml:"openpgp_keyring"`
		SSHAllowedSigners string `toml:"ssh_allowed_signers"`
		Threshold         int    `toml:"threshold"`
	} `toml:"trust"`
	Paths struct {
		State  string `toml:"state"`
		Cache  string `toml:"cache"`
		Audit  string `toml:"audit"`
		Builds string `toml:"builds"`
	} `toml:"paths"`
	Job struct {
		DefaultTimeout string `toml:"default_timeout"`
	} `toml:"job"`
	Sandbox struct {
		UIDFirst uint32 `toml:"uid_first"`
		UIDCount uint32 `toml:"uid_count"`
		Images   string `toml:"images"`
	} `toml:"sandbox"`
	GitLab struct {
		URL string `toml:"url"`
	} `toml:"gitlab"`
}

// worldSeq numbers the writ installations of this test process.
var worldSeq atomic.Int64

// sandboxUIDs is a uid range of this installation's own: installations
// in parallel (and other test processes) each lease job uids from a
// different range, as separate hosts would.
func sandboxUIDs() (first, count uint32) {
	return uint32(2002000000 + (os.Getpid()%4096)*1024 + int(worldSeq.Add(1)%64)*16), 16
}

// installWrit makes writ w's executor for environment "production": the
// allowlist is acme/deploy-allowlist on w's git server (plain http, auth
// "none"), its root signers alice (OpenPGP, commit signatures) and carol
// (SSH, approvals), threshold 2.
func installWrit(t testing.TB, w *World, keys *Keys) *writEnv {
	t.Helper()
	bin, err := WritBinary()
	if err != nil {
		t.Fatalf("e2e: %v", err)
	}
	dir := filepath.Join(w.Dir, "writ")
	etc := filepath.Join(dir, "etc")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	e := &writEnv{
		Bin:    bin,
		Config: filepath.Join(etc, "config.toml"),
		Audit:  filepath.Join(dir, "log", "audit.log"),
		State:  filepath.Join(dir, "state"),
		Cache:  filepath.Join(dir, "cache"),
		Builds: filepath.Join(dir, "builds"),
		Env:    []string{"SSL_CERT_FILE=" + w.Git.CAFile()},
	}
	if err := os.MkdirAll(filepath.Dir(e.Audit), 0o700); err != nil {
		t.Fatal(err)
	}
	var c writConfig
	c.Environment = LegitEnvironment
	c.Mode = "enforce"
	c.Allowlist.URL = w.Git.URL("acme/deploy-allowlist")
	c.Allowlist.Branch = "main"
	c.Allowlist.Identity = AllowlistIdentity
	c.Allowlist.Auth = "none"
	c.Allowlist.FetchTimeout = "20s"
	c.Trust.OpenPGPKeyring = filepath.Join(etc, "root-keys.asc")
	c.Trust.SSHAllowedSigners = filepath.Join(etc, "allowed_signers")
	c.Trust.Threshold = 2
	c.Paths.State, c.Paths.Cache, c.Paths.Audit, c.Paths.Builds = e.State, e.Cache, e.Audit, e.Builds
	c.Job.DefaultTimeout = "5m"
	c.Sandbox.UIDFirst, c.Sandbox.UIDCount = sandboxUIDs()
	e.UIDFirst, e.UIDCount = c.Sandbox.UIDFirst, c.Sandbox.UIDCount
	// The fixture's entry names a placeholder image no registry serves;
	// TestImageRootFS turns images on with a real one.
	c.Sandbox.Images = "ignore"
	// Uploads go to the runner's GitLab, named here as in the runner's
	// config.toml; never to a URL from the payload.
	c.GitLab.URL = w.Coord.URL()
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(c); err != nil {
		t.Fatal(err)
	}
	for path, data := range map[string][]byte{
		e.Config:                  buf.Bytes(),
		c.Trust.OpenPGPKeyring:    keys.Trusted.ArmoredPublic,
		c.Trust.SSHAllowedSigners: []byte(keys.Approver.AllowedSignersLine("") + "\n"),
	} {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w.Executor = WritExecutor(bin, e.Config)
	w.Executor.Env = e.Env
	return e
}

// Accept runs `writ allowlist verify`, which fetches the allowlist head and
// accepts it if every rule holds, as the environment's next job would.
func (e *writEnv) Accept() error {
	out, err := e.command("allowlist", "verify").CombinedOutput()
	if err != nil {
		return fmt.Errorf("writ allowlist verify: %v\n%s", err, out)
	}
	return nil
}

func (e *writEnv) command(args ...string) *exec.Cmd {
	cmd := exec.Command(e.Bin, append([]string{"--config", e.Config}, args...)...)
	cmd.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + filepath.Dir(e.State), "LANG=C.UTF-8"}, e.Env...)
	return cmd
}

// Records reads the audit log after checking its hash chain.
func (e *writEnv) Records() ([]audit.Record, error) {
	if _, err := os.Stat(e.Audit); os.IsNotExist(err) {
		return nil, nil
	}
	if _, err := audit.VerifyFile(e.Audit); err != nil {
		return nil, fmt.Errorf("audit log %s does not verify: %w", e.Audit, err)
	}
	f, err := os.Open(e.Audit)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return audit.ReadAll(f)
}

// jobRecords are the audit records of job id.
func jobRecords(recs []audit.Record, id int64) []audit.Record {
	var out []audit.Record
	for _, r := range recs {
		if r.Job == fmt.Sprint(id) {
			out = append(out, r)
		}
	}
	return out
}

func hasEvent(recs []audit.Record, event string) (audit.Record, bool) {
	for _, r := range recs {
		if r.Event == event {
			return r, true
		}
	}
	return audit.Record{}, false
}

// failedCheck is the refusal's "Failed check:" line and the message after
// it, or "" when the trace has none.
func failedCheck(trace string) string {
	i := strings.Index(trace, "Failed check: ")
	if i < 0 {
		return ""
	}
	lines := strings.SplitN(trace[i:], "\n", 3)
	out := strings.TrimSpace(lines[0])
	if len(lines) > 1 {
		out += " — " + strings.TrimSpace(stripANSI(lines[1]))
	}
	return out
}

// traceLine is the runner's prefix of each trace line: a timestamp, the
// stream number and type, and "+" on continuations.
var traceLine = regexp.MustCompile(`(?m)^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z [0-9a-f]{2}[OE][ +]?`)

// plainTrace is the trace as a reader sees it: without the runner's
// per-line prefixes and without colour escapes.
func plainTrace(trace string) string {
	return stripANSI(traceLine.ReplaceAllString(trace, ""))
}

// stripANSI removes the colour escapes writ and the runner print.
func stripANSI(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '[' {
			j := i + 2
			for j < len(s) && (s[j] < 0x40 || s[j] > 0x7e) {
				j++
			}
			i = j
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// judgeWrit checks writ's outcome o of one job against exp and returns a
// one-line account of the outcome and every way it falls short.
func judgeWrit(exp Expectation, c Canary, e *writEnv, o Outcome) (string, []string) {
	var problems []string
	bad := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	trace := plainTrace(o.Trace)
	recs, err := e.Records()
	if err != nil {
		bad("%v", err)
	}
	mine := jobRecords(recs, o.JobID)
	if exp.Verdict != Admit && exp.Verdict != UploadRefused {
		if c.Fired() {
			bad("the canary fired: %s exists", c.File)
		}
		if c.Printed(o) {
			bad("the canary's marker is in the trace")
		}
		if _, ok := hasEvent(mine, "admit"); ok {
			bad("the audit log records an admission of job %d", o.JobID)
		}
	}
	for _, want := range []string{exp.Reason, exp.Detail} {
		if want != "" && !strings.Contains(trace, want) {
			bad("the trace lacks %q", want)
		}
	}
	if exp.AllowlistReject != "" {
		found := false
		for _, r := range recs {
			if r.Event == "allowlist-reject" && strings.HasPrefix(r.Reason, exp.AllowlistReject+": ") {
				found = true
			}
		}
		if !found {
			bad("no allowlist-reject audit record for rule %q", exp.AllowlistReject)
		}
	}
	var account string
	switch exp.Verdict {
	case Admit:
		account = "admitted, " + o.State
		if !o.Succeeded() {
			bad("want success, job %q", o.State)
		}
		if _, ok := hasEvent(mine, "admit"); !ok {
			bad("no admit audit record for job %d", o.JobID)
		}
		if c.Fired() {
			bad("the canary fired")
		}
	case Refuse:
		account = "refused: " + clipText(failedCheck(trace), 170)
		if exp.AllowlistReject != "" {
			// The job is refused by the version still in force; what
			// matters is why the pushed head was not accepted.
			account = "refused under version 7 (" + strings.TrimSpace(strings.SplitN(failedCheck(trace), " — ", 2)[0]) + ")"
			if i := strings.Index(trace, " rejected, "); i >= 0 {
				note, _, _ := strings.Cut(trace[i+len(" rejected, "):], "\n")
				account += "; pushed head rejected: " + clipText(note, 120)
			}
		}
		if o.State != "failed" {
			bad("want a failed job, got %q", o.State)
		}
		if !strings.Contains(trace, "writ refused this job:") {
			bad("the trace has no refusal block")
		}
		if r, ok := hasEvent(mine, "refuse"); !ok {
			bad("no refuse audit record for job %d", o.JobID)
		} else if want := strings.TrimPrefix(exp.Reason, "Failed check: ") + ": "; !strings.HasPrefix(r.Reason, want) {
			bad("the refuse audit record's reason %q does not start with %q", r.Reason, want)
		}
	case Undecided:
		account = "system failure: cannot decide"
		if i := strings.Index(trace, "writ cannot decide whether to admit this job: "); i >= 0 {
			line, _, _ := strings.Cut(trace[i+len("writ cannot decide whether to admit this job: "):], "\n")
			account += " — " + clipText(line, 160)
		}
		if o.State != "failed" || o.FailureReason != "runner_system_failure" {
			bad("want failed/runner_system_failure, got %q/%q", o.State, o.FailureReason)
		}
		found := false
		for _, r := range mine {
			if r.Event == "outcome" && r.Fields["status"] == "system-failure" {
				found = true
			}
		}
		if !found {
			bad("no system-failure outcome audit record for job %d", o.JobID)
		}
	case UploadRefused:
		account, problems = judgeUploadRefused(exp, mine, o, problems)
	case RunnerRejects:
		account = "runner rejected the payload; writ never called"
		if o.State != "" {
			bad("the runner reported a final state %q", o.State)
		}
		if len(mine) > 0 {
			bad("writ was called for job %d: %d audit records", o.JobID, len(mine))
		}
	}
	return account, problems
}

func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// newWritFixture is a scenario fixture with writ as the executor, the
// environment having accepted allowlist version 7 (unless fresh).
func newWritFixture(t testing.TB, keys *Keys, name string, fresh bool) (*Fixture, *writEnv) {
	t.Helper()
	w := NewWorld(t)
	f := newFixture(t, w, keys, name)
	e := installWrit(t, w, keys)
	f.AcceptAllowlist = e.Accept
	f.SetFloor = e.SetFloor
	if !fresh {
		if err := e.Accept(); err != nil {
			t.Fatalf("the environment does not accept allowlist version 7: %v", err)
		}
	}
	return f, e
}

// TestWritHappyPaths runs legitimate jobs through writ, one after another
// on one runner host: the deploy (its output, its after_script, the audit
// trail), a checkout compared file by file with the verified commit, a
// failing script's exit code, and a cancellation that must kill the job's
// processes.
func TestWritHappyPaths(t *testing.T) {
	t.Parallel()
	keys := newKeys(t)
	f, e := newWritFixture(t, keys, "happy", false)
	w := f.W
	ctx := testCtx(t)

	t.Run("deploy", func(t *testing.T) {
		o := w.RunJob(ctx, f.LegitPayload())
		account, problems := judgeWrit(admit, f.Canary, e, o)
		for _, p := range problems {
			t.Error(p)
		}
		trace := plainTrace(o.Trace)
		for _, want := range []string{
			`writ: admitted by entry "app-deploy-production" of allowlist version 7`,
			"writ: source " + f.Repos.SourceURL(RepoApp) + " at " + f.Hist.Head + ", verified (commit, signed by openpgp " + keys.Trusted.Fingerprint,
			"writ: checked out verified commit " + f.Hist.Head,
			"deploying acme/app to " + LegitTarget,
			LegitDone,
			"deploy of " + f.Hist.Head + " finished", // after_script, with writ's derived CI_COMMIT_SHA
		} {
			if !strings.Contains(trace, want) {
				t.Errorf("trace lacks %q", want)
			}
		}
		// The operator's contract: the runner's driver line and the banner
		// name writ's build, the banner comes once, each phase says how long
		// it took.
		if n := strings.Count(trace, "writ: admitted"); n != 1 {
			t.Errorf("admission banner %d times", n)
		}
		for _, re := range []string{`Using Custom executor with driver writ \S+`, `writ: judged by writ \S+`,
			`writ: allowlist version 7 in force \(commit [0-9a-f]+\) \([0-9.]+m?s\)`,
			`writ: fetched branch \S+ from \S+ \([0-9.]+m?s\)`, `writ: checked out verified commit [0-9a-f]+ .* \([0-9.]+m?s\)`} {
			if !regexp.MustCompile(re).MatchString(trace) {
				t.Errorf("trace lacks a line matching %s", re)
			}
		}
		recs, err := e.Records()
		if err != nil {
			t.Fatal(err)
		}
		var events []string
		for _, r := range jobRecords(recs, o.JobID) {
			ev := r.Event
			if s, ok := r.Fields["stage"].(string); ok {
				ev += ":" + s
			}
			events = append(events, ev)
		}
		for _, want := range []string{"admit", "stage:get_sources", "stage:build_script", "outcome", "stage:after_script", "cleanup"} {
			if !slices.Contains(events, want) {
				t.Errorf("audit log of job %d lacks %s: %q", o.JobID, want, events)
			}
		}
		if t.Failed() {
			t.Logf("%s\n%s", account, o)
		}
	})

	t.Run("checkout-is-the-verified-commit", func(t *testing.T) {
		p := f.LegitPayload()
		p.JobInfo.Name = TreeJob
		p.SetVar("CI_JOB_NAME", TreeJob)
		p.Step("script").Script = []string{TreeScript}
		p.Steps = p.Steps[:1]
		p.Image = nil
		p.Variables = deleteVar(p.Variables, "DEPLOY_TARGET")
		o := w.RunJob(ctx, p)
		if !o.Succeeded() {
			t.Fatalf("want success:\n%s", o)
		}
		want := treeListing(t, f, f.Hist.Head)
		var got []string
		for _, line := range strings.Split(plainTrace(o.Trace), "\n") {
			if strings.HasPrefix(line, "tree-file ") {
				got = append(got, strings.TrimSpace(line))
			}
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("the build directory is not the verified commit's tree:\n got: %q\nwant: %q", got, want)
		}
	})

	t.Run("failing-script", func(t *testing.T) {
		p := f.LegitPayload()
		p.JobInfo.Name = SmokeJob
		p.SetVar("CI_JOB_NAME", SmokeJob)
		p.Step("script").Script = []string{"echo before-failure", "exit 7", "echo never-printed"}
		p.Step("after_script").Script = []string{"echo after-script-still-runs"}
		p.Image = nil
		p.Variables = deleteVar(p.Variables, "DEPLOY_TARGET")
		o := w.RunJob(ctx, p)
		trace := plainTrace(o.Trace)
		if o.State != "failed" || o.FailureReason != "script_failure" || o.ExitCode != SmokeExitCode {
			t.Errorf("want failed/script_failure/%d:\n%s", SmokeExitCode, o)
		}
		if !strings.Contains(trace, "before-failure") || strings.Contains(trace, "\nnever-printed") {
			t.Errorf("the script did not stop at its failing line:\n%s", o)
		}
		if !strings.Contains(trace, "\nafter-script-still-runs") {
			t.Errorf("after_script did not run after the failure:\n%s", o)
		}
		recs, err := e.Records()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, r := range jobRecords(recs, o.JobID) {
			if r.Event == "outcome" && r.Fields["status"] == "failed" && fmt.Sprint(r.Fields["exit_code"]) == fmt.Sprint(SmokeExitCode) {
				found = true
			}
		}
		if !found {
			t.Errorf("no outcome audit record with status failed and exit code %d for job %d: %+v", SmokeExitCode, o.JobID, jobRecords(recs, o.JobID))
		}
	})

	t.Run("cancel", func(t *testing.T) {
		p := f.LegitPayload()
		p.JobInfo.Name = LongJob
		p.SetVar("CI_JOB_NAME", LongJob)
		p.Step("script").Script = []string{SleeperScript, "echo sleeper-started", "while :; do echo tick; sleep 0.3; done", "echo must-not-finish"}
		p.Steps = p.Steps[:1]
		p.Image = nil
		p.Variables = deleteVar(p.Variables, "DEPLOY_TARGET")
		start := time.Now()
		o := w.RunJobWith(ctx, p, RunOptions{CancelWhenTrace: "sleeper-started", Timeout: 60 * time.Second})
		took := time.Since(start)
		if o.State != "failed" || o.FailureReason != "job_canceled" && o.FailureReason != "unknown_failure" {
			t.Errorf("want a failed (cancelled) job:\n%s", o)
		}
		if strings.Contains(plainTrace(o.Trace), "\nmust-not-finish") {
			t.Errorf("the job finished despite the cancellation:\n%s", o)
		}
		uid, ok := traceUID(o.Trace, "sleeper-pid=")
		if !ok {
			t.Fatalf("the job never started its sleeper:\n%s", o)
		}
		// writ runs the script in its own PID namespace as a uid of its
		// own, outside the runner's process group: only writ can have
		// killed it, and then no process of that uid is left.
		if pids := waitNoProcessOf(uid, 5*time.Second); len(pids) > 0 {
			for _, pid := range pids {
				_ = exec.Command("kill", "-9", fmt.Sprint(pid)).Run()
			}
			t.Errorf("processes of the job's uid %d (pids %v) survived the cancellation:\n%s", uid, pids, o)
		}
		t.Logf("cancelled in %s: %s/%s", took.Round(time.Millisecond), o.State, o.FailureReason)
	})

	if _, err := audit.VerifyFile(e.Audit); err != nil {
		t.Errorf("audit log: %v", err)
	}
}

func deleteVar(vars []Variable, key string) []Variable {
	out := vars[:0:0]
	for _, v := range vars {
		if v.Key != key {
			out = append(out, v)
		}
	}
	return out
}

// treeListing is what TreeScript prints for commit's tree, computed from
// git: "tree-file <mode> <sha256> <path>" per file, sorted by path.
func treeListing(t testing.TB, f *Fixture, commit string) []string {
	t.Helper()
	repo := f.Repos.(*testRepos).repos[RepoApp]
	type file struct{ path, line string }
	var files []file
	for _, line := range strings.Split(repo.Git(t, "ls-tree", "-r", "--full-tree", commit), "\n") {
		meta, path, ok := strings.Cut(line, "\t")
		fields := strings.Fields(meta)
		if !ok || len(fields) != 3 {
			t.Fatalf("ls-tree line %q", line)
		}
		mode := "644"
		if fields[0] == "100755" {
			mode = "755"
		}
		blob := repo.RawObject(t, "blob", fields[2])
		files = append(files, file{path, fmt.Sprintf("tree-file %s %x %s", mode, sha256.Sum256(blob), path)})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = f.line
	}
	return out
}

// auditSummary is the audit log, one line per record, for failure messages.
func auditSummary(e *writEnv) string {
	recs, err := e.Records()
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&b, "%d %s job=%s %s", r.Seq, r.Event, r.Job, clipText(r.Reason, 200))
		if st, ok := r.Fields["stage"]; ok {
			fmt.Fprintf(&b, " stage=%v status=%v", st, r.Fields["status"])
		} else if st, ok := r.Fields["status"]; ok {
			fmt.Fprintf(&b, " status=%v", st)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// TestWritConcurrentJobs runs legitimate and tampered jobs at the same time
// on one runner host: each must get its own decision, and the audit log,
// appended to by every job's writ processes at once, must stay one intact
// chain with each job's records complete.
func TestWritConcurrentJobs(t *testing.T) {
	t.Parallel()
	keys := newKeys(t)
	f, e := newWritFixture(t, keys, "concurrent", false)
	w := f.W
	legit1, legit2 := f.LegitPayload(), f.LegitPayload()
	script := f.LegitPayload()
	script.Step("script").Script[0] = f.Canary.Code()
	bashEnv := f.LegitPayload()
	bashEnv.Variables = append(bashEnv.Variables, Variable{Key: "BASH_ENV", Value: f.Canary.Code() + "\n", File: true})
	hook := f.LegitPayload()
	hook.Hooks = []Hook{{Name: "post_get_sources_script", Script: []string{f.Canary.Code()}}}
	jobs := []*Payload{legit1, script, legit2, bashEnv, hook}
	want := []Expectation{admit, refuse("script", lineDiffers("script", 1)), admit,
		refuse("variables", notAllowed("BASH_ENV")), refuse("hooks", "the job has hooks")}
	start := time.Now()
	outs := w.RunJobs(testCtx(t), jobs...)
	t.Logf("%d jobs at once in %s", len(jobs), time.Since(start).Round(time.Millisecond))
	for i, o := range outs {
		account, problems := judgeWrit(want[i], f.Canary, e, o)
		for _, p := range problems {
			t.Errorf("job %d: %s", o.JobID, p)
		}
		if len(problems) > 0 {
			t.Logf("%s", o)
		}
		t.Logf("job %d: %s", o.JobID, account)
	}
	n, err := audit.VerifyFile(e.Audit)
	if err != nil {
		t.Fatalf("audit chain broken after concurrent jobs: %v", err)
	}
	recs, err := e.Records()
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range jobs {
		mine := jobRecords(recs, p.ID)
		if len(mine) == 0 || mine[len(mine)-1].Event != "cleanup" {
			t.Errorf("job %d: audit records do not end with its cleanup: %s", p.ID, auditSummary(e))
		}
		if want[i].Verdict == Admit {
			if _, ok := hasEvent(mine, "outcome"); !ok {
				t.Errorf("job %d: no outcome record", p.ID)
			}
		}
	}
	t.Logf("audit log: %d records, chain intact", n)
}
