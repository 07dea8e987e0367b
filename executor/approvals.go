package executor

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/gitsig"
)

// CheckApprovals is the two-person rule: the entry's source.approvals.
const CheckApprovals = "approvals"

// approvalsRefspec fetches every approval of commit, into the same names.
func approvalsRefspec(commit string) string {
	p := allowlist.SourceApprovalRefPrefix + commit + "/"
	return "+" + p + "*:" + p + "*"
}

func approvalRefs(r *git.Repository, commit string) ([]*plumbing.Reference, error) {
	iter, err := r.Storer.IterReferences()
	if err != nil {
		return nil, err
	}
	prefix := allowlist.SourceApprovalRefPrefix + commit + "/"
	var out []*plumbing.Reference
	err = iter.ForEach(func(r *plumbing.Reference) error {
		if strings.HasPrefix(r.Name().String(), prefix) {
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// readApprovals reads the approvals of commit from the mirror.
func (s *sourceMirror) readApprovals(commit string) ([]allowlist.SourceApproval, error) {
	out, err := ReadApprovals(s.m.Repo(), commit)
	return s.tooMany(commit, out, err)
}

// tooMany turns too many approvals of commit into a refusal.
func (s *sourceMirror) tooMany(commit string, out []allowlist.SourceApproval, err error) ([]allowlist.SourceApproval, error) {
	if errors.Is(err, errTooManyApprovals) {
		return nil, &Failure{Check: CheckApprovals, Message: fmt.Sprintf("the entry's repository %s: %v", s.repo, err),
			Hint: "delete stale approval refs (git push --delete) under " + allowlist.SourceApprovalRefPrefix + commit + "/"}
	}
	return out, err
}

var errTooManyApprovals = errors.New("too many approvals")

// ReadApprovals reads the approvals of commit published in repository r
// under allowlist.SourceApprovalRefPrefix: each ref's commit's tree, whose
// blobs (at most three, each bounded) are the files. What is not shaped
// like an approval is returned with no files, to be ignored with a reason.
// More than allowlist.MaxSourceApprovals refs is an error.
func ReadApprovals(r *git.Repository, commit string) ([]allowlist.SourceApproval, error) {
	refs, err := approvalRefs(r, commit)
	if err != nil {
		return nil, err
	}
	return approvalsAt(r, commit, refs)
}

// approvalsAt reads the approvals of commit published under refs.
func approvalsAt(r *git.Repository, commit string, refs []*plumbing.Reference) ([]allowlist.SourceApproval, error) {
	if len(refs) > allowlist.MaxSourceApprovals {
		return nil, fmt.Errorf("%w: %d approvals of commit %s are published, more than the %d writ reads", errTooManyApprovals, len(refs), commit, allowlist.MaxSourceApprovals)
	}
	prefix := allowlist.SourceApprovalRefPrefix + commit + "/"
	out := make([]allowlist.SourceApproval, 0, len(refs))
	for _, ref := range refs {
		ap := allowlist.SourceApproval{Label: strings.TrimPrefix(ref.Name().String(), prefix)}
		ap.Files, _ = approvalFiles(r.Storer, ref.Hash())
		out = append(out, ap)
	}
	return out, nil
}

// approvalFiles reads an approval's tree. nil means it is not a commit
// whose tree holds at most three regular-file blobs of bounded size.
func approvalFiles(st storer.EncodedObjectStorer, h plumbing.Hash) (map[string][]byte, error) {
	c, err := object.GetCommit(st, h)
	if err != nil {
		return nil, err
	}
	t, err := c.Tree()
	if err != nil {
		return nil, err
	}
	if len(t.Entries) > 3 {
		return nil, errors.New("too many files")
	}
	files := map[string][]byte{}
	for _, e := range t.Entries {
		if e.Mode != filemode.Regular {
			return nil, fmt.Errorf("%s is not a regular file", e.Name)
		}
		f, err := t.TreeEntryFile(&e)
		if err != nil {
			return nil, err
		}
		if f.Size > allowlist.MaxApprovalFileBytes {
			return nil, fmt.Errorf("%s is larger than %d bytes", e.Name, allowlist.MaxApprovalFileBytes)
		}
		r, err := f.Reader()
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(io.LimitReader(r, allowlist.MaxApprovalFileBytes+1))
		r.Close()
		if err != nil {
			return nil, err
		}
		files[e.Name] = b
	}
	return files, nil
}

// checkApprovals counts the approvals of the job's commit for this
// environment (after its signature is verified) and refuses when fewer
// distinct people than the entry's threshold approved.
// It returns the tally, nil when the entry requires no approvals.
func (s *sourceMirror) checkApprovals(req *sourceRequest, a *allowlist.Allowlist, env string, signer gitsig.Signer, now time.Time) (*allowlist.SourceTally, error) {
	e := req.entry
	if e.Source.Approvals == nil {
		return nil, nil
	}
	var author *gitsig.Signer
	if signer.Fingerprint != "" {
		author = &signer
	}
	approvals, err := s.readApprovals(req.p.SHA)
	if err != nil {
		return nil, err
	}
	return tallyCommit(e, a, req.p.SHA, env, author, approvals, now)
}

// tallyCommit counts approvals of commit for env and refuses when they are
// short of the entry's threshold.
func tallyCommit(e *allowlist.Entry, a *allowlist.Allowlist, commit, env string, author *gitsig.Signer, approvals []allowlist.SourceApproval, now time.Time) (*allowlist.SourceTally, error) {
	t, err := a.TallySourceApprovals(e, commit, env, author, approvals, now)
	if err != nil {
		return nil, &Failure{Check: CheckApprovals, Message: err.Error(), Hint: "fix the entry's source.approvals in the allowlist"}
	}
	if t.Needed() == 0 {
		return &t, nil
	}
	return nil, approvalsFailure(e, commit, env, &t, len(approvals))
}

// approvedBy names who vouched for a commit admitted without an author
// signature, for the admission banner and the audit record.
func approvedBy(t *allowlist.SourceTally) string {
	if t == nil {
		return "nobody"
	}
	people := make([]string, len(t.Valid))
	for i, v := range t.Valid {
		people[i] = v.Person
	}
	return "approved by " + strings.Join(people, ", ")
}

// approvalsFailure is the refusal of a commit short of approvals: what
// counted, what did not and why, how many more, and the command an
// approver runs.
func approvalsFailure(e *allowlist.Entry, commit, env string, t *allowlist.SourceTally, published int) *Failure {
	var b strings.Builder
	fmt.Fprintf(&b, "commit %s has %d of the %d approvals entry %q requires for environment %q: %d more needed",
		commit, len(t.Valid), t.Threshold, e.Name, env, t.Needed())
	for _, v := range t.Valid {
		if v.Label == "" {
			fmt.Fprintf(&b, "\n  valid:   the commit's own signature, %s key %s (%s)", v.Kind, v.Signer, v.Person)
		} else {
			fmt.Fprintf(&b, "\n  valid:   %s: %s key %s (%s)", v.Label, v.Kind, v.Signer, v.Person)
		}
	}
	for _, ig := range t.Ignored {
		fmt.Fprintf(&b, "\n  ignored: %s: %s: %s", allowlist.Visible(ig.Label), ig.Reason, allowlist.Visible(ig.Detail))
	}
	if published == 0 {
		fmt.Fprintf(&b, "\n  no approval is published under %s%s/ in %s: none was pushed, or the server withheld them (it can withhold approvals, never forge them)",
			allowlist.SourceApprovalRefPrefix, commit, e.Source.Repository)
	}
	hint := fmt.Sprintf("an approver of signer sets %s, in a clone of %s, runs `%s` and then the git push it prints",
		strings.Join(e.Source.Approvals.Signers, ", "), e.Source.Repository, approveCommand(e.Source.Repository, commit, env))
	return &Failure{Check: CheckApprovals, Message: b.String(), Hint: hint}
}

// approveCommand is the command that approves commit for env.
func approveCommand(repo, commit, env string) string {
	return fmt.Sprintf("writ source approve --repository %s --commit %s --environment %s --ssh-key ~/.ssh/id_ed25519", quoteArg(repo), commit, env)
}

// quoteArg quotes s for a shell when it holds anything but plain URL
// characters.
func quoteArg(s string) string {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@%_-+=:,./", r)) {
			return shellQuote(s)
		}
	}
	return s
}
