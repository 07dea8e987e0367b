package executor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
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
)

// strictMaxCommits bounds how many commits strict mode verifies for one job.
const strictMaxCommits = 10000

// lockWait bounds how long a stage waits for another writ process's lock.
const lockWait = 5 * time.Minute

// cannotDecide is an error that means writ could not reach a decision (as
// opposed to a refusal): the job is a system failure and the runner retries.
type cannotDecide struct{ err error }

// Error is the cause alone: every place that prints it already says "writ
// cannot decide", so the sentence never repeats itself.
func (e *cannotDecide) Error() string { return e.err.Error() }
func (e *cannotDecide) Unwrap() error { return e.err }

// highWater is the last commit admitted for an entry.
type highWater struct {
	Entry      string               `json:"entry"`
	Repository string               `json:"repository"`
	Mode       allowlist.SourceMode `json:"mode"`
	Commit     string               `json:"commit"`
	Job        string               `json:"job"`
	Time       time.Time            `json:"time"`
}

func entryKey(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:])
}

func urlKey(u string) string {
	sum := sha256.Sum256([]byte(u))
	return hex.EncodeToString(sum[:16])
}

func (o *Options) entriesDir() string { return filepath.Join(o.Config.Paths.State, "entries") }

func (o *Options) highWaterPath(entry string) string {
	return filepath.Join(o.entriesDir(), entryKey(entry)+".json")
}

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

func (o *Options) readHighWater(entry string) (*highWater, error) {
	data, err := fsutil.ReadFileLimit(o.highWaterPath(entry), 1<<16)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var hw highWater
	if err := json.Unmarshal(data, &hw); err != nil {
		return nil, fmt.Errorf("read %s: %w (it is writ's record of the last commit admitted for entry %q; restore it from backup or remove it to accept any commit once)", o.highWaterPath(entry), err, entry)
	}
	if hw.Entry != entry || !shaPattern.MatchString(hw.Commit) {
		return nil, fmt.Errorf("%s does not hold a record for entry %q", o.highWaterPath(entry), entry)
	}
	return &hw, nil
}

func (o *Options) writeHighWater(hw *highWater) error {
	data, err := json.MarshalIndent(hw, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(o.highWaterPath(hw.Entry), append(data, '\n'), 0o600)
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
// by the entry's mode. The caller holds the entry lock. Refusals are added
// to d; an error means writ cannot decide.
func (o *Options) verifySource(ctx context.Context, d *Decision, p *Payload, e *allowlist.Entry, a *allowlist.Allowlist, last *highWater) (*sourceResult, error) {
	src := &e.Source
	fail := func(check, msg, hint string) (*sourceResult, error) {
		d.fail(Failure{Check: check, Message: msg, Hint: hint})
		return nil, nil
	}
	if !shaPattern.MatchString(p.SHA) {
		return fail(CheckSource, fmt.Sprintf("the job's commit %q is not a full 40-hex SHA-1", allowlist.Visible(clip(p.SHA))), "")
	}
	var refspec, local string
	var err error
	switch p.RefType {
	case "branch":
		refspec, err = gitrepo.BranchRefspec(p.Ref)
		local = "refs/writ/heads/" + p.Ref
	case "tag":
		refspec, err = gitrepo.TagRefspec(p.Ref)
		local = "refs/writ/tags/" + p.Ref
	default:
		return fail(CheckSource, fmt.Sprintf("the job's ref type %q is neither branch nor tag", allowlist.Visible(clip(p.RefType))),
			"writ admits branch and tag pipelines only (not merge request refs)")
	}
	if err != nil {
		return fail(CheckSource, fmt.Sprintf("the job's ref %q is not a valid git branch or tag name: %v", allowlist.Visible(clip(p.Ref)), err), "")
	}
	if src.Mode == allowlist.ModeTag && p.RefType != "tag" {
		return fail(CheckSource, fmt.Sprintf("the entry's source mode is tag but the job runs for branch %q", p.Ref),
			"run the job from a signed tag pipeline")
	}
	if src.Pin != "" && p.SHA != src.Pin {
		d.fail(Failure{Check: CheckPin, Message: "the entry pins one commit and the job's commit is another",
			Expected: src.Pin, Received: p.SHA, Hint: "run the pinned commit, or get the entry's pin changed"})
	}
	keys, err := signerKeys(a, e)
	if err != nil {
		return fail(CheckSignature, fmt.Sprintf("the entry's signers cannot verify anything: %v", err), "fix the entry's signer sets in the allowlist")
	}

	lockPath, err := o.mirrorLockPath(src.Repository)
	if err != nil {
		return nil, &cannotDecide{err}
	}
	lctx, cancel := context.WithTimeout(ctx, lockWait)
	unlock, err := fsutil.Lock(lctx, lockPath)
	cancel()
	if err != nil {
		return nil, &cannotDecide{err}
	}
	defer unlock()
	m, err := gitrepo.OpenMirror(o.Config.Paths.Cache, src.Repository, sourceAuth(o.Config, src.Repository))
	if err != nil {
		return nil, &cannotDecide{fmt.Errorf("open the mirror of %s: %w", src.Repository, err)}
	}
	var fetchErr error
	if !o.Offline {
		fctx, cancel := context.WithTimeout(ctx, o.Config.Allowlist.FetchTimeout.Duration)
		start := time.Now()
		fetchErr = m.Fetch(fctx, refspec)
		cancel()
		if fetchErr == nil {
			o.phase("fetch", start, "fetched %s %s from %s", p.RefType, allowlist.Visible(clip(p.Ref)), src.Repository)
		} else {
			o.phase("fetch", start, "fetch of %s %s from %s failed: %v", p.RefType, allowlist.Visible(clip(p.Ref)), src.Repository, fetchErr)
		}
		if fetchErr != nil && errors.Is(fetchErr, git.NoMatchingRefSpecError{}) {
			return fail(CheckSource, fmt.Sprintf("the entry's repository %s has no %s %q", src.Repository, p.RefType, p.Ref),
				"push the ref to the repository the allowlist entry names")
		}
	}
	// What cannot be established without the fetch is undecidable rather
	// than refused: the failure may be the network's.
	missing := func(what string, err error) (*sourceResult, error) {
		if fetchErr != nil {
			return nil, &cannotDecide{fmt.Errorf("fetch %s from %s: %w (and %s is not in writ's mirror: %v)", p.Ref, src.Repository, fetchErr, what, err)}
		}
		if o.Offline {
			return nil, &cannotDecide{fmt.Errorf("offline: %s is not in writ's mirror of %s (%v); fetch to decide", what, src.Repository, err)}
		}
		return fail(CheckSource, fmt.Sprintf("%s is not in the entry's repository %s", what, src.Repository), "")
	}
	refHash, err := m.Ref(local)
	if err != nil {
		return missing(fmt.Sprintf("%s %q", p.RefType, p.Ref), err)
	}
	refCommit, tagObj, err := peel(m.Repo(), refHash)
	if err != nil {
		return fail(CheckSource, fmt.Sprintf("%s %q in %s does not lead to a commit: %v", p.RefType, p.Ref, src.Repository, err), "")
	}
	notOnRef := func() (*sourceResult, error) {
		return fail(CheckSource, fmt.Sprintf("commit %s is not on %s %q of the entry's repository %s (writ never fetches from GitLab's repository %s)",
			p.SHA, p.RefType, p.Ref, src.Repository, p.RepoURL),
			"push the commit to that ref of the repository the allowlist entry names")
	}
	commit, err := m.Commit(p.SHA)
	if err != nil {
		if fetchErr != nil || o.Offline {
			return missing("commit "+p.SHA, err)
		}
		return notOnRef()
	}
	if ok, err := m.IsAncestor(p.SHA, refCommit.String()); err != nil || !ok {
		return notOnRef()
	}
	if src.DescendsFrom != "" {
		if ok, err := m.IsAncestor(src.DescendsFrom, p.SHA); err != nil || !ok {
			d.fail(Failure{Check: CheckDescends, Message: fmt.Sprintf("commit %s does not descend from %s, as the entry requires", p.SHA, src.DescendsFrom)})
		}
	}
	sameRepo := last != nil && last.Repository == src.Repository
	if sameRepo && !src.AllowRollback {
		if ok, err := m.IsAncestor(last.Commit, p.SHA); err != nil || !ok {
			d.fail(Failure{Check: CheckRollback,
				Message:  fmt.Sprintf("commit %s is not %s or a descendant of it, the last commit admitted for entry %q (job %s): this looks like a rollback", p.SHA, last.Commit, e.Name, last.Job),
				Expected: "a descendant of " + last.Commit, Received: p.SHA,
				Hint: "run a newer commit, or get allow_rollback set on the entry"})
		}
	}
	now := o.Now()
	res := &sourceResult{}
	switch src.Mode {
	case allowlist.ModeCommit:
		s, err := keys.VerifyCommit(commit, now)
		if err != nil {
			d.fail(sigFailure(commit, err, e))
			return nil, nil
		}
		res.signer = signerString(s)
	case allowlist.ModeTag:
		if tagObj == nil {
			return fail(CheckSignature, fmt.Sprintf("tag %q is a lightweight tag; the entry requires a signed annotated tag", p.Ref), "create the tag with git tag -s")
		}
		if tagObj.Name != p.Ref {
			return fail(CheckSignature, fmt.Sprintf("the tag object under refs/tags/%s is named %q", p.Ref, allowlist.Visible(clip(tagObj.Name))), "tag the commit under its own name with git tag -s")
		}
		if tagObj.TargetType != plumbing.CommitObject || tagObj.Target.String() != p.SHA {
			return fail(CheckSignature, fmt.Sprintf("tag %q points at %s %s, not at the job's commit %s", p.Ref, tagObj.TargetType, tagObj.Target, p.SHA), "")
		}
		s, err := keys.VerifyTag(tagObj, now)
		if err != nil {
			return fail(CheckSignature, fmt.Sprintf("tag %q is not signed by the entry's signers (%s): %v", p.Ref, strings.Join(e.Source.Signers, ", "), err),
				"sign the tag with a key of the entry's signer sets")
		}
		res.signer = signerString(s)
	case allowlist.ModeStrict:
		base := src.DescendsFrom
		if sameRepo && last.Mode == allowlist.ModeStrict {
			if ok, err := m.IsAncestor(last.Commit, p.SHA); err == nil && ok {
				base = last.Commit
			}
		}
		commits, err := m.CommitsBetween(base, p.SHA, strictMaxCommits)
		if err != nil {
			return fail(CheckSignature, fmt.Sprintf("strict mode: cannot list the commits since %s (at most %d are verified): %v", orNone(base), strictMaxCommits, err),
				"set descends_from on the entry to a reviewed commit closer to the job's commit")
		}
		unsigned := 0
		for _, c := range commits {
			s, err := keys.VerifyCommit(c, now)
			if err != nil {
				if unsigned == 0 {
					f := sigFailure(c, err, e)
					f.Message = fmt.Sprintf("strict mode: %s (one of %d commits since %s)", f.Message, len(commits), orNone(base))
					d.fail(f)
				}
				unsigned++
				continue
			}
			if c.Hash.String() == p.SHA {
				res.signer = signerString(s)
			}
		}
		if unsigned > 1 {
			d.fail(Failure{Check: CheckSignature, Message: fmt.Sprintf("strict mode: %d of %d commits since %s are not signed by the entry's signers", unsigned, len(commits), orNone(base))})
		}
		if unsigned > 0 {
			return nil, nil
		}
	default:
		return fail(CheckSignature, fmt.Sprintf("unknown source mode %q", src.Mode), "")
	}
	return res, nil
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
