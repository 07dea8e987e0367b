package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/executor"
	"gitlab.com/writ-ci/writ/internal/companion"
	"gitlab.com/writ-ci/writ/internal/gitsig"
)

// sourceCmd is the two-person rule's tools: approving an application
// commit and seeing where its approvals stand.
type sourceCmd struct {
	Approve sourceApproveCmd `cmd:"" help:"Approve a commit of an application repository for environments: sign the statement, store it under refs/writ/approvals/<commit>/<label>, print the push command."`
	Status  sourceStatusCmd  `cmd:"" help:"Show which approvals of a commit count for an entry and environment, which are ignored and why, and how many are still needed (exit 0 enough, 1 short)."`
}

type sourceApproveCmd struct {
	Dir         string   `help:"Clone of the application repository." default:"." type:"existingdir"`
	Repository  string   `help:"The entry's source.repository, exactly as the allowlist writes it." required:""`
	Commit      string   `help:"The commit to approve (default HEAD), resolved to its full id."`
	Environment []string `help:"An environment the commit is approved for (repeat for several)." required:"" name:"environment"`
	SSHKey      string   `help:"Sign with this SSH private key (ssh-keygen -Y sign)." xor:"key" type:"existingfile"`
	GPGKey      string   `help:"Sign with this OpenPGP key, its primary key's full fingerprint (gpg --detach-sign)." xor:"key" name:"gpg-key"`
	GPGProgram  string   `help:"The gpg to run for --gpg-key." default:"gpg" name:"gpg-program"`
	SigstoreKey string   `help:"Sign a Sigstore bundle with this PEM private key (ECDSA P-256 or Ed25519; offline)." xor:"key" type:"existingfile"`
	Label       string   `help:"Name of the approval ref, usually your name (default: $USER)."`
	Remote      string   `help:"The remote the push command names." default:"origin"`
}

func (c *sourceApproveCmd) Run(ctx context.Context, g *globals) error {
	if c.SSHKey == "" && c.GPGKey == "" && c.SigstoreKey == "" {
		return exitCode(2, errors.New("choose a key: --ssh-key FILE, --gpg-key FINGERPRINT or --sigstore-key FILE"))
	}
	label := c.Label
	if label == "" {
		label = os.Getenv("USER")
	}
	if !allowlist.ValidLabel(label) {
		return exitCode(2, fmt.Errorf("label %q: use letters, digits, '.', '_' or '-' (set --label)", label))
	}
	rev := c.Commit
	if rev == "" {
		rev = "HEAD"
	}
	commit, err := gitOut(ctx, c.Dir, nil, nil, "rev-parse", "--verify", "--end-of-options", rev+"^{commit}")
	if err != nil {
		return exitCode(2, err)
	}
	stmt, err := allowlist.SourceStatement{Repository: c.Repository, Commit: commit, Environments: c.Environment}.Bytes()
	if err != nil {
		return exitCode(2, err)
	}
	var sig []byte
	kind := allowlist.KindSSH
	switch {
	case c.SSHKey != "":
		sig, err = allowlist.SignSSHNamespace(ctx, stmt, c.SSHKey, allowlist.SourceApprovalNamespace)
	case c.GPGKey != "":
		kind = allowlist.KindOpenPGP
		sig, err = allowlist.SignOpenPGP(ctx, stmt, c.GPGKey, c.GPGProgram)
	default:
		kind = allowlist.KindSigstore
		key, kerr := allowlist.LoadSigstoreKey(c.SigstoreKey)
		if kerr != nil {
			return kerr
		}
		sig, err = allowlist.SignSigstore(stmt, key)
	}
	if err != nil {
		return err
	}
	ref := allowlist.SourceApprovalRef(commit, label)
	if err := storeApproval(ctx, c.Dir, ref, stmt, allowlist.SourceSignatureFile(kind), sig); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "approved this statement:\n%s\nstored as %s; publish it with:\n  git push %s +%s:%s\n", indent(string(stmt)), ref, c.Remote, ref, ref)
	return nil
}

// storeApproval writes the approval's tree (the statement and the
// signature) and a commit holding it with git's plumbing, and points ref
// at it. The commit has a fixed identity and date: it carries nothing but
// the two files.
func storeApproval(ctx context.Context, dir, ref string, stmt []byte, sigName string, sig []byte) error {
	env := []string{"GIT_AUTHOR_NAME=writ", "GIT_AUTHOR_EMAIL=writ@invalid", "GIT_AUTHOR_DATE=1970-01-01T00:00:00Z",
		"GIT_COMMITTER_NAME=writ", "GIT_COMMITTER_EMAIL=writ@invalid", "GIT_COMMITTER_DATE=1970-01-01T00:00:00Z"}
	sb, err := gitOut(ctx, dir, nil, stmt, "hash-object", "-w", "--stdin")
	if err != nil {
		return err
	}
	gb, err := gitOut(ctx, dir, nil, sig, "hash-object", "-w", "--stdin")
	if err != nil {
		return err
	}
	entries := []string{"100644 blob " + gb + "\t" + sigName, "100644 blob " + sb + "\t" + allowlist.SourceStatementFile}
	slices.Sort(entries)
	tree, err := gitOut(ctx, dir, nil, []byte(strings.Join(entries, "\n")+"\n"), "mktree")
	if err != nil {
		return err
	}
	c, err := gitOut(ctx, dir, env, []byte("writ source approval\n"), "commit-tree", tree)
	if err != nil {
		return err
	}
	_, err = gitOut(ctx, dir, nil, nil, "update-ref", ref, c)
	return err
}

// gitOut runs git in dir, with env added to the environment, and returns
// its trimmed standard output.
func gitOut(ctx context.Context, dir string, env []string, stdin []byte, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

type sourceStatusCmd struct {
	gitlabFlags
	Dir              string `help:"Clone of the application repository, with the approvals fetched: git fetch origin '+refs/writ/approvals/<commit>/*:refs/writ/approvals/<commit>/*'." default:"." type:"existingdir"`
	Allowlist        string `help:"The allowlist.yaml in force (key files are read relative to it)." xor:"allowlist" type:"existingfile"`
	AllowlistProject string `help:"Instead of --allowlist: read it through the GitLab API from this project (a read_api token of a Reporter), as the application CI template's writ-approvals job does. Information only: GitLab chooses what it serves." xor:"allowlist"`
	AllowlistBranch  string `help:"With --allowlist-project: the branch the environment follows (default: the project's default branch)."`
	Entry            string `help:"The allowlist entry the job runs under." required:""`
	Commit           string `help:"The commit (default HEAD)."`
	Environment      string `help:"The environment the job deploys." required:""`
}

func (c *sourceStatusCmd) Run(ctx context.Context, g *globals) error {
	a, err := c.allowlist(ctx, g)
	if err != nil {
		return exitCode(2, err)
	}
	var e *allowlist.Entry
	for _, j := range a.Jobs {
		if j.Name == c.Entry {
			e = j
		}
	}
	switch {
	case e == nil:
		return exitCode(2, fmt.Errorf("the allowlist has no entry %q", c.Entry))
	case e.Source.Approvals == nil:
		return exitCode(2, fmt.Errorf("entry %q requires no approvals (no source.approvals)", c.Entry))
	}
	repo, err := git.PlainOpenWithOptions(c.Dir, &git.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return exitCode(2, fmt.Errorf("open the repository at %s: %w", c.Dir, err))
	}
	rev := c.Commit
	if rev == "" {
		rev = "HEAD"
	}
	h, err := repo.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		return exitCode(2, fmt.Errorf("resolve %s: %w", rev, err))
	}
	commit := h.String()
	approvals, err := executor.ReadApprovals(repo, commit)
	if err != nil {
		return exitCode(2, err)
	}
	author := commitSigner(a, e, repo, *h)
	t, err := a.TallySourceApprovals(e, commit, c.Environment, author, approvals, time.Now())
	if err != nil {
		return exitCode(2, err)
	}
	writeSourceStatus(g, e, commit, c.Environment, &t)
	if t.Needed() > 0 {
		return exitCode(1, nil)
	}
	return nil
}

// allowlist reads the allowlist from --allowlist, or through the GitLab API
// from --allowlist-project; then it says, first thing in the job log, that
// this status is not what the runner counts.
func (c *sourceStatusCmd) allowlist(ctx context.Context, g *globals) (*allowlist.Allowlist, error) {
	if c.AllowlistProject == "" {
		if c.Allowlist == "" {
			return nil, errors.New("set --allowlist FILE or --allowlist-project PROJECT")
		}
		a, _, err := readAllowlistFile(c.Allowlist)
		return a, err
	}
	conn, err := c.conn()
	if err != nil {
		return nil, err
	}
	gl, err := companion.ReadAllowlist(ctx, conn, c.AllowlistProject, c.AllowlistBranch)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(g.stdout, "information only: this status uses the allowlist GitLab serves (%s, branch %s, commit %s, version %d) and the approvals GitLab's git server serves; "+
		"the runner counts neither: it verifies the approvals it fetches itself against the allowlist version its environment accepted.\n",
		gl.Project, gl.Branch, gl.Commit, gl.Version)
	return gl.Allowlist, nil
}

// commitSigner verifies the commit's signature with the entry's signers, as
// the executor does in commit and strict mode, or returns nil.
func commitSigner(a *allowlist.Allowlist, e *allowlist.Entry, repo *git.Repository, h plumbing.Hash) *gitsig.Signer {
	keys, err := a.SetKeys(e.Source.Signers)
	if err != nil {
		return nil
	}
	co, err := repo.CommitObject(h)
	if err != nil {
		return nil
	}
	s, err := keys.VerifyCommit(co, time.Now())
	if err != nil {
		return nil
	}
	return &s
}

func writeSourceStatus(g *globals, e *allowlist.Entry, commit, env string, t *allowlist.SourceTally) {
	w := g.stdout
	fmt.Fprintf(w, "commit %s, entry %q, environment %q: %d of %d approvals", commit, e.Name, env, len(t.Valid), t.Threshold)
	if n := t.Needed(); n > 0 {
		fmt.Fprintf(w, ", %d more needed\n", n)
	} else {
		fmt.Fprintln(w, ", enough")
	}
	for _, v := range t.Valid {
		label := v.Label
		if label == "" {
			label = "(the commit's own signature)"
		}
		fmt.Fprintf(w, "  valid:   %s: %s key %s (%s)\n", label, v.Kind, v.Signer, v.Person)
	}
	for _, ig := range t.Ignored {
		fmt.Fprintf(w, "  ignored: %s: %s: %s\n", allowlist.Visible(ig.Label), ig.Reason, allowlist.Visible(ig.Detail))
	}
	if t.Needed() > 0 {
		fmt.Fprintf(w, "to approve: writ source approve --repository %s --commit %s --environment %s --ssh-key KEY (or --gpg-key FINGERPRINT)\n", e.Source.Repository, commit, env)
	}
	if e.Source.ApprovedHistory() {
		// The status knows neither the last commit the runner admitted
		// nor the approvals of other commits: say what it leaves out.
		fmt.Fprintf(w, "note: entry %q is strict with signature: none: the runner also requires every first-parent commit since the last one it admitted (or descends_from) to be approved for %s; this status counts commit %s only\n", e.Name, env, commit)
	}
}
