package companion

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/internal/audit"
	"gitlab.com/writ-ci/writ/internal/companion/gitlabtest"
)

var t0 = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

type recon struct {
	s   *gitlabtest.Server
	app *gitlabtest.Project
	log string
}

func newRecon(t *testing.T) *recon {
	s := gitlabtest.New(t, testToken)
	r := &recon{s: s, app: s.AddProject("acme/web", "main"), log: filepath.Join(t.TempDir(), "audit.log")}
	return r
}

// gitlabJob adds a job to runner 5's history.
func (r *recon) gitlabJob(id int64, status string, at time.Time) {
	started := at.Add(time.Second)
	r.s.AddRunnerJob(5, &gitlabtest.RunnerJob{ID: id, Name: "deploy", Stage: "deploy", Status: status, Ref: "main", CreatedAt: at, StartedAt: &started, Project: r.app, TagList: []string{"production"}})
}

// writ appends a decision, and an outcome when exit >= 0.
func (r *recon) writ(t *testing.T, id, event string, at time.Time, exit int) {
	t.Helper()
	r.record(t, id, "acme/web", event, at, exit)
}

// writProject appends an admission of a job of project that succeeded.
func (r *recon) writProject(t *testing.T, id, project string, at time.Time) {
	t.Helper()
	r.record(t, id, project, "admit", at, 0)
}

func (r *recon) record(t *testing.T, id, project, event string, at time.Time, exit int) {
	t.Helper()
	l := audit.Open(r.log)
	ctx := context.Background()
	fields := map[string]any{"project": project, "job_name": "deploy"}
	if _, err := l.Append(ctx, audit.Record{Time: at, Event: event, Job: id, Env: "production", Fields: fields}); err != nil {
		t.Fatal(err)
	}
	if exit >= 0 {
		if _, err := l.Append(ctx, audit.Record{Time: at.Add(time.Minute), Event: "outcome", Job: id, Env: "production", Fields: map[string]any{"exit_code": exit}}); err != nil {
			t.Fatal(err)
		}
	}
}

func (r *recon) opts() ReconcileOptions {
	return ReconcileOptions{
		Conn: testConn(r.s), RunnerIDs: []int64{5}, AuditLog: r.log, Environment: "production",
		Since: t0, Now: func() time.Time { return t0.Add(24 * time.Hour) },
	}
}

func TestReconcileConsistent(t *testing.T) {
	t.Parallel()
	r := newRecon(t)
	r.gitlabJob(101, "success", t0.Add(time.Hour))
	r.writ(t, "101", "admit", t0.Add(time.Hour+time.Second), 0)
	r.gitlabJob(102, "failed", t0.Add(2*time.Hour))
	r.writ(t, "102", "refuse", t0.Add(2*time.Hour+time.Second), -1)
	r.gitlabJob(103, "failed", t0.Add(3*time.Hour))
	r.writ(t, "103", "admit", t0.Add(3*time.Hour+time.Second), 2)
	r.gitlabJob(104, "running", t0.Add(4*time.Hour)) // not yet in writ's log
	// Before the window, on both sides: not counted.
	r.gitlabJob(90, "success", t0.Add(-48*time.Hour))
	rep, err := Reconcile(context.Background(), r.opts())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Consistent != 3 || rep.GitLabJobs != 4 || rep.WritJobs != 3 {
		t.Fatalf("report %+v", rep)
	}
	var buf bytes.Buffer
	rep.WriteText(&buf)
	if !strings.Contains(buf.String(), "no discrepancy") {
		t.Fatalf("text report:\n%s", buf.String())
	}
	// The runner jobs request: newest first, paged.
	var got bool
	for _, q := range r.s.Requests() {
		if q.Path == "/runners/5/jobs" {
			got = q.Query.Get("order_by") == "id" && q.Query.Get("sort") == "desc" && q.Query.Get("per_page") == "100" && q.Query.Get("page") == "1"
		}
	}
	if !got {
		t.Fatal("no runner jobs request with order_by=id, sort=desc, per_page=100, page=1")
	}
}

func TestReconcileDiscrepancies(t *testing.T) {
	t.Parallel()
	r := newRecon(t)
	r.gitlabJob(201, "success", t0.Add(time.Hour)) // writ never saw it
	r.gitlabJob(202, "success", t0.Add(time.Hour)) // writ refused it
	r.writ(t, "202", "refuse", t0.Add(time.Hour), -1)
	r.writ(t, "203", "admit", t0.Add(time.Hour), 0) // GitLab does not show it
	r.gitlabJob(204, "success", t0.Add(time.Hour))  // writ says it failed
	r.writ(t, "204", "admit", t0.Add(time.Hour), 1)
	r.gitlabJob(205, "failed", t0.Add(time.Hour)) // writ says it succeeded
	r.writ(t, "205", "audit-mode-admit", t0.Add(time.Hour), 0)
	r.s.AddRunnerJob(5, &gitlabtest.RunnerJob{ID: 206, Name: "other", Status: "success", CreatedAt: t0.Add(time.Hour), Project: r.app})
	r.writ(t, "206", "admit", t0.Add(time.Hour), 0) // writ recorded job "deploy"

	rep, err := Reconcile(context.Background(), r.opts())
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64]string{201: KindUnseen, 202: KindRefusedRan, 203: KindMissing, 204: KindStatus, 205: KindStatus, 206: KindIdentity}
	if len(rep.Discrepancies) != len(want) {
		t.Fatalf("%d discrepancies, want %d: %+v", len(rep.Discrepancies), len(want), rep.Discrepancies)
	}
	for _, d := range rep.Discrepancies {
		if want[d.JobID] != d.Kind {
			t.Errorf("job %d: kind %q, want %q", d.JobID, d.Kind, want[d.JobID])
		}
	}
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back ReconcileReport
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil || len(back.Discrepancies) != 6 || back.Discrepancies[0].Kind != KindUnseen {
		t.Fatalf("JSON report does not round-trip: %v\n%s", err, buf.String())
	}
	buf.Reset()
	rep.WriteText(&buf)
	for _, k := range []string{KindUnseen, KindRefusedRan, KindMissing, KindStatus, KindIdentity} {
		if !strings.Contains(buf.String(), k) {
			t.Errorf("text report lacks %s:\n%s", k, buf.String())
		}
	}
	assertNoToken(t, buf.String())
}

func TestReconcilePaginationAndUnsortedGitLab(t *testing.T) {
	t.Parallel()
	for _, ignoreSort := range []bool{false, true} {
		r := newRecon(t)
		r.s.RunnerJobsIgnoreSort = ignoreSort
		// 250 old jobs and 130 in the window, all consistent.
		for i := int64(1); i <= 250; i++ {
			r.gitlabJob(i, "success", t0.Add(-72*time.Hour))
		}
		for i := int64(300); i < 430; i++ {
			r.gitlabJob(i, "success", t0.Add(time.Duration(i)*time.Second))
			r.writ(t, itoa(i), "admit", t0.Add(time.Duration(i)*time.Second), 0)
		}
		rep, err := Reconcile(context.Background(), r.opts())
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK() || rep.GitLabJobs != 130 || rep.Consistent != 130 {
			t.Fatalf("ignoreSort=%v: %+v", ignoreSort, rep)
		}
		pages := countRequests(r.s, "/runners/5/jobs")
		if !ignoreSort && pages != 3 {
			// Page 1-2 hold the window's 130 and 70 old ones; page 3 is all
			// old: stop there rather than read all 4 pages.
			t.Errorf("sorted GitLab: %d pages read, want 3", pages)
		}
		if ignoreSort && pages != 4 {
			t.Errorf("unsorted GitLab: %d pages read, want all 4", pages)
		}
	}
}

func TestReconcileErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newRecon(t)
	r.writ(t, "1", "admit", t0.Add(time.Hour), 0)
	r.gitlabJob(1, "success", t0.Add(time.Hour))

	o := r.opts()
	o.RunnerIDs = nil
	if _, err := Reconcile(ctx, o); err == nil || !strings.Contains(err.Error(), "--runner") {
		t.Errorf("no runners: %v", err)
	}
	o = r.opts()
	o.Since = time.Time{}
	if _, err := Reconcile(ctx, o); err == nil || !strings.Contains(err.Error(), "--since") {
		t.Errorf("no since: %v", err)
	}
	o = r.opts()
	o.RunnerIDs = []int64{99}
	if _, err := Reconcile(ctx, o); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("unknown runner: %v", err)
	}
	o = r.opts()
	o.MaxJobs = 0
	r.s.AddFault(gitlabtest.Fault{PathPrefix: "/runners/", Status: 403, Body: `{"message":"403 Forbidden"}`})
	if _, err := Reconcile(ctx, o); err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "Maintainer") {
		t.Errorf("forbidden: %v", err)
	}
	r.s.ClearFaults()

	// A tampered audit log is refused before GitLab is asked anything.
	data, err := os.ReadFile(r.log)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.log, bytes.Replace(data, []byte(`"admit"`), []byte(`"refuse"`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	r.s.ResetRequests()
	if _, err := Reconcile(ctx, r.opts()); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Errorf("tampered log: %v", err)
	}
	if len(r.s.Requests()) != 0 {
		t.Error("GitLab was queried despite a broken audit log")
	}
}

func TestReconcileMaxJobs(t *testing.T) {
	t.Parallel()
	r := newRecon(t)
	r.writ(t, "1", "admit", t0.Add(time.Hour), 0)
	for i := int64(1); i <= 150; i++ {
		r.gitlabJob(i, "success", t0.Add(time.Hour))
	}
	o := r.opts()
	o.MaxJobs = 120
	if _, err := Reconcile(context.Background(), o); err == nil || !strings.Contains(err.Error(), "more than 120 jobs") {
		t.Fatalf("err %v", err)
	}
}
