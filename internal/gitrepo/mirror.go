// Package gitrepo keeps writ's bare mirrors of remote repositories and
// reads commits, trees and history from them with go-git, without running
// any hook, filter, submodule or LFS machinery.
//
// Fetches are forced: the verifier decides what is acceptable, so git's own
// fast-forward rules are not a security boundary here. Everything read from
// a mirror came from a remote GitLab controls and is checked before use:
// object names, ref names, tree entry names and symlink targets.
//
// A fetch is bounded while the pack is read (see [Limits]), asks for the
// named refs only, and moves a ref only once what a decision reads through
// it is in the mirror. The pack is indexed in the pass that checks it:
// every object is named from its content before anything can read it. A mirror is a cache: one found damaged (see
// [IsDamage]) is rebuilt from scratch by the next [Mirror.Fetch].
package gitrepo

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/go-git/go-git/v5/storage/filesystem"
	xssh "golang.org/x/crypto/ssh"

	"gitlab.com/writ-ci/writ/internal/fsutil"
)

// Auth says how to authenticate to a remote. Secrets are read from files
// at every fetch, so a rotated token needs no restart.
type Auth struct {
	// Kind is "none" (or empty), "token-file" (HTTPS) or "ssh-key".
	Kind string
	// TokenFile holds an access token sent as the HTTP basic-auth password.
	TokenFile string
	// SSHKeyFile is an unencrypted private key; KnownHostsFile must list the
	// server's host key (there is no fallback to ~/.ssh or to accepting
	// unknown hosts).
	SSHKeyFile, KnownHostsFile string
	// Username is the HTTP basic-auth user name ("oauth2" if empty). SSH
	// uses the user of the URL, or "git".
	Username string
}

// Auth kinds.
const (
	AuthNone      = "none"
	AuthTokenFile = "token-file"
	AuthSSHKey    = "ssh-key"
)

const maxTokenBytes = 16 << 10

// Mirror is a bare repository in writ's cache that mirrors one remote URL.
// A Mirror is not safe for concurrent use by several goroutines; Fetch
// takes a file lock, so several processes may share the directory.
type Mirror struct {
	url     string
	dir     string
	auth    Auth
	limits  Limits
	repo    *git.Repository
	rebuilt int
	// readAhead: keep the largest blob a fetch brings (see WithReadAhead).
	readAhead bool
	fresh     keptBlob
}

// OpenMirror opens, creating it if needed, the mirror of url in cacheDir,
// at cacheDir/<first 16 hex digits of sha256(url)>.git.
//
// url is https://, http://, ssh://, scp-like (user@host:path), file:// or
// an absolute local path. Credentials inside the URL are refused: use
// auth. A token is never sent over plain http except to a loopback
// address.
//
// A mirror directory that cannot be opened (a crash or a full disk during
// its creation, damage on disk) is replaced by an empty one: it is only a
// cache, and every decision verifies what it reads from it.
func OpenMirror(cacheDir, url string, auth Auth, opts ...Option) (*Mirror, error) {
	scheme, err := checkURL(url)
	if err != nil {
		return nil, err
	}
	if err := checkAuth(scheme, url, auth); err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(url))
	dir := filepath.Join(cacheDir, hex.EncodeToString(sum[:])[:16]+".git")
	if err := os.MkdirAll(cacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("create git cache directory: %w", err)
	}
	m := &Mirror{url: url, dir: dir, auth: auth, limits: DefaultLimits()}
	for _, o := range opts {
		o(m)
	}
	repo, err := openOrigin(dir)
	if err != nil {
		repo, err = initMirror(m)
	}
	if err != nil {
		return nil, fmt.Errorf("open mirror %s of %s: %w", dir, url, err)
	}
	// The stored URL guards against a hash collision and a cache directory
	// shared by mistake.
	remote, err := repo.Remote("origin")
	if err != nil || len(remote.Config().URLs) != 1 || remote.Config().URLs[0] != url {
		return nil, fmt.Errorf("mirror %s does not mirror %s (remove the directory to start afresh)", dir, url)
	}
	m.repo = repo
	return m, nil
}

// largeObject is the size above which a blob is read from its pack as a
// stream rather than whole into memory and go-git's object cache: reading
// a large allowlist then costs its size once instead of several times (the
// cache's copy, the doubling buffer that fills it, the caller's copy).
const largeObject = 1 << 20

// openRepo opens the bare repository at dir, reading objects larger than
// largeObject as streams. Like git.PlainOpen it fails with
// git.ErrRepositoryNotExists when dir holds no repository; unlike it, it
// follows no alternates file: a mirror holds every object it reads.
func openRepo(dir string) (*git.Repository, error) {
	st := filesystem.NewStorageWithOptions(bufferedIdxFS{osfs.New(dir)}, cache.NewObjectLRUDefault(),
		filesystem.Options{LargeObjectThreshold: largeObject})
	return git.Open(st, nil)
}

// bufferedIdxFS reads pack indexes through a buffer. go-git's index
// decoder reads a file a few bytes per call (the fanout table alone is 256
// reads), and every process that reads a mirror loads every pack's index:
// unbuffered, that is hundreds of system calls per pack.
type bufferedIdxFS struct{ billy.Filesystem }

func (fs bufferedIdxFS) Open(name string) (billy.File, error) {
	f, err := fs.Filesystem.Open(name)
	if err != nil || !strings.HasSuffix(name, ".idx") {
		return f, err
	}
	return &bufferedFile{File: f, r: bufio.NewReaderSize(f, 64<<10)}, nil
}

// Capabilities are those of the file system underneath.
func (fs bufferedIdxFS) Capabilities() billy.Capability { return billy.Capabilities(fs.Filesystem) }

// bufferedFile is a file read sequentially through r (the index decoder
// neither seeks nor reads at offsets).
type bufferedFile struct {
	billy.File
	r *bufio.Reader
}

func (f *bufferedFile) Read(p []byte) (int, error) { return f.r.Read(p) }

// openOrigin opens a mirror directory that has an origin remote.
func openOrigin(dir string) (*git.Repository, error) {
	repo, err := openRepo(dir)
	if err != nil {
		return nil, err
	}
	if _, err := repo.Remote("origin"); err != nil {
		return nil, err
	}
	return repo, nil
}

// initMirror creates the bare repository, or replaces one that cannot be
// opened, under the mirror's lock, so that two processes never initialise
// the same directory at once.
func initMirror(m *Mirror) (*git.Repository, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	unlock, err := fsutil.Lock(ctx, m.dir+".lock")
	if err != nil {
		return nil, err
	}
	defer unlock()
	repo, err := openOrigin(m.dir)
	if err == nil {
		return repo, nil // another process made or repaired it meanwhile
	}
	if err := m.rebuild(); err != nil {
		return nil, err
	}
	return m.repo, nil
}

// createMirror makes an empty bare repository at dir with origin url.
func createMirror(dir, url string) (*git.Repository, error) {
	repo, err := git.PlainInit(dir, true)
	if err != nil {
		return nil, err
	}
	if _, err := repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{url}}); err != nil {
		return nil, err
	}
	return openRepo(dir)
}

// Dir is the mirror's directory.
func (m *Mirror) Dir() string { return m.dir }

// Repo is the underlying go-git repository.
func (m *Mirror) Repo() *git.Repository { return m.repo }

func checkURL(u string) (string, error) {
	if u == "" {
		return "", errors.New("repository URL is empty")
	}
	for _, c := range []byte(u) {
		if c <= ' ' || c == 0x7f {
			return "", fmt.Errorf("repository URL %q contains white space or a control character", clip(u))
		}
	}
	switch {
	case strings.HasPrefix(u, "/"):
		if filepath.Clean(u) != u {
			return "", fmt.Errorf("local repository path %q is not clean; write it as %q", clip(u), filepath.Clean(u))
		}
		return "file", nil
	case strings.Contains(u, "://"):
		p, err := url.Parse(u)
		if err != nil {
			return "", fmt.Errorf("repository URL %q: %v", clip(u), err)
		}
		switch p.Scheme {
		case "https", "http", "ssh":
			if p.Host == "" {
				return "", fmt.Errorf("repository URL %q has no host", clip(u))
			}
			if _, hasPassword := p.User.Password(); hasPassword || (p.User != nil && p.Scheme != "ssh") {
				return "", fmt.Errorf("repository URL %q carries credentials; put a token in a token file (auth = \"token-file\") instead", redact(p))
			}
			if p.RawQuery != "" || p.Fragment != "" {
				return "", fmt.Errorf("repository URL %q has a query or fragment", clip(u))
			}
			return p.Scheme, nil
		case "file":
			if p.Host != "" || !strings.HasPrefix(p.Path, "/") || filepath.Clean(p.Path) != p.Path {
				return "", fmt.Errorf("file URL %q: use file:///absolute/clean/path", clip(u))
			}
			return "file", nil
		default:
			return "", fmt.Errorf("repository URL %q: scheme %q is not supported (use https, ssh or file)", clip(u), p.Scheme)
		}
	default:
		// scp-like: [user@]host:path
		host, path, ok := strings.Cut(u, ":")
		if !ok || host == "" || path == "" || strings.HasPrefix(host, "-") || strings.Contains(host, "/") {
			return "", fmt.Errorf("repository URL %q: use https://, ssh://, user@host:path, file:// or an absolute path", clip(u))
		}
		return "ssh", nil
	}
}

func redact(p *url.URL) string {
	q := *p
	q.User = nil
	return q.String()
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func checkAuth(scheme, u string, a Auth) error {
	switch a.Kind {
	case "", AuthNone:
		if scheme == "ssh" {
			// Without this, go-git would use an ambient SSH agent and the
			// user's ~/.ssh/known_hosts: state writ does not control.
			return fmt.Errorf(`repository URL %q is ssh: set auth "ssh-key" with a key file and a known_hosts file`, clip(u))
		}
		return nil
	case AuthTokenFile:
		if a.TokenFile == "" {
			return errors.New(`auth "token-file" needs a token file`)
		}
		switch scheme {
		case "https":
		case "http":
			p, _ := url.Parse(u)
			if !isLoopback(p.Hostname()) {
				return fmt.Errorf("repository URL %q is plain http: a token is only sent over https", clip(u))
			}
		default:
			return fmt.Errorf(`auth "token-file" works with https URLs, not %q`, clip(u))
		}
		return nil
	case AuthSSHKey:
		if a.SSHKeyFile == "" || a.KnownHostsFile == "" {
			return errors.New(`auth "ssh-key" needs an SSH key file and a known_hosts file`)
		}
		if scheme != "ssh" {
			return fmt.Errorf(`auth "ssh-key" works with ssh URLs, not %q`, clip(u))
		}
		return nil
	default:
		return fmt.Errorf("auth kind %q: use \"none\", \"token-file\" or \"ssh-key\"", a.Kind)
	}
}

// authMethod builds the go-git auth for one fetch.
func (m *Mirror) authMethod(ctx context.Context) (transport.AuthMethod, error) {
	switch m.auth.Kind {
	case "", AuthNone:
		return nil, nil
	case AuthTokenFile:
		data, err := fsutil.ReadFileLimit(m.auth.TokenFile, maxTokenBytes)
		if err != nil {
			return nil, fmt.Errorf("read token file: %w", err)
		}
		token := strings.TrimSpace(string(data))
		if token == "" {
			return nil, fmt.Errorf("token file %s is empty", m.auth.TokenFile)
		}
		for _, c := range []byte(token) {
			if c <= ' ' || c == 0x7f {
				return nil, fmt.Errorf("token file %s: the token contains white space or a control character", m.auth.TokenFile)
			}
		}
		user := m.auth.Username
		if user == "" {
			user = "oauth2"
		}
		return &githttp.BasicAuth{Username: user, Password: token}, nil
	case AuthSSHKey:
		ep, err := transport.NewEndpoint(m.url)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", m.url, err)
		}
		user := ep.User
		if user == "" {
			user = "git"
		}
		keys, err := gitssh.NewPublicKeysFromFile(user, m.auth.SSHKeyFile, "")
		if err != nil {
			return nil, fmt.Errorf("read SSH key %s: %w (writ needs an unencrypted key)", m.auth.SSHKeyFile, err)
		}
		if _, err := os.Stat(m.auth.KnownHostsFile); err != nil {
			return nil, fmt.Errorf("known_hosts file: %w", err)
		}
		db, err := gitssh.NewKnownHostsDb(m.auth.KnownHostsFile)
		if err != nil {
			return nil, fmt.Errorf("read known_hosts %s: %w", m.auth.KnownHostsFile, err)
		}
		port := ep.Port
		if port == 0 {
			port = 22
		}
		keys.HostKeyCallback = db.HostKeyCallback()
		keys.HostKeyAlgorithms = db.HostKeyAlgorithms(net.JoinHostPort(ep.Host, strconv.Itoa(port)))
		a := &sshAuth{PublicKeys: keys}
		if dl, ok := ctx.Deadline(); ok {
			a.timeout = time.Until(dl)
		}
		return a, nil
	}
	return nil, fmt.Errorf("auth kind %q is not supported", m.auth.Kind)
}

// sshAuth bounds the TCP connection go-git dials for SSH by the fetch's
// deadline: go-git dials without the fetch's context. (That timeout does
// not cover the SSH handshake after it; openSession bounds that.)
type sshAuth struct {
	*gitssh.PublicKeys
	timeout time.Duration
}

func (a *sshAuth) ClientConfig() (*xssh.ClientConfig, error) {
	cfg, err := a.PublicKeys.ClientConfig()
	if err == nil && a.timeout > 0 {
		cfg.Timeout = a.timeout
	}
	return cfg, err
}

// FetchCommit fetches one commit by hash into refs/writ/commits/<hash>.
// Whether a server allows this depends on its configuration
// (uploadpack.allowReachableSHA1InWant or allowTipSHA1InWant); go-git
// speaks protocol v0/v1 only, where allowAnySHA1InWant alone is not
// advertised. When refused, fetch a branch or tag containing the commit.
func (m *Mirror) FetchCommit(ctx context.Context, hash string) error {
	if err := CheckHash(hash); err != nil {
		return err
	}
	return m.Fetch(ctx, "+"+hash+":refs/writ/commits/"+hash)
}

// Commit returns the commit hash (full lower-case hex) from the mirror.
func (m *Mirror) Commit(hash string) (*object.Commit, error) {
	if err := CheckHash(hash); err != nil {
		return nil, err
	}
	c, err := m.repo.CommitObject(plumbing.NewHash(hash))
	if err != nil {
		return nil, fmt.Errorf("commit %s in the mirror of %s: %w (was it fetched?)", hash, m.url, err)
	}
	return c, nil
}

// Tag returns the annotated tag object hash from the mirror.
func (m *Mirror) Tag(hash string) (*object.Tag, error) {
	if err := CheckHash(hash); err != nil {
		return nil, err
	}
	t, err := m.repo.TagObject(plumbing.NewHash(hash))
	if err != nil {
		return nil, fmt.Errorf("tag object %s in the mirror of %s: %w (is the tag annotated, and was it fetched?)", hash, m.url, err)
	}
	return t, nil
}

// Ref returns the object a ref points at, for example
// "refs/writ/heads/main". Symbolic refs are not followed.
func (m *Mirror) Ref(name string) (plumbing.Hash, error) {
	if err := CheckRefName(name); err != nil {
		return plumbing.ZeroHash, err
	}
	ref, err := m.repo.Storer.Reference(plumbing.ReferenceName(name))
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("ref %s in the mirror of %s: %w", name, m.url, err)
	}
	if ref.Type() != plumbing.HashReference {
		return plumbing.ZeroHash, fmt.Errorf("ref %s in the mirror of %s is symbolic", name, m.url)
	}
	return ref.Hash(), nil
}
