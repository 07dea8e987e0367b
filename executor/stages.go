package executor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/audit"
	"gitlab.com/writ-ci/writ/internal/config"
	"gitlab.com/writ-ci/writ/internal/fsutil"
	"gitlab.com/writ-ci/writ/internal/gitrepo"
	"gitlab.com/writ-ci/writ/internal/state"
	"gitlab.com/writ-ci/writ/sandbox"
)

// Audit events written by the executor.
const (
	EventAdmit          = "admit"
	EventRefuse         = "refuse"
	EventAuditModeAdmit = "audit-mode-admit"
	EventStage          = "stage"
	EventOutcome        = "outcome"
	EventCleanup        = "cleanup"
)

// passThroughDir is the builds and cache directory name the runner's own
// scripts use in audit mode's pass-through. It cannot clash with a job's
// build directory, whose name is the job id (digits).
const passThroughDir = "passthrough"

// configOutput is config_exec's answer to the runner.
type configOutput struct {
	BuildsDir         string            `json:"builds_dir"`
	CacheDir          string            `json:"cache_dir"`
	BuildsDirIsShared bool              `json:"builds_dir_is_shared"`
	Hostname          string            `json:"hostname,omitempty"`
	Driver            configDriver      `json:"driver"`
	JobEnv            map[string]string `json:"job_env,omitempty"`
	Shell             string            `json:"shell"`
}

type configDriver struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
}

// Config is config_exec: it tells the runner where its own scripts would
// work (used only by audit mode's pass-through; writ's admitted jobs run in
// per-job directories writ chooses) and names the driver.
//
// Before that it checks the host (CheckHost): a host where jobs cannot be
// contained, or where anyone but writ can change its config, keys or
// state, runs no job; each problem is printed with its fix.
func Config(ctx context.Context, opts Options) int {
	o := opts.withDefaults()
	if problems := CheckHost(ctx, o); len(problems) > 0 {
		fmt.Fprintf(o.Stderr, "%swrit refuses to run jobs on this host:%s\n", ansiBoldRed, ansiReset)
		for _, p := range problems {
			fmt.Fprintf(o.Stderr, "- %s\n", p)
		}
		return o.systemFailure()
	}
	if !o.contained() {
		o.Log.Warn("UNSAFE: sandbox.unsafe_no_sandbox is set; admitted jobs run uncontained and can reach writ's keys, state and audit log")
	}
	host, _ := os.Hostname()
	out := configOutput{
		BuildsDir: filepath.Join(o.Config.Paths.Builds, passThroughDir),
		CacheDir:  filepath.Join(o.Config.Paths.Cache, passThroughDir),
		Hostname:  host,
		Driver:    configDriver{Name: "writ", Version: o.Version},
		Shell:     "bash",
	}
	data, err := json.Marshal(out)
	if err != nil {
		fmt.Fprintf(o.Stderr, "writ: %v\n", err)
		return o.systemFailure()
	}
	if _, err := o.Stdout.Write(append(data, '\n')); err != nil {
		return o.systemFailure()
	}
	return 0
}

// Prepare is prepare_exec: admission. It decides before anything else
// happens, records the decision as the job's snapshot and in the audit log,
// and refuses (BUILD_FAILURE) a job that fails any check, or returns
// SYSTEM_FAILURE when it cannot decide.
func Prepare(ctx context.Context, opts Options) int {
	o := opts.withDefaults()
	if c, ok := o.State.(state.Connector); ok {
		// A fleet store's handshakes overlap reading the payload.
		c.Connect()
	}
	path := o.Getenv(envJobResponse)
	if path == "" {
		fmt.Fprintf(o.Stdout, "writ: %v\n", errNoPayload)
		return o.systemFailure()
	}
	data, err := fsutil.ReadFileLimit(path, o.Config.Job.MaxPayloadBytes)
	tooLarge := errors.Is(err, fsutil.ErrTooLarge)
	if err != nil && !tooLarge {
		fmt.Fprintf(o.Stdout, "writ cannot decide: read the job payload: %v\n", err)
		o.auditOutcome(ctx, "", "system-failure", o.systemFailure(), err.Error())
		return o.systemFailure()
	}
	var d *Decision
	var p *Payload
	if tooLarge {
		d = o.newDecision()
		// Name the job, so the refusal and its audit record can be traced
		// to it, when the payload's leading bytes say which job it is.
		if f, err := os.Open(path); err == nil {
			d.Job.ID = leadingJobID(f)
			f.Close()
		}
		d.fail(Failure{Check: CheckPayload, Message: fmt.Sprintf("the job payload is larger than %d bytes (job.max_payload_bytes)", o.Config.Job.MaxPayloadBytes),
			Hint: "shorten the job's scripts and variables, or ask the runner's owners to raise job.max_payload_bytes"})
	} else {
		o.progress = o.Stdout
		d, p, err = o.decide(ctx, data, true)
		o.progress = nil
		if err != nil {
			fmt.Fprintf(o.Stdout, "%swrit cannot decide whether to admit this job%s: %v\n", ansiBoldRed, ansiReset, err)
			fmt.Fprintln(o.Stdout, "The job was not started. GitLab Runner retries; if this persists, check writ's allowlist source and cache on the runner host.")
			o.dropClaim(ctx)
			o.auditOutcome(ctx, d.Job.ID, "system-failure", o.systemFailure(), err.Error())
			return o.systemFailure()
		}
	}
	auditMode := o.Config.Mode == config.Audit
	passThrough := !d.Admitted && auditMode && p != nil
	o.Log.Debug("admission decision", "job", d.Job.ID, "admitted", d.Admitted, "entry", d.EntryName, "failed", d.FailedChecks())
	var snap *Snapshot
	if p != nil && !d.duplicate() {
		var code int
		var ok bool
		if snap, code, ok = o.recordDecision(ctx, d, p, passThrough); !ok {
			return code
		}
	} else if err := o.auditDecision(ctx, d, EventRefuse); err != nil {
		fmt.Fprintf(o.Stdout, "writ: cannot write the audit log: %v\n", err)
		return o.systemFailure()
	}
	switch {
	case d.Admitted:
		if auditMode {
			fmt.Fprintf(o.Stdout, "%sWRIT AUDIT MODE: nothing is enforced on this runner.%s This job passes every check.\n", ansiBoldYellow, ansiReset)
		}
		writeAdmitted(o.Stdout, snap, o.Version)
		return 0
	case passThrough:
		writeRefusal(o.Stdout, d, true)
		return 0
	default:
		writeRefusal(o.Stdout, d, false)
		o.writeExitCode(o.buildFailure())
		return o.buildFailure()
	}
}

func (o *Options) newDecision() *Decision {
	return &Decision{Mode: o.Config.Mode, Environment: o.Config.Environment}
}

// recordDecision writes the snapshot (and admitted file variables) and the
// audit record. On failure it removes the job's state so the runner's retry
// starts clean, and returns the exit code.
func (o *Options) recordDecision(ctx context.Context, d *Decision, p *Payload, passThrough bool) (*Snapshot, int, bool) {
	id := p.ID
	if err := o.createJobDir(id); err != nil {
		fmt.Fprintf(o.Stdout, "writ: %v\n", err)
		return nil, o.systemFailure(), false
	}
	fail := func(err error) (*Snapshot, int, bool) {
		fmt.Fprintf(o.Stdout, "writ: %v\n", err)
		_ = removeAll(o.jobDir(id))
		o.dropClaim(ctx)
		return nil, o.systemFailure(), false
	}
	timeout := o.jobTimeout(d.Entry)
	s := &Snapshot{
		Format: snapshotFormat, CreatedAt: o.Now().UTC(), Mode: d.Mode,
		Admitted: d.Admitted, PassThrough: passThrough, Environment: d.Environment,
		Job: d.Job, Ref: d.Ref, Allowlist: d.Allowlist, Entry: d.Entry,
		PayloadSHA256: d.PayloadDigest, BuildDir: o.buildDir(id), Timeout: timeout,
		Failures: d.Failures,
	}
	if d.Admitted {
		s.Sources = d.Sources
		s.Commit, s.Repository, s.Signer, s.Variables, s.Image = p.SHA, d.Entry.Source.Repository, d.Signer, d.Variables, d.Image
		if _, err := o.writeFileVariables(id, d.Variables); err != nil {
			return fail(err)
		}
	}
	if err := o.writeSnapshot(s); err != nil {
		return fail(err)
	}
	event := EventRefuse
	switch {
	case d.Admitted:
		event = EventAdmit
	case passThrough:
		event = EventAuditModeAdmit
	}
	if err := o.auditDecision(ctx, d, event); err != nil {
		return fail(fmt.Errorf("cannot write the audit log: %w", err))
	}
	return s, 0, true
}

// decide runs admission on a payload. record: this is a real admission
// (prepare), which moves the entry's high-water mark; Check passes false.
// A nil error means a decision was reached (admit or refuse); any error
// means writ cannot decide, and the job is a system failure the runner
// retries.
func (o *Options) decide(ctx context.Context, data []byte, record bool) (*Decision, *Payload, error) {
	d := o.newDecision()
	p, err := DecodePayload(data)
	if err != nil {
		d.fail(Failure{Check: CheckPayload, Message: err.Error(),
			Hint: "GitLab Runner never writes such a payload; check what runs writ's executor commands"})
		return d, nil, nil
	}
	d.Job = JobRef{ID: p.ID, Project: p.Project, Name: p.JobName, Ref: p.Ref, RefType: p.RefType, SHA: p.SHA}
	d.PayloadDigest = p.Digest
	if !record {
		return d, p, o.judge(ctx, d, p, false)
	}
	// The job id is claimed while the allowlist and the source are checked
	// (both mostly wait on the network, and so may the claim, with a fleet
	// store). No mark moves before the claim holds (checkSource waits for
	// it), and the decision is the claim's when it fails.
	o.claim = o.startClaim(ctx, p)
	err = o.judge(ctx, d, p, true)
	return d, p, o.joinClaim(d, err)
}

// judge takes the admission decision on a decoded payload into d (see
// decide). A nil error means a decision was reached.
func (o *Options) judge(ctx context.Context, d *Decision, p *Payload, record bool) error {
	if o.Allowlist == nil {
		return errors.New("no allowlist source configured")
	}
	start := time.Now()
	acc, err := o.Allowlist.Current(ctx)
	if err == nil && (acc == nil || acc.Allowlist == nil) {
		err = errors.New("the allowlist source returned no accepted version")
	}
	if err != nil {
		o.phase("allowlist", start, "no accepted allowlist")
		return err // wraps allowlist.ErrCannotDecide, which says why
	}
	o.phase("allowlist", start, "allowlist version %d in force (commit %s)", acc.Allowlist.Version, short(acc.Commit))
	d.Allowlist = AllowlistRef{Version: acc.Allowlist.Version, Commit: acc.Commit, Digest: acc.Digest, FromCache: acc.FromCache}
	d.Warning = acc.Warning
	for _, v := range p.Variables {
		if v.Key == "CI_PROJECT_PATH" && v.Value != p.Project {
			d.fail(Failure{Check: CheckEntry, Message: "the payload names two different projects (job_info.project_full_path and CI_PROJECT_PATH)",
				Expected: allowlist.Visible(clip(p.Project)), Received: allowlist.Visible(clip(v.Value))})
			return nil
		}
	}
	env := o.Config.Environment
	// The job's ref is named by its kind: refs/heads/main is not
	// refs/tags/main. GitLab's ref_type only says which ref the job claims;
	// an entry must list that exact full ref, and it is what writ fetches.
	full, err := allowlist.JobRef(p.RefType, p.Ref)
	if err != nil {
		d.fail(Failure{Check: CheckRef, Message: err.Error(),
			Hint: "run the job from a branch or tag pipeline whose ref is a plain git branch or tag name"})
		return nil
	}
	// Only the entries for this project and job are read: a job's cost
	// does not grow with the allowlist.
	ix, err := acc.JobIndex(p.Project, p.JobName)
	if err != nil {
		return fmt.Errorf("%w: %v", allowlist.ErrCannotDecide, err)
	}
	entry, ok := ix.Lookup(p.Project, p.JobName, env, full)
	if !ok {
		near := ix.Near(p.Project, p.JobName)
		if f, ok := refKindFailure(near, env, full); ok {
			d.fail(f)
			d.Suggestion = suggestion(p, env, nil, near)
			return nil
		}
		f := Failure{Check: CheckEntry,
			Message: fmt.Sprintf("no allowlist entry admits project %q, job %q, environment %q, ref %q",
				allowlist.Visible(clip(p.Project)), allowlist.Visible(clip(p.JobName)), env, allowlist.Visible(clip(full))),
			Hint: "get an entry for this job added to the allowlist (the suggested entry below is a starting point)"}
		if len(near) > 0 {
			var names []string
			for _, e := range near {
				names = append(names, fmt.Sprintf("%s (environments %s; refs %s)", e.Name, strings.Join(e.Match.Environments, ", "), strings.Join(e.Match.Refs, ", ")))
			}
			f.Message += "; entries for this project and job exist but do not list this environment and ref: " + strings.Join(names, "; ")
			f.Hint = "run the job for a ref the entry lists, or get the ref or environment added to the entry"
		}
		d.fail(f)
		d.Suggestion = suggestion(p, env, nil, near)
		return nil
	}
	d.Entry, d.EntryName, d.Ref = entry, entry.Name, full
	d.Variables = checkDefinition(d, p, entry, o.Config.Job.Env)
	checkUploadTarget(d, entry, o.Config.GitLab.URL)
	// What runs is the entry's values as the runner would expand them,
	// from admitted and verified data only.
	d.Variables = o.expandVariables(d, p, entry, d.Variables, o.admissionSnapshot(d, p))
	d.Suggestion = suggestion(p, env, entry, nil)

	if err := o.checkSource(ctx, d, p, entry, acc.Allowlist, record); err != nil {
		return err
	}
	return nil
}

// Check is `writ check --job FILE`: the admission decision for a payload,
// without recording anything (no snapshot, no audit record, no high-water
// mark). It prints the decision and every failed check to Stdout. An error
// means writ cannot decide.
func Check(ctx context.Context, opts Options, payload []byte) (*Decision, error) {
	o := opts.withDefaults()
	var d *Decision
	var err error
	if int64(len(payload)) > o.Config.Job.MaxPayloadBytes {
		d = o.newDecision()
		d.fail(Failure{Check: CheckPayload, Message: fmt.Sprintf("the job payload is larger than %d bytes (job.max_payload_bytes)", o.Config.Job.MaxPayloadBytes)})
	} else {
		d, _, err = o.decide(ctx, payload, false)
	}
	if err != nil {
		fmt.Fprintf(o.Stdout, "writ cannot decide: %v\n", err)
		return d, err
	}
	writeCheckReport(o.Stdout, d)
	return d, nil
}

func writeCheckReport(w io.Writer, d *Decision) {
	var b strings.Builder
	verdict := "ADMITTED"
	if !d.Admitted {
		verdict = "REFUSED"
	}
	fmt.Fprintf(&b, "writ check: %s in environment %q (mode %s)\n", verdict, d.Environment, d.Mode)
	writeJobLines(&b, d)
	if d.Signer != "" {
		fmt.Fprintf(&b, "Signer:     %s\n", d.Signer)
	}
	for _, v := range d.Sources {
		fmt.Fprintf(&b, "Extra:      %s: %s at %s on %s, signed by %s\n", v.Path, v.Repository, v.Commit, v.Ref, v.Signer)
	}
	for i, f := range d.Failures {
		fmt.Fprintf(&b, "\n%d. %s: %s\n", i+1, f.Check, f.Message)
		if f.Expected != "" || f.Received != "" {
			fmt.Fprintf(&b, "   allowlist: %s\n   job:       %s\n", f.Expected, f.Received)
		}
		if f.Hint != "" {
			fmt.Fprintf(&b, "   What to do: %s\n", f.Hint)
		}
	}
	if text := suggestionText(d); text != nil {
		b.WriteString("\nEntry that would admit this job's definition:\n\n")
		b.Write(text)
	}
	_, _ = io.WriteString(w, b.String())
}

// readPayloadFile reads the job payload the runner names in
// JOB_RESPONSE_FILE, bounded by the configured size.
func (o *Options) readPayloadFile() ([]byte, error) {
	path := o.Getenv(envJobResponse)
	if path == "" {
		return nil, errNoPayload
	}
	data, err := fsutil.ReadFileLimit(path, o.Config.Job.MaxPayloadBytes)
	if err != nil {
		return nil, fmt.Errorf("read the job payload: %w", err)
	}
	return data, nil
}

// loadJob reads the payload only to find the job id and digest, and loads
// the snapshot prepare wrote for exactly that payload.
func (o *Options) loadJob() (*Snapshot, *Payload, error) {
	data, err := o.readPayloadFile()
	if err != nil {
		return nil, nil, err
	}
	p, err := DecodePayload(data)
	if err != nil {
		return nil, nil, err
	}
	s, err := o.readSnapshot(p.ID, p.Digest)
	return s, p, err
}

// loadDecidedJob is loadJob for a stage of a job prepare decided, without
// decoding the payload again: the snapshot is looked up by the id the
// payload's first key names and the SHA-256 of its bytes. A snapshot
// recorded for exactly these bytes proves prepare decoded and checked them,
// under that same id (the same bytes decode to one id). Anything else (no
// id first, no snapshot, another digest) takes loadJob's full decode and
// its errors. The Payload returned this way carries only ID and Digest.
func (o *Options) loadDecidedJob() (*Snapshot, *Payload, error) {
	data, err := o.readPayloadFile()
	if err != nil {
		return nil, nil, err
	}
	if id := leadingJobID(bytes.NewReader(data)); id != "" {
		sum := sha256.Sum256(data)
		digest := hex.EncodeToString(sum[:])
		if s, err := o.readSnapshot(id, digest); err == nil {
			return s, &Payload{ID: id, Digest: digest}, nil
		}
	}
	return o.loadJob()
}

// Run is run_exec for one stage. writ decides what the stage does from the
// snapshot and ignores the runner's script, except in audit mode's
// pass-through of a job enforce mode would refuse.
func Run(ctx context.Context, opts Options, script, stage string) int {
	o := opts.withDefaults()
	s, p, err := o.loadDecidedJob()
	if err != nil {
		fmt.Fprintf(o.Stdout, "%swrit: refusing stage %s%s: %v\n", ansiBoldRed, stage, ansiReset, err)
		if errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintln(o.Stdout, "writ has no admission decision for this job: prepare did not admit it.")
		}
		id := ""
		if p != nil {
			id = p.ID
		}
		o.auditStage(ctx, id, stage, "refused", o.buildFailure(), err.Error())
		o.writeExitCode(o.buildFailure())
		return o.buildFailure()
	}
	if !s.Admitted && !s.PassThrough {
		fmt.Fprintf(o.Stdout, "%swrit: job %s was refused at prepare; stage %s does not run.%s\n", ansiBoldRed, s.Job.ID, stage, ansiReset)
		o.writeExitCode(o.buildFailure())
		return o.buildFailure()
	}
	var code int
	var status string
	if s.PassThrough {
		code, status = o.passThrough(ctx, s, script, stage)
	} else {
		code, status = o.runStage(ctx, s, stage)
	}
	if err := o.auditStage(ctx, s.Job.ID, stage, status, code, ""); err != nil {
		fmt.Fprintf(o.Stdout, "writ: cannot write the audit log: %v\n", err)
		return o.systemFailure()
	}
	return code
}

// runStage performs one stage of an admitted job.
func (o *Options) runStage(ctx context.Context, s *Snapshot, stage string) (int, string) {
	w := o.Stdout
	switch {
	case stage == "prepare_script":
		// prepare already printed the admission banner; once is enough.
		return 0, "ok"
	case stage == "get_sources":
		return o.getSources(ctx, s)
	case stage == "clear_worktree":
		// The runner's retry of get_sources: start from an empty directory.
		if err := removeAll(s.BuildDir); err != nil {
			fmt.Fprintf(w, "writ: %v\n", err)
			return o.systemFailure(), "error"
		}
		fmt.Fprintln(w, "writ: removed the build directory for a fresh checkout")
		return 0, "ok"
	case stage == "restore_cache" || stage == "download_artifacts":
		fmt.Fprintf(w, "writ: %s skipped: writ never lets unsigned content (caches, artifacts) into the build directory\n", stage)
		return 0, "skipped"
	case stage == "archive_cache" || stage == "archive_cache_on_failure":
		fmt.Fprintf(w, "writ: %s skipped: %s\n", stage, cacheRefusal)
		return 0, "skipped"
	case stage == "upload_artifacts_on_success" || stage == "upload_artifacts_on_failure":
		return o.uploadStage(ctx, s, stage)
	case stage == "cleanup_file_variables":
		fmt.Fprintln(w, "writ: file variables are removed with the job's state at cleanup")
		return 0, "ok"
	case stage == "build_script" || stage == "step_script":
		return o.runUserScript(ctx, s, "build_script", s.Entry.Definition.Script, s.Timeout)
	case stage == "after_script":
		if len(s.Entry.Definition.AfterScript) == 0 {
			return 0, "skipped"
		}
		if _, err := os.Stat(s.BuildDir); err != nil {
			fmt.Fprintln(w, "writ: after_script skipped: the source was never checked out")
			return 0, "skipped"
		}
		return o.runUserScript(ctx, s, stage, s.Entry.Definition.AfterScript, min(afterScriptTimeout, s.Timeout))
	case strings.HasPrefix(stage, "step_"):
		fmt.Fprintf(w, "%swrit: stage %s refused:%s the allowlist entry defines no such step (admission should have refused the job)\n", ansiBoldRed, stage, ansiReset)
	default:
		fmt.Fprintf(w, "%swrit: unknown stage %q refused:%s this writ does not know what GitLab Runner expects of it\n", ansiBoldRed, allowlist.Visible(clip(stage)), ansiReset)
	}
	o.writeExitCode(o.buildFailure())
	return o.buildFailure(), "refused"
}

// getSources checks the verified commit out of writ's mirror of the entry's
// repository into a build directory that must not exist yet. In the
// sandbox it first leases the job's uid, which owns the tree.
func (o *Options) getSources(ctx context.Context, s *Snapshot) (int, string) {
	w := o.Stdout
	if err := os.MkdirAll(o.Config.Paths.Builds, 0o700); err != nil {
		fmt.Fprintf(w, "writ: %v\n", err)
		return o.systemFailure(), "error"
	}
	if _, err := os.Lstat(s.BuildDir); !errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(w, "%swrit: refusing to reuse the build directory %s%s (it exists)\n", ansiBoldRed, s.BuildDir, ansiReset)
		o.writeExitCode(o.buildFailure())
		return o.buildFailure(), "refused"
	}
	start := time.Now()
	var err error
	if ref := o.jobImage(s); ref != "" {
		if _, err := o.imageRoot(ctx, s); err != nil {
			fmt.Fprintf(w, "writ: the entry's image: %v\n", err)
			return o.systemFailure(), "error"
		}
		fmt.Fprintf(w, "writ: image %s fetched and verified\n", ref)
	}
	if o.contained() {
		// The lease (a scan of every process) and the checkout into the
		// root-only staging directory do not depend on each other: only
		// the hand-over to the uid waits for both.
		var uid uint32
		var leaseErr error
		leased := make(chan struct{})
		go func() {
			defer close(leased)
			uid, leaseErr = o.uids().Acquire(ctx, s.Job.ID)
		}()
		err = o.checkoutStaged(ctx, s, func() (uint32, error) { <-leased; return uid, leaseErr })
		<-leased
	} else {
		err = o.checkoutOnHost(ctx, s)
	}
	if err != nil {
		_ = removeAll(s.BuildDir)
		fmt.Fprintf(w, "writ: check out %s: %v\n", s.Commit, err)
		return o.systemFailure(), "error"
	}
	o.progress = w
	o.phase("checkout", start, "checked out verified commit %s of %s into %s", s.Commit, s.Repository, s.BuildDir)
	o.progress = nil
	return 0, "ok"
}

// checkoutOnHost is the checkout without the sandbox
// (sandbox.unsafe_no_sandbox), handed to job.user if one is set.
func (o *Options) checkoutOnHost(ctx context.Context, s *Snapshot) error {
	if err := os.Mkdir(s.BuildDir, 0o700); err != nil {
		return err
	}
	if err := o.checkout(ctx, s, s.BuildDir); err != nil {
		return err
	}
	u, err := o.lookupJobUser()
	if err != nil || u == nil {
		return err
	}
	return u.handOver(o.Config.Paths.Builds, s.BuildDir)
}

func (o *Options) checkout(ctx context.Context, s *Snapshot, dir string) error {
	m, unlock, err := o.openMirrorShared(ctx, s.Repository)
	if err != nil {
		return err
	}
	defer unlock()
	err = m.Checkout(s.Commit, dir)
	if gitrepo.IsDamage(err) {
		m.MarkDamaged(err.Error()) // the next admission's fetch rebuilds it
	}
	if err != nil {
		return err
	}
	return o.checkoutSources(ctx, s, dir, m)
}

// openMirrorShared opens repository's mirror under its shared lock, so
// that checkouts read it while no fetch rewrites it; unlock releases the
// lock.
func (o *Options) openMirrorShared(ctx context.Context, repository string) (m *gitrepo.Mirror, unlock func() error, err error) {
	lockPath, err := o.mirrorLockPath(repository)
	if err != nil {
		return nil, nil, err
	}
	lctx, cancel := context.WithTimeout(ctx, lockWait)
	unlock, err = fsutil.RLock(lctx, lockPath)
	cancel()
	if err != nil {
		return nil, nil, err
	}
	m, err = gitrepo.OpenMirror(o.Config.Paths.Cache, repository, sourceAuth(o.Config, repository), mirrorLimits(o.Config))
	if err != nil {
		_ = unlock()
		return nil, nil, err
	}
	return m, unlock, nil
}

// runUserScript runs the entry's lines for a stage in the build directory.
func (o *Options) runUserScript(ctx context.Context, s *Snapshot, stage string, lines []string, timeout time.Duration) (int, string) {
	w := o.Stdout
	if _, err := os.Stat(s.BuildDir); err != nil {
		fmt.Fprintf(w, "%swrit: %s refused: the verified source was not checked out (%v)%s\n", ansiBoldRed, stage, err, ansiReset)
		o.writeExitCode(o.buildFailure())
		return o.buildFailure(), "refused"
	}
	start, err := o.userScriptStarter(ctx, s, stage, lines)
	if err != nil {
		fmt.Fprintf(w, "writ: %v\n", err)
		return o.systemFailure(), "error"
	}
	res, err := o.runProcess(ctx, start, timeout)
	if err != nil {
		fmt.Fprintf(w, "writ: %s: %v\n", stage, err)
		return o.systemFailure(), "error"
	}
	code := o.scriptResult(ctx, s.Job.ID, stage, res, timeout)
	if code == 0 {
		return 0, "success"
	}
	return code, res.Status
}

// userScriptStarter writes the stage's script where the job can read but
// not change it, and returns how to start it: in the sandbox as the job's
// uid, or (unsafe_no_sandbox) on the host as writ or job.user.
func (o *Options) userScriptStarter(ctx context.Context, s *Snapshot, stage string, lines []string) (starter, error) {
	script := []byte(buildScript(lines))
	env := o.jobEnv(s, stage)
	if o.contained() {
		uid, err := o.stageUID(s.Job.ID)
		if err != nil {
			return nil, err
		}
		// Rewritten whenever the stage runs: it need not survive a crash,
		// and two fsyncs were a tenth of a contained stage's set-up.
		path := filepath.Join(o.jobDir(s.Job.ID), stage+".sh")
		if err := fsutil.ReplaceFile(path, script, 0o600); err != nil {
			return nil, err
		}
		root, err := o.imageRoot(ctx, s)
		if err != nil {
			return nil, err
		}
		dir := o.projectDir(s)
		return o.containedStart(sandbox.Spec{
			Argv: []string{o.Config.Job.Shell, sandbox.RunDir + "/" + stageScriptName(stage)},
			Env:  env, Dir: dir, UID: uid, GID: uid, Network: jobNetwork(s.Entry), Root: root,
			Binds: []sandbox.Bind{{Source: s.BuildDir, Target: dir, Writable: true}},
			Files: o.stageFiles(s, path, stage), Name: s.Job.ID + "-" + stage,
		}), nil
	}
	u, err := o.lookupJobUser()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(o.jobDir(s.Job.ID), stage+".sh")
	if u != nil {
		// The job user cannot read writ's state: the script goes where it
		// can read it but not change it.
		path, err = o.writeReadable(s.Job.ID, stage+".sh", script, u, false)
	} else {
		err = fsutil.ReplaceFile(path, script, 0o600)
	}
	if err != nil {
		return nil, err
	}
	return hostStart([]string{o.Config.Job.Shell, path}, s.BuildDir, env, u), nil
}

// scriptResult turns a script's end into the stage exit code, writing the
// job's exit code file, and records build_script's outcome.
func (o *Options) scriptResult(ctx context.Context, id, stage string, res runResult, timeout time.Duration) int {
	w := o.Stdout
	jobCode := res.Code
	switch res.Status {
	case "timeout":
		fmt.Fprintf(w, "%sERROR: writ: %s ran longer than its timeout of %s and was killed%s\n", ansiBoldRed, stage, timeout, ansiReset)
		jobCode = o.buildFailure()
	case "canceled":
		fmt.Fprintf(w, "%sERROR: writ: %s was cancelled and killed%s\n", ansiBoldRed, stage, ansiReset)
		jobCode = o.buildFailure()
	}
	status := "success"
	if res.Status != "exited" {
		status = res.Status
	} else if res.Code != 0 {
		status = "failed"
	}
	if stage == "build_script" {
		o.auditOutcome(ctx, id, status, jobCode, "")
		jobStatus := status
		if status == "timeout" {
			jobStatus = statusTimedout // the runner's name for it
		}
		o.recordJobStatus(id, jobStatus)
	}
	if status == "success" {
		return 0
	}
	o.writeExitCode(jobCode)
	return o.buildFailure()
}

// passThrough runs the runner's own script for a stage: audit mode's
// behaviour for a job enforce mode would refuse, since no signed
// definition exists for it.
func (o *Options) passThrough(ctx context.Context, s *Snapshot, script, stage string) (int, string) {
	fmt.Fprintf(o.Stdout, "%sWRIT AUDIT MODE: stage %s runs GitLab Runner's own script; enforce mode would have refused this job (%s).%s\n",
		ansiBoldYellow, stage, firstFailure(s), ansiReset)
	if script == "" {
		fmt.Fprintln(o.Stdout, "writ: no script file given")
		return o.systemFailure(), "error"
	}
	start := hostStart([]string{o.Config.Job.Shell, script}, "", os.Environ(), nil)
	if o.contained() {
		var err error
		if start, err = o.passThroughStarter(ctx, s, script, stage); err != nil {
			fmt.Fprintf(o.Stdout, "writ: %s: %v\n", stage, err)
			return o.systemFailure(), "error"
		}
	}
	res, err := o.runProcess(ctx, start, 0)
	if err != nil {
		fmt.Fprintf(o.Stdout, "writ: %s: %v\n", stage, err)
		return o.systemFailure(), "error"
	}
	code := o.scriptResult(ctx, s.Job.ID, stage, res, 0)
	if code == 0 {
		return 0, "success"
	}
	return code, res.Status
}

// passThroughStarter contains GitLab's own script like an admitted job:
// its own uid, the host read-only, writ's files hidden, the host network
// (GitLab's script clones), and per-job directories at the builds and
// cache directories config_exec reported.
func (o *Options) passThroughStarter(ctx context.Context, s *Snapshot, script, stage string) (starter, error) {
	uid, err := o.uids().Acquire(ctx, s.Job.ID)
	if err != nil {
		return nil, err
	}
	binds, err := o.passThroughDirs(s, uid)
	if err != nil {
		return nil, err
	}
	return o.containedStart(sandbox.Spec{
		Argv: []string{o.Config.Job.Shell, sandbox.RunDir + "/" + stageScriptName(stage)},
		Env:  passThroughEnv(), Dir: binds[0].Target, UID: uid, GID: uid, Network: sandbox.NetworkHost,
		Binds: binds, Files: []sandbox.File{{Source: script, Name: stageScriptName(stage)}},
		Name: s.Job.ID + "-" + stage,
	}), nil
}

func firstFailure(s *Snapshot) string {
	if len(s.Failures) == 0 {
		return "no reason recorded"
	}
	return s.Failures[0].Check + ": " + s.Failures[0].Message
}

// Cleanup is cleanup_exec: it removes the job's build directory and private
// state. It is safe when prepare refused the job or nothing exists, and
// removes nothing when the payload does not match the recorded decision.
func Cleanup(ctx context.Context, opts Options) int {
	o := opts.withDefaults()
	s, p, err := o.loadJob()
	if p == nil {
		// Prepare cannot have recorded anything for a payload it cannot
		// read.
		fmt.Fprintf(o.Stdout, "writ: nothing to clean up (%v)\n", err)
		return 0
	}
	// Remove only what this run's prepare created: a duplicate payload's
	// cleanup must not remove the state of the run that holds the id.
	if mine, cerr := o.ownsJob(ctx, p.ID); cerr != nil || !mine {
		why := "job id " + p.ID + " is held by another run of the runner"
		if cerr != nil {
			why = cerr.Error()
		}
		fmt.Fprintf(o.Stdout, "writ: cleanup removes nothing: %s\n", why)
		o.auditCleanup(ctx, p.ID, "refused: "+why)
		return 0
	}
	defer func() {
		if err := o.releaseJob(ctx, p.ID); err != nil {
			o.Log.Warn("cannot release the job id claim", "job", p.ID, "error", err)
		}
	}()
	if errors.Is(err, fs.ErrNotExist) {
		// A refused payload writ could not identify, or a prepare that
		// stopped before its snapshot: remove a half-made job directory.
		if _, serr := os.Stat(o.jobDir(p.ID)); serr == nil {
			if rerr := errors.Join(removeAll(o.jobDir(p.ID)), removeAll(o.runDir(p.ID))); rerr != nil {
				fmt.Fprintf(o.Stdout, "writ: %v\n", rerr)
				return o.systemFailure()
			}
			o.auditCleanup(ctx, p.ID, "removed state without a decision")
		}
		return 0
	}
	if err != nil {
		fmt.Fprintf(o.Stdout, "writ: cleanup removes nothing: %v\n", err)
		o.auditCleanup(ctx, p.ID, "refused: "+err.Error())
		return o.systemFailure()
	}
	var errs []error
	if !s.PassThrough || o.contained() {
		// No process of the job lives any more (its stages' PID
		// namespaces are gone), so nothing races the removal.
		errs = append(errs, removeAll(s.BuildDir), removeAll(o.runDir(s.Job.ID)))
	}
	if o.contained() {
		errs = append(errs, o.uids().Release(ctx, s.Job.ID))
	}
	errs = append(errs, removeAll(o.jobDir(s.Job.ID)))
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(o.Stdout, "writ: cleanup: %v\n", err)
		o.auditCleanup(ctx, s.Job.ID, "incomplete: "+err.Error())
		return o.systemFailure()
	}
	if err := o.auditCleanup(ctx, s.Job.ID, ""); err != nil {
		fmt.Fprintf(o.Stdout, "writ: cannot write the audit log: %v\n", err)
		return o.systemFailure()
	}
	return 0
}

// writeExitCode puts the job's exit code where the runner reads it when a
// stage exits with BUILD_FAILURE. It is overwritten every time, so an
// earlier stage's code never leaks into a later failure.
func (o *Options) writeExitCode(code int) {
	path := o.Getenv(envExitCodeFile)
	if path == "" {
		return
	}
	if err := fsutil.WriteFileAtomic(path, []byte(fmt.Sprintf("%d\n", code)), 0o600); err != nil {
		o.Log.Warn("cannot write the build exit code file", "path", path, "error", err)
	}
}

func (o *Options) decisionFields(d *Decision) map[string]any {
	f := map[string]any{
		"mode":           string(d.Mode),
		"project":        d.Job.Project,
		"job_name":       d.Job.Name,
		"ref":            d.Job.Ref,
		"ref_type":       d.Job.RefType,
		"sha":            d.Job.SHA,
		"entry":          d.EntryName,
		"verified_ref":   d.Ref,
		"payload_sha256": d.PayloadDigest,
	}
	if d.Allowlist.Version != 0 {
		f["allowlist_version"] = d.Allowlist.Version
		f["allowlist_commit"] = d.Allowlist.Commit
		f["allowlist_digest"] = d.Allowlist.Digest
		f["allowlist_from_cache"] = d.Allowlist.FromCache
	}
	if d.Signer != "" {
		f["signer"] = d.Signer
	}
	if len(d.Sources) > 0 {
		f["sources"] = d.Sources
	}
	if d.Admitted && d.Image != "" {
		// The image that runs, as writ expanded it from the entry.
		f["image"] = d.Image
	}
	if d.Entry != nil {
		// What `writ state repair` needs to rebuild the entry's mark.
		f["repository"] = d.Entry.Source.Repository
		f["source_mode"] = string(d.Entry.Source.Mode)
	}
	if len(d.Failures) > 0 {
		f["checks_failed"] = d.FailedChecks()
		f["failures"] = d.Failures
	}
	return f
}

func (o *Options) auditDecision(ctx context.Context, d *Decision, event string) error {
	if o.Audit == nil {
		return errors.New("no audit log configured")
	}
	reason := ""
	if len(d.Failures) > 0 {
		reason = d.Failures[0].Check + ": " + d.Failures[0].Message
	}
	_, err := o.Audit.Append(ctx, audit.Record{Time: o.Now().UTC(), Event: event, Job: d.Job.ID, Env: d.Environment,
		Reason: reason, Fields: o.decisionFields(d)})
	return err
}

func (o *Options) auditOutcome(ctx context.Context, id, status string, code int, reason string) {
	if o.Audit == nil {
		return
	}
	_, err := o.Audit.Append(ctx, audit.Record{Time: o.Now().UTC(), Event: EventOutcome, Job: id, Env: o.Config.Environment,
		Reason: reason, Fields: map[string]any{"status": status, "exit_code": code}})
	if err != nil {
		o.Log.Error("cannot write the audit log", "error", err)
	}
}

func (o *Options) auditStage(ctx context.Context, id, stage, status string, code int, reason string) error {
	if o.Audit == nil {
		return errors.New("no audit log configured")
	}
	_, err := o.Audit.Append(ctx, audit.Record{Time: o.Now().UTC(), Event: EventStage, Job: id, Env: o.Config.Environment,
		Reason: reason, Fields: map[string]any{"stage": stage, "status": status, "exit_code": code}})
	return err
}

func (o *Options) auditCleanup(ctx context.Context, id, reason string) error {
	if o.Audit == nil {
		return errors.New("no audit log configured")
	}
	_, err := o.Audit.Append(ctx, audit.Record{Time: o.Now().UTC(), Event: EventCleanup, Job: id, Env: o.Config.Environment, Reason: reason})
	return err
}

// refKindFailure explains a job that no entry admits when an entry for the
// same project, job and environment lists the ref of the other kind with
// the same name: a tag "main" where the entry admits the branch main.
func refKindFailure(near []*allowlist.Entry, env, full string) (Failure, bool) {
	kind, name, _ := allowlist.SplitRef(full)
	other, otherKind := allowlist.TagPrefix+name, allowlist.RefTag
	if kind == allowlist.RefTag {
		other, otherKind = allowlist.BranchPrefix+name, allowlist.RefBranch
	}
	for _, e := range near {
		if slices.Contains(e.Match.Environments, env) && slices.Contains(e.Match.Refs, other) {
			return Failure{Check: CheckRef,
				Message: fmt.Sprintf("the job runs for %s %q (%s), but entry %s admits the %s %s: a ref's kind is part of what the allowlist signs, and GitLab's ref_type cannot change it",
					kind, allowlist.Visible(clip(name)), allowlist.Visible(clip(full)), e.Name, otherKind, other),
				Expected: other, Received: allowlist.Visible(clip(full)),
				Hint: fmt.Sprintf("run the job from the %s %s, or get %s added to the entry's match.refs", otherKind, other, allowlist.Visible(clip(full)))}, true
		}
	}
	return Failure{}, false
}
