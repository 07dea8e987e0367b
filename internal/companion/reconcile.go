package companion

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	retryablehttp "github.com/hashicorp/go-retryablehttp"
	gitlab "gitlab.com/gitlab-org/api/client-go"

	"gitlab.com/writ-ci/writ/internal/audit"
)

// Discrepancy kinds found by Reconcile.
const (
	// KindUnseen: GitLab says a job ran on the environment's runner to
	// completion, and writ has no admission decision for it: the job did not
	// go through writ (another executor holds the runner's token, or writ's
	// audit log lost it).
	KindUnseen = "gitlab-ran-unseen-by-writ"
	// KindRefusedRan: writ refused the job and GitLab says it succeeded.
	KindRefusedRan = "gitlab-succeeded-writ-refused"
	// KindMissing: writ admitted a job GitLab does not list for the runner:
	// GitLab's history was altered, or writ ran a job GitLab did not send
	// through this runner.
	KindMissing = "writ-ran-missing-in-gitlab"
	// KindStatus: writ's recorded outcome contradicts GitLab's status.
	KindStatus = "status-mismatch"
	// KindIdentity: writ and GitLab disagree on the project or job name of
	// the same job ID.
	KindIdentity = "identity-mismatch"
	// KindTwice: two hosts' audit logs both admitted the same job. GitLab
	// gives a job to one runner host, so one of them ran a job GitLab did
	// not send it (a replay).
	KindTwice = "admitted-on-two-hosts"
)

// ReconcileOptions configure Reconcile.
type ReconcileOptions struct {
	Conn Connection
	// RunnerIDs are the GitLab runner IDs of the environment's runners.
	RunnerIDs []int64
	// AuditLog is the path of writ's audit log on the environment.
	AuditLog string
	// AuditLogs are the audit logs of more hosts. Several hosts may share
	// one GitLab runner (its "managers"); GitLab's job list for the runner
	// covers them all, so every one's log is needed, or the jobs the other
	// hosts ran look unseen by writ.
	AuditLogs []string
	// SystemID, if set, is the system ID of the one host whose audit log is
	// given (GitLab Runner keeps it in .runner_system_id beside its
	// config.toml): GitLab's list is then limited to that host's jobs
	// (GET /runners/:id/jobs?system_id=…, lib/api/ci/runners.rb) and the
	// other hosts' logs are not needed.
	SystemID string
	// AllowBlind reports even when the token cannot see every project that
	// used the runners; those projects are listed in Blind, and writ's
	// admissions there are not compared. Without it, Reconcile refuses.
	AllowBlind bool
	// Environment, if set, keeps only audit records of this environment.
	Environment string
	// Since and Until bound the jobs compared (by GitLab's created_at and
	// writ's record time). Until defaults to now.
	Since, Until time.Time
	// Slack widens the window used to look up the other side, so a job
	// created just before Since but admitted just after is not reported.
	// Default 1h.
	Slack time.Duration
	// MaxJobs bounds how many GitLab jobs are read per runner. Default 10000.
	MaxJobs int
	// Now replaces time.Now, for tests.
	Now func() time.Time
}

// Discrepancy is one disagreement between GitLab and writ about a job.
type Discrepancy struct {
	Kind     string `json:"kind"`
	JobID    int64  `json:"job_id"`
	RunnerID int64  `json:"runner_id,omitempty"`
	Project  string `json:"project,omitempty"`
	JobName  string `json:"job_name,omitempty"`
	Ref      string `json:"ref,omitempty"`
	// GitLabStatus is GitLab's job status ("" if GitLab does not list the job).
	GitLabStatus string `json:"gitlab_status,omitempty"`
	// WritDecision is writ's admission event ("" if writ never saw the job).
	WritDecision string `json:"writ_decision,omitempty"`
	// WritOutcome is writ's recorded outcome: "success", "failed" or "".
	WritOutcome string    `json:"writ_outcome,omitempty"`
	Time        time.Time `json:"time"`
	Detail      string    `json:"detail"`
}

// ReconcileReport is the result of Reconcile.
type ReconcileReport struct {
	Since   time.Time `json:"since"`
	Until   time.Time `json:"until"`
	Runners []int64   `json:"runners"`
	// GitLabJobs is the number of GitLab jobs in the window on the runners.
	GitLabJobs int `json:"gitlab_jobs"`
	// WritJobs is the number of jobs writ decided on in the window.
	WritJobs int `json:"writ_jobs"`
	// Consistent is the number of jobs both sides agree on.
	Consistent    int           `json:"consistent"`
	Discrepancies []Discrepancy `json:"discrepancies"`
	// Blind lists what the token could not see (AllowBlind): GitLab hides
	// those projects' jobs, so nothing there was compared.
	Blind []string `json:"blind,omitempty"`
	// Unverified counts writ admissions in Blind projects, not compared.
	Unverified int `json:"unverified,omitempty"`
}

// OK reports whether there is no discrepancy.
func (r *ReconcileReport) OK() bool { return len(r.Discrepancies) == 0 }

// WriteJSON writes the report as indented JSON.
func (r *ReconcileReport) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report as a table for people.
func (r *ReconcileReport) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "reconcile %s .. %s, runners %s\n", r.Since.UTC().Format(time.RFC3339), r.Until.UTC().Format(time.RFC3339), joinIDs(r.Runners))
	fmt.Fprintf(w, "GitLab jobs: %d, writ jobs: %d, consistent: %d, discrepancies: %d\n", r.GitLabJobs, r.WritJobs, r.Consistent, len(r.Discrepancies))
	for _, b := range r.Blind {
		fmt.Fprintf(w, "NOT COMPARED: %s\n", sanitize(b, 300))
	}
	if r.Unverified > 0 {
		fmt.Fprintf(w, "%d writ admission(s) in those projects were not compared\n", r.Unverified)
	}
	if len(r.Discrepancies) == 0 {
		_, err := fmt.Fprintln(w, "no discrepancy")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tJOB\tPROJECT\tJOB NAME\tGITLAB\tWRIT\tDETAIL")
	for _, d := range r.Discrepancies {
		writ := d.WritDecision
		if d.WritOutcome != "" {
			writ += "/" + d.WritOutcome
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", d.Kind, d.JobID, sanitize(d.Project, 80), sanitize(d.JobName, 80), orDash(d.GitLabStatus), orDash(writ), sanitize(d.Detail, 200))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func joinIDs(ids []int64) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatInt(id, 10)
	}
	return strings.Join(s, ",")
}

// glJob is what reconcile keeps of a GitLab job.
type glJob struct {
	id       int64
	runner   int64
	status   string
	project  string
	name     string
	ref      string
	created  time.Time
	failure  string
	finished bool
}

// writJob is what reconcile keeps of writ's records about one job.
type writJob struct {
	id       int64
	decision string // admit, refuse, audit-mode-admit
	outcome  string // success, failed, ""
	project  string
	name     string
	time     time.Time
}

// Reconcile compares GitLab's job history for the environment's runners
// with writ's audit log. A non-empty Discrepancies is the signal of a
// compromised or misbehaving GitLab (or runner host); the caller exits
// non-zero on it. An error means the comparison could not be made.
func Reconcile(ctx context.Context, opts ReconcileOptions) (*ReconcileReport, error) {
	if len(opts.RunnerIDs) == 0 {
		return nil, errors.New("reconcile: name the environment's runners with --runner ID (GitLab runner IDs)")
	}
	logs := opts.AuditLogs
	if opts.AuditLog != "" {
		logs = append([]string{opts.AuditLog}, logs...)
	}
	if len(logs) == 0 {
		return nil, errors.New("reconcile: set --audit-log to writ's audit log (paths.audit in the writ config)")
	}
	if opts.Since.IsZero() {
		return nil, errors.New("reconcile: set --since (RFC 3339 time or a duration such as 24h)")
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	until := opts.Until
	if until.IsZero() {
		until = now()
	}
	if !until.After(opts.Since) {
		return nil, fmt.Errorf("reconcile: --since %s is not before --until %s", opts.Since.Format(time.RFC3339), until.Format(time.RFC3339))
	}
	slack := opts.Slack
	if slack <= 0 {
		slack = time.Hour
	}
	maxJobs := opts.MaxJobs
	if maxJobs <= 0 {
		maxJobs = 10000
	}

	// writ's side first: a broken audit chain is itself the finding, and
	// there is no point querying GitLab without a trustworthy log.
	writ, twice, err := readAllWritJobs(logs, opts.Environment)
	if err != nil {
		return nil, err
	}

	c, err := newClient(opts.Conn)
	if err != nil {
		return nil, err
	}
	acc, err := c.checkToken(ctx, purpose{cmd: "writ reconcile", why: "to read the runners' jobs"})
	if err != nil {
		return nil, err
	}
	lookFrom := opts.Since.Add(-slack)
	blind, err := c.checkRunnerVisibility(ctx, acc, opts.RunnerIDs, len(logs), opts.SystemID, writ, lookFrom)
	if err != nil {
		return nil, err
	}
	if len(blind.reasons) > 0 && !opts.AllowBlind {
		return nil, fmt.Errorf("reconcile: the token cannot see every project that used the runners, so GitLab would hide their jobs and writ's admissions there would look missing; give the token's user the Reporter role on them (or use an administrator or auditor token), or pass --allow-blind to compare the rest:\n  %s", strings.Join(blind.reasons, "\n  "))
	}
	gl := map[int64]*glJob{}
	for _, rid := range opts.RunnerIDs {
		jobs, err := c.runnerJobs(ctx, rid, opts.SystemID, lookFrom, maxJobs)
		if err != nil {
			return nil, err
		}
		for _, j := range jobs {
			if prev, ok := gl[j.id]; ok && prev.runner != j.runner {
				return nil, fmt.Errorf("reconcile: GitLab lists job %d on runners %d and %d; a job runs on one runner, so GitLab's answers are inconsistent", j.id, prev.runner, j.runner)
			}
			gl[j.id] = j
		}
	}

	rep := &ReconcileReport{Since: opts.Since, Until: until, Runners: opts.RunnerIDs, Discrepancies: []Discrepancy{}, Blind: blind.reasons}
	in := func(t time.Time) bool { return !t.Before(opts.Since) && !t.After(until) }

	for _, g := range gl {
		if !in(g.created) {
			continue
		}
		rep.GitLabJobs++
		w := writ[g.id]
		d := Discrepancy{JobID: g.id, RunnerID: g.runner, Project: g.project, JobName: g.name, Ref: g.ref, GitLabStatus: g.status, Time: g.created}
		if w != nil {
			d.WritDecision, d.WritOutcome = w.decision, w.outcome
		}
		switch {
		case w == nil && g.finished:
			d.Kind = KindUnseen
			d.Detail = "GitLab says this job ran on the environment's runner, but writ's audit log has no decision for it"
		case w == nil:
			// Not finished (pending, running, canceled before running, …):
			// it may legitimately not have reached writ yet.
			continue
		case w.project != "" && w.project != g.project, w.name != "" && w.name != g.name:
			d.Kind = KindIdentity
			d.Detail = fmt.Sprintf("writ recorded %s / %s for this job ID", sanitize(w.project, 80), sanitize(w.name, 80))
		case w.decision == "refuse" && g.status == "success":
			d.Kind = KindRefusedRan
			d.Detail = "writ refused this job, yet GitLab reports it succeeded"
		case w.decision != "refuse" && w.outcome == "failed" && g.status == "success":
			d.Kind = KindStatus
			d.Detail = "writ recorded the job as failed, GitLab reports success"
		case w.decision != "refuse" && w.outcome == "success" && g.status == "failed":
			d.Kind = KindStatus
			d.Detail = "writ recorded the job as succeeded, GitLab reports failed"
			if g.failure != "" {
				d.Detail += " (failure_reason " + sanitize(g.failure, 80) + ")"
			}
		default:
			rep.Consistent++
			continue
		}
		rep.Discrepancies = append(rep.Discrepancies, d)
	}
	for _, w := range writ {
		if !in(w.time) {
			continue
		}
		rep.WritJobs++
		if _, ok := gl[w.id]; ok {
			continue
		}
		if w.decision == "refuse" {
			// A refused job did not run; GitLab may have dropped it from
			// the runner's list, which is no sign of compromise.
			rep.Consistent++
			continue
		}
		if blind.projects[w.project] {
			// GitLab hides this project's jobs from the token: its
			// absence from the list proves nothing.
			rep.Unverified++
			continue
		}
		rep.Discrepancies = append(rep.Discrepancies, Discrepancy{
			Kind: KindMissing, JobID: w.id, Project: w.project, JobName: w.name,
			WritDecision: w.decision, WritOutcome: w.outcome, Time: w.time,
			Detail: "writ admitted and ran this job, but GitLab does not list it for the environment's runners",
		})
	}
	for _, id := range twice {
		w := writ[id]
		if !in(w.time) {
			continue
		}
		rep.Discrepancies = append(rep.Discrepancies, Discrepancy{
			Kind: KindTwice, JobID: id, Project: w.project, JobName: w.name, WritDecision: w.decision, Time: w.time,
			Detail: "two hosts' audit logs both admitted this job; GitLab gives a job to one host, so one of them ran a job GitLab did not send it",
		})
	}
	sort.Slice(rep.Discrepancies, func(i, j int) bool {
		a, b := rep.Discrepancies[i], rep.Discrepancies[j]
		if a.JobID != b.JobID {
			return a.JobID < b.JobID
		}
		return a.Kind < b.Kind
	})
	return rep, nil
}

// readAllWritJobs verifies each host's audit log and merges them. twice
// lists jobs more than one host admitted.
func readAllWritJobs(logs []string, env string) (map[int64]*writJob, []int64, error) {
	all := map[int64]*writJob{}
	var twice []int64
	for _, l := range logs {
		if _, err := audit.VerifyFile(l); err != nil {
			return nil, nil, fmt.Errorf("reconcile: writ's audit log %s does not verify, so it cannot be compared: %w", l, err)
		}
		jobs, err := readWritJobs(l, env)
		if err != nil {
			return nil, nil, err
		}
		for id, w := range jobs {
			prev, ok := all[id]
			if !ok {
				all[id] = w
				continue
			}
			if prev.decision != "refuse" && w.decision != "refuse" {
				twice = append(twice, id)
			}
			if w.decision == "refuse" {
				all[id] = w // keep the stricter, as within one log
			}
		}
	}
	sort.Slice(twice, func(i, j int) bool { return twice[i] < twice[j] })
	return all, twice, nil
}

// readWritJobs folds the audit log into one writJob per GitLab job ID.
func readWritJobs(path, env string) (map[int64]*writJob, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reconcile: open audit log: %w", err)
	}
	defer f.Close()
	recs, err := audit.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("reconcile: read audit log %s: %w", path, err)
	}
	out := map[int64]*writJob{}
	for _, r := range recs {
		if r.Job == "" || (env != "" && r.Env != env) {
			continue
		}
		switch r.Event {
		case "admit", "refuse", "audit-mode-admit", "outcome":
		default:
			continue
		}
		id, err := strconv.ParseInt(r.Job, 10, 64)
		if err != nil || id <= 0 {
			continue // not a GitLab job ID (for example an offline check)
		}
		w := out[id]
		if w == nil {
			w = &writJob{id: id}
			out[id] = w
		}
		if p := fieldString(r.Fields, "project"); p != "" && w.project == "" {
			w.project = p
		}
		if n := fieldString(r.Fields, "job_name"); n != "" && w.name == "" {
			w.name = n
		}
		switch r.Event {
		case "outcome":
			w.outcome = outcomeOf(r.Fields)
		default:
			// The first decision counts; a later different one would be
			// a second admission of the same job, kept as the stricter.
			if w.decision == "" || r.Event == "refuse" {
				w.decision = r.Event
			}
			if w.time.IsZero() {
				w.time = r.Time
			}
		}
	}
	// Outcomes without a decision are not jobs writ decided on.
	for id, w := range out {
		if w.decision == "" {
			delete(out, id)
		}
	}
	return out, nil
}

func fieldString(f map[string]any, k string) string {
	if v, ok := f[k].(string); ok {
		return v
	}
	return ""
}

// outcomeOf reads an outcome record: "status" ("success"/"failed") or,
// failing that, "exit_code" (0 is success).
func outcomeOf(f map[string]any) string {
	switch s := fieldString(f, "status"); s {
	case "success", "succeeded", "ok":
		return "success"
	case "failed", "failure", "error", "system_failure", "build_failure", "timeout":
		return "failed"
	}
	switch v := f["exit_code"].(type) {
	case float64:
		if v == 0 {
			return "success"
		}
		if !math.IsNaN(v) {
			return "failed"
		}
	case json.Number:
		if v.String() == "0" {
			return "success"
		}
		return "failed"
	}
	return ""
}

// runnerJobs reads a runner's jobs created at or after from, newest first.
// GitLab has no time filter, so it pages (order_by=id, sort=desc) until a
// whole page is older than from; some GitLab versions ignore sort, so the
// early stop is taken only when the page really is in descending order.
// An empty page ends nothing: only GitLab naming no next page does.
func (c *client) runnerJobs(ctx context.Context, runner int64, systemID string, from time.Time, maxJobs int) ([]*glJob, error) {
	const perPage = 100
	var out []*glJob
	seen := 0
	what := fmt.Sprintf("list jobs of runner %d", runner)
	err := eachPage(ctx, what, func(page int64) (*gitlab.Response, bool, error) {
		opt := &gitlab.ListRunnerJobsOptions{
			ListOptions: gitlab.ListOptions{Page: page, PerPage: perPage},
			OrderBy:     gitlab.Ptr("id"),
			Sort:        gitlab.Ptr("desc"),
		}
		reqOpts := []gitlab.RequestOptionFunc{gitlab.WithContext(ctx)}
		if systemID != "" {
			// client-go's options lack system_id; add it to the query.
			reqOpts = append(reqOpts, func(r *retryablehttp.Request) error {
				q := r.URL.Query()
				q.Set("system_id", systemID)
				r.URL.RawQuery = q.Encode()
				return nil
			})
		}
		jobs, resp, err := c.gl.Runners.ListRunnerJobs(runner, opt, reqOpts...)
		if err != nil {
			return nil, false, c.wrap(what, resp, err)
		}
		seen += len(jobs)
		if seen > maxJobs {
			return nil, false, fmt.Errorf("reconcile: runner %d has more than %d jobs since %s; use a later --since or a larger --max-jobs", runner, maxJobs, from.Format(time.RFC3339))
		}
		descending, allOld := true, len(jobs) > 0
		for i, j := range jobs {
			if j == nil {
				return nil, false, fmt.Errorf("reconcile: GitLab returned a null job for runner %d", runner)
			}
			if i > 0 && jobs[i-1].ID <= j.ID {
				descending = false
			}
			if j.CreatedAt == nil {
				return nil, false, fmt.Errorf("reconcile: GitLab returned job %d of runner %d without created_at", j.ID, runner)
			}
			if j.CreatedAt.Before(from) {
				continue
			}
			allOld = false
			g := &glJob{id: j.ID, runner: runner, status: j.Status, name: j.Name, ref: j.Ref, created: *j.CreatedAt, failure: j.FailureReason}
			if j.Project != nil {
				g.project = j.Project.PathWithNamespace
			}
			switch j.Status {
			case "success", "failed":
				g.finished = true
			}
			out = append(out, g)
		}
		return resp, !(allOld && descending), nil
	})
	return out, err
}
