package executor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/config"
	"gitlab.com/writ-ci/writ/internal/fsutil"
	"gitlab.com/writ-ci/writ/internal/gitrepo"
	"gitlab.com/writ-ci/writ/internal/gitsig"
	"gitlab.com/writ-ci/writ/internal/state"
)

// strictMaxCommits bounds how many commits strict mode verifies for one job.
const strictMaxCommits = 10000

// lockWait bounds how long a stage waits for another writ process's lock.
const lockWait = 5 * time.Minute

// highWater is the last commit admitted for an entry (see internal/state).
type highWater struct {
	Entry      string               `json:"entry"`
	Repository string               `json:"repository"`
	Mode       allowlist.SourceMode `json:"mode"`
	Commit     string               `json:"commit"`
	Job        string               `json:"job"`
	Time       time.Time            `json:"time"`
	// floor is this host's own mark when the fleet's differs: the job's
	// commit must descend from it too.
	floor *highWater
}

func entryKey(name string) string { return state.EntryKey(name) }

func urlKey(u string) string {
	sum := sha256.Sum256([]byte(u))
	return hex.EncodeToString(sum[:16])
}

func (o *Options) entriesDir() string { return filepath.Join(o.Config.Paths.State, "entries") }

// lockEntry serialises admissions of one entry across processes, so the
// rollback check and the high-water update see one order.
func (o *Options) lockEntry(ctx context.Context, entry string) (func() error, error) {
	if err := os.MkdirAll(o.entriesDir(), 0o700); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, lockWait)
	defer cancel()
	return fsutil.Lock(ctx, filepath.Join(o.entriesDir(), entryKey(entry)+".lock"))
}

// readHighWater returns the entry's mark, and the state's record of it for
// writeHighWater's compare-and-swap.
func (o *Options) readHighWater(ctx context.Context, entry string) (*highWater, *state.Entry, error) {
	e, err := o.State.Entry(ctx, entry)
	if err != nil {
		return nil, nil, err
	}
	last := fromMark(e.Last)
	if last != nil {
		last.floor = fromMark(e.Floor)
	}
	return last, e, nil
}

// pendingMark is an entry's marks being read (see startReadHighWater).
type pendingMark struct {
	done chan struct{}
	last *highWater
	ent  *state.Entry
	err  error
}

// startReadHighWater reads the entry's marks in the background: with a
// fleet store the read is a round trip that overlaps fetching the source.
func (o *Options) startReadHighWater(ctx context.Context, entry string) *pendingMark {
	pm := &pendingMark{done: make(chan struct{})}
	go func() {
		defer close(pm.done)
		pm.last, pm.ent, pm.err = o.readHighWater(ctx, entry)
	}()
	return pm
}

// wait returns what readHighWater returned.
func (pm *pendingMark) wait() (*highWater, *state.Entry, error) {
	<-pm.done
	return pm.last, pm.ent, pm.err
}

func fromMark(m *state.EntryMark) *highWater {
	if m == nil {
		return nil
	}
	return &highWater{Entry: m.Entry, Repository: m.Repository, Mode: allowlist.SourceMode(m.Mode), Commit: m.Commit, Job: m.Job, Time: m.Time}
}

func (o *Options) writeHighWater(ctx context.Context, e *state.Entry, hw *highWater) error {
	return o.State.PutEntry(ctx, e, state.EntryMark{Entry: hw.Entry, Repository: hw.Repository, Mode: string(hw.Mode),
		Commit: hw.Commit, Job: hw.Job, Time: hw.Time})
}

// mirrorLockPath is the lock guarding one mirror: exclusive to fetch and
// verify, shared to check out.
func (o *Options) mirrorLockPath(repo string) (string, error) {
	dir := filepath.Join(o.Config.Paths.Cache, "locks")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	return filepath.Join(dir, urlKey(repo)+".lock"), nil
}

// sourceAuth returns the credentials for fetching repo. writ's configuration
// has credentials for the allowlist repository only; they are offered to a
// source repository on the same scheme and host and to no other, so a token
// never travels to a host the operator did not configure it for.
func sourceAuth(c *config.Config, repo string) gitrepo.Auth {
	none := gitrepo.Auth{Kind: "none"}
	if c.Allowlist.Auth == "none" || c.Allowlist.Auth == "" {
		return none
	}
	as, ah := urlHost(c.Allowlist.URL)
	rs, rh := urlHost(repo)
	if ah == "" || as != rs || ah != rh {
		return none
	}
	return gitrepo.Auth{
		Kind:           c.Allowlist.Auth,
		TokenFile:      c.Allowlist.TokenFile,
		SSHKeyFile:     c.Allowlist.SSHKeyFile,
		KnownHostsFile: c.Allowlist.KnownHostsFile,
		Username:       c.Allowlist.Username,
	}
}

// urlHost returns the scheme and host of a git URL, scp-like "user@host:path"
// counting as ssh. Local paths have no host.
func urlHost(s string) (scheme, host string) {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" && u.Host != "" {
		return u.Scheme, strings.ToLower(u.Hostname())
	}
	if i := strings.Index(s, ":"); i > 0 && !strings.Contains(s[:i], "/") {
		h := s[:i]
		if j := strings.LastIndex(h, "@"); j >= 0 {
			h = h[j+1:]
		}
		return "ssh", strings.ToLower(h)
	}
	return "", ""
}

// signerKeys builds the trusted keys of the entry's signer sets.
func signerKeys(a *allowlist.Allowlist, e *allowlist.Entry) (*gitsig.Keys, error) {
	var armored [][]byte
	var lines []string
	for _, name := range e.Source.Signers {
		set := a.Signers[name]
		if set == nil {
			return nil, fmt.Errorf("signer set %q is not defined in the allowlist", name)
		}
		for _, k := range set.OpenPGP {
			armored = append(armored, k.Armored)
		}
		lines = append(lines, set.SSH...)
	}
	var ssh []gitsig.AllowedSigner
	if len(lines) > 0 {
		var err error
		ssh, err = gitsig.ParseAllowedSigners([]byte(strings.Join(lines, "\n") + "\n"))
		if err != nil {
			return nil, err
		}
	}
	if len(armored) == 0 && len(ssh) == 0 {
		return nil, errors.New("the entry's signer sets hold no key")
	}
	return gitsig.NewKeys(armored, ssh)
}

// sourceResult is what source verification established.
type sourceResult struct {
	signer string
}

// verifySource fetches the entry's repository and verifies the job's commit
// by the entry's mode. The caller holds the entry lock.
//
// A refusal is returned as a *Failure (several, for strict mode, joined
// with errors.Join; see refusals); any other error means writ cannot
// decide. Checks that refuse without stopping the others (pin,
// descends_from, rollback) are added to d.
//
// The steps run in the order that bounds what a hostile server can cost:
// nothing is fetched before the request is well formed, and no history is
// walked before the job's own commit or tag is verified, so a walk only
// ever runs over history that an entry signer vouched for at its tip.
//
// marks yields the entry's last admitted commit (readHighWater); it is
// called once the job's commit is fetched, so the read overlaps the fetch.
func (o *Options) verifySource(ctx context.Context, d *Decision, p *Payload, e *allowlist.Entry, a *allowlist.Allowlist,
	marks func() (*highWater, *state.Entry, error)) (*sourceResult, error) {
	req, err := newSourceRequest(d, p, e, a)
	if err != nil {
		return nil, err
	}
	unlock, err := o.lockMirror(ctx, e.Source.Repository)
	if err != nil {
		return nil, err
	}
	defer unlock()
	src, err := o.fetchSource(ctx, req)
	if err != nil {
		return nil, err
	}
	loc, err := src.locate(req)
	if err != nil {
		return nil, err
	}
	last, _, err := marks()
	if err != nil {
		return nil, err
	}
	again := sameRepo(last, &e.Source) && last.Commit == p.SHA
	var signer gitsig.Signer
	if !e.Source.ApprovalsOnly() {
		if signer, err = verifySignature(req, loc, o.Now(), again); err != nil {
			return nil, err
		}
	}
	tally, err := src.checkApprovals(req, a, d.Environment, signer, o.Now())
	if err != nil {
		return nil, err
	}
	if err := src.checkAncestry(d, req, loc, last); err != nil {
		return nil, err
	}
	switch {
	case e.Source.ApprovedHistory():
		if err := o.checkApprovedHistory(ctx, req, src, a, d.Environment, last); err != nil {
			return nil, err
		}
	case e.Source.Mode == allowlist.ModeStrict:
		if err := src.checkStrictRange(req, last, o.Now()); err != nil {
			return nil, err
		}
	}
	if e.Source.ApprovalsOnly() {
		return &sourceResult{signer: approvedBy(tally)}, nil
	}
	return &sourceResult{signer: signerString(signer)}, nil
}

// refusals returns the failures err carries when err is a refusal: a
// *Failure, or several joined with errors.Join. ok is false when err is
// nil or any part of it is not a refusal (writ cannot decide).
func refusals(err error) (fs []Failure, ok bool) {
	if err == nil {
		return nil, false
	}
	if j, isJoin := err.(interface{ Unwrap() []error }); isJoin {
		for _, e := range j.Unwrap() {
			more, ok := refusals(e)
			if !ok {
				return nil, false
			}
			fs = append(fs, more...)
		}
		return fs, len(fs) > 0
	}
	var f *Failure
	if errors.As(err, &f) {
		return []Failure{*f}, true
	}
	return nil, false
}

// sourceRequest is the job's source as GitLab describes it, checked before
// anything is fetched, with the keys that must have signed it.
type sourceRequest struct {
	p       *Payload
	entry   *allowlist.Entry
	refspec string // what to fetch
	local   string // where the mirror keeps the fetched ref
	kind    string // allowlist.RefBranch or allowlist.RefTag, from the entry's typed ref
	keys    *gitsig.Keys
}

// newSourceRequest checks the job's commit, ref and ref type, and builds
// the entry's keys. A pin mismatch is added to d; other problems refuse.
func newSourceRequest(d *Decision, p *Payload, e *allowlist.Entry, a *allowlist.Allowlist) (*sourceRequest, error) {
	src := &e.Source
	if !shaPattern.MatchString(p.SHA) {
		return nil, &Failure{Check: CheckSource, Message: fmt.Sprintf("the job's commit %q is not a full 40-hex SHA-1", allowlist.Visible(clip(p.SHA)))}
	}
	// Only the typed ref the entry lists (d.Ref) is fetched and verified;
	// GitLab's ref_type chose nothing but which entry ref to look up.
	req := &sourceRequest{p: p, entry: e}
	var err error
	req.refspec, req.local, req.kind, err = typedRefspec(d.Ref)
	if err != nil {
		return nil, &Failure{Check: CheckRef, Message: err.Error()}
	}
	if src.Mode == allowlist.ModeTag && req.kind != allowlist.RefTag {
		return nil, &Failure{Check: CheckRef, Message: fmt.Sprintf("the entry's source mode is tag but the job runs for branch %q", p.Ref),
			Hint: "run the job from a signed tag pipeline"}
	}
	if src.Pin != "" && p.SHA != src.Pin {
		d.fail(Failure{Check: CheckPin, Message: "the entry pins one commit and the job's commit is another",
			Expected: src.Pin, Received: p.SHA, Hint: "run the pinned commit, or get the entry's pin changed"})
	}
	switch src.Mode {
	case allowlist.ModeCommit, allowlist.ModeTag, allowlist.ModeStrict:
	default:
		return nil, &Failure{Check: CheckSignature, Message: fmt.Sprintf("unknown source mode %q", src.Mode)}
	}
	if src.ApprovalsOnly() {
		// The parser refuses these; a check here too keeps an entry built
		// any other way from admitting a commit nobody vouched for.
		if src.Approvals == nil || src.Approvals.Threshold < 1 || src.Mode == allowlist.ModeTag {
			return nil, &Failure{Check: CheckSignature, Message: "the entry requires no author signature (signature: none) and no approvals of the commit (source.approvals with a threshold of at least 1), or uses tag mode",
				Hint: "fix the entry's source in the allowlist"}
		}
		return req, nil
	}
	if req.keys, err = signerKeys(a, e); err != nil {
		return nil, &Failure{Check: CheckSignature, Message: fmt.Sprintf("the entry's signers cannot verify anything: %v", err), Hint: "fix the entry's signer sets in the allowlist"}
	}
	return req, nil
}

// lockMirror takes the exclusive lock of repo's mirror: the fetch and
// every read of the decision see one state of it.
func (o *Options) lockMirror(ctx context.Context, repo string) (func() error, error) {
	lockPath, err := o.mirrorLockPath(repo)
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithTimeout(ctx, lockWait)
	defer cancel()
	return fsutil.Lock(lctx, lockPath)
}

// sourceMirror is the entry's mirror after this job's fetch.
type sourceMirror struct {
	m    *gitrepo.Mirror
	repo string
	// offline: nothing was fetched, so what the mirror lacks is
	// undecidable, not refused.
	offline bool
}

// mirrorLimits are the configured fetch limits. config.Fetch and
// gitrepo.Limits have the same fields, in the same order.
func mirrorLimits(c *config.Config) gitrepo.Option {
	return gitrepo.WithLimits(gitrepo.Limits(c.Fetch))
}

// fetchSource opens the entry's mirror and fetches the job's ref into it.
// A fetch that fails for any other reason than a missing ref or a limit
// means writ cannot decide: deciding on what an earlier fetch left in the
// mirror could admit a commit the ref no longer leads to.
func (o *Options) fetchSource(ctx context.Context, req *sourceRequest) (*sourceMirror, error) {
	repo := req.entry.Source.Repository
	m, err := gitrepo.OpenMirror(o.Config.Paths.Cache, repo, sourceAuth(o.Config, repo), mirrorLimits(o.Config))
	if err != nil {
		return nil, fmt.Errorf("open the mirror of %s: %w", repo, err)
	}
	src := &sourceMirror{m: m, repo: repo, offline: o.Offline}
	if o.Offline {
		return src, nil
	}
	specs := []string{req.refspec}
	if req.entry.Source.Approvals != nil {
		// The approvals of the job's commit come with it, in the same
		// fetch and under the same limits; the fetch prunes those the
		// server no longer publishes.
		specs = append(specs, approvalsRefspec(req.p.SHA))
	}
	fctx, cancel := context.WithTimeout(ctx, o.Config.Allowlist.FetchTimeout.Duration)
	defer cancel()
	start := time.Now()
	err = m.Fetch(fctx, specs...)
	if err == nil {
		o.phase("fetch", start, "fetched %s %s from %s", req.kind, allowlist.Visible(clip(req.p.Ref)), repo)
	} else {
		o.phase("fetch", start, "fetch of %s %s from %s failed", req.kind, allowlist.Visible(clip(req.p.Ref)), repo)
	}
	var limit *gitrepo.LimitError
	switch {
	case err == nil:
		return src, nil
	case errors.Is(err, gitrepo.ErrNoRef):
		return nil, &Failure{Check: CheckSource, Message: fmt.Sprintf("the entry's repository %s has no %s %q", repo, req.kind, req.p.Ref),
			Hint: "push the ref to the repository the allowlist entry names"}
	case errors.As(err, &limit):
		return nil, &Failure{Check: CheckSource, Message: fmt.Sprintf("writ refused what the entry's repository sent for %s %q: %v", req.kind, req.p.Ref, err),
			Hint: "keep the repository within the limit, or ask the runner's owners to raise fetch." + limit.Limit + " in writ's configuration"}
	}
	return nil, fmt.Errorf("fetch %s %q: %w", req.kind, req.p.Ref, err)
}

// damaged turns an error from reading the mirror into "cannot decide" when
// it comes from a damaged mirror, and marks the mirror so that the next
// fetch rebuilds it: a broken cache is never the author's fault. It
// returns nil for other errors.
func (s *sourceMirror) damaged(err error) error {
	if !gitrepo.IsDamage(err) {
		return nil
	}
	s.m.MarkDamaged(err.Error())
	return fmt.Errorf("writ's mirror of %s is damaged (%v); the next attempt rebuilds it", s.repo, err)
}

// missing is the outcome when what (the job's ref or commit) is not in the
// mirror: a refusal, unless nothing was fetched.
func (s *sourceMirror) missing(req *sourceRequest, what string, err error) error {
	if s.offline {
		return fmt.Errorf("offline: %s is not in writ's mirror of %s (%v); fetch to decide", what, s.repo, err)
	}
	return &Failure{Check: CheckSource, Message: fmt.Sprintf("%s is not in the entry's repository %s", what, s.repo)}
}

// notOnRef refuses a commit the job's ref does not lead to.
func (s *sourceMirror) notOnRef(req *sourceRequest) error {
	p := req.p
	msg := fmt.Sprintf("commit %s is not on %s %q of the entry's repository %s", p.SHA, req.kind, p.Ref, s.repo)
	if p.RepoURL != "" {
		msg += fmt.Sprintf(" (writ never fetches from GitLab's repository %s)", p.RepoURL)
	}
	return &Failure{Check: CheckSource, Message: msg,
		Hint: "push the commit to that ref of the repository the allowlist entry names"}
}

// located is the job's commit and what its ref points at in the mirror.
type located struct {
	commit    *object.Commit
	refCommit plumbing.Hash // the commit the ref leads to
	tag       *object.Tag   // the annotated tag the ref names, if any
}

// locate finds the job's ref and commit in the mirror, without walking,
// and checks that the commit and its tree are complete and intact.
func (s *sourceMirror) locate(req *sourceRequest) (*located, error) {
	p := req.p
	refHash, err := s.m.Ref(req.local)
	if err != nil {
		if derr := s.damaged(err); derr != nil {
			return nil, derr
		}
		return nil, s.missing(req, fmt.Sprintf("%s %q", req.kind, p.Ref), err)
	}
	refCommit, tag, err := peel(s.m.Repo(), refHash)
	if err != nil {
		if derr := s.damaged(err); derr != nil {
			return nil, derr
		}
		return nil, &Failure{Check: CheckSource, Message: fmt.Sprintf("%s %q in %s does not lead to a commit: %v", req.kind, p.Ref, s.repo, err)}
	}
	commit, err := s.m.Commit(p.SHA)
	if err != nil {
		if s.offline {
			return nil, s.missing(req, "commit "+p.SHA, err)
		}
		if !errors.Is(err, plumbing.ErrObjectNotFound) {
			if derr := s.damaged(err); derr != nil {
				return nil, derr
			}
		}
		// The fetch brought the ref's whole history: a commit not in the
		// mirror is not on the ref.
		return nil, s.notOnRef(req)
	}
	if err := s.m.CheckCommit(p.SHA); err != nil {
		if derr := s.damaged(err); derr != nil {
			return nil, derr
		}
		return nil, err
	}
	return &located{commit: commit, refCommit: refCommit, tag: tag}, nil
}

// verifySignature verifies the job's own commit (commit and strict mode)
// or its tag (tag mode): the signature that vouches for everything walked
// afterwards. Strict mode verifies the rest of the range in
// checkStrictRange. again says the job's commit is the one last admitted
// for the entry (see admittedOpts).
func verifySignature(req *sourceRequest, loc *located, now time.Time, again bool) (gitsig.Signer, error) {
	p, e := req.p, req.entry
	switch e.Source.Mode {
	case allowlist.ModeTag:
		t := loc.tag
		if t == nil {
			return gitsig.Signer{}, &Failure{Check: CheckSignature, Message: fmt.Sprintf("tag %q is a lightweight tag; the entry requires a signed annotated tag", p.Ref), Hint: "create the tag with git tag -s"}
		}
		if t.Name != p.Ref {
			return gitsig.Signer{}, &Failure{Check: CheckSignature, Message: fmt.Sprintf("the tag object under refs/tags/%s is named %q", p.Ref, allowlist.Visible(clip(t.Name))), Hint: "tag the commit under its own name with git tag -s"}
		}
		if t.TargetType != plumbing.CommitObject || t.Target.String() != p.SHA {
			return gitsig.Signer{}, &Failure{Check: CheckSignature, Message: fmt.Sprintf("tag %q points at %s %s, not at the job's commit %s", p.Ref, t.TargetType, t.Target, p.SHA)}
		}
		s, err := req.keys.VerifyTag(t, now, admittedOpts(again)...)
		if err != nil {
			return gitsig.Signer{}, &Failure{Check: CheckSignature, Message: fmt.Sprintf("tag %q is not signed by the entry's signers (%s): %v", p.Ref, strings.Join(e.Source.Signers, ", "), err),
				Hint: "sign the tag with a key of the entry's signer sets"}
		}
		return s, nil
	default:
		s, err := req.keys.VerifyCommit(loc.commit, now, admittedOpts(again)...)
		if err != nil {
			f := sigFailure(loc.commit, err, e)
			if e.Source.Mode == allowlist.ModeStrict {
				f.Message = "strict mode: " + f.Message + " (the job's commit)"
			}
			return gitsig.Signer{}, &f
		}
		return s, nil
	}
}

// checkAncestry walks history, now that the job's commit is verified: the
// commit must be on the job's ref (a refusal otherwise), and descend from
// the entry's descends_from and, unless the entry allows rollback, from
// the last commit admitted (failures added to d).
func (s *sourceMirror) checkAncestry(d *Decision, req *sourceRequest, loc *located, last *highWater) error {
	p, src := req.p, &req.entry.Source
	if ok, err := s.m.IsAncestor(p.SHA, loc.refCommit.String()); err != nil || !ok {
		if derr := s.damaged(err); derr != nil {
			return derr
		}
		f := s.notOnRef(req).(*Failure)
		if errors.Is(err, gitrepo.ErrWalkBound) {
			f.Message += fmt.Sprintf(" (%v)", err)
		}
		return f
	}
	if src.DescendsFrom != "" {
		if ok, err := s.m.IsAncestor(src.DescendsFrom, p.SHA); err != nil || !ok {
			if derr := s.damaged(err); derr != nil {
				return derr
			}
			d.fail(Failure{Check: CheckDescends, Message: fmt.Sprintf("commit %s does not descend from %s, as the entry requires%s", p.SHA, src.DescendsFrom, boundNote(err))})
		}
	}
	if sameRepo(last, src) && !src.AllowRollback {
		if ok, err := s.m.IsAncestor(last.Commit, p.SHA); err != nil || !ok {
			if derr := s.damaged(err); derr != nil {
				return derr
			}
			d.fail(Failure{Check: CheckRollback,
				Message:  fmt.Sprintf("commit %s is not %s or a descendant of it, the last commit admitted for entry %q (job %s): this looks like a rollback%s", p.SHA, last.Commit, req.entry.Name, last.Job, boundNote(err)),
				Expected: "a descendant of " + last.Commit, Received: p.SHA,
				Hint: "run a newer commit, or get allow_rollback set on the entry"})
		}
	}
	return nil
}

// boundNote says when a walk stopped at its bound rather than at an answer.
func boundNote(err error) string {
	if errors.Is(err, gitrepo.ErrWalkBound) {
		return fmt.Sprintf(" (%v)", err)
	}
	return ""
}

func sameRepo(last *highWater, src *allowlist.Source) bool {
	return last != nil && last.Repository == src.Repository
}

// checkStrictRange verifies, in strict mode, every commit since the last
// strict admission (or descends_from, or the first commit).
func (s *sourceMirror) checkStrictRange(req *sourceRequest, last *highWater, now time.Time) error {
	p, e := req.p, req.entry
	base := e.Source.DescendsFrom
	if sameRepo(last, &e.Source) && last.Mode == allowlist.ModeStrict {
		ok, err := s.m.IsAncestor(last.Commit, p.SHA)
		if derr := s.damaged(err); derr != nil {
			return derr
		}
		if err == nil && ok {
			base = last.Commit
		}
	}
	commits, err := s.m.CommitsBetween(base, p.SHA, strictMaxCommits)
	if derr := s.damaged(err); derr != nil {
		return derr
	}
	if err != nil {
		return &Failure{Check: CheckSignature, Message: fmt.Sprintf("strict mode: cannot list the commits since %s (at most %d are verified): %v", orNone(base), strictMaxCommits, err),
			Hint: "set descends_from on the entry to a reviewed commit closer to the job's commit"}
	}
	admitted, err := s.strictAdmitted(last, sameRepo(last, &e.Source), base, p.SHA)
	if err != nil {
		return err
	}
	var first *Failure
	unsigned := 0
	for _, c := range commits {
		if c.Hash.String() == p.SHA {
			continue // verified by verifySignature
		}
		if _, err := req.keys.VerifyCommit(c, now, admittedOpts(admitted(c.Hash.String()))...); err != nil {
			if unsigned == 0 {
				f := sigFailure(c, err, e)
				f.Message = fmt.Sprintf("strict mode: %s (one of %d commits since %s)", f.Message, len(commits), orNone(base))
				first = &f
			}
			unsigned++
		}
	}
	switch {
	case unsigned == 1:
		return first
	case unsigned > 1:
		return errors.Join(first, &Failure{Check: CheckSignature, Message: fmt.Sprintf("strict mode: %d of %d commits since %s are not signed by the entry's signers", unsigned, len(commits), orNone(base))})
	}
	return nil
}

// admittedOpts verifies a commit or tag writ admitted before as of when it
// was signed only (gitsig.PreviouslyAdmitted), so retiring a key does not
// undo past admissions. Everything else is a new decision: the key must
// also be valid now, so a retired key cannot sign by backdating.
func admittedOpts(before bool) []gitsig.VerifyOption {
	if before {
		return []gitsig.VerifyOption{gitsig.PreviouslyAdmitted()}
	}
	return nil
}

// strictAdmitted says which commits of a strict walk from base to head writ
// admitted before: the entry's last admitted commit and, when that was
// admitted in strict mode, every commit it descends from (an earlier walk
// verified them). Usually base is the last admitted commit and nothing in
// the walk was admitted before; after a rollback or a change of branch, the
// commits head shares with it were.
func (s *sourceMirror) strictAdmitted(last *highWater, same bool, base, head string) (func(string) bool, error) {
	if !same {
		return func(string) bool { return false }, nil
	}
	if last.Mode != allowlist.ModeStrict || base == last.Commit {
		return func(c string) bool { return c == last.Commit }, nil
	}
	fresh, err := s.m.CommitsBetween(last.Commit, head, strictMaxCommits)
	if derr := s.damaged(err); derr != nil {
		return nil, derr
	}
	if err != nil {
		return nil, fmt.Errorf("strict mode: list the commits since %s, the last one admitted: %w", last.Commit, err)
	}
	isFresh := make(map[string]bool, len(fresh))
	for _, c := range fresh {
		isFresh[c.Hash.String()] = true
	}
	return func(c string) bool { return !isFresh[c] }, nil
}

// typedRefspec returns the refspec fetching exactly the full ref, the
// local ref it lands in, and the ref's kind.
func typedRefspec(full string) (refspec, local, kind string, err error) {
	kind, short, ok := allowlist.SplitRef(full)
	if !ok || allowlist.CheckRef(full) != "" {
		return "", "", "", fmt.Errorf("no verified ref to fetch (%q)", allowlist.Visible(clip(full)))
	}
	switch kind {
	case allowlist.RefBranch:
		refspec, err = gitrepo.BranchRefspec(short)
		local = "refs/writ/heads/" + short
	default:
		refspec, err = gitrepo.TagRefspec(short)
		local = "refs/writ/tags/" + short
	}
	return refspec, local, kind, err
}

func orNone(base string) string {
	if base == "" {
		return "the first commit"
	}
	return base
}

func sigFailure(c *object.Commit, err error, e *allowlist.Entry) Failure {
	subject, _, _ := strings.Cut(c.Message, "\n")
	return Failure{Check: CheckSignature,
		Message: fmt.Sprintf("commit %s (%q) is not signed by the entry's signers (%s): %v", c.Hash, allowlist.Visible(clip(subject)), strings.Join(e.Source.Signers, ", "), err),
		Hint:    "sign the commit (git commit -S) with a key of one of the entry's signer sets"}
}

func signerString(s gitsig.Signer) string {
	if s.Principal != "" {
		return fmt.Sprintf("%s %s (%s)", s.Kind, s.Fingerprint, s.Principal)
	}
	return s.Kind + " " + s.Fingerprint
}

// peel follows annotated tags (at most a few levels) to a commit.
func peel(r *git.Repository, h plumbing.Hash) (plumbing.Hash, *object.Tag, error) {
	var first *object.Tag
	for range 5 {
		t, err := r.TagObject(h)
		if errors.Is(err, plumbing.ErrObjectNotFound) {
			if _, err := r.CommitObject(h); err != nil {
				return plumbing.ZeroHash, nil, err
			}
			return h, first, nil
		}
		if err != nil {
			return plumbing.ZeroHash, nil, err
		}
		if first == nil {
			first = t
		}
		h = t.Target
	}
	return plumbing.ZeroHash, nil, errors.New("tag chain too long")
}
