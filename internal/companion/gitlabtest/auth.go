package gitlabtest

import (
	"net/http"
	"strconv"
	"strings"
)

// GitLab's access levels (lib/gitlab/access.rb, doc/api/members.md "Roles").
const (
	NoAccess   = 0
	Guest      = 10
	Reporter   = 20
	Developer  = 30
	Maintainer = 40
	Owner      = 50
)

// Token scopes writ's calls depend on (doc/user/profile/personal_access_tokens.md
// "Personal access token scopes").
const (
	ScopeAPI     = "api"
	ScopeReadAPI = "read_api"
)

// TokenInfo is an access token the server accepts and what it may do.
//
// GitLab's model, as the fake applies it:
//   - a token authenticates a user; the user's role on each project (Role,
//     SetRole) decides what it may do there (doc/user/permissions.md);
//   - the token's scopes bound that further: api allows everything the
//     user may do, read_api only GET and HEAD (lib/api/api.rb:
//     "allow_access_with_scope :read_api, if: request.get? || request.head?");
//     another request answers 403 insufficient_scope (lib/api/api_guard.rb);
//     any scope may read the token itself
//     (lib/api/personal_access_tokens/self_information.rb);
//   - administrators and auditors read every resource
//     (User#can_read_all_resources?, used by Ci::RunnerJobsFinder and
//     lib/api/ci/runners.rb);
//   - a CI/CD job token is never accepted in PRIVATE-TOKEN: GitLab looks it
//     up only from the JOB-TOKEN header or the job token parameter, and only
//     on the endpoints doc/ci/jobs/ci_job_token.md lists
//     (lib/gitlab/auth/auth_finders.rb, find_user_from_job_token).
type TokenInfo struct {
	// ID is the token's id, as /personal_access_tokens/self shows it.
	ID     int64
	Name   string
	User   User
	Scopes []string
	// Admin and Auditor mark the user as an administrator or auditor.
	Admin, Auditor bool
	// JobToken marks a CI/CD job token ($CI_JOB_TOKEN).
	JobToken bool
	// Revoked or expired tokens answer 401.
	Revoked bool
	// AccessLevel is set for project and group access tokens (their bot
	// user's role), as GET /projects/:id/access_tokens shows it.
	AccessLevel int
}

func (t *TokenInfo) hasScope(s string) bool {
	for _, x := range t.Scopes {
		if x == s {
			return true
		}
	}
	return false
}

// AddToken makes the server accept token as info describes. A user without
// a role (SetRole, SetDefaultRole) has no access to any project.
func (s *Server) AddToken(token string, info TokenInfo) *TokenInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	if info.ID == 0 {
		info.ID = s.id()
	}
	t := info
	s.tokens[token] = &t
	return &t
}

// SetRole gives user the access level on p (a direct or inherited
// membership: GitLab counts the highest).
func (s *Server) SetRole(u User, p *Project, level int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.roles[roleKey(u.ID, p.ID)] = level
}

// SetDefaultRole gives user the access level on every project it has no
// explicit role on.
func (s *Server) SetDefaultRole(u User, level int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.defaultRoles[u.ID] = level
}

// Protect makes branch of p protected: pushing needs push, merging needs
// merge (access levels; GitLab's default for a new protected branch is
// Maintainer for both, doc/user/project/repository/branches/protected.md).
func (s *Server) Protect(p *Project, branch string, push, merge int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.Protected == nil {
		p.Protected = map[string][2]int{}
	}
	p.Protected[branch] = [2]int{push, merge}
}

func roleKey(uid, pid int64) string {
	return strconv.FormatInt(uid, 10) + "/" + strconv.FormatInt(pid, 10)
}

// roleLocked is the user's access level on p.
func (s *Server) roleLocked(t *TokenInfo, p *Project) int {
	if l, ok := s.roles[roleKey(t.User.ID, p.ID)]; ok {
		return l
	}
	return s.defaultRoles[t.User.ID]
}

// canUpdateBranch is Gitlab::UserAccess#can_update_branch?: push or merge
// rights on a protected branch, Developer on any other.
func (s *Server) canUpdateBranch(t *TokenInfo, p *Project, branch string) bool {
	if t.Admin {
		return true
	}
	role := s.roleLocked(t, p)
	if pr, ok := p.Protected[branch]; ok {
		return role >= pr[0] || role >= pr[1]
	}
	return role >= Developer
}

// authenticate finds the request's token and applies the scope rule. It
// writes the error response and returns nil when the request must stop.
func (c *call) authenticate() *TokenInfo {
	tok := c.r.Header.Get("PRIVATE-TOKEN")
	t := c.s.tokens[tok]
	if tok == "" || t == nil || t.Revoked || t.JobToken {
		c.json(http.StatusUnauthorized, msg("401 Unauthorized"))
		return nil
	}
	if t.hasScope(ScopeAPI) {
		return t
	}
	if t.hasScope(ScopeReadAPI) && (c.r.Method == http.MethodGet || c.r.Method == http.MethodHead) {
		return t
	}
	// The body GitLab's API guard sends for a scope the token lacks.
	c.json(http.StatusForbidden, map[string]any{
		"error":             "insufficient_scope",
		"error_description": "The request requires higher privileges than provided by the access token.",
		"scope":             "api",
	})
	return nil
}

// canSee is whether the token's user can see p at all: a private project
// is invisible (404) below Guest.
func (c *call) canSee(p *Project) bool {
	return c.tok.Admin || c.tok.Auditor || c.s.roleLocked(c.tok, p) >= Guest
}

// need answers 403 and returns false unless the user has at least level on p.
func (c *call) need(p *Project, level int) bool {
	if c.tok.Admin || c.s.roleLocked(c.tok, p) >= level {
		return true
	}
	c.json(http.StatusForbidden, msg("403 Forbidden"))
	return false
}

func (s *Server) tokenJSON(t *TokenInfo) map[string]any {
	scopes := t.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	out := map[string]any{
		"id": t.ID, "name": t.Name, "description": "", "revoked": t.Revoked,
		"created_at": ts(s.now()), "scopes": scopes, "user_id": t.User.ID,
		"last_used_at": ts(s.now()), "active": !t.Revoked, "expires_at": nil,
	}
	if t.AccessLevel > 0 {
		out["access_level"] = t.AccessLevel
	}
	return out
}

// permissionsJSON is the "permissions" object of GET /projects/:id for the
// current user (lib/api/entities/project.rb, ProjectWithAccess).
func (s *Server) permissionsJSON(t *TokenInfo, p *Project) map[string]any {
	role := s.roleLocked(t, p)
	var pa any
	if role > 0 {
		pa = map[string]any{"access_level": role, "notification_level": 3}
	}
	return map[string]any{"project_access": pa, "group_access": nil}
}

// parseVersion reads "16.10.2-ee" as (16, 10).
func parseVersion(v string) (int, int) {
	core, _, _ := strings.Cut(v, "-")
	parts := strings.Split(core, ".")
	if len(parts) < 2 {
		return 0, 0
	}
	maj, _ := strconv.Atoi(parts[0])
	min, _ := strconv.Atoi(parts[1])
	return maj, min
}

// versionAtLeast reports whether the server's version is at least maj.min.
func (s *Server) versionAtLeast(maj, min int) bool {
	a, b := parseVersion(s.Version)
	return a > maj || (a == maj && b >= min)
}
