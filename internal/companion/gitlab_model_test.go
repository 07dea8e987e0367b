package companion

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gitlab "gitlab.com/gitlab-org/api/client-go"

	"gitlab.com/writ-ci/writ/internal/companion/gitlabtest"
)

// Tests of the companion against GitLab's permission model (issue 16): each
// reproduces a way GitLab's real behaviour, as the fake now models it, broke
// a documented workflow.

const readToken = "glpat-READONLY-do-not-print-0123456789ab"

var reader = gitlabtest.User{ID: 20, Username: "writ-reader", Name: "writ read-only"}

// readOnly adds the token the templates use in merge request pipelines:
// read_api, Reporter on both projects; main of the application is
// protected, as it is by default.
func (w *world) readOnly(t *testing.T) Connection {
	t.Helper()
	w.s.AddToken(readToken, gitlabtest.TokenInfo{Name: "writ-read", User: reader, Scopes: []string{gitlabtest.ScopeReadAPI}})
	w.s.SetRole(reader, w.app, gitlabtest.Reporter)
	w.s.SetRole(reader, w.al, gitlabtest.Reporter)
	w.s.Protect(w.app, "main", gitlabtest.Maintainer, gitlabtest.Maintainer)
	return Connection{URL: w.s.URL, Token: readToken, retryWait: time.Millisecond}
}

// Why 1: a CI lint dry run needs push or merge rights on the simulated ref;
// a read-only token got "insufficient permission", reported as "fix
// .gitlab-ci.yml".
func TestProposeCheckWithReadOnlyToken(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t)
	o := w.proposeOpts()
	o.Conn, o.DryRun = w.readOnly(t), true

	_, err := Propose(ctx, o)
	if err == nil || strings.Contains(err.Error(), "fix .gitlab-ci.yml") || !strings.Contains(err.Error(), "needs the Developer role on acme/web to simulate a pipeline for main") || !strings.Contains(err.Error(), "--static-lint") {
		t.Fatalf("dry-run lint without write rights: %v; want the missing right named, not a configuration error", err)
	}

	// The static check needs only Reporter and read_api.
	o.StaticLint = true
	w.s.ResetRequests()
	res, err := Propose(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusWouldChange || len(res.Jobs) != 1 || res.Jobs[0] != "deploy" {
		t.Fatalf("static check: %+v", res)
	}
	for _, r := range w.s.Requests() {
		if strings.HasSuffix(r.Path, "/ci/lint") && (r.Query.Get("dry_run") != "false" || r.Query.Has("dry_run_ref") || r.Query.Get("content_ref") != "main") {
			t.Errorf("static lint query %v", r.Query)
		}
	}
	if len(w.s.Writes()) != 0 {
		t.Fatalf("a check wrote: %v", paths(w.s.Writes()))
	}

	// A proposal is never made from the static check.
	o.DryRun = false
	if _, err := Propose(ctx, o); err == nil || !strings.Contains(err.Error(), "--static-lint works only with --check") {
		t.Fatalf("static lint for a proposal: %v", err)
	}
}

// Why 3: one token for everything. Each command checks its token's scope
// and role at start and names what is missing, before it reads or writes.
func TestTokensCheckedAtStart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t)
	ro := w.readOnly(t)

	// The read-only token cannot propose: refused before any project read.
	o := w.proposeOpts()
	o.Conn = ro
	w.s.ResetRequests()
	if _, err := Propose(ctx, o); err == nil || !strings.Contains(err.Error(), "needs a token with the api scope") || !strings.Contains(err.Error(), "read_api") {
		t.Fatalf("propose with read_api: %v", err)
	}
	for _, r := range w.s.Requests() {
		if strings.HasPrefix(r.Path, "/projects") {
			t.Fatalf("propose read %s before refusing the token", r.Path)
		}
	}

	// An api token whose user is only Reporter on the allowlist project
	// cannot push the proposal branch: the missing role is named.
	const weak = "glpat-WEAKTOKEN-0123456789abcdef"
	dev := gitlabtest.User{ID: 21, Username: "writ-propose"}
	w.s.AddToken(weak, gitlabtest.TokenInfo{User: dev, Scopes: []string{gitlabtest.ScopeAPI}})
	w.s.SetRole(dev, w.app, gitlabtest.Maintainer)
	w.s.SetRole(dev, w.al, gitlabtest.Reporter)
	o.Conn.Token = weak
	if _, err := Propose(ctx, o); err == nil || !strings.Contains(err.Error(), "needs the Developer role on acme/deploy-allowlist") || !strings.Contains(err.Error(), "Reporter") {
		t.Fatalf("propose as Reporter: %v", err)
	}
	if len(w.s.Writes()) != 0 {
		t.Fatalf("writes: %v", paths(w.s.Writes()))
	}

	// A Developer on the application cannot simulate a pipeline for its
	// protected main: the right is named, not blamed on the configuration.
	w.s.SetRole(dev, w.app, gitlabtest.Developer)
	w.s.SetRole(dev, w.al, gitlabtest.Developer)
	w.s.Protect(w.app, "main", gitlabtest.Maintainer, gitlabtest.Maintainer)
	if _, err := Propose(ctx, o); err == nil || !strings.Contains(err.Error(), "right to push or merge to it") {
		t.Fatalf("propose as Developer on a protected ref: %v", err)
	}
	// Allowed to merge to main: the dry run works and the proposal is made.
	w.s.Protect(w.app, "main", gitlabtest.Maintainer, gitlabtest.Developer)
	if res, err := Propose(ctx, o); err != nil || res.Status != StatusCreated {
		t.Fatalf("propose with merge rights: %v %+v", err, res)
	}

	// The read-only token may print a review but not post it.
	rev := ReviewOptions{Conn: ro, Project: "acme/deploy-allowlist", MergeRequest: 1, Now: func() time.Time { return reviewNow }}
	if _, err := Review(ctx, rev); err == nil || !strings.Contains(err.Error(), "writ review needs a token with the api scope to post the review note") {
		t.Fatalf("review with read_api: %v", err)
	}
	rev.DryRun = true
	if res, err := Review(ctx, rev); err != nil || res.Status != NoteDryRun {
		t.Fatalf("review --dry-run with read_api: %v", err)
	}
}

// Why 7: $CI_JOB_TOKEN cannot serve these calls; writ says so instead of
// sending it.
func TestJobTokenRefused(t *testing.T) {
	t.Parallel()
	env := map[string]string{"WRIT_GITLAB_TOKEN": "abc-job-token-value", "CI_JOB_TOKEN": "abc-job-token-value"}
	if _, err := LoadToken("", func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "JOB-TOKEN") {
		t.Fatalf("CI_JOB_TOKEN as the token: %v", err)
	}
	w := newWorld(t)
	w.s.ResetRequests()
	o := w.proposeOpts()
	o.Conn.Token = "glcbt-64_abcdefghijklmnopqrstuvwx"
	if _, err := Propose(context.Background(), o); err == nil || !strings.Contains(err.Error(), "CI/CD job token") {
		t.Fatalf("job token: %v", err)
	}
	if n := len(w.s.Requests()); n != 0 {
		t.Fatalf("%d requests sent with a job token", n)
	}
}

// Why 4: GitLab before 16.10 ignores content_ref and dry_run_ref and
// lints the default branch: a merge request's change would pass unchecked.
func TestOldGitLabRefused(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	// The merge request's branch changes the deploy job; main does not.
	w.s.Commit(w.app, "feature", "deploy differently", map[string][]byte{"x": []byte("1")})
	l := appLint()
	l.Jobs[1].Script = []string{"./deploy.sh --everything"}
	w.s.SetLint(w.app, "feature", l)
	o := w.proposeOpts()
	o.ContentRef, o.DryRun = "feature", true
	res, err := Propose(context.Background(), o)
	if err != nil || len(res.Entries) != 1 || !strings.Contains(strings.Join(res.Entries[0].Definition.Script, "\n"), "--everything") {
		t.Fatalf("GitLab 17.5: %v %+v", err, res)
	}

	w.s.Version = "16.9.3-ee"
	w.s.ResetRequests()
	if _, err := Propose(context.Background(), o); err == nil || !strings.Contains(err.Error(), "GitLab 16.9.3-ee ignores CI lint's content_ref and dry_run_ref") || !strings.Contains(err.Error(), "16.10") {
		t.Fatalf("GitLab 16.9: %v", err)
	}
	for _, r := range w.s.Requests() {
		if strings.HasSuffix(r.Path, "/ci/lint") {
			t.Fatal("writ linted on a GitLab that would lint the wrong ref")
		}
	}
	w.s.Version = "16.10.0"
	if _, err := Propose(context.Background(), o); err != nil {
		t.Fatalf("GitLab 16.10: %v", err)
	}
}

// hideFirstPage makes the first page of the merge request's notes
// entirely notes the token's user may not read, so GitLab returns it
// empty with a next page.
func hideFirstPage(t *testing.T, rw *reviewWorld) {
	t.Helper()
	var mrp *gitlabtest.MergeRequest
	for _, m := range rw.al.MergeRequests {
		mrp = m
	}
	// Notes are listed oldest first: move writ's note after 100 hidden ones.
	mine := mrp.Notes
	mrp.Notes = nil
	for i := 0; i < 100; i++ {
		n := rw.s.AddNote(mrp, gitlabtest.User{ID: 50, Username: "someone"}, "internal")
		n.Hidden = true
	}
	for _, n := range mine {
		n.ID += 1000 // after the hidden ones
		mrp.Notes = append(mrp.Notes, n)
	}
}

// Why 5: GitLab filters notes after paging; writ stopped at the empty page
// and posted a second review note.
func TestReviewPagesPastEmptyPages(t *testing.T) {
	t.Parallel()
	for _, linkOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("linkOnly=%v", linkOnly), func(t *testing.T) {
			t.Parallel()
			rw := newReviewWorld(t)
			ctx := context.Background()
			first, err := Review(ctx, rw.reviewOpts())
			if err != nil || first.Status != NoteCreated {
				t.Fatalf("first review: %v %+v", err, first)
			}
			hideFirstPage(t, rw)
			rw.s.LinkOnly = linkOnly
			rw.s.ResetRequests()
			again, err := Review(ctx, rw.reviewOpts())
			if err != nil {
				t.Fatal(err)
			}
			if again.Status != NoteUnchanged || len(rw.s.Writes()) != 0 {
				t.Fatalf("second review: %q, writes %v; want unchanged (writ's note is on page 2)", again.Status, paths(rw.s.Writes()))
			}
			if n := countRequests(rw.s, "/notes"); n != 2 {
				t.Fatalf("%d note pages read, want 2", n)
			}
		})
	}
}

// Why 6: a job script quoted in writ's note or description acted as
// writ's bot. GitLab skips ``` blocks, so the script here holds a ``` of
// its own: the diff then fences it with four backticks, which GitLab's
// quick action scanner does not recognise as code.
func TestReviewNoteRunsNoQuickActions(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	l := appLint()
	l.Jobs[1].Script = []string{"echo '```'", "/merge", "/approve", "/label ~deployed", "./deploy.sh"}
	w.s.SetLint(w.app, "main", l)
	ctx := context.Background()
	res, err := Propose(ctx, w.proposeOpts())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.Diff, "\n/merge\n") {
		t.Fatalf("the diff does not quote the script line by line:\n%s", res.Diff)
	}
	rw := &reviewWorld{world: w, proposal: res, branch: res.Branch}
	if _, err := Review(ctx, rw.reviewOpts()); err != nil {
		t.Fatal(err)
	}
	if qa := w.s.QuickActions(); len(qa) != 0 {
		t.Fatalf("GitLab ran quick actions from writ's text: %+v", qa)
	}
	mr := w.s.MergeRequestsOf(w.al)[0]
	if mr.State != "opened" {
		t.Fatalf("merge request is %s", mr.State)
	}
	// GitLab's rewriting (trailing whitespace) does not make the note
	// look changed: the second review writes nothing.
	w.s.ResetRequests()
	again, err := Review(ctx, rw.reviewOpts())
	if err != nil || again.Status != NoteUnchanged || len(w.s.Writes()) != 0 || len(again.Warnings) != 0 {
		t.Fatalf("second review: %v %q writes %v warnings %v", err, again.Status, paths(w.s.Writes()), again.Warnings)
	}
	// Likewise the proposal's description: running propose again changes nothing.
	w.s.ResetRequests()
	if res2, err := Propose(ctx, w.proposeOpts()); err != nil || res2.Status != StatusUnchanged || len(w.s.Writes()) != 0 {
		t.Fatalf("second propose: %v %+v writes %v", err, res2, paths(w.s.Writes()))
	}
}

func TestInertQuickActions(t *testing.T) {
	t.Parallel()
	in := strings.Join([]string{
		"/merge", "text", "  /close now", "```sh", "/approve", "echo", "```", "~~~", "/unlock", "~~~",
		"   ```", "/label x", "   ```", "````", "```", "/title t", "````", "> /lock",
	}, "\n")
	out := inertQuickActions(in)
	if _, cmds := gitlabtest.QuickActionsIn(out); len(cmds) != 0 {
		t.Fatalf("GitLab would run %+v from:\n%s", cmds, out)
	}
	if _, cmds := gitlabtest.QuickActionsIn(in); len(cmds) != 4 {
		t.Fatalf("the fake runs only %+v from the raw text", cmds)
	}
	// Only a backslash before "/" outside code, or one space of indentation
	// inside code (removed again by CommonMark), is added.
	want := strings.Join([]string{
		`\/merge`, "text", `  \/close now`, " ```sh", " /approve", "echo", " ```", " ~~~", " /unlock", " ~~~",
		"   ```", " /label x", "   ```", " ````", "```", " /title t", " ````", "> /lock",
	}, "\n")
	if out != want {
		t.Fatalf("got\n%s\nwant\n%s", out, want)
	}
}

// Why 2: GitLab lists a runner's jobs only for projects where the token's
// user is Reporter or above. reconcile said "missing in GitLab" for every
// admission in the others, and could never see GitLab's own jobs there.
func TestReconcileRefusesBlindSpots(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newRecon(t)
	secret := r.s.AddProject("acme/secret", "main")
	const tok = "glpat-RECONCILE-0123456789abcdef"
	ops := gitlabtest.User{ID: 30, Username: "writ-reconcile"}
	r.s.AddToken(tok, gitlabtest.TokenInfo{User: ops, Scopes: []string{gitlabtest.ScopeReadAPI}})
	r.s.SetRole(ops, r.app, gitlabtest.Maintainer)
	r.s.AddRunner(5, gitlabtest.RunnerInfo{Type: "project_type", Projects: []*gitlabtest.Project{r.app, secret}, Managers: []string{"s_host1"}})
	r.gitlabJob(101, "success", t0.Add(time.Hour))
	r.writ(t, "101", "admit", t0.Add(time.Hour+time.Second), 0)
	r.s.AddRunnerJob(5, &gitlabtest.RunnerJob{ID: 102, Name: "deploy", Status: "success", Ref: "main", CreatedAt: t0.Add(2 * time.Hour), Project: secret})
	appendRecord(t, r.log, "102", "acme/secret", t0.Add(2*time.Hour))

	o := r.opts()
	o.Conn.Token = tok
	_, err := Reconcile(ctx, o)
	if err == nil || !strings.Contains(err.Error(), "acme/secret") || !strings.Contains(err.Error(), "cannot see") || strings.Contains(err.Error(), "acme/web:") {
		t.Fatalf("blind reconcile: %v", err)
	}

	o.AllowBlind = true
	rep, err := Reconcile(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Discrepancies) != 0 || rep.Unverified != 1 || len(rep.Blind) != 1 || rep.Consistent != 1 {
		t.Fatalf("report with blind spots: %+v", rep)
	}

	// Reporter on acme/secret: everything is compared, nothing is missing.
	r.s.SetRole(ops, secret, gitlabtest.Reporter)
	o.AllowBlind = false
	rep, err = Reconcile(ctx, o)
	if err != nil || !rep.OK() || rep.Consistent != 2 || len(rep.Blind) != 0 {
		t.Fatalf("full view: %v %+v", err, rep)
	}

	// A group runner cannot be covered without an administrator or
	// auditor token: any project of the group may use it.
	r.s.AddRunner(5, gitlabtest.RunnerInfo{Type: "group_type", Projects: []*gitlabtest.Project{r.app}, Managers: []string{"s_host1"}})
	if _, err := Reconcile(ctx, o); err == nil || !strings.Contains(err.Error(), "group runner") {
		t.Fatalf("group runner: %v", err)
	}
	r.s.AddToken(tok, gitlabtest.TokenInfo{User: ops, Scopes: []string{gitlabtest.ScopeReadAPI}, Auditor: true})
	if rep, err := Reconcile(ctx, o); err != nil || !rep.OK() {
		t.Fatalf("auditor: %v %+v", err, rep)
	}
}

// Why 2, second half: hosts that share one runner id. GitLab's list covers
// all of them; one host's log made the others' jobs look unseen.
func TestReconcileSharedRunner(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newRecon(t)
	r.s.AddRunner(5, gitlabtest.RunnerInfo{Type: "project_type", Projects: []*gitlabtest.Project{r.app}, Managers: []string{"s_host1", "s_host2"}})
	other := filepath.Join(t.TempDir(), "host2.log")
	r.gitlabJob(101, "success", t0.Add(time.Hour))
	r.writ(t, "101", "admit", t0.Add(time.Hour+time.Second), 0)
	r.gitlabJob(102, "success", t0.Add(2*time.Hour))
	appendRecord(t, other, "102", "acme/web", t0.Add(2*time.Hour))

	if _, err := Reconcile(ctx, r.opts()); err == nil || !strings.Contains(err.Error(), "runs on 2 hosts") || !strings.Contains(err.Error(), "s_host2") {
		t.Fatalf("one log for two hosts: %v", err)
	}
	o := r.opts()
	o.AuditLogs = []string{other}
	rep, err := Reconcile(ctx, o)
	if err != nil || !rep.OK() || rep.Consistent != 2 {
		t.Fatalf("both logs: %v %+v", err, rep)
	}
	// Or one host alone, with GitLab's list limited to its system id.
	r.s.AddRunnerJob(5, &gitlabtest.RunnerJob{ID: 103, Name: "deploy", Status: "success", Ref: "main", CreatedAt: t0.Add(3 * time.Hour), Project: r.app, SystemID: "s_host2"})
	one := r.opts()
	one.SystemID = "s_host1"
	r.s.SetRunnerJobHost(5, 101, "s_host1")
	r.s.SetRunnerJobHost(5, 102, "s_host2")
	rep, err = Reconcile(ctx, one)
	if err != nil || !rep.OK() || rep.Consistent != 1 || rep.GitLabJobs != 1 {
		t.Fatalf("one host by system id: %v %+v", err, rep)
	}
	one.SystemID = "s_nohost"
	if _, err := Reconcile(ctx, one); err == nil || !strings.Contains(err.Error(), "no host with system id s_nohost") {
		t.Fatalf("unknown system id: %v", err)
	}
	r.s.AddRunnerJob(5, &gitlabtest.RunnerJob{ID: 104, Name: "deploy", Status: "success", Ref: "main", CreatedAt: t0.Add(4 * time.Hour), Project: r.app, SystemID: "s_host2"})
	appendRecord(t, other, "103", "acme/web", t0.Add(3*time.Hour))
	appendRecord(t, other, "104", "acme/web", t0.Add(4*time.Hour))

	// Both hosts admitting one job is a replay.
	appendRecord(t, other, "101", "acme/web", t0.Add(time.Hour+2*time.Second))
	rep, err = Reconcile(ctx, o)
	if err != nil || len(rep.Discrepancies) != 1 || rep.Discrepancies[0].Kind != KindTwice || rep.Discrepancies[0].JobID != 101 {
		t.Fatalf("same job on two hosts: %v %+v", err, rep)
	}
}

// appendRecord adds an admission with a successful outcome to an audit log.
func appendRecord(t *testing.T, log, id, project string, at time.Time) {
	t.Helper()
	r := &recon{log: log}
	r.writProject(t, id, project, at)
}

// The propose token belongs to protected refs: in GitLab CI, a proposal
// from an unprotected ref is refused (a check is not).
func TestCheckProposeRef(t *testing.T) {
	t.Parallel()
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	unprotected := env(map[string]string{"GITLAB_CI": "true", "CI_COMMIT_REF_PROTECTED": "false", "CI_COMMIT_REF_NAME": "feature"})
	if err := CheckProposeRef(false, unprotected); err == nil || !strings.Contains(err.Error(), `"feature", which is not a protected ref`) {
		t.Fatalf("unprotected: %v", err)
	}
	if err := CheckProposeRef(true, unprotected); err != nil {
		t.Fatalf("a check from an unprotected ref: %v", err)
	}
	if err := CheckProposeRef(false, env(map[string]string{"GITLAB_CI": "true", "CI_COMMIT_REF_PROTECTED": "true"})); err != nil {
		t.Fatalf("protected: %v", err)
	}
	if err := CheckProposeRef(false, env(nil)); err != nil {
		t.Fatalf("outside GitLab CI: %v", err)
	}
}

// A write with a read_api token answers 403 insufficient_scope (GitLab's
// API guard); the error names the scope, not a role.
func TestScopeErrorNamed(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	c, err := newClient(w.readOnly(t))
	if err != nil {
		t.Fatal(err)
	}
	mr := w.s.AddMergeRequest(w.al, "main", "main", "t", "d", w.s.User)
	_, resp, err := c.gl.Notes.CreateMergeRequestNote(w.al.ID, mr.IID, &gitlab.CreateMergeRequestNoteOptions{Body: gitlab.Ptr("x")})
	err = c.wrap("post a note", resp, err)
	if err == nil || !strings.Contains(err.Error(), "scopes do not allow this") || !strings.Contains(err.Error(), "needs api") {
		t.Fatalf("scope error: %v", err)
	}
	if n := len(w.s.NotesOf(mr)); n != 0 {
		t.Fatalf("%d notes posted with a read_api token", n)
	}
}
