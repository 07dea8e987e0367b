package companion

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	gitlab "gitlab.com/gitlab-org/api/client-go"
)

// GitLab's roles as access levels (doc/api/members.md, "Roles").
const (
	roleGuest      = 10
	roleReporter   = 20
	roleDeveloper  = 30
	roleMaintainer = 40
)

func roleName(level int) string {
	switch {
	case level >= 50:
		return "Owner"
	case level >= roleMaintainer:
		return "Maintainer"
	case level >= roleDeveloper:
		return "Developer"
	case level >= roleReporter:
		return "Reporter"
	case level >= roleGuest:
		return "Guest"
	}
	return "no role"
}

// jobTokenPrefix starts CI/CD job tokens (doc/security/tokens/_index.md,
// "Token prefixes").
const jobTokenPrefix = "glcbt-"

// errJobToken explains why $CI_JOB_TOKEN cannot be writ's token.
var errJobToken = errors.New("the GitLab token is a CI/CD job token ($CI_JOB_TOKEN); GitLab accepts job tokens only in the JOB-TOKEN header and only on the endpoints doc/ci/jobs/ci_job_token.md lists, which do not include CI lint, runner jobs, notes, commits or the token's own details: use a project, group or personal access token (see docs/companion.md, \"Tokens\")")

// purpose says what a command needs of its token. Every command checks it
// before anything else, so a token without the right scope or role fails
// with the missing right named instead of halfway through.
type purpose struct {
	// cmd names the command in messages ("writ propose").
	cmd string
	// write: the command writes (needs the api scope); otherwise read_api
	// suffices.
	write bool
	// why completes "needs the api scope to …".
	why string
}

// tokenAccess is what writ learned of its token at start.
type tokenAccess struct {
	scopes   []string
	userID   int64
	username string
	// all: the user is an administrator or auditor and reads every project;
	// admin: it may also write everywhere (an auditor may not).
	all, admin bool
}

// checkToken reads the token's own details and its user, and refuses a
// token whose scopes cannot serve p.
func (c *client) checkToken(ctx context.Context, p purpose) (*tokenAccess, error) {
	if strings.HasPrefix(c.token, jobTokenPrefix) {
		return nil, errJobToken
	}
	tok, resp, err := c.gl.PersonalAccessTokens.GetSinglePersonalAccessToken(gitlab.WithContext(ctx))
	if err != nil {
		var ae *APIError
		// Any scope may read its own token (lib/api/personal_access_tokens/
		// self_information.rb); GitLab answers 400 for a token that is not a
		// personal, project or group access token (OAuth), and older
		// versions 404.
		if errors.As(c.wrap("", resp, err), &ae) && (ae.Status == http.StatusNotFound || ae.Status == http.StatusForbidden || ae.Status == http.StatusBadRequest) {
			return nil, fmt.Errorf("%s: GitLab does not show this token's scopes (GET /personal_access_tokens/self, GitLab 15.5 or later): use a personal, project or group access token", p.cmd)
		}
		return nil, c.wrap(p.cmd+": read the token's scopes", resp, err)
	}
	if tok == nil || !tok.Active || tok.Revoked {
		return nil, fmt.Errorf("%s: GitLab says the token is revoked or expired; create a new one", p.cmd)
	}
	acc := &tokenAccess{scopes: tok.Scopes}
	api, readAPI := slices.Contains(tok.Scopes, "api"), slices.Contains(tok.Scopes, "read_api")
	switch {
	case p.write && !api:
		return nil, fmt.Errorf("%s needs a token with the api scope %s; this token has %s", p.cmd, p.why, scopeList(tok.Scopes))
	case !p.write && !api && !readAPI:
		return nil, fmt.Errorf("%s needs a token with the read_api scope %s; this token has %s", p.cmd, p.why, scopeList(tok.Scopes))
	}
	u, err := c.currentUser(ctx)
	if err != nil {
		return nil, err
	}
	acc.userID, acc.username = u.ID, u.Username
	acc.all, acc.admin = u.IsAdmin || u.IsAuditor, u.IsAdmin
	return acc, nil
}

func scopeList(s []string) string {
	if len(s) == 0 {
		return "no scopes"
	}
	return "the scopes " + strings.Join(s, ", ")
}

// requireRole checks that the token's user has at least level on project
// p, and says which role is missing and why otherwise. GET /projects/:id
// shows the user's direct and group membership ("permissions"); a role
// through a shared group shows only in /members/all, read when the first
// is not enough.
func (c *client) requireRole(ctx context.Context, acc *tokenAccess, p *projectInfo, level int, cmd, why string) error {
	if acc.admin || (acc.all && level <= roleReporter) || p.Access >= level {
		return nil
	}
	have := p.Access
	m, resp, err := c.gl.ProjectMembers.GetInheritedProjectMember(p.ID, acc.userID, gitlab.WithContext(ctx))
	switch {
	case err == nil && m != nil:
		have = max(have, int(m.AccessLevel))
	case errors.Is(err, gitlab.ErrNotFound):
	default:
		return c.wrap(fmt.Sprintf("read the role of %s on %s", acc.username, p.Path), resp, err)
	}
	if have >= level {
		return nil
	}
	return fmt.Errorf("%s needs the %s role on %s %s; the token's user %s has %s there", cmd, roleName(level), p.Path, why, acc.username, roleName(have))
}

// minLintVersion is the first GitLab whose GET /projects/:id/ci/lint
// honours content_ref and dry_run_ref (doc/api/lint.md: "sha and ref
// renamed to content_ref and dry_run_ref in GitLab 16.10",
// gitlab-org/gitlab!143098). An older GitLab ignores both and silently
// lints the default branch's configuration for the default branch.
var minLintVersion = [2]int{16, 10}

// checkLintVersion refuses a GitLab whose CI lint would not lint what writ
// asks for.
func (c *client) checkLintVersion(ctx context.Context, cmd string) error {
	v, resp, err := c.gl.Version.GetVersion(gitlab.WithContext(ctx))
	if err != nil {
		return c.wrap(cmd+": read GitLab's version", resp, err)
	}
	if v == nil {
		return fmt.Errorf("%s: GitLab returned no version", cmd)
	}
	maj, min, ok := parseGitLabVersion(v.Version)
	if !ok {
		return fmt.Errorf("%s: GitLab reports version %q, which writ cannot read; writ needs GitLab %d.%d or later", cmd, sanitize(v.Version, 40), minLintVersion[0], minLintVersion[1])
	}
	if maj < minLintVersion[0] || maj == minLintVersion[0] && min < minLintVersion[1] {
		return fmt.Errorf("%s: GitLab %s ignores CI lint's content_ref and dry_run_ref (added in GitLab %d.%d): it would lint the default branch instead of the ref writ names, so a change could pass unchecked; upgrade GitLab to %d.%d or later", cmd, sanitize(v.Version, 40), minLintVersion[0], minLintVersion[1], minLintVersion[0], minLintVersion[1])
	}
	return nil
}

// parseGitLabVersion reads "16.10.2-ee" as 16, 10.
func parseGitLabVersion(v string) (maj, min int, ok bool) {
	core, _, _ := strings.Cut(v, "-")
	parts := strings.Split(core, ".")
	if len(parts) < 2 {
		return 0, 0, false
	}
	a, err1 := strconv.Atoi(parts[0])
	b, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil || a < 0 || b < 0 {
		return 0, 0, false
	}
	return a, b, true
}

// lintDenied recognises the messages of GitLab's pipeline permission check
// (Gitlab::Ci::Pipeline::Chain::Validate::Abilities) in a dry-run lint
// answer: the token's user may not create a pipeline for the ref, which
// says nothing about the configuration.
func lintDenied(errs []string) bool {
	for _, e := range errs {
		l := strings.ToLower(e)
		if strings.Contains(l, "insufficient permissions") || strings.Contains(l, "sufficient permission to run a pipeline") {
			return true
		}
	}
	return false
}
