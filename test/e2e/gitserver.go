package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
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
// 127.0.0.1, through the real `git http-backend` (CGI), as a GitLab would:
// over plain http (URL, what GitLab's payloads name) and over https
// (HTTPSURL, what an allowlist entry's source.repository must name), with a
// certificate made for the server and trusted through CAFile.
type GitServer struct {
	root   string
	url    string
	tlsURL string
	caFile string
	srv    *http.Server
	tlsSrv *http.Server

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
	cert, caPEM, err := selfSignedCert()
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("git server: %w", err)
	}
	s.caFile = filepath.Join(root, "ca.pem")
	if err := os.WriteFile(s.caFile, caPEM, 0o644); err != nil {
		ln.Close()
		return nil, fmt.Errorf("git server: %w", err)
	}
	tlsLn, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("git server: listen (tls) on 127.0.0.1: %w", err)
	}
	s.tlsURL = "https://" + tlsLn.Addr().String()
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
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
	})
	s.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: handler}
	s.tlsSrv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: handler}
	go func() { _ = s.srv.Serve(ln) }()
	go func() { _ = s.tlsSrv.Serve(tlsLn) }()
	return s, nil
}

// selfSignedCert makes a certificate for 127.0.0.1 that is its own CA, and
// returns it with its PEM (for SSL_CERT_FILE).
func selfSignedCert() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "writ e2e git server"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
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

// URL is the plain-http clone URL of repository name.
func (s *GitServer) URL(name string) string { return s.url + "/" + name + ".git" }

// HTTPSURL is the https clone URL of repository name.
func (s *GitServer) HTTPSURL(name string) string { return s.tlsURL + "/" + name + ".git" }

// CAFile is the PEM file of the certificate the https server presents; a
// Go program trusts it with SSL_CERT_FILE=CAFile().
func (s *GitServer) CAFile() string { return s.caFile }

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
	return errors.Join(s.srv.Shutdown(ctx), s.tlsSrv.Shutdown(ctx))
}
