package companion

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/companion/gitlabtest"
)

func TestProposeCreatesMergeRequest(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx := context.Background()
	res, err := Propose(ctx, w.proposeOpts())
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusCreated || res.MergeRequestIID != 1 {
		t.Fatalf("status %q, MR !%d; want created !1", res.Status, res.MergeRequestIID)
	}
	if res.Version != 8 || res.BaseVersion != 7 {
		t.Fatalf("version %d → %d, want 7 → 8", res.BaseVersion, res.Version)
	}
	if len(res.Jobs) != 1 || res.Jobs[0] != "deploy" {
		t.Fatalf("jobs %v, want only deploy (tagged production)", res.Jobs)
	}

	// The lint request: GET, project config at the ref, dry run, with jobs.
	var lint *gitlabtest.Request
	for _, r := range w.s.Requests() {
		if strings.HasSuffix(r.Path, "/ci/lint") {
			lint = &r
		}
	}
	if lint == nil {
		t.Fatal("no CI lint request")
	}
	if lint.Method != http.MethodGet || lint.EscapedPath != "/projects/"+itoa(w.app.ID)+"/ci/lint" {
		t.Fatalf("lint request %s %s", lint.Method, lint.EscapedPath)
	}
	for k, v := range map[string]string{"content_ref": "main", "dry_run": "true", "dry_run_ref": "main", "include_jobs": "true"} {
		if got := lint.Query.Get(k); got != v {
			t.Errorf("lint query %s=%q, want %q", k, got, v)
		}
	}
	if lint.Header.Get("PRIVATE-TOKEN") != testToken {
		t.Error("lint request without the token")
	}

	// Exactly two writes: the commit and the merge request.
	writes := w.s.Writes()
	if len(writes) != 2 {
		t.Fatalf("%d writes, want 2 (commit, merge request): %+v", len(writes), paths(writes))
	}
	commit := jsonBody(t, writes[0].Body)
	if writes[0].EscapedPath != "/projects/"+itoa(w.al.ID)+"/repository/commits" {
		t.Fatalf("commit path %s", writes[0].EscapedPath)
	}
	mainHead := w.s.Head(w.al, "main").ID
	if commit["branch"] != "writ/propose/acme-web/production" || commit["start_sha"] != mainHead || commit["force"] != true {
		t.Fatalf("commit body %v", commit)
	}
	actions := commit["actions"].([]any)
	act := actions[0].(map[string]any)
	if len(actions) != 1 || act["action"] != "update" || act["file_path"] != "allowlist.yaml" || act["content"] != string(res.Content) {
		t.Fatalf("commit actions %v", actions)
	}
	mr := jsonBody(t, writes[1].Body)
	if mr["source_branch"] != "writ/propose/acme-web/production" || mr["target_branch"] != "main" || mr["remove_source_branch"] != true {
		t.Fatalf("merge request body %v", mr)
	}
	desc := mr["description"].(string)
	for _, want := range []string{proposalMarker, res.Diff, "not signed", "version 7 → 8", "approvals/v8/"} {
		if !strings.Contains(desc, want) {
			t.Errorf("description lacks %q:\n%s", want, desc)
		}
	}
	if !strings.Contains(res.Diff, "acme-web-deploy-production") {
		t.Errorf("diff does not name the new entry:\n%s", res.Diff)
	}

	// The branch holds the proposal; it parses and holds the exact entry.
	got, ok := w.s.File(w.al, "writ/propose/acme-web/production", "allowlist.yaml")
	if !ok || string(got) != string(res.Content) {
		t.Fatal("the proposal branch does not hold the proposed allowlist")
	}
	al, err := allowlist.Parse("allowlist.yaml", got, nil)
	if err != nil {
		t.Fatalf("proposed allowlist does not parse: %v\n%s", err, got)
	}
	e := findEntry(al, "acme-web-deploy-production")
	if e == nil {
		t.Fatalf("no entry acme-web-deploy-production in\n%s", got)
	}
	wantScript := []string{"echo start", "./deploy.sh \"$DEPLOY_TARGET\"", "if [ -n \"$X\" ]; then\n  echo x\nfi\n"}
	if strings.Join(e.Definition.Script, "\x00") != strings.Join(wantScript, "\x00") {
		t.Errorf("script %q, want %q", e.Definition.Script, wantScript)
	}
	if e.Definition.Image != imageDigest || e.Definition.Timeout != 15*time.Minute || !e.Definition.Dependencies || e.Definition.Artifacts || e.Definition.Cache {
		t.Errorf("definition %+v", e.Definition)
	}
	vars := map[string]string{}
	for _, v := range e.Definition.Variables {
		vars[v.Name] = v.Value
	}
	if len(vars) != 3 || vars["DEPLOY_TARGET"] != "web-prod" || vars["GLOBAL_V"] != "one" || vars["DESCRIBED"] != "2" {
		t.Errorf("variables %v", vars)
	}
	if e.Match.Project != "acme/web" || e.Match.Job != "deploy" || strings.Join(e.Match.Environments, ",") != "production" || strings.Join(e.Match.Refs, ",") != "refs/heads/main" {
		t.Errorf("match %+v", e.Match)
	}
	if e.Source.Repository != w.app.HTTPURLToRepo || strings.Join(e.Source.Signers, ",") != "web-team" || e.Source.Mode != allowlist.ModeCommit {
		t.Errorf("source %+v", e.Source)
	}

	// Everything else is byte for byte as it was: the new text is the old
	// text with the version digit changed and the entry inserted.
	old := strings.Replace(baseAllowlist, "version: 7 #", "version: 8 #", 1)
	if !strings.HasPrefix(string(got), old[:strings.Index(old, "\n# trailing comment")]) || !strings.HasSuffix(string(got), "\n# trailing comment\n") {
		t.Errorf("the edit changed more than the version and the new entry:\n%s", got)
	}
}

func itoa(i int64) string { return strconv.FormatInt(i, 10) }

func paths(rs []gitlabtest.Request) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Method+" "+r.Path)
	}
	return out
}

func TestProposeIsIdempotent(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx := context.Background()
	first, err := Propose(ctx, w.proposeOpts())
	if err != nil {
		t.Fatal(err)
	}
	w.s.ResetRequests()
	second, err := Propose(ctx, w.proposeOpts())
	if err != nil {
		t.Fatal(err)
	}
	if second.Status != StatusUnchanged || second.MergeRequestIID != first.MergeRequestIID || second.Commit != first.Commit {
		t.Fatalf("second run: status %q MR !%d commit %s; want unchanged !%d %s", second.Status, second.MergeRequestIID, second.Commit, first.MergeRequestIID, first.Commit)
	}
	if ws := w.s.Writes(); len(ws) != 0 {
		t.Fatalf("second run wrote: %v", paths(ws))
	}
	if n := len(w.s.MergeRequestsOf(w.al)); n != 1 {
		t.Fatalf("%d merge requests, want 1", n)
	}

	// The CI changes: the same merge request is updated in place.
	l := appLint()
	l.Jobs[1].Script = []string{"./deploy.sh --fast"}
	w.s.SetLint(w.app, "main", l)
	w.s.ResetRequests()
	third, err := Propose(ctx, w.proposeOpts())
	if err != nil {
		t.Fatal(err)
	}
	if third.Status != StatusUpdated || third.MergeRequestIID != first.MergeRequestIID || third.Commit == first.Commit {
		t.Fatalf("third run: %+v", third)
	}
	ws := w.s.Writes()
	if len(ws) != 2 || ws[0].Method != http.MethodPost || ws[1].Method != http.MethodPut || !strings.HasSuffix(ws[1].Path, "/merge_requests/1") {
		t.Fatalf("third run writes %v, want commit + MR update", paths(ws))
	}
	mrs := w.s.MergeRequestsOf(w.al)
	if len(mrs) != 1 || !strings.Contains(mrs[0].Description, "--fast") {
		t.Fatalf("merge request not updated in place: %d MRs", len(mrs))
	}
	branch := w.s.Head(w.al, "writ/propose/acme-web/production")
	if len(branch.Parents) != 1 || branch.Parents[0] != w.s.Head(w.al, "main").ID {
		t.Fatal("the proposal branch is not one commit on top of main")
	}

	// main moves on with an unrelated change: the proposal is the same,
	// nothing is written.
	w.s.Commit(w.al, "main", "unrelated", map[string][]byte{"README.md": []byte("hi\n")})
	w.s.ResetRequests()
	fourth, err := Propose(ctx, w.proposeOpts())
	if err != nil {
		t.Fatal(err)
	}
	if fourth.Status != StatusUnchanged || len(w.s.Writes()) != 0 {
		t.Fatalf("fourth run: status %q writes %v; want unchanged", fourth.Status, paths(w.s.Writes()))
	}

	// A maintainer approves on the branch: propose keeps the approval.
	w.s.Commit(w.al, "writ/propose/acme-web/production", "approve v8", map[string][]byte{"approvals/v8/alice.sshsig": []byte("sig")})
	w.s.ResetRequests()
	if res, err := Propose(ctx, w.proposeOpts()); err != nil || res.Status != StatusUnchanged || len(w.s.Writes()) != 0 {
		t.Fatalf("after approval: %v %+v writes %v", err, res, paths(w.s.Writes()))
	}
	// The CI changes again: writ refuses to overwrite the approval commit.
	l = appLint()
	l.Jobs[1].Script = []string{"./deploy.sh --slow"}
	w.s.SetLint(w.app, "main", l)
	w.s.ResetRequests()
	if _, err := Propose(ctx, w.proposeOpts()); err == nil || !strings.Contains(err.Error(), "did not make") {
		t.Fatalf("overwrote a person's commit: %v", err)
	}
	if len(w.s.Writes()) != 0 {
		t.Fatalf("wrote: %v", paths(w.s.Writes()))
	}

	// main changes the allowlist (version 8 there): the proposal becomes
	// version 9 and, once the branch is writ's own again, is rebuilt on main.
	w.s.Commit(w.al, "writ/propose/acme-web/production", "writ propose: reset", nil)
	bumped := strings.Replace(baseAllowlist, "version: 7 #", "version: 8 #", 1)
	w.s.Commit(w.al, "main", "v8 by hand", map[string][]byte{"allowlist.yaml": []byte(bumped)})
	w.s.ResetRequests()
	fifth, err := Propose(ctx, w.proposeOpts())
	if err != nil {
		t.Fatal(err)
	}
	if fifth.Status != StatusUpdated || fifth.Version != 9 || fifth.MergeRequestIID != first.MergeRequestIID {
		t.Fatalf("fifth run: %+v", fifth)
	}
	branch = w.s.Head(w.al, "writ/propose/acme-web/production")
	if branch.Parents[0] != w.s.Head(w.al, "main").ID {
		t.Fatal("the proposal branch was not rebuilt on the new main")
	}
	if _, ok := w.s.File(w.al, "writ/propose/acme-web/production", "approvals/v8/alice.sshsig"); ok {
		t.Fatal("the rebuilt branch kept a stale approval")
	}
}

func TestProposeUpToDateAndDryRun(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx := context.Background()
	opts := w.proposeOpts()
	opts.DryRun = true
	res, err := Propose(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusWouldChange || len(w.s.Writes()) != 0 {
		t.Fatalf("dry run: status %q, writes %v", res.Status, paths(w.s.Writes()))
	}
	// Merge the proposal into main: now the allowlist admits the jobs.
	w.s.Commit(w.al, "main", "merge", map[string][]byte{"allowlist.yaml": res.Content})
	res, err = Propose(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusUpToDate || res.Version != 8 {
		t.Fatalf("after merge: status %q version %d", res.Status, res.Version)
	}
	opts.DryRun = false
	w.s.ResetRequests()
	if res, err = Propose(ctx, opts); err != nil || res.Status != StatusUpToDate || len(w.s.Writes()) != 0 {
		t.Fatalf("up to date: %v %+v, writes %v", err, res, paths(w.s.Writes()))
	}
}

func TestProposeKeepsCuratedFields(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx := context.Background()
	res, err := Propose(ctx, w.proposeOpts())
	if err != nil {
		t.Fatal(err)
	}
	// A maintainer narrows the variable to a pattern, pins the source and
	// adds a ref; then merges.
	edited := strings.Replace(string(res.Content), "DEPLOY_TARGET: {value: web-prod}", "DEPLOY_TARGET: {pattern: '^web-[a-z]+$'}", 1)
	edited = strings.Replace(edited, "refs: [refs/heads/main]\n    definition:\n      image", "refs: [refs/heads/main, refs/heads/stable]\n    definition:\n      image", 1)
	edited = strings.Replace(edited, "      mode: commit\n", "      mode: strict\n      descends_from: 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n", 1)
	if edited == string(res.Content) {
		t.Fatal("test edit did not apply")
	}
	w.s.Commit(w.al, "main", "curate", map[string][]byte{"allowlist.yaml": []byte(edited)})
	opts := w.proposeOpts()
	opts.Signers = nil
	opts.DryRun = true
	res, err = Propose(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusUpToDate {
		t.Fatalf("curated entry is reported as needing a change (%s):\n%s", res.Status, res.Diff)
	}
	// The job's value leaves the pattern: the pinned value comes back, the
	// other curated fields stay.
	l := appLint()
	w.s.SetLint(w.app, "main", l)
	merged := strings.Replace(appMergedYAML, "DEPLOY_TARGET: web-prod", "DEPLOY_TARGET: Web-Prod", 1)
	l.MergedYAML = merged
	res, err = Propose(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	e := res.Entries[0]
	if e.Source.Mode != allowlist.ModeStrict || e.Source.DescendsFrom == "" || strings.Join(e.Match.Refs, ",") != "refs/heads/main,refs/heads/stable" {
		t.Fatalf("curated fields lost: %+v %+v", e.Source, e.Match)
	}
	if v := e.Definition.Variables[0]; v.Name != "DEPLOY_TARGET" || !v.HasValue || v.Value != "Web-Prod" {
		t.Fatalf("variable %+v", v)
	}
}

func TestProposeErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cases := []struct {
		name  string
		setup func(w *world, o *ProposeOptions)
		want  string
	}{
		{"missing flags", func(w *world, o *ProposeOptions) { o.Project, o.Ref = "", "" }, "--project, --ref"},
		{"bad environment", func(w *world, o *ProposeOptions) { o.Environment = "prod env" }, "environment"},
		{"bad mode", func(w *world, o *ProposeOptions) { o.Mode = "yolo" }, "--mode"},
		{"unknown project", func(w *world, o *ProposeOptions) { o.Project = "acme/nope" }, "404 Not Found"},
		{"invalid CI", func(w *world, o *ProposeOptions) {
			w.s.SetLint(w.app, "main", &gitlabtest.Lint{Valid: false, Errors: []string{"jobs:deploy script can't be blank"}})
		}, "script can't be blank"},
		{"no job for the tags", func(w *world, o *ProposeOptions) { o.RunnerTags = []string{"staging"} }, "targets runners tagged staging"},
		{"unpinned image", func(w *world, o *ProposeOptions) {
			l := appLint()
			l.MergedYAML = strings.Replace(appMergedYAML, imageDigest, "registry.example.com/deploy:latest", 1)
			w.s.SetLint(w.app, "main", l)
		}, "not pinned by digest"},
		{"bad timeout", func(w *world, o *ProposeOptions) {
			l := appLint()
			l.MergedYAML = strings.Replace(appMergedYAML, "15 minutes", "2 days", 1)
			w.s.SetLint(w.app, "main", l)
		}, "24h"},
		{"broken allowlist", func(w *world, o *ProposeOptions) {
			w.s.Commit(w.al, "main", "break", map[string][]byte{"allowlist.yaml": []byte("schema: writ/v2\nversion: x\n")})
		}, "does not parse"},
		{"no allowlist", func(w *world, o *ProposeOptions) {
			w.s.Commit(w.al, "main", "rm", map[string][]byte{"allowlist.yaml": nil})
		}, "has no allowlist.yaml"},
		{"no branch", func(w *world, o *ProposeOptions) { o.AllowlistBranch = "nope" }, "no branch nope"},
		{"unauthorized", func(w *world, o *ProposeOptions) { o.Conn.Token = "wrong-token" }, "401 Unauthorized"},
		{"forbidden commit", func(w *world, o *ProposeOptions) {
			w.s.AddFault(gitlabtest.Fault{Method: http.MethodPost, PathPrefix: "/projects/", Status: 403, Body: `{"message":"403 Forbidden"}`})
		}, "403 Forbidden"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			o := w.proposeOpts()
			tc.setup(w, &o)
			res, err := Propose(ctx, o)
			if err == nil {
				t.Fatalf("no error; result %+v", res)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
			assertNoToken(t, err.Error())
			if tc.name != "forbidden commit" && len(w.s.Writes()) != 0 {
				t.Fatalf("wrote despite the error: %v", paths(w.s.Writes()))
			}
		})
	}
}

func TestEntryName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ p, j, e, want string }{
		{"acme/web", "deploy", "production", "acme-web-deploy-production"},
		{"Acme/Web.Site", "deploy: [eu, 1/2]", "prod", "acme-web.site-deploy-eu-1-2-prod"},
	} {
		if got := EntryName(tc.p, tc.j, tc.e); got != tc.want {
			t.Errorf("EntryName(%q, %q, %q) = %q, want %q", tc.p, tc.j, tc.e, got, tc.want)
		}
	}
	long := EntryName(strings.Repeat("g/", 80)+"app", "deploy", "production")
	if len(long) > 128 || long == EntryName(strings.Repeat("g/", 81)+"app", "deploy", "production") {
		t.Errorf("long names are not bounded and unique: %q", long)
	}
}
