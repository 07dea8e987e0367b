package companion

import (
	"context"
	"fmt"

	"gitlab.com/writ-ci/writ/allowlist"
)

// GitLabAllowlist is the allowlist as GitLab serves it at a branch head.
type GitLabAllowlist struct {
	*allowlist.Allowlist
	// Project is the allowlist project's path, Branch the branch read and
	// Commit the commit GitLab said is its head.
	Project, Branch, Commit string
}

// ReadAllowlist reads allowlist.yaml (and the key files it names) at the
// head of branch ("" = the default branch) of the allowlist project, as
// writ propose --check does, with a read_api token of a Reporter.
//
// GitLab chooses what it serves: the result is for information (a status
// in a pipeline), never for a decision. Environments verify their own copy.
func ReadAllowlist(ctx context.Context, conn Connection, project, branch string) (*GitLabAllowlist, error) {
	c, err := newClient(conn)
	if err != nil {
		return nil, err
	}
	p := purpose{cmd: "writ source status", why: "to read the allowlist"}
	acc, err := c.checkToken(ctx, p)
	if err != nil {
		return nil, err
	}
	alp, err := c.project(ctx, project)
	if err != nil {
		return nil, err
	}
	if err := c.requireRole(ctx, acc, alp, roleReporter, p.cmd, p.why); err != nil {
		return nil, err
	}
	if branch == "" {
		branch = alp.DefaultBranch
	}
	if branch == "" {
		return nil, fmt.Errorf("the allowlist project %s has no default branch: set --allowlist-branch", alp.Path)
	}
	id := fmt.Sprint(alp.ID)
	head, found, err := c.branchHead(ctx, id, branch)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("the allowlist project %s has no branch %s: set --allowlist-branch", alp.Path, branch)
	}
	data, found, err := c.rawFile(ctx, id, allowlist.FileName, head.ID)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("%s has no %s on %s", alp.Path, allowlist.FileName, branch)
	}
	a, err := allowlist.Parse(allowlist.FileName, data, c.loader(ctx, id, head.ID))
	if err != nil {
		return nil, fmt.Errorf("the allowlist on %s of %s does not parse:\n%w", branch, alp.Path, err)
	}
	return &GitLabAllowlist{Allowlist: a, Project: alp.Path, Branch: branch, Commit: head.ID}, nil
}
