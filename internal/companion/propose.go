package companion

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	gitlab "gitlab.com/gitlab-org/api/client-go"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/lazyre"
)

// ProposeOptions configure Propose.
type ProposeOptions struct {
	Conn Connection
	// Project is the application project (path such as group/app, or ID).
	Project string
	// Ref is the branch or tag the deploy jobs run for; entries admit it.
	// A full ref (refs/heads/main, refs/tags/v1.2.0) says which kind; a
	// short name is a branch.
	Ref string
	// ContentRef is where the CI configuration is read from; default Ref.
	// An application merge request sets it to its source branch to see
	// what its change would need before it is merged.
	ContentRef string
	// Environment is the writ environment name.
	Environment string
	// RunnerTags are the tags of the environment's runners; a job targets
	// the environment when all its tags are among them. Default: [Environment].
	RunnerTags []string
	// AllowlistProject is the allowlist repository's GitLab project.
	AllowlistProject string
	// AllowlistBranch is the branch environments follow; default: the
	// allowlist project's default branch.
	AllowlistBranch string
	// Signers are the signer sets of new entries; on an existing entry,
	// when set, they replace its signers.
	Signers []string
	// Mode is the source mode of new entries (default commit); on an
	// existing entry, when set, it replaces its mode.
	Mode allowlist.SourceMode
	// SourceRepository is the URL writ fetches the application from; default
	// the project's http_url_to_repo. Existing entries keep theirs.
	SourceRepository string
	// DryRun computes the change and opens nothing.
	DryRun bool
	// StaticLint reads the jobs with CI lint's static check instead of a
	// pipeline simulation for Ref. The static check needs only the Reporter
	// role and read_api, so a read-only token can run it from merge request
	// pipelines; but GitLab evaluates no rules, so every job that targets
	// the runners is checked, whether or not it would run for Ref. Only
	// with DryRun: a proposal is made from the simulated pipeline.
	StaticLint bool
}

// Proposal outcomes.
const (
	// StatusUpToDate: the allowlist already admits the jobs as they are.
	StatusUpToDate = "up-to-date"
	// StatusWouldChange: DryRun, and the allowlist needs the change.
	StatusWouldChange = "would-change"
	// StatusCreated: a merge request was opened.
	StatusCreated = "created"
	// StatusUpdated: the existing merge request's branch or description changed.
	StatusUpdated = "updated"
	// StatusUnchanged: the existing merge request already proposes exactly this.
	StatusUnchanged = "unchanged"
)

// ProposeResult is what Propose did.
type ProposeResult struct {
	Status string
	// Entries are the proposed entries, one per job targeting the environment.
	Entries []*allowlist.Entry
	// Jobs names the jobs, in the order of Entries.
	Jobs []string
	// Stale names entries for this project and environment that no current
	// job produces; Propose leaves them for a person to remove.
	Stale []string
	// Notes are remarks for the reviewer.
	Notes []string
	// BaseVersion is the allowlist version on the branch; Version the proposed one.
	BaseVersion, Version int64
	// Diff is the human diff (Markdown) from the branch to the proposal.
	Diff string
	// Content is the proposed allowlist.yaml.
	Content []byte
	// Branch is the proposal branch and Commit its head ("" on dry runs).
	Branch, Commit string
	// MergeRequestIID and MergeRequestURL identify the merge request (0/"" if none).
	MergeRequestIID int64
	MergeRequestURL string
}

var envNameRE = lazyre.New(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Propose reads the project's CI configuration through GitLab's CI lint API
// (dry run, with jobs), builds entries for the jobs that target the
// environment's runners, and opens or updates the one merge request of the
// allowlist repository for this project and environment, whose description
// is the human diff. Running it again with nothing changed makes no write.
func Propose(ctx context.Context, opts ProposeOptions) (*ProposeResult, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	c, err := newClient(opts.Conn)
	if err != nil {
		return nil, err
	}
	acc, err := c.checkToken(ctx, opts.purpose())
	if err != nil {
		return nil, err
	}
	if err := c.checkLintVersion(ctx, "writ propose"); err != nil {
		return nil, err
	}

	app, err := c.project(ctx, opts.Project)
	if err != nil {
		return nil, err
	}
	contentRef := opts.ContentRef
	if contentRef == "" {
		contentRef = opts.shortRef()
	}
	lint, err := c.appLint(ctx, acc, app, contentRef, opts)
	if err != nil {
		return nil, err
	}
	tags := opts.RunnerTags
	if len(tags) == 0 {
		tags = []string{opts.Environment}
	}
	jobs, err := deriveJobs(lint, tags)
	if err != nil {
		return nil, fmt.Errorf("%s at %s: %w", app.Path, contentRef, err)
	}
	if len(jobs) == 0 {
		return nil, fmt.Errorf("no job of %s at %s (pipeline for %s) targets runners tagged %s: check --runner-tag and the jobs' tags", app.Path, contentRef, opts.Ref, strings.Join(tags, ", "))
	}
	var problems []string
	for _, j := range jobs {
		for _, p := range j.Problems {
			problems = append(problems, fmt.Sprintf("job %q: %s", sanitize(j.Name, 100), p))
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("cannot propose exact entries for %s at %s:\n  %s", app.Path, contentRef, strings.Join(problems, "\n  "))
	}

	alp, err := c.project(ctx, opts.AllowlistProject)
	if err != nil {
		return nil, err
	}
	if opts.DryRun {
		err = c.requireRole(ctx, acc, alp, roleReporter, "writ propose --check", "to read the allowlist")
	} else {
		err = c.requireRole(ctx, acc, alp, roleDeveloper, "writ propose", "to push the branch "+proposalBranch(app.Path, opts.Environment)+" and open its merge request")
	}
	if err != nil {
		return nil, err
	}
	alID := fmt.Sprint(alp.ID)
	target := opts.AllowlistBranch
	if target == "" {
		target = alp.DefaultBranch
	}
	if target == "" {
		return nil, fmt.Errorf("the allowlist project %s has no default branch: set --allowlist-branch", alp.Path)
	}
	headCommit, found, err := c.branchHead(ctx, alID, target)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("the allowlist project %s has no branch %s: set --allowlist-branch", alp.Path, target)
	}
	head := headCommit.ID
	data, found, err := c.rawFile(ctx, alID, allowlist.FileName, head)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("%s has no %s on %s: create the allowlist first", alp.Path, allowlist.FileName, target)
	}
	load := c.loader(ctx, alID, head)
	old, err := allowlist.Parse(allowlist.FileName, data, load)
	if err != nil {
		return nil, fmt.Errorf("the allowlist on %s of %s does not parse; fix it before proposing:\n%w", target, alp.Path, err)
	}

	res := &ProposeResult{BaseVersion: old.Version}
	put, stale, notes := opts.entries(app, jobs, old)
	if opts.StaticLint {
		notes = append(notes, "static lint: GitLab evaluated no rules, so every job tagged for the runners was checked, whether or not it runs for "+opts.shortRef())
	}
	res.Entries, res.Stale, res.Notes = put, stale, notes
	for _, j := range jobs {
		res.Jobs = append(res.Jobs, j.Name)
	}
	changed := false
	for _, e := range put {
		if prev := findEntry(old, e.Name); prev == nil || entryText(prev, "") != entryText(e, "") {
			changed = true
		}
	}
	branch := proposalBranch(app.Path, opts.Environment)
	res.Branch = branch
	if !changed {
		res.Status = StatusUpToDate
		res.Version = old.Version
		res.Content = data
		if !opts.DryRun {
			if mrs, err := c.openMRs(ctx, alID, branch, target); err == nil && len(mrs) > 0 {
				res.MergeRequestIID, res.MergeRequestURL = mrs[0].IID, mrs[0].WebURL
				res.Notes = append(res.Notes, fmt.Sprintf("merge request !%d is still open although the allowlist already admits these jobs; close it", mrs[0].IID))
			}
		}
		return res, nil
	}
	if old.Version == 1<<63-1 {
		return nil, errors.New("the allowlist version cannot be increased further")
	}
	res.Version = old.Version + 1
	content, err := editAllowlist(data, put, res.Version)
	if err != nil {
		return nil, err
	}
	proposed, err := verifyEdit(content, old, put, res.Version, load)
	if err != nil {
		return nil, err
	}
	res.Content = content
	res.Diff = humanDiff(old, proposed)
	if opts.DryRun {
		res.Status = StatusWouldChange
		return res, nil
	}

	// The branch: one commit on top of the target's head holding exactly
	// the proposed file. It is left alone when it already holds that file
	// (whatever else happened on it), rewritten (force) when the proposal
	// changed — but never over commits a person added, such as approvals.
	msg := fmt.Sprintf("%s %s for %s at %s (version %d)\n\nMade by writ propose through the GitLab API; not signed.\n", commitPrefix, app.Path, opts.Environment, opts.Ref, res.Version)
	bhead, bfound, err := c.branchHead(ctx, alID, branch)
	if err != nil {
		return nil, err
	}
	commitNeeded := true
	if bfound {
		res.Commit = bhead.ID
		cur, ok, err := c.rawFile(ctx, alID, allowlist.FileName, bhead.ID)
		if err != nil {
			return nil, err
		}
		commitNeeded = !ok || !bytes.Equal(cur, content)
		if commitNeeded && !strings.HasPrefix(bhead.Message, commitPrefix) && !strings.HasPrefix(bhead.Title, commitPrefix) {
			return nil, fmt.Errorf("branch %s of %s has commits writ propose did not make (head %s %q); writ will not overwrite them: merge or close that merge request, or delete the branch, then run propose again", branch, alp.Path, shortID(bhead.ID), sanitize(bhead.Title, 80))
		}
	}
	wrote := false
	if commitNeeded {
		cm, resp, err := c.gl.Commits.CreateCommit(alID, &gitlab.CreateCommitOptions{
			Branch:        gitlab.Ptr(branch),
			CommitMessage: gitlab.Ptr(msg),
			StartSHA:      gitlab.Ptr(head),
			Force:         gitlab.Ptr(true),
			Actions: []*gitlab.CommitActionOptions{{
				Action:   gitlab.Ptr(gitlab.FileUpdate),
				FilePath: gitlab.Ptr(allowlist.FileName),
				Content:  gitlab.Ptr(string(content)),
				Encoding: gitlab.Ptr("text"),
			}},
		}, gitlab.WithContext(ctx))
		if err != nil {
			return nil, c.wrap(fmt.Sprintf("commit the proposal to branch %s of %s", branch, alp.Path), resp, err)
		}
		if cm == nil || !isHex(cm.ID) {
			return nil, fmt.Errorf("commit the proposal to branch %s of %s: GitLab returned no commit ID", branch, alp.Path)
		}
		res.Commit = cm.ID
		wrote = true
	}

	title := fmt.Sprintf("writ: allowlist %s for %s (version %d)", app.Path, opts.Environment, res.Version)
	desc := proposalDescription(app, opts, contentRef, tags, res, alp)
	mrs, err := c.openMRs(ctx, alID, branch, target)
	if err != nil {
		return nil, err
	}
	if len(mrs) == 0 {
		mr, resp, err := c.gl.MergeRequests.CreateMergeRequest(alID, &gitlab.CreateMergeRequestOptions{
			Title:              gitlab.Ptr(title),
			Description:        gitlab.Ptr(desc),
			SourceBranch:       gitlab.Ptr(branch),
			TargetBranch:       gitlab.Ptr(target),
			RemoveSourceBranch: gitlab.Ptr(true),
		}, gitlab.WithContext(ctx))
		if err != nil {
			return nil, c.wrap(fmt.Sprintf("open a merge request from %s in %s", branch, alp.Path), resp, err)
		}
		if mr == nil || mr.IID <= 0 {
			return nil, fmt.Errorf("open a merge request from %s in %s: GitLab returned no merge request", branch, alp.Path)
		}
		res.Status, res.MergeRequestIID, res.MergeRequestURL = StatusCreated, mr.IID, mr.WebURL
		return res, nil
	}
	mr := mrs[0]
	for _, m := range mrs[1:] {
		if m.IID < mr.IID {
			mr = m
		}
	}
	res.MergeRequestIID, res.MergeRequestURL = mr.IID, mr.WebURL
	res.Status = StatusUnchanged
	if wrote {
		res.Status = StatusUpdated
	}
	if mr.Title != title || !sameDigest(mr.Description, desc) {
		_, resp, err := c.gl.MergeRequests.UpdateMergeRequest(alID, mr.IID, &gitlab.UpdateMergeRequestOptions{
			Title:       gitlab.Ptr(title),
			Description: gitlab.Ptr(desc),
		}, gitlab.WithContext(ctx))
		if err != nil {
			return nil, c.wrap(fmt.Sprintf("update merge request !%d of %s", mr.IID, alp.Path), resp, err)
		}
		res.Status = StatusUpdated
	}
	return res, nil
}

// purpose is what propose needs of its token: a proposal writes (api),
// a check or dry run only reads (read_api).
func (o *ProposeOptions) purpose() purpose {
	if o.DryRun {
		return purpose{cmd: "writ propose --check", why: "to read the CI configuration and the allowlist"}
	}
	return purpose{cmd: "writ propose", write: true, why: "to push the proposal branch and open the merge request"}
}

// appLint reads the application's jobs through CI lint: a pipeline
// simulation for the deploy ref, or with StaticLint the static check. A
// simulation GitLab refuses for want of rights is reported as that — it
// says nothing about the configuration.
func (c *client) appLint(ctx context.Context, acc *tokenAccess, app *projectInfo, contentRef string, o ProposeOptions) (*lintResult, error) {
	cmd := o.purpose().cmd
	dryRunRef := o.shortRef()
	if o.StaticLint {
		dryRunRef = ""
		if err := c.requireRole(ctx, acc, app, roleReporter, cmd+" --static-lint", "to read its CI configuration"); err != nil {
			return nil, err
		}
	} else if err := c.requireRole(ctx, acc, app, roleDeveloper, cmd, "to simulate a pipeline for "+o.shortRef()+" with CI lint (or use --static-lint with --check, which needs Reporter)"); err != nil {
		return nil, err
	}
	lint, err := c.ciLint(ctx, fmt.Sprint(app.ID), contentRef, dryRunRef)
	if err != nil {
		return nil, err
	}
	if !lint.Valid && !o.StaticLint && lintDenied(lint.Errors) {
		return nil, fmt.Errorf("%s: GitLab will not simulate a pipeline for %s of %s for the token's user %s (GitLab said: %s). A CI lint dry run needs what running that pipeline needs: the Developer role and, when %s is a protected branch, the right to push or merge to it. Use the propose token from a protected pipeline, or check with --static-lint, which needs only Reporter", cmd, o.shortRef(), app.Path, acc.username, sanitize(strings.Join(lint.Errors, "; "), 300), o.shortRef())
	}
	if !lint.Valid {
		return nil, fmt.Errorf("GitLab says the CI configuration of %s at %s is invalid: %s; fix .gitlab-ci.yml first", app.Path, contentRef, sanitize(strings.Join(lint.Errors, "; "), 500))
	}
	return lint, nil
}

// fullRef is the ref entries admit: Ref when it is a full branch or tag
// ref, else the branch of that name. Parse refuses anything else with a
// message that says what to write.
func (o *ProposeOptions) fullRef() string {
	if _, _, ok := allowlist.SplitRef(o.Ref); ok {
		return o.Ref
	}
	return allowlist.BranchPrefix + o.Ref
}

// shortRef is Ref as GitLab's API names it (main, v1.2.0).
func (o *ProposeOptions) shortRef() string {
	if _, short, ok := allowlist.SplitRef(o.Ref); ok {
		return short
	}
	return o.Ref
}

func (o *ProposeOptions) check() error {
	var missing []string
	if o.Project == "" {
		missing = append(missing, "--project")
	}
	if o.Ref == "" {
		missing = append(missing, "--ref")
	}
	if o.Environment == "" {
		missing = append(missing, "--environment")
	}
	if o.AllowlistProject == "" {
		missing = append(missing, "--allowlist-project")
	}
	if len(missing) > 0 {
		return fmt.Errorf("propose: set %s", strings.Join(missing, ", "))
	}
	if o.StaticLint && !o.DryRun {
		return errors.New("propose: --static-lint works only with --check or --dry-run: a proposal is made from the pipeline GitLab simulates for --ref")
	}
	if !envNameRE.MatchString(o.Environment) {
		return fmt.Errorf("propose: environment %q: use 1 to 64 letters, digits, '.', '_' or '-'", o.Environment)
	}
	switch o.Mode {
	case "", allowlist.ModeCommit, allowlist.ModeTag, allowlist.ModeStrict:
	default:
		return fmt.Errorf("propose: --mode %q: use commit, tag or strict", o.Mode)
	}
	return nil
}

// entries builds one entry per job, merged with an existing entry of the
// same name: a person may have narrowed or extended it (more environments or
// refs, a variable pattern, a pin), and that is kept.
func (o *ProposeOptions) entries(app *projectInfo, jobs []*ciJob, old *allowlist.Allowlist) (put []*allowlist.Entry, stale []string, notes []string) {
	produced := map[string]bool{}
	for _, j := range jobs {
		e := &allowlist.Entry{
			Name: EntryName(app.Path, j.Name, o.Environment),
			Match: allowlist.Match{
				Project: app.Path, Job: j.Name,
				Environments: []string{o.Environment}, Refs: []string{o.fullRef()},
			},
			Definition: j.Def,
			Source: allowlist.Source{
				Repository: o.SourceRepository,
				Signers:    append([]string(nil), o.Signers...),
				Mode:       o.Mode,
			},
		}
		if e.Source.Repository == "" {
			e.Source.Repository = app.HTTPURL
		}
		if e.Source.Mode == "" {
			e.Source.Mode = allowlist.ModeCommit
		}
		if prev := findEntry(old, e.Name); prev != nil {
			mergeExisting(e, prev, o)
		} else if len(e.Source.Signers) == 0 {
			notes = append(notes, fmt.Sprintf("entry %s is new and --signers was not given: name the signer sets before merging", e.Name))
		}
		produced[e.Name] = true
		for _, n := range j.Notes {
			notes = append(notes, fmt.Sprintf("job %q: %s", sanitize(j.Name, 100), n))
		}
		put = append(put, e)
	}
	for _, e := range old.Jobs {
		if e.Match.Project == app.Path && contains(e.Match.Environments, o.Environment) && !produced[e.Name] {
			stale = append(stale, e.Name)
		}
	}
	return put, stale, notes
}

func mergeExisting(e, prev *allowlist.Entry, o *ProposeOptions) {
	if contains(prev.Match.Environments, o.Environment) {
		e.Match.Environments = append([]string(nil), prev.Match.Environments...)
	}
	refs := append([]string(nil), prev.Match.Refs...)
	if !contains(refs, o.fullRef()) {
		refs = append(refs, o.fullRef())
	}
	e.Match.Refs = refs
	src := prev.Source
	src.Signers = append([]string(nil), prev.Source.Signers...)
	if len(o.Signers) > 0 && !src.ApprovalsOnly() {
		// An entry without author signatures (signature: none) names no
		// signers; its approvers stay as the person wrote them.
		src.Signers = append([]string(nil), o.Signers...)
	}
	if o.Mode != "" {
		src.Mode = o.Mode
	}
	if o.SourceRepository != "" {
		src.Repository = o.SourceRepository
	}
	e.Source = src
	// A rule a person wrote stays when the job's value still fits it: a
	// pattern, and the kind (file) and dangerous marker of a pinned value,
	// which the job's .gitlab-ci.yml cannot state.
	for i, v := range e.Definition.Variables {
		for _, pv := range prev.Definition.Variables {
			if pv.Name == v.Name && pv.Allows(v.Value) && (pv.Pattern != "" || pv.HasValue) {
				e.Definition.Variables[i] = pv
			}
		}
	}
	// The variable sets the entry includes stay included; a variable one
	// of them still admits is the set's.
	e.Definition.VariableSets = append([]string(nil), prev.Definition.VariableSets...)
	e.Definition.Included = prev.Definition.Included
	e.Definition.Variables = slices.DeleteFunc(e.Definition.Variables, func(v allowlist.Variable) bool {
		return slices.ContainsFunc(prev.Definition.Included, func(iv allowlist.Variable) bool {
			return iv.Name == v.Name && iv.File == v.File && iv.Raw == v.Raw && iv.Allows(v.Value)
		})
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func findEntry(a *allowlist.Allowlist, name string) *allowlist.Entry {
	for _, e := range a.Jobs {
		if e.Name == name {
			return e
		}
	}
	return nil
}

// verifyEdit parses the edited file and checks it holds exactly the
// intended change: the new version, the put entries as built, and every
// other entry and setting as before. The text edit is never trusted blindly.
func verifyEdit(content []byte, old *allowlist.Allowlist, put []*allowlist.Entry, version int64, load allowlist.FileLoader) (*allowlist.Allowlist, error) {
	if ce := allowlist.CheckText(content); len(ce) > 0 {
		return nil, fmt.Errorf("the proposed allowlist would contain characters reviewers cannot see:\n%w", ce)
	}
	nw, err := allowlist.Parse(allowlist.FileName, content, load)
	if err != nil {
		return nil, fmt.Errorf("the proposed allowlist does not parse; fix the job or the allowlist by hand:\n%w", err)
	}
	bad := func(what string) error {
		return fmt.Errorf("internal error: the edited allowlist differs from the intended one (%s); nothing was proposed", what)
	}
	if nw.Version != version || nw.Repository != old.Repository || !nw.Expires.Equal(old.Expires) || nw.Schema != old.Schema || len(nw.Signers) != len(old.Signers) {
		return nil, bad("top-level settings")
	}
	want := map[string]string{}
	for _, e := range old.Jobs {
		want[e.Name] = entryText(e, "")
	}
	var order []string
	for _, e := range old.Jobs {
		order = append(order, e.Name)
	}
	for _, e := range put {
		if _, ok := want[e.Name]; !ok {
			order = append(order, e.Name)
		}
		want[e.Name] = entryText(e, "")
	}
	if len(nw.Jobs) != len(order) {
		return nil, bad("number of entries")
	}
	for i, e := range nw.Jobs {
		if e.Name != order[i] || entryText(e, "") != want[e.Name] {
			return nil, bad("entry " + e.Name)
		}
	}
	return nw, nil
}

// loader reads allowlist repository files (OpenPGP key files) at a commit.
func (c *client) loader(ctx context.Context, pid, commit string) allowlist.FileLoader {
	return func(path string) ([]byte, error) {
		b, found, err := c.rawFile(ctx, pid, path, commit)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, fmt.Errorf("%s does not exist at %s", path, shortID(commit))
		}
		if len(b) > allowlist.MaxKeyFileBytes {
			return nil, fmt.Errorf("%s is larger than %d bytes", path, allowlist.MaxKeyFileBytes)
		}
		return b, nil
	}
}

func shortID(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

var slugBad = lazyre.New(`[^a-z0-9._-]+`)

// slug makes a lower-case name of letters, digits, '.', '_' and '-'.
func slug(s string) string {
	s = slugBad.ReplaceAllString(strings.ToLower(s), "-")
	return strings.Trim(s, "-._")
}

// EntryName is the name Propose gives the entry for a job in an environment:
// <project-slug>-<job-slug>-<environment>, at most 128 characters (a hash
// suffix keeps long names unique).
func EntryName(project, job, environment string) string {
	n := slug(project) + "-" + slug(job) + "-" + environment
	n = strings.Trim(n, "-._")
	if len(n) > 128 {
		n = n[:115] + "-" + shortHash(project+"\x00"+job+"\x00"+environment)
	}
	if n == "" {
		n = "entry-" + shortHash(project+"\x00"+job+"\x00"+environment)
	}
	return n
}

// proposalBranch is the one branch per project and environment.
func proposalBranch(project, environment string) string {
	return "writ/propose/" + slug(project) + "/" + environment
}

// commitPrefix starts the message of every commit writ propose makes.
const commitPrefix = "writ propose:"

// proposalMarker starts every proposal description, so people and tools
// know writ wrote it.
const proposalMarker = "<!-- writ-propose -->"

// maxDescription keeps the description under GitLab's 1 MB limit.
const maxDescription = 900_000

func proposalDescription(app *projectInfo, o ProposeOptions, contentRef string, tags []string, res *ProposeResult, al *projectInfo) string {
	var b strings.Builder
	b.WriteString(proposalMarker + "\n")
	fmt.Fprintf(&b, "## writ: allowlist change for %s in %s\n\n", code(app.Path), code(o.Environment))
	fmt.Fprintf(&b, "Jobs of %s that target the runners tagged %s, in a pipeline for %s", code(app.Path), codeList(tags), code(o.Ref))
	if contentRef != o.Ref {
		fmt.Fprintf(&b, " with the CI configuration of %s", code(contentRef))
	}
	fmt.Fprintf(&b, ", as GitLab's CI lint expands them.\n\nVersion %d → %d.\n\n", res.BaseVersion, res.Version)
	b.WriteString(res.Diff)
	if !strings.HasSuffix(res.Diff, "\n") {
		b.WriteString("\n")
	}
	if len(res.Stale) > 0 {
		b.WriteString("\n### Entries no current job produces\n\n")
		b.WriteString("These entries are for this project and environment but match no job of this pipeline; remove them by hand if they are obsolete:\n\n")
		for _, s := range res.Stale {
			fmt.Fprintf(&b, "- %s\n", code(s))
		}
	}
	if len(res.Notes) > 0 {
		b.WriteString("\n### Notes\n\n")
		for _, n := range res.Notes {
			fmt.Fprintf(&b, "- %s\n", escapeMarkdown(n))
		}
	}
	fmt.Fprintf(&b, "\n### Before this version is trusted\n\n"+
		"The commit on this branch was made by `writ propose` through the GitLab API and is **not signed**. "+
		"GitLab's own merge request approvals do not count: environments accept version %d only when its commit is signed "+
		"and enough root signers have approved exactly this content (signed approvals in %s). "+
		"Review the entries above, then have maintainers sign and approve (`writ allowlist approve`) before or after merging. "+
		"`writ review` on this merge request shows the approvals present against each environment's threshold.\n", res.Version, code(allowlist.ApprovalDir(res.Version)+"/"))
	fmt.Fprintf(&b, "\n<sub>Written by writ propose for %s; running it again updates this merge request in place.</sub>\n", code(al.Path))
	s := b.String()
	if len(s) > maxDescription {
		s = s[:maxDescription] + "\n\n… (cut: the diff is too long for a description; read the commit)\n"
	}
	// A description runs quick actions like a note does
	// (MergeRequests::CreateService, UpdateService): make it inert, and
	// record its digest so a later run can compare what GitLab rewrote.
	return withDigest(proposalMarker, inertQuickActions(strings.TrimPrefix(s, proposalMarker+"\n")))
}

// code renders s as inline code that Markdown cannot escape from.
func code(s string) string {
	s = sanitize(s, 300)
	n := 1
	for strings.Contains(s, strings.Repeat("`", n)) {
		n++
	}
	fence := strings.Repeat("`", n)
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		return fence + " " + s + " " + fence
	}
	return fence + s + fence
}

func codeList(items []string) string {
	out := make([]string, len(items))
	for i, s := range items {
		out[i] = code(s)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

var mdSpecial = strings.NewReplacer(
	"\\", "\\\\", "`", "\\`", "*", "\\*", "_", "\\_", "[", "\\[", "]", "\\]",
	"<", "&lt;", ">", "&gt;", "@", "&#64;", "#", "\\#", "|", "\\|", "!", "\\!",
)

// escapeMarkdown makes text from GitLab inert in Markdown: no links, no
// HTML, no mentions.
func escapeMarkdown(s string) string { return mdSpecial.Replace(sanitize(s, 2000)) }

// WriteText prints the result for people: what happened, the merge request,
// and on a dry run the diff.
func (r *ProposeResult) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "propose: %s (allowlist version %d", r.Status, r.BaseVersion)
	if r.Version != r.BaseVersion {
		fmt.Fprintf(w, " → %d", r.Version)
	}
	fmt.Fprintf(w, "; jobs: %s)\n", strings.Join(r.Jobs, ", "))
	if r.MergeRequestIID > 0 {
		fmt.Fprintf(w, "merge request !%d %s\n", r.MergeRequestIID, r.MergeRequestURL)
	}
	for _, s := range r.Stale {
		fmt.Fprintf(w, "stale entry (no current job produces it): %s\n", s)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", sanitize(n, 500))
	}
	if r.Status == StatusWouldChange {
		fmt.Fprintf(w, "\n%s", r.Diff)
	}
	return nil
}

// CheckProposeRef refuses a proposal (not a check) from a GitLab CI job of
// an unprotected ref. The propose token can push to the allowlist project
// and merge to the application's deploy ref; it belongs in a protected
// CI/CD variable, which GitLab gives only to pipelines of protected
// branches and tags. A proposal running elsewhere means the token is
// exposed to whoever can push that ref. Outside GitLab CI ($GITLAB_CI not
// "true") nothing is checked.
func CheckProposeRef(dryRun bool, getenv func(string) string) error {
	if dryRun || getenv("GITLAB_CI") != "true" || getenv("CI_COMMIT_REF_PROTECTED") == "true" {
		return nil
	}
	return fmt.Errorf("writ propose: this pipeline runs for %q, which is not a protected ref; run propose only from protected refs (the default branch), with its token in a protected CI/CD variable — merge request pipelines use --check with a read-only token", sanitize(getenv("CI_COMMIT_REF_NAME"), 100))
}
