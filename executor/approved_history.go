package executor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/gitrepo"
)

// maxApprovedHistory bounds how many first-parent commits one job's
// approved-history check reads approvals for: each costs a refspec in one
// fetch and a tally. A deploy branch that moves further between two
// deploys sets descends_from closer, as strict mode's bound asks.
const maxApprovedHistory = 64

// checkApprovedHistory is strict mode for an entry without author
// signatures (allowlist.Source.ApprovedHistory): every commit on the
// first-parent chain from the job's commit back to the last commit
// admitted in strict mode (or descends_from, or the first commit) must be
// approved for the job's environment like the job's commit itself, which
// checkApprovals counted already. Second parents are not walked: they are
// the merged branches' commits, which the approval of their merge covers.
//
// It runs after checkAncestry, so the walk is over history that ends at a
// commit enough people approved, and it fetches the approvals of the
// walked commits in one bounded fetch.
func (o *Options) checkApprovedHistory(ctx context.Context, req *sourceRequest, src *sourceMirror, a *allowlist.Allowlist, env string, last *highWater) error {
	e := req.entry
	base := e.Source.DescendsFrom
	if sameRepo(last, &e.Source) && last.Mode == allowlist.ModeStrict {
		ok, err := src.m.IsAncestor(last.Commit, req.p.SHA)
		if derr := src.damaged(err); derr != nil {
			return derr
		}
		if err == nil && ok {
			base = last.Commit
		}
	}
	chain, err := src.firstParents(req.p.SHA, base)
	if err != nil {
		return err
	}
	if len(chain) == 0 {
		return nil
	}
	if err := o.fetchApprovalsOf(ctx, src, chain); err != nil {
		return err
	}
	// One pass over the mirror's refs finds every commit's approvals.
	index, err := approvalIndex(src.m.Repo())
	if err != nil {
		return err
	}
	var first error
	short := 0
	for _, c := range chain {
		commit := c.Hash.String()
		approvals, err := approvalsAt(src.m.Repo(), commit, index[commit])
		if approvals, err = src.tooMany(commit, approvals, err); err == nil {
			_, err = tallyCommit(e, a, commit, env, nil, approvals, o.Now())
		}
		if err != nil {
			var f *Failure
			if !errors.As(err, &f) {
				return err
			}
			if short == 0 {
				subject, _, _ := strings.Cut(c.Message, "\n")
				f.Message = fmt.Sprintf("strict mode with signature: none: every first-parent commit since %s must be approved; first-parent commit %d of %d (%q): %s",
					orNone(base), indexOf(chain, c)+1, len(chain), allowlist.Visible(clip(subject)), f.Message)
				first = f
			}
			short++
		}
	}
	if short > 1 {
		return errors.Join(first, &Failure{Check: CheckApprovals,
			Message: fmt.Sprintf("strict mode with signature: none: %d of the %d first-parent commits since %s are not approved by enough people", short, len(chain), orNone(base))})
	}
	return first
}

// approvalIndex lists the approval refs in r by the commit they approve,
// in one pass over r's references.
func approvalIndex(r *git.Repository) (map[string][]*plumbing.Reference, error) {
	iter, err := r.Storer.IterReferences()
	if err != nil {
		return nil, err
	}
	out := map[string][]*plumbing.Reference{}
	err = iter.ForEach(func(ref *plumbing.Reference) error {
		rest, ok := strings.CutPrefix(ref.Name().String(), allowlist.SourceApprovalRefPrefix)
		if commit, _, ok2 := strings.Cut(rest, "/"); ok && ok2 {
			out[commit] = append(out[commit], ref)
		}
		return nil
	})
	return out, err
}

func indexOf(chain []*object.Commit, c *object.Commit) int {
	for i, x := range chain {
		if x == c {
			return i
		}
	}
	return -1
}

// firstParents returns the first-parent chain from head (excluded) down to
// base (excluded), newest first; with base "" down to the first commit. A
// base that is not on the chain, or a chain longer than
// maxApprovedHistory, is a refusal.
func (s *sourceMirror) firstParents(head, base string) ([]*object.Commit, error) {
	if head == base {
		return nil, nil
	}
	c, err := s.m.Commit(head)
	if err != nil {
		return nil, s.damagedOr(err)
	}
	var chain []*object.Commit
	for {
		if len(c.ParentHashes) == 0 {
			if base != "" {
				return nil, &Failure{Check: CheckApprovals,
					Message: fmt.Sprintf("strict mode with signature: none: %s is not on the first-parent chain of the job's commit %s, so the commits since it cannot be listed", base, head),
					Hint:    "deploy from the branch whose own history (its merge commits) leads to the last admitted commit, or set descends_from to a commit on that chain"}
			}
			return chain, nil
		}
		p := c.ParentHashes[0]
		if p.String() == base {
			return chain, nil
		}
		if len(chain) == maxApprovedHistory {
			return nil, &Failure{Check: CheckApprovals,
				Message: fmt.Sprintf("strict mode with signature: none: more than %d first-parent commits since %s: writ reads the approvals of at most %d", maxApprovedHistory, orNone(base), maxApprovedHistory),
				Hint:    "set descends_from on the entry to an approved commit closer to the job's commit"}
		}
		if c, err = s.m.Commit(p.String()); err != nil {
			return nil, s.damagedOr(err)
		}
		chain = append(chain, c)
	}
}

// damagedOr is a mirror read's error as "cannot decide": the fetch brought
// the ref's whole history, so a missing commit is damage or an incomplete
// remote, never the author's fault.
func (s *sourceMirror) damagedOr(err error) error {
	if derr := s.damaged(err); derr != nil {
		return derr
	}
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return fmt.Errorf("writ's mirror of %s lacks a commit of the fetched history (%w)", s.repo, gitrepo.ErrIncomplete)
	}
	return err
}

// fetchApprovalsOf fetches the approvals of the chain's commits, in one
// fetch under the configured limits. Offline, the mirror's are read.
func (o *Options) fetchApprovalsOf(ctx context.Context, src *sourceMirror, chain []*object.Commit) error {
	if src.offline {
		return nil
	}
	specs := make([]string, len(chain))
	for i, c := range chain {
		specs[i] = approvalsRefspec(c.Hash.String())
	}
	fctx, cancel := context.WithTimeout(ctx, o.Config.Allowlist.FetchTimeout.Duration)
	defer cancel()
	start := time.Now()
	err := src.m.Fetch(fctx, specs...)
	if err == nil {
		o.phase("fetch", start, "fetched the approvals of %d first-parent commits from %s", len(chain), src.repo)
	} else {
		o.phase("fetch", start, "fetch of the approvals of %d first-parent commits from %s failed", len(chain), src.repo)
	}
	var limit *gitrepo.LimitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &limit):
		return &Failure{Check: CheckApprovals, Message: fmt.Sprintf("writ refused what the entry's repository sent with the approvals of %d commits: %v", len(chain), err),
			Hint: "keep the repository within the limit, or ask the runner's owners to raise fetch." + limit.Limit + " in writ's configuration"}
	}
	return fmt.Errorf("fetch the approvals of %d first-parent commits: %w", len(chain), err)
}
