package companion

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	gitlab "gitlab.com/gitlab-org/api/client-go"
)

// blindSpots are what reconcile's token cannot see.
type blindSpots struct {
	// reasons say, one line each, what is not visible and why.
	reasons []string
	// projects are the paths of projects whose jobs GitLab hides.
	projects map[string]bool
}

func (b *blindSpots) add(project, reason string) {
	if project != "" {
		b.projects[project] = true
	}
	b.reasons = append(b.reasons, reason)
}

// checkRunnerVisibility finds, before anything is compared, what GitLab
// would hide from the token. GET /runners/:id/jobs lists, for a user who
// is not an administrator or auditor, only the jobs of projects where the
// user is Reporter or above (app/finders/ci/runner_jobs_finder.rb,
// by_permission). A project writ admitted jobs for, or that the runner is
// assigned to, below that role would make every admission there look like
// "missing in GitLab" and hide every job GitLab ran there behind writ's
// back. For an instance or group runner the projects that may use it
// cannot be listed at all without an administrator or auditor token.
//
// It also counts the hosts behind each runner (its managers): every host's
// audit log is needed, or the other hosts' jobs look unseen by writ.
func (c *client) checkRunnerVisibility(ctx context.Context, acc *tokenAccess, runners []int64, logs int, systemID string, writ map[int64]*writJob, from time.Time) (*blindSpots, error) {
	b := &blindSpots{projects: map[string]bool{}}
	candidates := map[string]bool{}
	for _, w := range writ {
		if w.project != "" && !w.time.Before(from) {
			candidates[w.project] = true
		}
	}
	for _, rid := range runners {
		d, resp, err := c.gl.Runners.GetRunnerDetails(rid, gitlab.WithContext(ctx))
		if err != nil {
			return nil, c.wrap(fmt.Sprintf("read runner %d (the token's user must be an administrator or auditor, or Maintainer of a project the runner is assigned to)", rid), resp, err)
		}
		if d == nil || d.ID != rid {
			return nil, fmt.Errorf("reconcile: GitLab returned another runner for runner %d", rid)
		}
		if d.RunnerType != "project_type" && !acc.all {
			b.add("", fmt.Sprintf("runner %d is a %s runner: any project may use it, and GitLab shows a user that is not an administrator or auditor only the jobs of projects where it is Reporter; use an administrator or auditor token", rid, strings.TrimSuffix(d.RunnerType, "_type")))
		}
		for _, p := range d.Projects {
			candidates[p.PathWithNamespace] = true
		}
		hosts, err := c.runnerManagers(ctx, rid)
		if err != nil {
			return nil, err
		}
		if systemID != "" {
			if hosts != nil && !contains(hosts, systemID) {
				return nil, fmt.Errorf("reconcile: runner %d has no host with system id %s; its hosts are %s", rid, sanitize(systemID, 80), strings.Join(hosts, ", "))
			}
			continue
		}
		if len(hosts) > logs {
			return nil, fmt.Errorf("reconcile: runner %d runs on %d hosts (system ids %s) and %d audit log(s) were given: GitLab lists the jobs of all of them, so the others' jobs would look unseen by writ; pass every host's audit log (--audit-log, repeatable)", rid, len(hosts), strings.Join(hosts, ", "), logs)
		}
	}
	if acc.all {
		return b, nil
	}
	paths := make([]string, 0, len(candidates))
	for p := range candidates {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, path := range paths {
		if err := c.checkSees(ctx, acc, path, b); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// checkSees records path in b unless the token's user is Reporter there.
func (c *client) checkSees(ctx context.Context, acc *tokenAccess, path string, b *blindSpots) error {
	p, err := c.project(ctx, path)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		b.add(path, fmt.Sprintf("%s: the token's user %s cannot see this project", sanitize(path, 200), acc.username))
		return nil
	}
	if err != nil {
		return err
	}
	if err := c.requireRole(ctx, acc, p, roleReporter, "writ reconcile", "to see its runner jobs"); err != nil {
		var ae *APIError
		if errors.As(err, &ae) {
			return err
		}
		b.add(path, sanitize(path, 200)+": "+err.Error())
	}
	return nil
}

// runnerManagers lists the system IDs of the hosts that run jobs for a
// runner (GET /runners/:id/managers, doc/api/runners.md). A GitLab without
// the endpoint answers 404: then the count is unknown and not checked.
func (c *client) runnerManagers(ctx context.Context, rid int64) ([]string, error) {
	var out []string
	what := fmt.Sprintf("list the hosts of runner %d", rid)
	err := eachPage(ctx, what, func(page int64) (*gitlab.Response, bool, error) {
		req, err := c.gl.NewRequest(http.MethodGet, fmt.Sprintf("runners/%d/managers", rid), &gitlab.ListOptions{Page: page, PerPage: 100}, []gitlab.RequestOptionFunc{gitlab.WithContext(ctx)})
		if err != nil {
			return nil, false, fmt.Errorf("%s: %s", what, redact(err.Error(), c.token))
		}
		var ms []struct {
			SystemID string `json:"system_id"`
		}
		resp, err := c.gl.Do(req, &ms)
		if err != nil {
			if errors.Is(err, gitlab.ErrNotFound) && page == 1 {
				return nil, false, nil
			}
			return nil, false, c.wrap(what, resp, err)
		}
		for _, m := range ms {
			out = append(out, sanitize(m.SystemID, 80))
		}
		if len(out) > 10000 {
			return nil, false, fmt.Errorf("%s: more than 10000 hosts", what)
		}
		return resp, true, nil
	})
	return out, err
}
