// Package gitlabtest is an in-memory GitLab for tests: an HTTP server on
// 127.0.0.1 that implements the REST API endpoints writ's companion commands
// use (projects, repository files and tree, branches, commits, merge requests,
// notes, CI lint, runners and their jobs, current user, the token itself,
// version), with request and response shapes from GitLab's API
// documentation.
//
// It models GitLab's permission rules that decide whether writ's workflows
// work: tokens with scopes and users with roles per project (auth.go), the
// CI lint dry run's need for write rights on the simulated ref, runner job
// lists filtered by the user's role, note lists filtered after paging,
// version-gated lint parameters, and quick actions run from notes and
// descriptions (quickactions.go). Each rule cites the GitLab source or
// document it follows.
//
// It records every request so tests can assert what writ sent, and it can be
// told to fail (401, 403, 404, 429, 5xx) to test error handling.
package gitlabtest

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// User is a GitLab user as the API shows it.
type User struct {
	ID       int64  `json:"id"`
	Username string `json:"username"`
	Name     string `json:"name"`
}

// Request is one request the server received.
type Request struct {
	Method string
	// Path is the decoded path below /api/v4, for example
	// "/projects/group/app/repository/files/allowlist.yaml/raw".
	Path string
	// EscapedPath is the path as sent, for example "/projects/group%2Fapp/…".
	EscapedPath string
	Query       url.Values
	Body        []byte
	Header      http.Header
}

// Fault makes matching requests fail.
type Fault struct {
	// Method ("" = any) and PathPrefix (decoded, below /api/v4; "" = any) select requests.
	Method     string
	PathPrefix string
	Status     int
	Body       string
	Header     map[string]string
	// Times is how many requests fail; 0 means all.
	Times int
}

// Commit is a commit in a fake repository: a full snapshot of its files.
type Commit struct {
	ID        string
	Parents   []string
	Message   string
	Author    string
	CreatedAt time.Time
	Files     map[string][]byte
}

// MergeRequest is a merge request in a fake project.
type MergeRequest struct {
	ID, IID      int64
	Title        string
	Description  string
	State        string // "opened", "merged", "closed"
	SourceBranch string
	TargetBranch string
	Author       User
	CreatedAt    time.Time
	UpdatedAt    time.Time
	Notes        []*Note
}

// Note is a comment on a merge request.
type Note struct {
	ID     int64
	Body   string
	Author User
	System bool
	// Hidden notes exist but the token's user may not read them (for
	// example an internal note, or one by a banned user): GitLab drops them
	// from the page after paging (lib/api/notes.rb).
	Hidden    bool
	CreatedAt time.Time
	UpdatedAt time.Time
}

// LintJob is one job of a CI lint response with include_jobs=true.
type LintJob struct {
	Name         string   `json:"name"`
	Stage        string   `json:"stage"`
	BeforeScript []string `json:"before_script"`
	Script       []string `json:"script"`
	AfterScript  []string `json:"after_script"`
	TagList      []string `json:"tag_list"`
	Environment  *string  `json:"environment"`
	When         string   `json:"when"`
	AllowFailure bool     `json:"allow_failure"`
	Only         any      `json:"only"`
	Except       any      `json:"except"`
}

// Lint is the CI lint response for one content ref.
type Lint struct {
	Valid      bool      `json:"valid"`
	Errors     []string  `json:"errors"`
	Warnings   []string  `json:"warnings"`
	MergedYAML string    `json:"merged_yaml"`
	Includes   []any     `json:"includes"`
	Jobs       []LintJob `json:"jobs,omitempty"`
}

// Project is a fake GitLab project with a repository.
type Project struct {
	ID                int64
	PathWithNamespace string
	DefaultBranch     string
	HTTPURLToRepo     string
	WebURL            string

	Branches      map[string]string // name → commit ID
	Commits       map[string]*Commit
	MergeRequests []*MergeRequest
	// Lint maps a content ref to the lint response for it.
	Lint map[string]*Lint
	// Protected maps a protected branch to the access levels allowed to
	// push and to merge (Server.Protect).
	Protected map[string][2]int
}

// RunnerJob is a job in a runner's job history.
type RunnerJob struct {
	ID            int64
	Name          string
	Stage         string
	Status        string
	Ref           string
	Tag           bool
	TagList       []string
	FailureReason string
	CreatedAt     time.Time
	StartedAt     *time.Time
	FinishedAt    *time.Time
	Project       *Project
	PipelineID    int64
	SHA           string
	// SystemID is the host (runner manager) that ran the job.
	SystemID string
}

// RunnerInfo is what GET /runners/:id shows of a runner.
type RunnerInfo struct {
	// Type is instance_type, group_type or project_type.
	Type     string
	Projects []*Project
	// Managers are the system IDs of the hosts that run jobs for the runner
	// (GET /runners/:id/managers, doc/api/runners.md).
	Managers []string
}

// Server is the fake GitLab.
type Server struct {
	// URL is the API base, http://127.0.0.1:PORT/api/v4.
	URL string
	// Token is the token New was given: user User, scope api, and the
	// Owner role on every project unless SetRole says otherwise.
	Token string
	// User is who Token authenticates.
	User User
	// Version is what GET /version reports (default 17.5.0-ee).
	Version string
	// LinkOnly sends pagination as a Link header only, without X-Next-Page
	// (as GitLab's keyset pagination does, doc/api/rest/_index.md).
	LinkOnly bool

	srv *httptest.Server

	mu       sync.Mutex
	projects []*Project
	runners  map[int64][]*RunnerJob
	requests []Request
	faults   []*Fault
	nextID   int64
	now      func() time.Time

	tokens       map[string]*TokenInfo
	roles        map[string]int
	defaultRoles map[int64]int
	quickActions []QuickAction
	runnerInfo   map[int64]*RunnerInfo
	// RunnerJobsIgnoreSort makes the runner jobs endpoint always return
	// ascending IDs, like GitLab versions where sort=desc did not work.
	RunnerJobsIgnoreSort bool
}

// New starts a fake GitLab on 127.0.0.1 that accepts token, closed when the
// test ends.
func New(t testing.TB, token string) *Server {
	s := &Server{
		Token:   token,
		User:    User{ID: 7, Username: "writ-bot", Name: "writ bot"},
		Version: "17.5.0-ee",
		runners: map[int64][]*RunnerJob{},
		nextID:  100,
		now:     func() time.Time { return time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC) },

		tokens:       map[string]*TokenInfo{},
		roles:        map[string]int{},
		defaultRoles: map[int64]int{},
		runnerInfo:   map[int64]*RunnerInfo{},
	}
	s.tokens[token] = &TokenInfo{ID: 1, Name: "writ", User: s.User, Scopes: []string{ScopeAPI}}
	s.defaultRoles[s.User.ID] = Owner
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL + "/api/v4"
	t.Cleanup(s.srv.Close)
	return s
}

// AddRunner describes a runner; without it a runner is a project runner of
// the projects of its jobs, with one manager.
func (s *Server) AddRunner(id int64, info RunnerInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runnerInfo[id] = &info
	if _, ok := s.runners[id]; !ok {
		s.runners[id] = nil
	}
}

// SetClock sets the time the server stamps on new objects.
func (s *Server) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

func (s *Server) id() int64 {
	s.nextID++
	return s.nextID
}

// AddProject creates a project with an empty default branch.
func (s *Server) AddProject(path, defaultBranch string) *Project {
	s.mu.Lock()
	defer s.mu.Unlock()
	host := strings.TrimPrefix(s.srv.URL, "http://")
	p := &Project{
		ID:                s.id(),
		PathWithNamespace: path,
		DefaultBranch:     defaultBranch,
		HTTPURLToRepo:     "https://gitlab.example.com/" + path + ".git",
		WebURL:            "http://" + host + "/" + path,
		Branches:          map[string]string{},
		Commits:           map[string]*Commit{},
		Lint:              map[string]*Lint{},
	}
	s.projects = append(s.projects, p)
	return p
}

// Commit adds a commit to branch (created if absent, from the default
// branch's head) whose files are the parent's overlaid with files; a nil
// value deletes a file. It returns the commit ID.
func (s *Server) Commit(p *Project, branch, message string, files map[string][]byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	parent := p.Branches[branch]
	if parent == "" {
		parent = p.Branches[p.DefaultBranch]
	}
	return s.commitLocked(p, branch, parent, message, "test", files)
}

func (s *Server) commitLocked(p *Project, branch, parent, message, author string, files map[string][]byte) string {
	snap := map[string][]byte{}
	var parents []string
	if c := p.Commits[parent]; c != nil {
		for k, v := range c.Files {
			snap[k] = v
		}
		parents = []string{parent}
	}
	for k, v := range files {
		if v == nil {
			delete(snap, k)
		} else {
			snap[k] = append([]byte(nil), v...)
		}
	}
	h := sha1.New()
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00", parent, message, s.id())
	keys := make([]string, 0, len(snap))
	for k := range snap {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(h, "%s\x00%x\x00", k, sha1.Sum(snap[k]))
	}
	id := hex.EncodeToString(h.Sum(nil))
	p.Commits[id] = &Commit{ID: id, Parents: parents, Message: message, Author: author, CreatedAt: s.now(), Files: snap}
	p.Branches[branch] = id
	return id
}

// File returns a file at a branch or commit, and whether it exists.
func (s *Server) File(p *Project, ref, path string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := p.resolve(ref)
	if c == nil {
		return nil, false
	}
	b, ok := c.Files[path]
	return b, ok
}

// Head returns the commit at the head of branch, or nil.
func (s *Server) Head(p *Project, branch string) *Commit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return p.Commits[p.Branches[branch]]
}

func (p *Project) resolve(ref string) *Commit {
	if id, ok := p.Branches[ref]; ok {
		return p.Commits[id]
	}
	return p.Commits[ref]
}

// SetLint sets the lint response for a content ref of p.
func (s *Server) SetLint(p *Project, contentRef string, l *Lint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p.Lint[contentRef] = l
}

// AddMergeRequest opens a merge request.
func (s *Server) AddMergeRequest(p *Project, source, target, title, description string, author User) *MergeRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addMRLocked(p, source, target, title, description, author)
}

func (s *Server) addMRLocked(p *Project, source, target, title, description string, author User) *MergeRequest {
	mr := &MergeRequest{
		ID: s.id(), IID: int64(len(p.MergeRequests) + 1),
		Title: title, Description: description, State: "opened",
		SourceBranch: source, TargetBranch: target, Author: author,
		CreatedAt: s.now(), UpdatedAt: s.now(),
	}
	p.MergeRequests = append(p.MergeRequests, mr)
	return mr
}

// MergeRequestsOf returns copies of p's merge requests.
func (s *Server) MergeRequestsOf(p *Project) []MergeRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]MergeRequest, len(p.MergeRequests))
	for i, mr := range p.MergeRequests {
		out[i] = *mr
		out[i].Notes = append([]*Note(nil), mr.Notes...)
	}
	return out
}

// AddNote adds a note to a merge request.
func (s *Server) AddNote(mr *MergeRequest, author User, body string) *Note {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := &Note{ID: s.id(), Body: body, Author: author, CreatedAt: s.now(), UpdatedAt: s.now()}
	mr.Notes = append(mr.Notes, n)
	return n
}

// NotesOf returns copies of a merge request's notes.
func (s *Server) NotesOf(mr *MergeRequest) []Note {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Note, len(mr.Notes))
	for i, n := range mr.Notes {
		out[i] = *n
	}
	return out
}

// AddRunnerJob appends a job to a runner's history.
func (s *Server) AddRunnerJob(runnerID int64, j *RunnerJob) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runners[runnerID] = append(s.runners[runnerID], j)
}

// AddFault makes matching requests fail.
func (s *Server) AddFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// Requests returns the requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// ResetRequests forgets the recorded requests.
func (s *Server) ResetRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
}

// Writes returns the recorded requests that are not GET or HEAD.
func (s *Server) Writes() []Request {
	var out []Request
	for _, r := range s.Requests() {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			out = append(out, r)
		}
	}
	return out
}

const apiPrefix = "/api/v4"

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	escaped := strings.TrimPrefix(r.URL.EscapedPath(), apiPrefix)
	decoded := strings.TrimPrefix(r.URL.Path, apiPrefix)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, Request{
		Method: r.Method, Path: decoded, EscapedPath: escaped,
		Query: r.URL.Query(), Body: body, Header: r.Header.Clone(),
	})
	for _, f := range s.faults {
		if (f.Method == "" || f.Method == r.Method) && strings.HasPrefix(decoded, f.PathPrefix) && f.Times >= 0 {
			if f.Times > 0 {
				f.Times--
				if f.Times == 0 {
					f.Times = -1 // spent
				}
			}
			for k, v := range f.Header {
				w.Header().Set(k, v)
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(f.Status)
			io.WriteString(w, f.Body)
			return
		}
	}
	if !strings.HasPrefix(r.URL.Path, apiPrefix+"/") {
		writeJSON(w, http.StatusNotFound, msg("404 Not Found"))
		return
	}
	seg := splitEscaped(escaped)
	var req = &call{s: s, w: w, r: r, body: body, seg: seg}
	if req.tok = req.authenticate(); req.tok == nil {
		return
	}
	req.route()
}

func splitEscaped(p string) []string {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	for i, v := range parts {
		if u, err := url.PathUnescape(v); err == nil {
			parts[i] = u
		}
	}
	return parts
}

func msg(m string) map[string]any { return map[string]any{"message": m} }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

type call struct {
	s    *Server
	w    http.ResponseWriter
	r    *http.Request
	body []byte
	seg  []string
	tok  *TokenInfo
}

func (c *call) route() {
	seg, m := c.seg, c.r.Method
	switch {
	case len(seg) == 1 && seg[0] == "user" && m == http.MethodGet:
		u := c.s.userJSON(c.tok.User)
		if c.tok.Admin {
			// Only an administrator sees is_admin (lib/api/entities/user_with_admin.rb).
			u["is_admin"] = true
		}
		if c.tok.Auditor {
			// GitLab EE shows its auditors is_auditor.
			u["is_auditor"] = true
		}
		c.json(http.StatusOK, u)
		return
	case len(seg) == 1 && seg[0] == "version" && m == http.MethodGet:
		c.json(http.StatusOK, map[string]any{"version": c.s.Version, "revision": "0123abcd", "kas": map[string]any{"enabled": false}, "enterprise": strings.HasSuffix(c.s.Version, "-ee")})
		return
	case len(seg) == 2 && seg[0] == "personal_access_tokens" && seg[1] == "self" && m == http.MethodGet:
		// Self-inform, GitLab 15.5+ (doc/api/personal_access_tokens.md);
		// every scope may read its own token
		// (lib/api/personal_access_tokens/self_information.rb).
		c.json(http.StatusOK, c.s.tokenJSON(c.tok))
		return
	case len(seg) == 3 && seg[0] == "runners" && seg[2] == "jobs" && m == http.MethodGet:
		c.runnerJobs(seg[1])
		return
	case len(seg) == 2 && seg[0] == "runners" && m == http.MethodGet:
		c.runner(seg[1])
		return
	case len(seg) == 3 && seg[0] == "runners" && seg[2] == "managers" && m == http.MethodGet:
		c.runnerManagers(seg[1])
		return
	case len(seg) >= 2 && seg[0] == "projects":
	default:
		c.json(http.StatusNotFound, msg("404 Not Found"))
		return
	}
	p := c.s.project(seg[1])
	if p == nil || !c.canSee(p) {
		// GitLab answers 404 for a project the user cannot see.
		c.json(http.StatusNotFound, msg("404 Project Not Found"))
		return
	}
	rest := seg[2:]
	// Roles per action: doc/user/permissions.md. Reading code, merge
	// requests and notes of a private project needs Reporter; pushing and
	// opening merge requests needs Developer.
	need := Reporter
	switch {
	case len(rest) == 0, len(rest) == 4 && rest[0] == "members":
		need = Guest
	case m == http.MethodPost && (rest[0] == "repository" || len(rest) == 1 && rest[0] == "merge_requests"),
		m == http.MethodPut && len(rest) == 2 && rest[0] == "merge_requests":
		need = Developer
	}
	if !c.need(p, need) {
		return
	}
	switch {
	case len(rest) == 0 && m == http.MethodGet:
		out := c.s.projectJSON(p)
		out["permissions"] = c.s.permissionsJSON(c.tok, p)
		c.json(http.StatusOK, out)
	case len(rest) == 4 && rest[0] == "members" && rest[1] == "all" && m == http.MethodGet:
		c.member(p, rest[2])
	case len(rest) == 2 && rest[0] == "ci" && rest[1] == "lint" && m == http.MethodGet:
		c.lint(p)
	case len(rest) == 4 && rest[0] == "repository" && rest[1] == "files" && rest[3] == "raw" && m == http.MethodGet:
		c.rawFile(p, rest[2])
	case len(rest) == 2 && rest[0] == "repository" && rest[1] == "tree" && m == http.MethodGet:
		c.tree(p)
	case len(rest) == 3 && rest[0] == "repository" && rest[1] == "branches" && m == http.MethodGet:
		c.branch(p, rest[2])
	case len(rest) == 2 && rest[0] == "repository" && rest[1] == "commits" && m == http.MethodPost:
		c.createCommit(p)
	case len(rest) == 1 && rest[0] == "merge_requests" && m == http.MethodGet:
		c.listMRs(p)
	case len(rest) == 1 && rest[0] == "merge_requests" && m == http.MethodPost:
		c.createMR(p)
	case len(rest) == 2 && rest[0] == "merge_requests" && (m == http.MethodGet || m == http.MethodPut):
		mr := p.mr(rest[1])
		if mr == nil {
			c.json(http.StatusNotFound, msg("404 Not found"))
			return
		}
		if m == http.MethodPut {
			c.updateMR(p, mr)
			return
		}
		c.json(http.StatusOK, c.s.mrJSON(p, mr))
	case len(rest) >= 3 && rest[0] == "merge_requests" && rest[2] == "notes":
		mr := p.mr(rest[1])
		if mr == nil {
			c.json(http.StatusNotFound, msg("404 Not found"))
			return
		}
		c.notes(p, mr, rest[3:])
	default:
		c.json(http.StatusNotFound, msg("404 Not Found"))
	}
}

func (c *call) json(status int, v any) { writeJSON(c.w, status, v) }

func (s *Server) project(idOrPath string) *Project {
	for _, p := range s.projects {
		if strconv.FormatInt(p.ID, 10) == idOrPath || p.PathWithNamespace == idOrPath {
			return p
		}
	}
	return nil
}

func (p *Project) mr(iid string) *MergeRequest {
	for _, mr := range p.MergeRequests {
		if strconv.FormatInt(mr.IID, 10) == iid {
			return mr
		}
	}
	return nil
}

func ts(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

func (s *Server) userJSON(u User) map[string]any {
	return map[string]any{
		"id": u.ID, "username": u.Username, "name": u.Name, "state": "active",
		"avatar_url": nil, "web_url": strings.TrimSuffix(s.URL, apiPrefix) + "/" + u.Username,
	}
}

func (s *Server) projectJSON(p *Project) map[string]any {
	parts := strings.Split(p.PathWithNamespace, "/")
	return map[string]any{
		"id": p.ID, "description": nil, "default_branch": p.DefaultBranch,
		"visibility": "private", "ssh_url_to_repo": "git@gitlab.example.com:" + p.PathWithNamespace + ".git",
		"http_url_to_repo": p.HTTPURLToRepo, "web_url": p.WebURL,
		"name": parts[len(parts)-1], "name_with_namespace": strings.Join(parts, " / "),
		"path": parts[len(parts)-1], "path_with_namespace": p.PathWithNamespace,
		"created_at": ts(s.now()), "last_activity_at": ts(s.now()),
	}
}

func (s *Server) commitJSON(p *Project, c *Commit) map[string]any {
	title, _, _ := strings.Cut(c.Message, "\n")
	parents := c.Parents
	if parents == nil {
		parents = []string{}
	}
	return map[string]any{
		"id": c.ID, "short_id": c.ID[:8], "title": title, "message": c.Message,
		"author_name": c.Author, "author_email": c.Author + "@example.com",
		"authored_date": ts(c.CreatedAt), "committer_name": c.Author,
		"committer_email": c.Author + "@example.com", "committed_date": ts(c.CreatedAt),
		"created_at": ts(c.CreatedAt), "parent_ids": parents, "trailers": map[string]any{},
		"web_url": p.WebURL + "/-/commit/" + c.ID,
	}
}

// lint follows GET /projects/:id/ci/lint (lib/api/lint.rb):
//   - the parameters content_ref and dry_run_ref exist from GitLab 16.10
//     (doc/api/lint.md: "sha and ref renamed to content_ref and dry_run_ref
//     in GitLab 16.10", gitlab-org/gitlab!143098). An older GitLab ignores
//     them, as Grape ignores undeclared parameters: it lints the default
//     branch's configuration and simulates a pipeline for the default branch;
//   - reading the configuration needs read_code (Reporter, checked by the
//     router); a dry run creates a pipeline in simulation and so needs what
//     creating one needs (Gitlab::Ci::Pipeline::Chain::Validate::Abilities):
//     create_pipeline (Developer), and for an existing branch the right to
//     update it (push or merge on a protected branch). Failing either is not
//     an HTTP error: the answer is valid=false with the chain's message.
func (c *call) lint(p *Project) {
	q := c.r.URL.Query()
	ref, dryRef := q.Get("content_ref"), q.Get("dry_run_ref")
	if !c.s.versionAtLeast(16, 10) {
		ref, dryRef = "", ""
	}
	if ref == "" {
		ref = p.DefaultBranch
	}
	if dryRef == "" {
		dryRef = p.DefaultBranch
	}
	if q.Get("dry_run") == "true" {
		var denied string
		switch {
		case !c.tok.Admin && c.s.roleLocked(c.tok, p) < Developer:
			denied = "Insufficient permissions to create a new pipeline"
		case p.Branches[dryRef] != "" && !c.s.canUpdateBranch(c.tok, p, dryRef):
			denied = "You do not have sufficient permission to run a pipeline on '" + dryRef + "'. Please select a different branch or contact your administrator for assistance."
		}
		if denied != "" {
			c.json(http.StatusOK, Lint{Valid: false, Errors: []string{denied}, Warnings: []string{}, Includes: []any{}})
			return
		}
	}
	l := p.Lint[ref]
	if l == nil {
		if p.resolve(ref) == nil {
			c.json(http.StatusNotFound, msg("404 Commit Not Found"))
			return
		}
		c.json(http.StatusOK, Lint{Valid: false, Errors: []string{"Please provide content of .gitlab-ci.yml"}, Warnings: []string{}, Includes: []any{}})
		return
	}
	out := *l
	if q.Get("include_jobs") != "true" {
		out.Jobs = nil
	}
	if out.Errors == nil {
		out.Errors = []string{}
	}
	if out.Warnings == nil {
		out.Warnings = []string{}
	}
	if out.Includes == nil {
		out.Includes = []any{}
	}
	c.json(http.StatusOK, out)
}

// member is GET /projects/:id/members/all/:user_id: the user's effective
// role, inherited and invited memberships included (doc/api/members.md).
func (c *call) member(p *Project, uid string) {
	id, _ := strconv.ParseInt(uid, 10, 64)
	var u *User
	for _, t := range c.s.tokens {
		if t.User.ID == id {
			u = &t.User
		}
	}
	if u == nil {
		c.json(http.StatusNotFound, msg("404 Member Not Found"))
		return
	}
	level := c.s.roleLocked(&TokenInfo{User: *u}, p)
	if level == NoAccess {
		c.json(http.StatusNotFound, msg("404 Member Not Found"))
		return
	}
	out := c.s.userJSON(*u)
	out["access_level"] = level
	c.json(http.StatusOK, out)
}

func (c *call) rawFile(p *Project, path string) {
	ref := c.r.URL.Query().Get("ref")
	if ref == "" {
		ref = p.DefaultBranch
	}
	cm := p.resolve(ref)
	if cm == nil {
		c.json(http.StatusNotFound, msg("404 Commit Not Found"))
		return
	}
	b, ok := cm.Files[path]
	if !ok {
		c.json(http.StatusNotFound, msg("404 File Not Found"))
		return
	}
	c.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	c.w.Header().Set("X-Gitlab-File-Path", path)
	c.w.Header().Set("X-Gitlab-Commit-Id", cm.ID)
	c.w.WriteHeader(http.StatusOK)
	c.w.Write(b)
}

func (c *call) tree(p *Project) {
	q := c.r.URL.Query()
	ref := q.Get("ref")
	if ref == "" {
		ref = p.DefaultBranch
	}
	cm := p.resolve(ref)
	if cm == nil {
		c.json(http.StatusNotFound, msg("404 Tree Not Found"))
		return
	}
	dir := strings.Trim(q.Get("path"), "/")
	prefix := ""
	if dir != "" {
		prefix = dir + "/"
	}
	seen := map[string]bool{}
	var nodes []map[string]any
	for path, b := range cm.Files {
		if !strings.HasPrefix(path, prefix) {
			continue
		}
		name, _, isDir := strings.Cut(strings.TrimPrefix(path, prefix), "/")
		if seen[name] {
			continue
		}
		seen[name] = true
		n := map[string]any{"name": name, "path": prefix + name}
		if isDir {
			sum := sha1.Sum([]byte(prefix + name))
			n["type"], n["mode"], n["id"] = "tree", "040000", hex.EncodeToString(sum[:])
		} else {
			sum := sha1.Sum(b)
			n["type"], n["mode"], n["id"] = "blob", "100644", hex.EncodeToString(sum[:])
		}
		nodes = append(nodes, n)
	}
	if len(nodes) == 0 && dir != "" {
		c.json(http.StatusNotFound, msg("404 Tree Not Found"))
		return
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i]["name"].(string) < nodes[j]["name"].(string) })
	c.paginate(nodes)
}

// paginate writes one page of items with GitLab's offset pagination headers.
func (c *call) paginate(items []map[string]any) { c.paginateFiltered(items, nil) }

// paginateFiltered pages items, then drops from the page those hidden
// says the user may not see: the headers still count them, as GitLab's
// notes API does (lib/api/notes.rb: "the current page can have less
// elements than :per_page even if there's more than one page").
func (c *call) paginateFiltered(items []map[string]any, hidden func(map[string]any) bool) {
	q := c.r.URL.Query()
	page, _ := strconv.Atoi(q.Get("page"))
	if page < 1 {
		page = 1
	}
	per, _ := strconv.Atoi(q.Get("per_page"))
	if per < 1 {
		per = 20
	}
	if per > 100 {
		per = 100
	}
	total := len(items)
	pages := (total + per - 1) / per
	if pages == 0 {
		pages = 1
	}
	lo := min((page-1)*per, total)
	hi := min(lo+per, total)
	h := c.w.Header()
	if page < pages {
		// The Link header GitLab sends with every paged list
		// (doc/api/rest/_index.md, "Pagination Link header").
		next := *c.r.URL
		nq := next.Query()
		nq.Set("page", strconv.Itoa(page+1))
		next.RawQuery = nq.Encode()
		h.Set("Link", `<http://`+c.r.Host+next.String()+`>; rel="next"`)
	}
	if !c.s.LinkOnly {
		h.Set("X-Page", strconv.Itoa(page))
		h.Set("X-Per-Page", strconv.Itoa(per))
		h.Set("X-Total", strconv.Itoa(total))
		h.Set("X-Total-Pages", strconv.Itoa(pages))
		if page < pages {
			h.Set("X-Next-Page", strconv.Itoa(page+1))
		} else {
			h.Set("X-Next-Page", "")
		}
		if page > 1 {
			h.Set("X-Prev-Page", strconv.Itoa(page-1))
		}
	}
	page0 := []map[string]any{}
	for _, it := range items[lo:hi] {
		if hidden == nil || !hidden(it) {
			page0 = append(page0, it)
		}
	}
	c.json(http.StatusOK, page0)
}

func (c *call) branch(p *Project, name string) {
	id, ok := p.Branches[name]
	if !ok {
		c.json(http.StatusNotFound, msg("404 Branch Not Found"))
		return
	}
	c.json(http.StatusOK, map[string]any{
		"name": name, "merged": false, "protected": name == p.DefaultBranch,
		"default": name == p.DefaultBranch, "developers_can_push": false,
		"developers_can_merge": false, "can_push": true,
		"web_url": p.WebURL + "/-/tree/" + name,
		"commit":  c.s.commitJSON(p, p.Commits[id]),
	})
}

type commitAction struct {
	Action       string `json:"action"`
	FilePath     string `json:"file_path"`
	PreviousPath string `json:"previous_path"`
	Content      string `json:"content"`
	Encoding     string `json:"encoding"`
}

func (c *call) createCommit(p *Project) {
	var req struct {
		Branch        string         `json:"branch"`
		CommitMessage string         `json:"commit_message"`
		StartBranch   string         `json:"start_branch"`
		StartSHA      string         `json:"start_sha"`
		Actions       []commitAction `json:"actions"`
		AuthorName    string         `json:"author_name"`
		Force         bool           `json:"force"`
	}
	if err := json.Unmarshal(c.body, &req); err != nil {
		c.json(http.StatusBadRequest, map[string]any{"error": "body is not valid JSON"})
		return
	}
	if req.Branch == "" || req.CommitMessage == "" || len(req.Actions) == 0 {
		c.json(http.StatusBadRequest, map[string]any{"error": "branch, commit_message, actions are missing"})
		return
	}
	if !c.s.canUpdateBranch(c.tok, p, req.Branch) {
		c.json(http.StatusForbidden, msg("403 Forbidden - You are not allowed to push into this branch"))
		return
	}
	_, branchExists := p.Branches[req.Branch]
	var parent string
	switch {
	case req.StartSHA != "":
		if p.Commits[req.StartSHA] == nil {
			c.json(http.StatusBadRequest, msg("Invalid start_sha"))
			return
		}
		parent = req.StartSHA
	case req.StartBranch != "" && (req.Force || !branchExists):
		id, ok := p.Branches[req.StartBranch]
		if !ok {
			c.json(http.StatusBadRequest, msg("Invalid start branch: "+req.StartBranch))
			return
		}
		parent = id
	case branchExists:
		parent = p.Branches[req.Branch]
	default:
		c.json(http.StatusBadRequest, msg("You can only create or edit files when you are on a branch"))
		return
	}
	if branchExists && !req.Force && req.StartBranch != "" && req.StartBranch != req.Branch {
		// GitLab refuses to start a new branch that already exists.
		c.json(http.StatusBadRequest, msg("A branch called '"+req.Branch+"' already exists. Switch to that branch in order to make changes"))
		return
	}
	base := p.Commits[parent]
	files := map[string][]byte{}
	for _, a := range req.Actions {
		_, exists := base.Files[a.FilePath]
		if a.Encoding != "" && a.Encoding != "text" {
			c.json(http.StatusBadRequest, msg("writ's fake supports text encoding only"))
			return
		}
		switch a.Action {
		case "create":
			if exists {
				c.json(http.StatusBadRequest, msg("A file with this name already exists"))
				return
			}
			files[a.FilePath] = []byte(a.Content)
		case "update":
			if !exists {
				c.json(http.StatusBadRequest, msg("A file with this name doesn't exist"))
				return
			}
			files[a.FilePath] = []byte(a.Content)
		case "delete":
			if !exists {
				c.json(http.StatusBadRequest, msg("A file with this name doesn't exist"))
				return
			}
			files[a.FilePath] = nil
		default:
			c.json(http.StatusBadRequest, map[string]any{"error": "actions[0][action] does not have a valid value"})
			return
		}
	}
	author := req.AuthorName
	if author == "" {
		author = c.tok.User.Username
	}
	id := c.s.commitLocked(p, req.Branch, parent, req.CommitMessage, author, files)
	out := c.s.commitJSON(p, p.Commits[id])
	out["status"] = nil
	out["stats"] = map[string]int{"additions": 0, "deletions": 0, "total": 0}
	c.json(http.StatusCreated, out)
}

func (s *Server) mrJSON(p *Project, mr *MergeRequest) map[string]any {
	head := p.Branches[mr.SourceBranch]
	base := p.Branches[mr.TargetBranch]
	return map[string]any{
		"id": mr.ID, "iid": mr.IID, "project_id": p.ID, "title": mr.Title,
		"description": mr.Description, "state": mr.State,
		"created_at": ts(mr.CreatedAt), "updated_at": ts(mr.UpdatedAt),
		"target_branch": mr.TargetBranch, "source_branch": mr.SourceBranch,
		"source_project_id": p.ID, "target_project_id": p.ID,
		"author": s.userJSON(mr.Author), "draft": false, "work_in_progress": false,
		"merge_when_pipeline_succeeds": false, "merge_status": "can_be_merged",
		"detailed_merge_status": "mergeable", "sha": head,
		"web_url":   p.WebURL + "/-/merge_requests/" + strconv.FormatInt(mr.IID, 10),
		"diff_refs": map[string]any{"base_sha": base, "head_sha": head, "start_sha": base},
		"references": map[string]any{
			"short": "!" + strconv.FormatInt(mr.IID, 10),
			"full":  p.PathWithNamespace + "!" + strconv.FormatInt(mr.IID, 10),
		},
	}
}

func (c *call) listMRs(p *Project) {
	q := c.r.URL.Query()
	var items []map[string]any
	// GitLab lists newest first by default.
	for i := len(p.MergeRequests) - 1; i >= 0; i-- {
		mr := p.MergeRequests[i]
		if st := q.Get("state"); st != "" && st != "all" && st != mr.State {
			continue
		}
		if sb := q.Get("source_branch"); sb != "" && sb != mr.SourceBranch {
			continue
		}
		if tb := q.Get("target_branch"); tb != "" && tb != mr.TargetBranch {
			continue
		}
		items = append(items, c.s.mrJSON(p, mr))
	}
	c.paginate(items)
}

func (c *call) createMR(p *Project) {
	var req struct {
		Title              string `json:"title"`
		Description        string `json:"description"`
		SourceBranch       string `json:"source_branch"`
		TargetBranch       string `json:"target_branch"`
		RemoveSourceBranch bool   `json:"remove_source_branch"`
	}
	if err := json.Unmarshal(c.body, &req); err != nil || req.Title == "" || req.SourceBranch == "" || req.TargetBranch == "" {
		c.json(http.StatusBadRequest, map[string]any{"error": "title, source_branch, target_branch are missing"})
		return
	}
	if _, ok := p.Branches[req.SourceBranch]; !ok {
		c.json(http.StatusBadRequest, map[string]any{"message": map[string]any{"source_branch": []string{"is invalid"}}})
		return
	}
	for _, mr := range p.MergeRequests {
		if mr.State == "opened" && mr.SourceBranch == req.SourceBranch && mr.TargetBranch == req.TargetBranch {
			c.json(http.StatusConflict, map[string]any{"message": []string{fmt.Sprintf("Another open merge request already exists for this source branch: !%d", mr.IID)}})
			return
		}
	}
	// MergeRequests::CreateService runs the description's quick actions.
	desc, cmds := extractQuickActions(req.Description)
	mr := c.s.addMRLocked(p, req.SourceBranch, req.TargetBranch, req.Title, desc, c.tok.User)
	c.s.applyQuickActions(mr, c.tok.User, cmds)
	c.json(http.StatusCreated, c.s.mrJSON(p, mr))
}

func (c *call) updateMR(p *Project, mr *MergeRequest) {
	var req map[string]any
	if err := json.Unmarshal(c.body, &req); err != nil {
		c.json(http.StatusBadRequest, map[string]any{"error": "body is not valid JSON"})
		return
	}
	if v, ok := req["title"].(string); ok {
		mr.Title = v
	}
	if v, ok := req["description"].(string); ok {
		// MergeRequests::UpdateService runs the new description's quick actions.
		desc, cmds := extractQuickActions(v)
		mr.Description = desc
		defer c.s.applyQuickActions(mr, c.tok.User, cmds)
	}
	if v, ok := req["state_event"].(string); ok {
		switch v {
		case "close":
			mr.State = "closed"
		case "reopen":
			mr.State = "opened"
		}
	}
	mr.UpdatedAt = c.s.now()
	c.json(http.StatusOK, c.s.mrJSON(p, mr))
}

func (s *Server) noteJSON(p *Project, mr *MergeRequest, n *Note) map[string]any {
	return map[string]any{
		"id": n.ID, "type": nil, "body": n.Body, "attachment": nil,
		"author": s.userJSON(n.Author), "created_at": ts(n.CreatedAt), "updated_at": ts(n.UpdatedAt),
		"system": n.System, "noteable_id": mr.ID, "noteable_type": "MergeRequest",
		"project_id": p.ID, "noteable_iid": mr.IID, "resolvable": false,
		"confidential": false, "internal": false,
	}
}

func (c *call) notes(p *Project, mr *MergeRequest, rest []string) {
	m := c.r.Method
	switch {
	case len(rest) == 0 && m == http.MethodGet:
		q := c.r.URL.Query()
		notes := append([]*Note(nil), mr.Notes...)
		// Default: created_at, descending.
		asc := q.Get("sort") == "asc"
		sort.SliceStable(notes, func(i, j int) bool {
			if asc {
				return notes[i].ID < notes[j].ID
			}
			return notes[i].ID > notes[j].ID
		})
		items := make([]map[string]any, len(notes))
		hidden := map[int64]bool{}
		for i, n := range notes {
			items[i] = c.s.noteJSON(p, mr, n)
			hidden[n.ID] = n.Hidden
		}
		c.paginateFiltered(items, func(it map[string]any) bool { return hidden[it["id"].(int64)] })
	case len(rest) == 0 && m == http.MethodPost:
		var req struct {
			Body string `json:"body"`
		}
		if err := json.Unmarshal(c.body, &req); err != nil || req.Body == "" {
			c.json(http.StatusBadRequest, map[string]any{"error": "body is missing"})
			return
		}
		// Notes::CreateService runs the note's quick actions and stores
		// the rest (app/services/notes/create_service.rb).
		body, cmds := extractQuickActions(req.Body)
		c.s.applyQuickActions(mr, c.tok.User, cmds)
		if body == "" {
			// Commands only: no note is kept (GitLab answers 202).
			c.json(http.StatusAccepted, map[string]any{"commands_changes": map[string]any{}, "summary": []string{}})
			return
		}
		n := &Note{ID: c.s.id(), Body: body, Author: c.tok.User, CreatedAt: c.s.now(), UpdatedAt: c.s.now()}
		mr.Notes = append(mr.Notes, n)
		c.json(http.StatusCreated, c.s.noteJSON(p, mr, n))
	case len(rest) == 1 && m == http.MethodPut:
		var n *Note
		for _, x := range mr.Notes {
			if strconv.FormatInt(x.ID, 10) == rest[0] {
				n = x
			}
		}
		if n == nil {
			c.json(http.StatusNotFound, msg("404 Not found"))
			return
		}
		if n.Author.ID != c.tok.User.ID {
			c.json(http.StatusForbidden, msg("403 Forbidden"))
			return
		}
		var req struct {
			Body string `json:"body"`
		}
		if err := json.Unmarshal(c.body, &req); err != nil || req.Body == "" {
			c.json(http.StatusBadRequest, map[string]any{"error": "body is missing"})
			return
		}
		// Notes::UpdateService runs quick actions too
		// (app/services/notes/update_service.rb).
		body, cmds := extractQuickActions(req.Body)
		c.s.applyQuickActions(mr, c.tok.User, cmds)
		n.Body = body
		n.UpdatedAt = c.s.now()
		c.json(http.StatusOK, c.s.noteJSON(p, mr, n))
	default:
		c.json(http.StatusNotFound, msg("404 Not Found"))
	}
}

// runnerLocked returns a runner's description; without AddRunner it is a
// project runner of its jobs' projects with one manager.
func (s *Server) runnerLocked(id int64) *RunnerInfo {
	if ri := s.runnerInfo[id]; ri != nil {
		return ri
	}
	ri := &RunnerInfo{Type: "project_type", Managers: []string{fmt.Sprintf("s_%012x", id)}}
	seen := map[int64]bool{}
	for _, j := range s.runners[id] {
		if j.Project != nil && !seen[j.Project.ID] {
			seen[j.Project.ID] = true
			ri.Projects = append(ri.Projects, j.Project)
		}
	}
	return ri
}

// findRunner resolves the runner and applies lib/api/ci/runners.rb's rule
// for reading it and its jobs: an administrator or auditor
// (can_read_all_resources?), or a user who may read the runner's builds —
// a Maintainer of a project it is assigned to (app/policies/ci/runner_policy.rb;
// the fake treats a group runner's Projects as its group's). Instance runners
// are readable by administrators and auditors only.
func (c *call) findRunner(rid string) (int64, *RunnerInfo, bool) {
	id, err := strconv.ParseInt(rid, 10, 64)
	if _, ok := c.s.runners[id]; err != nil || !ok {
		c.json(http.StatusNotFound, msg("404 Runner Not Found"))
		return 0, nil, false
	}
	ri := c.s.runnerLocked(id)
	if c.tok.Admin || c.tok.Auditor {
		return id, ri, true
	}
	for _, p := range ri.Projects {
		if ri.Type != "instance_type" && c.s.roleLocked(c.tok, p) >= Maintainer {
			return id, ri, true
		}
	}
	c.json(http.StatusForbidden, msg("403 Forbidden - No access granted"))
	return 0, nil, false
}

func (c *call) runner(rid string) {
	id, ri, ok := c.findRunner(rid)
	if !ok {
		return
	}
	projects := []map[string]any{}
	for _, p := range ri.Projects {
		projects = append(projects, map[string]any{"id": p.ID, "path_with_namespace": p.PathWithNamespace, "name": p.PathWithNamespace})
	}
	c.json(http.StatusOK, map[string]any{
		"id": id, "description": "writ", "active": true, "paused": false,
		"is_shared": ri.Type == "instance_type", "runner_type": ri.Type,
		"online": true, "status": "online", "projects": projects, "groups": []any{},
	})
}

func (c *call) runnerManagers(rid string) {
	_, ri, ok := c.findRunner(rid)
	if !ok {
		return
	}
	out := []map[string]any{}
	for i, m := range ri.Managers {
		out = append(out, map[string]any{"id": i + 1, "system_id": m, "version": "17.5.0", "status": "online", "created_at": ts(c.s.now()), "contacted_at": ts(c.s.now())})
	}
	c.json(http.StatusOK, out)
}

// runnerJobs is GET /runners/:id/jobs. Ci::RunnerJobsFinder
// (app/finders/ci/runner_jobs_finder.rb) keeps, for a user who cannot read
// all resources, only jobs of projects where the user is at least Reporter;
// it filters in the query, so pages are full.
func (c *call) runnerJobs(rid string) {
	id, _, ok := c.findRunner(rid)
	if !ok {
		return
	}
	jobs := c.s.runners[id]
	q := c.r.URL.Query()
	list := append([]*RunnerJob(nil), jobs...)
	desc := q.Get("sort") == "desc" && !c.s.RunnerJobsIgnoreSort
	sort.Slice(list, func(i, j int) bool {
		if desc {
			return list[i].ID > list[j].ID
		}
		return list[i].ID < list[j].ID
	})
	var items []map[string]any
	for _, j := range list {
		if st := q.Get("status"); st != "" && st != j.Status {
			continue
		}
		if sid := q.Get("system_id"); sid != "" && sid != j.SystemID {
			continue
		}
		if !c.tok.Admin && !c.tok.Auditor && (j.Project == nil || c.s.roleLocked(c.tok, j.Project) < Reporter) {
			continue
		}
		items = append(items, c.s.runnerJobJSON(j))
	}
	c.paginate(items)
}

func (s *Server) runnerJobJSON(j *RunnerJob) map[string]any {
	opt := func(t *time.Time) any {
		if t == nil {
			return nil
		}
		return ts(*t)
	}
	tags := j.TagList
	if tags == nil {
		tags = []string{}
	}
	out := map[string]any{
		"id": j.ID, "ip_address": "127.0.0.1", "status": j.Status, "stage": j.Stage,
		"name": j.Name, "ref": j.Ref, "tag": j.Tag, "coverage": nil,
		"created_at": ts(j.CreatedAt), "started_at": opt(j.StartedAt), "finished_at": opt(j.FinishedAt),
		"duration": nil, "queued_duration": nil, "tag_list": tags,
		"failure_reason": j.FailureReason,
		"user":           s.userJSON(s.User),
		"commit":         map[string]any{"id": j.SHA, "short_id": shortSHA(j.SHA)},
		"pipeline":       map[string]any{"id": j.PipelineID, "ref": j.Ref, "sha": j.SHA, "status": j.Status},
	}
	if j.Project != nil {
		parts := strings.Split(j.Project.PathWithNamespace, "/")
		out["pipeline"].(map[string]any)["project_id"] = j.Project.ID
		out["project"] = map[string]any{
			"id": j.Project.ID, "name": parts[len(parts)-1],
			"name_with_namespace": strings.Join(parts, " / "),
			"path":                parts[len(parts)-1], "path_with_namespace": j.Project.PathWithNamespace,
		}
	}
	return out
}

func shortSHA(s string) string {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}

// SetRunnerJobHost records which host (system ID) ran a runner's job.
func (s *Server) SetRunnerJobHost(runnerID, jobID int64, systemID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range s.runners[runnerID] {
		if j.ID == jobID {
			j.SystemID = systemID
		}
	}
}
