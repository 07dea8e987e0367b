package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// GitServer serves git repositories read-only over smart HTTP on
// 127.0.0.1, through the real `git http-backend` (CGI), as a GitLab would.
type GitServer struct {
	root string
	url  string
	srv  *http.Server

	mu      sync.Mutex
	fetches []string // "<repo> <service>" per request, e.g. "app.git git-upload-pack"
}

// repoName is a GitLab-like project path: "acme/app".
var repoName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$`)

// NewGitServer serves the repositories registered with Add, using root (an
// empty directory it owns) for their links.
func NewGitServer(root string) (*GitServer, error) {
	git, err := exec.LookPath("git")
	if err != nil {
		return nil, fmt.Errorf("git server: git is not on PATH: %w", err)
	}
	home := filepath.Join(root, ".home")
	repos := filepath.Join(root, "repos")
	for _, d := range []string{home, repos} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("git server: %w", err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("git server: listen on 127.0.0.1: %w", err)
	}
	s := &GitServer{root: repos, url: "http://" + ln.Addr().String()}
	backend := &cgi.Handler{
		Path: git,
		Args: []string{"http-backend"},
		Root: "/",
		Env: []string{
			"GIT_PROJECT_ROOT=" + repos,
			"GIT_HTTP_EXPORT_ALL=1",
			"GIT_CONFIG_NOSYSTEM=1",
			"GIT_CONFIG_GLOBAL=/dev/null",
			"HOME=" + home,
		},
		InheritEnv: []string{"PATH"},
	}
	s.srv = &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/git-receive-pack") ||
				r.URL.Query().Get("service") == "git-receive-pack" {
				http.Error(w, "read-only", http.StatusForbidden)
				return
			}
			repo, service := splitGitPath(r.URL.Path, r.URL.Query().Get("service"))
			s.mu.Lock()
			s.fetches = append(s.fetches, repo+" "+service)
			s.mu.Unlock()
			backend.ServeHTTP(w, r)
		}),
	}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// splitGitPath turns "/acme/app.git/info/refs" into ("acme/app.git", service).
func splitGitPath(p, service string) (repo, svc string) {
	p = strings.TrimPrefix(p, "/")
	i := strings.Index(p, ".git/")
	if i < 0 {
		return p, service
	}
	if service == "" {
		service = p[i+len(".git/"):]
	}
	return p[:i+len(".git")], service
}

// Add serves the git directory gitDir (a bare repository, or the .git of a
// work tree) as <name>.git, where name is a project path such as
// "acme/app". Later commits in it are served immediately.
func (s *GitServer) Add(name, gitDir string) error {
	if !repoName.MatchString(name) {
		return fmt.Errorf("git server: bad repository name %q", name)
	}
	abs, err := filepath.Abs(gitDir)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(abs, "HEAD")); err != nil {
		return fmt.Errorf("git server: %s is not a git directory: %w", abs, err)
	}
	link := filepath.Join(s.root, filepath.FromSlash(name)+".git")
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return fmt.Errorf("git server: %w", err)
	}
	_ = os.Remove(link)
	if err := os.Symlink(abs, link); err != nil {
		return fmt.Errorf("git server: %w", err)
	}
	return nil
}

// URL is the clone URL of repository name.
func (s *GitServer) URL(name string) string { return s.url + "/" + name + ".git" }

// Fetches lists the requests served so far as "<name>.git <service>",
// e.g. "acme/app.git git-upload-pack".
func (s *GitServer) Fetches() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.fetches...)
}

// Close stops the server.
func (s *GitServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}
