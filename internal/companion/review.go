package companion

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	gitlab "gitlab.com/gitlab-org/api/client-go"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/config"
	"gitlab.com/writ-ci/writ/internal/gitsig"
)

// Environment is what review needs of one environment's trust root: the
// name, the identity approvals must bind, the threshold and the keys.
type Environment struct {
	Name      string
	Identity  string
	Threshold int
	keys      *gitsig.Keys
	approvals *allowlist.ApprovalVerifier
}

// LoadEnvironment reads an environment's writ configuration (a copy of its
// /etc/writ/config.toml, with the key files it names) and loads its trust
// root exactly as the environment does.
func LoadEnvironment(configPath string) (*Environment, error) {
	cfg, err := config.Load(configPath)
	if err != nil {
		return nil, err
	}
	tr, err := allowlist.LoadTrust(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", configPath, err)
	}
	return &Environment{Name: cfg.Environment, Identity: cfg.Allowlist.Identity, Threshold: cfg.Trust.Threshold, keys: tr.Keys, approvals: tr.Approvals}, nil
}

// Snapshot is one side of a review: the allowlist file of a commit, a way to
// read the key files it names, and the approval files of its version.
type Snapshot struct {
	// Label says where the snapshot comes from ("main at 1a2b3c…").
	Label string
	Data  []byte
	Load  allowlist.FileLoader
	// Approvals reads the files directly in an approvals directory, keyed by
	// their path in the repository. Nil means there are none.
	Approvals func(dir string) (map[string][]byte, error)
	// CommitSigner, if set, verifies the snapshot's commit signature with an
	// environment's root keys and returns the signer's fingerprint.
	CommitSigner func(keys *gitsig.Keys, now time.Time) (string, error)
}

// Review checks, as in the review note.
const (
	CheckLint      = "lint"
	CheckVersion   = "version"
	CheckApprovals = "approvals"
	CheckExpiry    = "expiry"
)

// EnvironmentReview is the review of a proposal for one environment.
type EnvironmentReview struct {
	Name      string   `json:"name"`
	Threshold int      `json:"threshold"`
	Approvers []string `json:"approvers"`
	// Ignored says why approval files did not count.
	Ignored []string `json:"ignored,omitempty"`
	// CommitSigner is the head commit's root signer, "" if unsigned,
	// unverifiable here, or not a root signer of this environment.
	CommitSigner string `json:"commit_signer,omitempty"`
	Met          bool   `json:"met"`
	// IdentityOK is false when the allowlist's repository is not the
	// identity this environment trusts: it would refuse every version.
	IdentityOK bool `json:"identity_ok"`
	// Changed is true when entries that apply to this environment change.
	Changed bool `json:"changed"`
}

// ReviewReport is the outcome of reviewing a proposed allowlist against the
// version it would replace.
type ReviewReport struct {
	Head, Base   string
	LintOK       bool     `json:"lint_ok"`
	LintErrors   []string `json:"lint_errors,omitempty"`
	LintWarnings []string `json:"lint_warnings,omitempty"`
	BaseVersion  int64    `json:"base_version"`
	Version      int64    `json:"version"`
	VersionOK    bool     `json:"version_ok"`
	Digest       string   `json:"sha256"`
	Repository   string   `json:"repository"`
	Expires      time.Time
	// Horizon is how long before expiry the check fails.
	Horizon  time.Duration       `json:"horizon"`
	ExpiryOK bool                `json:"expiry_ok"`
	Envs     []EnvironmentReview `json:"environments"`
	// Diff is the human diff (Markdown), grouped by environment.
	Diff string `json:"diff"`
	// Changed is false when no entry changes in any environment.
	Changed bool `json:"changed"`
	// Policies are the two-person rules the merge request changes.
	Policies []SourcePolicy `json:"source_policies,omitempty"`

	// pos keeps what the merge request widgets need: lint problems with
	// their positions, and the lines of version: and expires:.
	pos reportPositions
}

// DefaultExpiryHorizon is how close to expiry a version may be before the
// expiry check fails.
const DefaultExpiryHorizon = 14 * 24 * time.Hour

// Evaluate reviews head against base (base.Data nil: no earlier version) for
// envs at now.
func Evaluate(head, base Snapshot, envs []*Environment, horizon time.Duration, now time.Time) *ReviewReport {
	if horizon <= 0 {
		horizon = DefaultExpiryHorizon
	}
	rep := &ReviewReport{Head: head.Label, Base: base.Label, Horizon: horizon}
	sum := sha256.Sum256(head.Data)
	rep.Digest = hex.EncodeToString(sum[:])
	load, loaded := allowlist.RecordLoads(head.Load)
	nw, warns, err := allowlist.Lint(allowlist.FileName, head.Data, load)
	rep.pos = newReportPositions(head.Data, warns, err)
	for _, w := range warns {
		rep.LintWarnings = append(rep.LintWarnings, w.Error())
	}
	if err != nil {
		var el allowlist.ErrorList
		if errors.As(err, &el) {
			for _, e := range el {
				rep.LintErrors = append(rep.LintErrors, e.Error())
			}
		} else {
			rep.LintErrors = append(rep.LintErrors, err.Error())
		}
		return rep
	}
	rep.LintOK = true
	rep.Version, rep.Repository, rep.Expires = nw.Version, nw.Repository, nw.Expires
	rep.ExpiryOK = nw.Expires.Sub(now) > horizon

	var old *allowlist.Allowlist
	if base.Data != nil {
		old, err = allowlist.Parse(allowlist.FileName, base.Data, base.Load)
		if err != nil {
			// The base does not parse (it could not have been accepted);
			// compare against nothing.
			old = nil
		}
	}
	if old != nil {
		rep.BaseVersion = old.Version
		rep.VersionOK = nw.Version > old.Version
	} else {
		rep.VersionOK = true
	}

	report := allowlist.Diff(old, nw)
	rep.Diff = report.Markdown()
	changedEnv := map[string]bool{}
	for _, ed := range report.Environments {
		changedEnv[ed.Environment] = true
	}
	rep.Changed = len(report.Environments) > 0
	rep.Policies = changedSourcePolicies(old, nw)

	var files map[string][]byte
	var filesErr error
	if head.Approvals != nil {
		files, filesErr = head.Approvals(allowlist.ApprovalDir(nw.Version))
	}
	stmt, stmtErr := allowlist.VersionStatement(nw, head.Data, loaded)
	for _, env := range envs {
		er := EnvironmentReview{Name: env.Name, Threshold: env.Threshold, IdentityOK: nw.Repository == env.Identity, Approvers: []string{}}
		set := map[string]bool{}
		switch {
		case filesErr != nil:
			er.Ignored = append(er.Ignored, "approvals: "+filesErr.Error())
		case stmtErr != nil:
			er.Ignored = append(er.Ignored, stmtErr.Error())
		default:
			valid, errs := env.approvals.Verify(stmt, allowlist.ApprovalDir(nw.Version), files, now)
			for _, a := range valid {
				set[a.Signer] = true
			}
			for _, e := range errs {
				er.Ignored = append(er.Ignored, e.Error())
			}
		}
		if head.CommitSigner != nil {
			if fp, err := head.CommitSigner(env.keys, now); err == nil && fp != "" {
				er.CommitSigner = fp
				set[fp] = true
			}
		}
		for k := range set {
			er.Approvers = append(er.Approvers, k)
		}
		sort.Strings(er.Approvers)
		er.Met = er.IdentityOK && len(er.Approvers) >= env.Threshold
		er.Changed = changedEnv[env.Name]
		rep.Envs = append(rep.Envs, er)
	}
	return rep
}

// Failures lists the checks in require that did not pass.
func (r *ReviewReport) Failures(require []string) []string {
	var out []string
	for _, c := range require {
		switch c {
		case CheckLint:
			if !r.LintOK {
				out = append(out, fmt.Sprintf("lint: %d error(s)", len(r.LintErrors)))
			}
		case CheckVersion:
			if r.LintOK && !r.VersionOK {
				out = append(out, fmt.Sprintf("version: %d is not greater than %d", r.Version, r.BaseVersion))
			}
		case CheckExpiry:
			if r.LintOK && !r.ExpiryOK {
				// Past or near: say which, so a date a month gone never reads as "within 30 days".
				out = append(out, fmt.Sprintf("expiry: the version %s; it must be more than %s away", allowlist.DescribeExpiry(r.Expires, time.Now()), humanDuration(r.Horizon)))
			}
		case CheckApprovals:
			for _, e := range r.Envs {
				if !e.Met {
					out = append(out, fmt.Sprintf("approvals: %s has %d of %d", e.Name, len(e.Approvers), e.Threshold))
				}
			}
		}
	}
	if !r.LintOK && len(out) == 0 && len(require) > 0 {
		// Nothing else can be judged on a file that does not parse.
		out = append(out, "lint: the allowlist does not parse")
	}
	return out
}

// ParseChecks reads a comma-separated list of checks ("lint,version").
func ParseChecks(s string) ([]string, error) {
	var out []string
	for _, c := range strings.Split(s, ",") {
		c = strings.TrimSpace(c)
		switch c {
		case "":
		case CheckLint, CheckVersion, CheckApprovals, CheckExpiry:
			out = append(out, c)
		default:
			return nil, fmt.Errorf("unknown check %q: use lint, version, approvals, expiry", c)
		}
	}
	return out, nil
}

func humanDuration(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return d.String()
}

// reviewMarker starts the review note; writ updates only its own note.
const reviewMarker = "<!-- writ-review -->"

func mark(ok bool) string {
	if ok {
		return "✅"
	}
	return "❌"
}

// Markdown renders the report as the review note. It holds no time of
// writing, so the same state always renders the same note.
func (r *ReviewReport) Markdown() string {
	var b strings.Builder
	b.WriteString(reviewMarker + "\n")
	b.WriteString("## writ review\n\n")
	fmt.Fprintf(&b, "%s vs %s\n\n", escapeMarkdown(r.Head), escapeMarkdown(r.Base))
	if !r.LintOK {
		fmt.Fprintf(&b, "%s **lint**: %d error(s); nothing else can be checked until they are fixed.\n\n```\n", mark(false), len(r.LintErrors))
		for _, e := range r.LintErrors {
			b.WriteString(fenceSafe(e) + "\n")
		}
		b.WriteString("```\n")
		return b.String()
	}
	fmt.Fprintf(&b, "| check | result |\n|---|---|\n")
	fmt.Fprintf(&b, "| lint | %s valid", mark(true))
	if len(r.LintWarnings) > 0 {
		fmt.Fprintf(&b, ", %d warning(s)", len(r.LintWarnings))
	}
	b.WriteString(" |\n")
	if r.BaseVersion > 0 {
		fmt.Fprintf(&b, "| version | %s %d → %d |\n", mark(r.VersionOK), r.BaseVersion, r.Version)
	} else {
		fmt.Fprintf(&b, "| version | %s %d (no earlier version) |\n", mark(r.VersionOK), r.Version)
	}
	fmt.Fprintf(&b, "| expiry | %s %s (must be more than %s away) |\n", mark(r.ExpiryOK), allowlist.DescribeExpiry(r.Expires, time.Now()), humanDuration(r.Horizon))
	fmt.Fprintf(&b, "| sha256 | `%s` |\n", r.Digest)
	for _, e := range r.Envs {
		detail := fmt.Sprintf("%d of %d", len(e.Approvers), e.Threshold)
		if !e.IdentityOK {
			detail += fmt.Sprintf("; repository %s is not this environment's identity: it will refuse this allowlist", code(r.Repository))
		}
		fmt.Fprintf(&b, "| approvals %s | %s %s |\n", code(e.Name), mark(e.Met), detail)
	}
	if len(r.LintWarnings) > 0 {
		b.WriteString("\n<details><summary>lint warnings</summary>\n\n```\n")
		for _, w := range r.LintWarnings {
			b.WriteString(fenceSafe(w) + "\n")
		}
		b.WriteString("```\n</details>\n")
	}
	b.WriteString("\nApprovals are verified signatures by each environment's root signers over the statement for this exact content (" +
		code(allowlist.ApprovalDir(r.Version)+"/") + "); GitLab's approvals do not count. " +
		"Environments also count the signer of the branch head commit, which must be signed by a root signer.\n")
	if len(r.Envs) == 0 {
		b.WriteString("\nNo environment configuration was given, so approvals were not checked.\n")
	}
	for _, e := range r.Envs {
		if len(e.Approvers) == 0 && len(e.Ignored) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n#### Approvals for %s\n\n", code(e.Name))
		if len(e.Approvers) > 0 {
			b.WriteString("Approved by: ")
			for i, a := range e.Approvers {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString(code(a))
			}
			b.WriteString("\n\n")
		}
		if len(e.Ignored) > 0 {
			b.WriteString("<details><summary>approval files that do not count</summary>\n\n```\n")
			for _, w := range e.Ignored {
				b.WriteString(fenceSafe(w) + "\n")
			}
			b.WriteString("```\n</details>\n")
		}
	}
	b.WriteString(policyMarkdown(r.Policies))
	b.WriteString("\n")
	b.WriteString(r.Diff)
	if !strings.HasSuffix(r.Diff, "\n") {
		b.WriteString("\n")
	}
	s := b.String()
	if len(s) > maxDescription {
		s = s[:maxDescription] + "\n\n… (cut: too long for a note)\n"
	}
	return inertQuickActions(s)
}

// noteBody is the review note as posted: the marker, the digest of the
// rest (so a later run can tell whether anything changed, whatever GitLab
// did to the stored text), and the report.
func (r *ReviewReport) noteBody() string {
	return withDigest(reviewMarker, strings.TrimPrefix(r.Markdown(), reviewMarker+"\n"))
}

// fenceSafe keeps text inside a ``` block from closing it.
func fenceSafe(s string) string {
	return strings.ReplaceAll(sanitize(s, 2000), "```", "'''")
}

// ReviewOptions configure Review.
type ReviewOptions struct {
	Conn Connection
	// Project is the allowlist repository's GitLab project.
	Project string
	// MergeRequest is the merge request's IID (the number after !).
	MergeRequest int64
	// Environments are the environments whose approvals to check.
	Environments []*Environment
	// ExpiryHorizon: default DefaultExpiryHorizon.
	ExpiryHorizon time.Duration
	// DryRun computes the note without posting it.
	DryRun bool
	// Now replaces time.Now, for tests.
	Now func() time.Time
}

// Note outcomes of Review.
const (
	NoteCreated   = "created"
	NoteUpdated   = "updated"
	NoteUnchanged = "unchanged"
	NoteDryRun    = "dry-run"
)

// ReviewResult is what Review did.
type ReviewResult struct {
	Report *ReviewReport
	Note   string
	NoteID int64
	Status string
	// Warnings say what GitLab did unexpectedly, such as storing the note
	// differently from what writ posted.
	Warnings []string
}

// maxNotes bounds the notes read from a merge request.
const maxNotes = 10000

// Review evaluates an allowlist merge request — the allowlist at its head
// against its target branch — and posts the result as one note, updated in
// place on later runs (only writ's own note, found by its marker and
// author, is ever edited). Approvals come from the approval files at the
// head, verified with each environment's keys: GitLab's approvals play no
// part.
func Review(ctx context.Context, opts ReviewOptions) (*ReviewResult, error) {
	if opts.Project == "" || opts.MergeRequest <= 0 {
		return nil, errors.New("review: set --project (the allowlist project) and --mr (the merge request number)")
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	c, err := newClient(opts.Conn)
	if err != nil {
		return nil, err
	}
	p := purpose{cmd: "writ review --dry-run", why: "to read the merge request and the allowlist"}
	if !opts.DryRun {
		p = purpose{cmd: "writ review", write: true, why: "to post the review note"}
	}
	acc, err := c.checkToken(ctx, p)
	if err != nil {
		return nil, err
	}
	proj, err := c.project(ctx, opts.Project)
	if err != nil {
		return nil, err
	}
	if err := c.requireRole(ctx, acc, proj, roleReporter, p.cmd, p.why); err != nil {
		return nil, err
	}
	pid := fmt.Sprint(proj.ID)
	mr, err := c.mergeRequest(ctx, pid, opts.MergeRequest)
	if err != nil {
		return nil, err
	}
	headSHA := mr.SHA
	if !isHex(headSHA) {
		return nil, fmt.Errorf("merge request !%d: GitLab gave no valid head commit", mr.IID)
	}
	baseCommit, found, err := c.branchHead(ctx, pid, mr.TargetBranch)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("merge request !%d targets %s, which does not exist", mr.IID, mr.TargetBranch)
	}
	baseSHA := baseCommit.ID
	head, err := c.snapshot(ctx, pid, headSHA, fmt.Sprintf("!%d (%s at %s)", mr.IID, mr.SourceBranch, shortID(headSHA)))
	if err != nil {
		return nil, err
	}
	if head.Data == nil {
		return nil, fmt.Errorf("merge request !%d has no %s at its head", mr.IID, allowlist.FileName)
	}
	base, err := c.snapshot(ctx, pid, baseSHA, fmt.Sprintf("%s at %s", mr.TargetBranch, shortID(baseSHA)))
	if err != nil {
		return nil, err
	}
	rep := Evaluate(*head, *base, opts.Environments, opts.ExpiryHorizon, now())
	body := rep.noteBody()
	res := &ReviewResult{Report: rep, Note: body}
	if opts.DryRun {
		res.Status = NoteDryRun
		return res, nil
	}
	notes, err := c.notes(ctx, pid, mr.IID, maxNotes)
	if err != nil {
		return nil, err
	}
	var mine *gitlab.Note
	var imitations []string
	for _, n := range notes {
		switch {
		case n.System || !strings.Contains(n.Body, reviewMarker):
		case n.Author.ID == acc.userID && strings.HasPrefix(n.Body, reviewMarker) && mine == nil:
			mine = n
		case n.Author.ID != acc.userID:
			// Anyone can paste writ's marker; reviewers should know which
			// note is not writ's.
			imitations = append(imitations, fmt.Sprintf("note %d by %s carries writ's review marker but was not written by writ's token (%s); it is not writ's review", n.ID, sanitize(n.Author.Username, 80), acc.username))
		}
	}
	res.Warnings = imitations
	switch {
	case mine == nil:
		n, resp, err := c.gl.Notes.CreateMergeRequestNote(pid, mr.IID, &gitlab.CreateMergeRequestNoteOptions{Body: gitlab.Ptr(body)}, gitlab.WithContext(ctx))
		if err != nil {
			return nil, c.wrap(fmt.Sprintf("post the review note on !%d", mr.IID), resp, err)
		}
		if n == nil || n.ID <= 0 {
			return nil, fmt.Errorf("post the review note on !%d: GitLab returned no note", mr.IID)
		}
		res.NoteID, res.Status = n.ID, NoteCreated
		res.Warnings = append(res.Warnings, storedAsPosted(n.Body, body)...)
	case sameDigest(mine.Body, body):
		res.NoteID, res.Status = mine.ID, NoteUnchanged
	default:
		n, resp, err := c.gl.Notes.UpdateMergeRequestNote(pid, mr.IID, mine.ID, &gitlab.UpdateMergeRequestNoteOptions{Body: gitlab.Ptr(body)}, gitlab.WithContext(ctx))
		if err != nil {
			return nil, c.wrap(fmt.Sprintf("update the review note on !%d", mr.IID), resp, err)
		}
		res.NoteID, res.Status = mine.ID, NoteUpdated
		if n != nil {
			res.Warnings = append(res.Warnings, storedAsPosted(n.Body, body)...)
		}
	}
	return res, nil
}

// storedAsPosted compares the text GitLab stored with what writ posted,
// allowing only GitLab's whitespace rewriting: anything else means GitLab
// ran something from it (a quick action) or changed it.
func storedAsPosted(stored, posted string) []string {
	if gitlabStored(stored) == gitlabStored(posted) {
		return nil
	}
	return []string{"GitLab stored the note differently from what writ posted (a quick action ran, or GitLab rewrote it); read the note and the merge request's history"}
}

// snapshot reads the allowlist side of a commit through the API. Data is
// nil when the commit has no allowlist.
func (c *client) snapshot(ctx context.Context, pid, commit, label string) (*Snapshot, error) {
	data, found, err := c.rawFile(ctx, pid, allowlist.FileName, commit)
	if err != nil {
		return nil, err
	}
	s := &Snapshot{Label: label, Load: c.loader(ctx, pid, commit)}
	if found {
		s.Data = data
	}
	s.Approvals = func(dir string) (map[string][]byte, error) {
		names, err := c.listDir(ctx, pid, dir, commit, allowlist.MaxApprovalFiles)
		if err != nil {
			return nil, err
		}
		files := map[string][]byte{}
		for _, n := range names {
			p := path.Join(dir, n)
			b, ok, err := c.rawFile(ctx, pid, p, commit)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
			files[p] = b
		}
		return files, nil
	}
	return s, nil
}
