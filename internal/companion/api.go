package companion

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"

	gitlab "gitlab.com/gitlab-org/api/client-go"
)

// The GitLab calls the companion makes, each wrapped so that its error says
// what writ was doing and what to do, and never carries the token.

// projectInfo is what writ uses of a GitLab project.
type projectInfo struct {
	ID            int64
	Path          string
	HTTPURL       string
	DefaultBranch string
	WebURL        string
	// Access is the token's user's role on the project as GET /projects/:id
	// shows it: the higher of its direct and group membership.
	Access int
}

func (c *client) project(ctx context.Context, pid string) (*projectInfo, error) {
	p, resp, err := c.gl.Projects.GetProject(pid, nil, gitlab.WithContext(ctx))
	if err != nil {
		return nil, c.wrap("read project "+pid, resp, err)
	}
	if p == nil || p.PathWithNamespace == "" || p.ID <= 0 {
		return nil, fmt.Errorf("read project %s: GitLab returned a project without id or path_with_namespace", pid)
	}
	info := &projectInfo{ID: p.ID, Path: p.PathWithNamespace, HTTPURL: p.HTTPURLToRepo, DefaultBranch: p.DefaultBranch, WebURL: p.WebURL}
	if pm := p.Permissions; pm != nil {
		if pm.ProjectAccess != nil {
			info.Access = int(pm.ProjectAccess.AccessLevel)
		}
		if pm.GroupAccess != nil {
			info.Access = max(info.Access, int(pm.GroupAccess.AccessLevel))
		}
	}
	return info, nil
}

// ciLint runs GET /projects/:id/ci/lint on the configuration at contentRef,
// with the jobs: simulating a pipeline for dryRunRef, or, when dryRunRef is
// "", a static check (no rules evaluated) that needs only read access.
func (c *client) ciLint(ctx context.Context, pid, contentRef, dryRunRef string) (*lintResult, error) {
	opt := &gitlab.ProjectLintOptions{
		ContentRef:  gitlab.Ptr(contentRef),
		DryRun:      gitlab.Ptr(dryRunRef != ""),
		IncludeJobs: gitlab.Ptr(true),
	}
	if dryRunRef != "" {
		opt.DryRunRef = gitlab.Ptr(dryRunRef)
	}
	req, err := c.gl.NewRequest(http.MethodGet, "projects/"+gitlab.PathEscape(pid)+"/ci/lint", opt, []gitlab.RequestOptionFunc{gitlab.WithContext(ctx)})
	if err != nil {
		return nil, fmt.Errorf("lint CI configuration of %s: %s", pid, redact(err.Error(), c.token))
	}
	var res lintResult
	resp, err := c.gl.Do(req, &res)
	if err != nil {
		return nil, c.wrap(fmt.Sprintf("lint CI configuration of %s at %s", pid, contentRef), resp, err)
	}
	return &res, nil
}

// rawFile reads a file at ref; found is false when GitLab says 404.
func (c *client) rawFile(ctx context.Context, pid, file, ref string) (data []byte, found bool, err error) {
	b, resp, err := c.gl.RepositoryFiles.GetRawFile(pid, file, &gitlab.GetRawFileOptions{Ref: gitlab.Ptr(ref)}, gitlab.WithContext(ctx))
	if err != nil {
		if errors.Is(err, gitlab.ErrNotFound) {
			return nil, false, nil
		}
		return nil, false, c.wrap(fmt.Sprintf("read %s at %s in %s", file, ref, pid), resp, err)
	}
	return b, true, nil
}

// branchHead returns the commit at a branch's head, or found false when the
// branch does not exist.
func (c *client) branchHead(ctx context.Context, pid, branch string) (head *gitlab.Commit, found bool, err error) {
	b, resp, err := c.gl.Branches.GetBranch(pid, branch, gitlab.WithContext(ctx))
	if err != nil {
		if errors.Is(err, gitlab.ErrNotFound) {
			return nil, false, nil
		}
		return nil, false, c.wrap(fmt.Sprintf("read branch %s of %s", branch, pid), resp, err)
	}
	if b == nil || b.Commit == nil || !isHex(b.Commit.ID) {
		return nil, false, fmt.Errorf("read branch %s of %s: GitLab returned no valid commit ID", branch, pid)
	}
	return b.Commit, true, nil
}

// listDir lists the blob names directly in dir at ref (empty if dir does
// not exist), at most max of them.
func (c *client) listDir(ctx context.Context, pid, dir, ref string, max int) ([]string, error) {
	var out []string
	what := fmt.Sprintf("list %s at %s in %s", dir, ref, pid)
	err := eachPage(ctx, what, func(page int64) (*gitlab.Response, bool, error) {
		nodes, resp, err := c.gl.Repositories.ListTree(pid, &gitlab.ListTreeOptions{
			ListOptions: gitlab.ListOptions{Page: page, PerPage: 100},
			Path:        gitlab.Ptr(dir), Ref: gitlab.Ptr(ref),
		}, gitlab.WithContext(ctx))
		if err != nil {
			if errors.Is(err, gitlab.ErrNotFound) && page == 1 {
				return nil, false, nil
			}
			return nil, false, c.wrap(what, resp, err)
		}
		for _, n := range nodes {
			if n == nil || n.Type != "blob" {
				continue
			}
			// The name must be a plain file name directly in dir: a hostile
			// server could answer with paths elsewhere.
			if n.Name == "" || strings.ContainsAny(n.Name, "/\\\x00") || n.Name == "." || n.Name == ".." || n.Path != path.Join(dir, n.Name) {
				return nil, false, fmt.Errorf("%s: GitLab returned an unexpected entry %q", what, sanitize(n.Path, 100))
			}
			out = append(out, n.Name)
			if len(out) > max {
				return nil, false, fmt.Errorf("%s at %s holds more than %d files", dir, ref, max)
			}
		}
		return resp, true, nil
	})
	return out, err
}

// maxOpenMRs bounds the merge requests read for one source branch.
const maxOpenMRs = 1000

// openMRs lists open merge requests from source into target.
func (c *client) openMRs(ctx context.Context, pid, source, target string) ([]*gitlab.BasicMergeRequest, error) {
	var out []*gitlab.BasicMergeRequest
	what := fmt.Sprintf("list merge requests of %s from %s", pid, source)
	seen := 0
	err := eachPage(ctx, what, func(page int64) (*gitlab.Response, bool, error) {
		mrs, resp, err := c.gl.MergeRequests.ListProjectMergeRequests(pid, &gitlab.ListProjectMergeRequestsOptions{
			ListOptions:  gitlab.ListOptions{Page: page, PerPage: 100},
			State:        gitlab.Ptr("opened"),
			SourceBranch: gitlab.Ptr(source),
			TargetBranch: gitlab.Ptr(target),
		}, gitlab.WithContext(ctx))
		if err != nil {
			return nil, false, c.wrap(what, resp, err)
		}
		if seen += len(mrs); seen > maxOpenMRs {
			return nil, false, fmt.Errorf("%s: more than %d merge requests", what, maxOpenMRs)
		}
		for _, mr := range mrs {
			// Filter again: GitLab's filtering is not something to rely on.
			if mr != nil && mr.State == "opened" && mr.SourceBranch == source && mr.TargetBranch == target {
				out = append(out, mr)
			}
		}
		return resp, true, nil
	})
	return out, err
}

func (c *client) mergeRequest(ctx context.Context, pid string, iid int64) (*gitlab.MergeRequest, error) {
	mr, resp, err := c.gl.MergeRequests.GetMergeRequest(pid, iid, nil, gitlab.WithContext(ctx))
	if err != nil {
		return nil, c.wrap(fmt.Sprintf("read merge request !%d of %s", iid, pid), resp, err)
	}
	if mr == nil || mr.IID != iid {
		return nil, fmt.Errorf("read merge request !%d of %s: GitLab returned a different merge request", iid, pid)
	}
	return mr, nil
}

func (c *client) currentUser(ctx context.Context) (*gitlab.User, error) {
	u, resp, err := c.gl.Users.CurrentUser(gitlab.WithContext(ctx))
	if err != nil {
		return nil, c.wrap("read the token's user", resp, err)
	}
	if u == nil || u.ID <= 0 {
		return nil, errors.New("read the token's user: GitLab returned no user ID")
	}
	return u, nil
}

// notes lists every note of a merge request, oldest first, at most max.
// GitLab drops notes the user may not read after paging (lib/api/notes.rb),
// so a page may be short or empty while more follow: eachPage goes on until
// GitLab names no next page.
func (c *client) notes(ctx context.Context, pid string, iid int64, max int) ([]*gitlab.Note, error) {
	var out []*gitlab.Note
	what := fmt.Sprintf("list notes of merge request !%d of %s", iid, pid)
	err := eachPage(ctx, what, func(page int64) (*gitlab.Response, bool, error) {
		ns, resp, err := c.gl.Notes.ListMergeRequestNotes(pid, iid, &gitlab.ListMergeRequestNotesOptions{
			ListOptions: gitlab.ListOptions{Page: page, PerPage: 100},
			OrderBy:     gitlab.Ptr("created_at"),
			Sort:        gitlab.Ptr("asc"),
		}, gitlab.WithContext(ctx))
		if err != nil {
			return nil, false, c.wrap(what, resp, err)
		}
		for _, n := range ns {
			if n != nil {
				out = append(out, n)
			}
		}
		if len(out) > max {
			return nil, false, fmt.Errorf("merge request !%d has more than %d notes", iid, max)
		}
		return resp, true, nil
	})
	return out, err
}

func isHex(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, r := range s {
		if (r < '0' || r > '9') && (r < 'a' || r > 'f') {
			return false
		}
	}
	return true
}
