package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing/filemode"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/gitrepo"
	"gitlab.com/writ-ci/writ/internal/state"
)

// VerifiedSource is one of an entry's further repositories (source.extra)
// as prepare verified it: get_sources checks out exactly this, and the
// audit record names it.
type VerifiedSource struct {
	// Path is where it is checked out, relative to the build directory.
	Path string `json:"path"`
	// Repository is the entry's URL for it; the tree's .gitmodules is
	// never read.
	Repository string `json:"repository"`
	// Ref is the full ref the commit was verified on, by Mode.
	Ref  string               `json:"ref"`
	Mode allowlist.SourceMode `json:"mode"`
	// Commit is the verified commit.
	Commit string `json:"commit"`
	// Signer is the verified signer of the commit or tag.
	Signer string `json:"signer"`
	// Submodule: Commit is the gitlink at Path in the job's verified
	// commit.
	Submodule bool `json:"submodule,omitempty"`

	// mark is the extra source's mark as read for this verification:
	// recordExtraSources moves it from there (compare-and-swap), so a
	// mark another host moved meanwhile is never written over.
	mark *state.Entry
}

// verifyExtraSources verifies each of the entry's source.extra after the
// job's own commit is verified, with the same code (verifySource) and each
// one's own policy, and returns what get_sources checks out. Refusals
// come back as *Failure (joined, one per problem), each naming the extra
// source; any other error means writ cannot decide.
func (o *Options) verifyExtraSources(ctx context.Context, d *Decision, p *Payload, e *allowlist.Entry, a *allowlist.Allowlist) ([]VerifiedSource, error) {
	if len(e.Source.Extra) == 0 {
		return nil, nil
	}
	gitlinks, err := o.extraSourceLayout(ctx, p, e)
	if err != nil {
		return nil, err
	}
	var out []VerifiedSource
	var refused []error
	for _, x := range e.Source.Extra {
		start := time.Now()
		v, err := o.verifyExtraSource(ctx, d, p, e, a, x, gitlinks[x.Path])
		if fs, ok := refusals(err); ok {
			for i := range fs {
				refused = append(refused, &fs[i])
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("source.extra %s (%s): %w", x.Path, x.Policy.Repository, err)
		}
		o.phase("verify", start, "verified source.extra %s: commit %s of %s, signed by %s", x.Path, short(v.Commit), v.Repository, v.Signer)
		out = append(out, v)
	}
	if len(refused) > 0 {
		return nil, errors.Join(refused...)
	}
	return out, nil
}

// extraSourceLayout reads, in the job's verified commit, what lies at each
// extra source's path: a submodule entry must find a gitlink there (whose
// commit it returns, by path), any other entry must find nothing, so that
// no checkout is ever written over, or through, the verified tree.
func (o *Options) extraSourceLayout(ctx context.Context, p *Payload, e *allowlist.Entry) (map[string]string, error) {
	unlock, err := o.lockMirror(ctx, e.Source.Repository)
	if err != nil {
		return nil, err
	}
	defer unlock()
	m, err := gitrepo.OpenMirror(o.Config.Paths.Cache, e.Source.Repository, sourceAuth(o.Config, e.Source.Repository), mirrorLimits(o.Config))
	if err != nil {
		return nil, fmt.Errorf("open the mirror of %s: %w", e.Source.Repository, err)
	}
	gitlinks := map[string]string{}
	var refused []error
	for _, x := range e.Source.Extra {
		mode, hash, found, err := m.PathEntry(p.SHA, x.Path)
		if gitrepo.IsDamage(err) {
			m.MarkDamaged(err.Error())
			return nil, fmt.Errorf("writ's mirror of %s is damaged (%v); the next attempt rebuilds it", e.Source.Repository, err)
		}
		if err != nil && !errors.Is(err, gitrepo.ErrNotDirectory) {
			// verifySource found the commit and its tree a moment ago.
			return nil, fmt.Errorf("read the job's commit %s in the mirror of %s: %w", p.SHA, e.Source.Repository, err)
		}
		f := &Failure{Check: CheckSource}
		switch {
		case err != nil:
			f.Message = fmt.Sprintf("source.extra %s: cannot be checked out there: %v", x.Path, err)
			f.Hint = "choose a path for it that the repository's tree does not use, and get the entry changed"
		case x.Submodule && (!found || mode != filemode.Submodule):
			f.Message = fmt.Sprintf("source.extra %s: the job's commit %s has no submodule at %s (%s), and the entry takes its commit from that submodule's gitlink",
				x.Path, p.SHA, x.Path, describeMode(found, mode))
			f.Hint = "add the submodule at that path (git submodule add), or get the entry's source.extra changed"
		case !x.Submodule && found && mode == filemode.Submodule:
			f.Message = fmt.Sprintf("source.extra %s: the job's commit %s has a submodule at %s, and the entry does not take its commit from it (submodule: false)", x.Path, p.SHA, x.Path)
			f.Hint = "get submodule: true set on the entry's source.extra item, so the checked-out commit is the gitlink's"
		case !x.Submodule && found:
			f.Message = fmt.Sprintf("source.extra %s: the job's commit %s already has %s at that path", x.Path, p.SHA, describeMode(found, mode))
			f.Hint = "choose a path for it that the repository's tree does not use, and get the entry changed"
		default:
			if x.Submodule {
				gitlinks[x.Path] = hash
			}
			continue
		}
		refused = append(refused, f)
	}
	if len(refused) > 0 {
		return nil, errors.Join(refused...)
	}
	return gitlinks, nil
}

func describeMode(found bool, mode filemode.FileMode) string {
	switch {
	case !found:
		return "nothing is there"
	case mode == filemode.Dir:
		return "a directory"
	case mode == filemode.Symlink:
		return "a symlink"
	case mode == filemode.Submodule:
		return "a submodule"
	}
	return "a file"
}

// verifyExtraSource verifies one extra source through verifySource, as if
// it were a job of the entry for the extra's ref and commit: the extra's
// policy is a Source, so signature modes, pin, descends_from and
// approvals mean exactly what they mean for the main source.
//
// Each extra source has a high-water mark of its own (ExtraSourceMark): a
// commit admitted before is verified as of its signing (a retired key does
// not undo it), strict mode walks from it, and a branch tip must descend
// from it unless the item allows rollback. A submodule's or a pin's commit
// is chosen by signed data (the job's verified commit, the entry), so
// going back there is deliberate and never a rollback.
func (o *Options) verifyExtraSource(ctx context.Context, d *Decision, p *Payload, e *allowlist.Entry, a *allowlist.Allowlist, x *allowlist.ExtraSource, gitlink string) (VerifiedSource, error) {
	kind, name, _ := allowlist.SplitRef(x.Ref)
	xe := &allowlist.Entry{Name: ExtraSourceMark(e.Name, x.Path), Match: e.Match, Definition: e.Definition, Source: x.Policy, Pos: x.Pos}
	xe.Source.AllowRollback = x.Policy.AllowRollback || x.Submodule || x.Policy.Pin != ""
	xp := &Payload{ID: p.ID, Project: p.Project, JobName: p.JobName, Ref: name, RefType: kind, Digest: p.Digest}
	xd := &Decision{Mode: d.Mode, Environment: d.Environment, Job: d.Job, Ref: x.Ref}
	what := "the tip of " + x.Ref
	switch {
	case x.Submodule:
		xp.SHA, what = gitlink, fmt.Sprintf("the gitlink at %s in the job's commit %s", x.Path, p.SHA)
	case x.Policy.Pin != "":
		xp.SHA, what = x.Policy.Pin, "the entry's pin"
	default:
		tip, err := o.extraTip(ctx, xd, xp, xe)
		if err != nil {
			return VerifiedSource{}, extraFailures(x, what, err, nil)
		}
		xp.SHA = tip
	}
	mark := o.startReadHighWater(ctx, xe.Name)
	res, err := o.verifySource(ctx, xd, xp, xe, a, mark.wait)
	_, ent, merr := mark.wait()
	if merr != nil {
		return VerifiedSource{}, merr
	}
	if err != nil || len(xd.Failures) > 0 {
		return VerifiedSource{}, extraFailures(x, what, err, xd.Failures)
	}
	return VerifiedSource{Path: x.Path, Repository: x.Policy.Repository, Ref: x.Ref, Mode: x.Policy.Mode, Commit: xp.SHA, Signer: res.signer, Submodule: x.Submodule, mark: ent}, nil
}

// extraFailures names the extra source in each refusal of its
// verification (err, and failures recorded on its own decision). An error
// that is not a refusal is returned as it is: writ cannot decide.
func extraFailures(x *allowlist.ExtraSource, what string, err error, recorded []Failure) error {
	fs := recorded
	if err != nil {
		more, ok := refusals(err)
		if !ok {
			return err
		}
		fs = append(fs, more...)
	}
	out := make([]error, 0, len(fs))
	for _, f := range fs {
		f.Message = fmt.Sprintf("source.extra %s (%s, commit from %s): %s", x.Path, x.Policy.Repository, what, f.Message)
		out = append(out, &f)
	}
	return errors.Join(out...)
}

// extraTip fetches an extra source's ref through fetchSource (same limits,
// same refusals) and returns the commit it leads to. verifySource then
// verifies that commit; should the ref move in between, the commit must
// still be on it.
func (o *Options) extraTip(ctx context.Context, d *Decision, p *Payload, e *allowlist.Entry) (string, error) {
	req := &sourceRequest{p: p, entry: e}
	var err error
	if req.refspec, req.local, req.kind, err = typedRefspec(d.Ref); err != nil {
		return "", &Failure{Check: CheckRef, Message: err.Error()}
	}
	unlock, err := o.lockMirror(ctx, e.Source.Repository)
	if err != nil {
		return "", err
	}
	defer unlock()
	// The approvals are fetched with the commit, by verifySource, once
	// the commit is known.
	tipOnly := *e
	tipOnly.Source.Approvals = nil
	req.entry = &tipOnly
	src, err := o.fetchSource(ctx, req)
	if err != nil {
		return "", err
	}
	h, err := src.m.Ref(req.local)
	if err != nil {
		if derr := src.damaged(err); derr != nil {
			return "", derr
		}
		return "", src.missing(req, fmt.Sprintf("%s %q", req.kind, p.Ref), err)
	}
	c, _, err := peel(src.m.Repo(), h)
	if err != nil {
		if derr := src.damaged(err); derr != nil {
			return "", derr
		}
		return "", &Failure{Check: CheckSource, Message: fmt.Sprintf("%s %q in %s does not lead to a commit: %v", req.kind, p.Ref, src.repo, err)}
	}
	return c.String(), nil
}

// checkoutSources finishes get_sources after the job's commit is checked
// out into dir from m: each verified extra source at its path and, when
// the entry sets source.git, a .git directory in each checkout. Gitlinks
// the entry names no source for stay empty directories, as in a checkout
// without submodules.
func (o *Options) checkoutSources(ctx context.Context, s *Snapshot, dir string, m *gitrepo.Mirror) error {
	if s.Entry == nil || (len(s.Sources) == 0 && s.Entry.Source.Git == allowlist.GitNone) {
		return nil
	}
	readOnlyGit := s.Entry.Source.Git == allowlist.GitReadOnly
	if readOnlyGit {
		err := m.WriteGitDir(filepath.Join(dir, ".git"), dir, s.Commit, gitRefs(s.Ref))
		if gitrepo.IsDamage(err) {
			m.MarkDamaged(err.Error())
		}
		if err != nil {
			return err
		}
	}
	named := map[string]bool{}
	for _, v := range s.Sources {
		named[v.Path] = true
		if err := o.checkoutExtra(ctx, v, dir, readOnlyGit); err != nil {
			return fmt.Errorf("source.extra %s: %w", v.Path, err)
		}
		writeExtraCheckedOut(o.Stdout, v)
	}
	links, err := m.Gitlinks(s.Commit)
	if err != nil {
		return err
	}
	var empty []string
	for p := range links {
		if !named[p] {
			empty = append(empty, p)
		}
	}
	sort.Strings(empty)
	for _, p := range empty {
		writeSubmoduleEmpty(o.Stdout, p)
	}
	return nil
}

// writeExtraCheckedOut is get_sources' line for an extra source.
func writeExtraCheckedOut(w io.Writer, v VerifiedSource) {
	fmt.Fprintf(w, "writ: checked out verified commit %s of %s (%s) into %s\n", v.Commit, v.Repository, v.Ref, v.Path)
}

// writeSubmoduleEmpty is get_sources' line for a gitlink the entry does
// not name.
func writeSubmoduleEmpty(w io.Writer, path string) {
	fmt.Fprintf(w, "writ: submodule %s is left empty: the allowlist entry names no source for it (source.extra), and writ never uses .gitmodules\n", path)
}

// gitRefs are the refs a checkout's .git carries for the verified full
// ref: the branch or tag itself (a tag as a lightweight tag: an annotated
// tag writ did not verify carries text from the server).
func gitRefs(full string) []string {
	if _, _, ok := allowlist.SplitRef(full); !ok {
		return nil
	}
	return []string{full}
}

// checkoutExtra checks one verified extra source out of its mirror at its
// path in dir, under the mirror's shared lock.
func (o *Options) checkoutExtra(ctx context.Context, v VerifiedSource, dir string, readOnlyGit bool) error {
	target, err := extraTarget(dir, v.Path, v.Submodule)
	if err != nil {
		return err
	}
	m, unlock, err := o.openMirrorShared(ctx, v.Repository)
	if err != nil {
		return err
	}
	defer unlock()
	err = m.Checkout(v.Commit, target)
	if err == nil && readOnlyGit {
		err = m.WriteGitDir(filepath.Join(target, ".git"), target, v.Commit, gitRefs(v.Ref))
	}
	if gitrepo.IsDamage(err) {
		m.MarkDamaged(err.Error())
	}
	return err
}

// extraTarget returns where an extra source is written below dir, making
// missing parent directories. Nothing on the way may be a symlink: the
// main checkout's symlinks stay inside dir, but could still lead one
// checkout into another, or into a .git. A submodule's path is the empty
// directory its gitlink left; any other path must not exist.
func extraTarget(dir, rel string, submodule bool) (string, error) {
	comps := strings.Split(rel, "/")
	cur := dir
	for i, c := range comps {
		cur = filepath.Join(cur, c)
		fi, err := os.Lstat(cur)
		last := i == len(comps)-1
		switch {
		case errors.Is(err, fs.ErrNotExist) && last && !submodule:
			return cur, nil
		case errors.Is(err, fs.ErrNotExist) && !last:
			if err := os.Mkdir(cur, 0o755); err != nil {
				return "", err
			}
			continue
		case err != nil:
			return "", err
		case !fi.IsDir():
			return "", fmt.Errorf("%s is not a directory in the checkout", strings.Join(comps[:i+1], "/"))
		case last && !submodule:
			return "", fmt.Errorf("%s exists in the checkout", rel)
		}
	}
	return cur, nil
}

// ExtraSourceMark is the state's name for the high-water mark of entry's
// extra source at path (`writ state repair` rebuilds it from the audit
// log's sources). Entry names hold no space, so it is never an entry's own.
func ExtraSourceMark(entry, path string) string {
	return entry + " source.extra " + path
}

// recordExtraSources moves each admitted extra source's mark to its
// verified commit, from the mark it was verified against. The caller
// holds the entry lock. A mark moved by another host meanwhile means writ
// cannot decide now (the runner retries); a mark already at the commit
// moves nothing.
func (o *Options) recordExtraSources(ctx context.Context, d *Decision, p *Payload, e *allowlist.Entry) error {
	for _, v := range d.Sources {
		name := ExtraSourceMark(e.Name, v.Path)
		ent := v.mark
		if ent == nil || ent.Name != name {
			return fmt.Errorf("source.extra %s was not verified against its mark", v.Path)
		}
		if ent.Holds(v.Repository, v.Commit) {
			continue
		}
		hw := &highWater{Entry: name, Repository: v.Repository, Mode: v.Mode, Commit: v.Commit, Job: p.ID, Time: o.Now().UTC()}
		if err := o.writeHighWater(ctx, ent, hw); err != nil {
			return fmt.Errorf("record the admitted commit of source.extra %s: %w", v.Path, err)
		}
	}
	return nil
}
