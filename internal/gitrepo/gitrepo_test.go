package gitrepo

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"

	"gitlab.com/writ-ci/writ/internal/testkeys"
)

// linearRepo makes a repository with n commits on main and returns their
// hashes, oldest first.
func linearRepo(t *testing.T, n int) (*testkeys.Repo, []string) {
	t.Helper()
	r := testkeys.GitRepo(t)
	var hs []string
	for i := 0; i < n; i++ {
		hs = append(hs, r.Commit(t, map[string]string{"f.txt": fmt.Sprint(i)}, fmt.Sprintf("commit %d", i), nil))
	}
	return r, hs
}

func mustMirror(t *testing.T, url string, auth Auth) *Mirror {
	t.Helper()
	m, err := OpenMirror(t.TempDir(), url, auth)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// localMirror wraps an existing repository, for tests that read crafted
// objects without a fetch.
func localMirror(t *testing.T, path string) *Mirror {
	t.Helper()
	repo, err := git.PlainOpen(path)
	if err != nil {
		t.Fatal(err)
	}
	return &Mirror{url: path, dir: path, repo: repo}
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func wantErr(t *testing.T, err error, fragment string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", fragment)
	}
	if !strings.Contains(err.Error(), fragment) {
		t.Fatalf("error %q does not contain %q", err, fragment)
	}
}

func testFetchMain(t *testing.T, url string, r *testkeys.Repo, hs []string, auth Auth) *Mirror {
	t.Helper()
	m := mustMirror(t, url, auth)
	ctx := ctxTimeout(t, 30*time.Second)
	if err := m.Fetch(ctx, "+refs/heads/main:refs/writ/heads/main"); err != nil {
		t.Fatal(err)
	}
	got, err := m.Ref("refs/writ/heads/main")
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != hs[len(hs)-1] {
		t.Fatalf("ref %s, want %s", got, hs[len(hs)-1])
	}
	for _, h := range hs {
		if _, err := m.Commit(h); err != nil {
			t.Fatalf("history not fetched: %v", err)
		}
	}
	// Fetching again changes nothing and is not an error.
	if err := m.Fetch(ctx, "+refs/heads/main:refs/writ/heads/main"); err != nil {
		t.Fatalf("up-to-date fetch: %v", err)
	}
	return m
}

func TestFetchFileURL(t *testing.T) {
	t.Parallel()
	r, hs := linearRepo(t, 3)
	testFetchMain(t, "file://"+r.Path, r, hs, Auth{Kind: AuthNone})
}

func TestFetchLocalPath(t *testing.T) {
	t.Parallel()
	r, hs := linearRepo(t, 3)
	m := testFetchMain(t, r.Path, r, hs, Auth{})
	// Reopening finds the same mirror with its refs.
	m2, err := OpenMirror(filepath.Dir(m.Dir()), r.Path, Auth{})
	if err != nil {
		t.Fatal(err)
	}
	if m2.Dir() != m.Dir() {
		t.Fatalf("mirror dir %s, then %s", m.Dir(), m2.Dir())
	}
	if _, err := m2.Ref("refs/writ/heads/main"); err != nil {
		t.Fatal(err)
	}
}

// A force-pushed branch replaces the mirrored ref: git's fast-forward rule
// is not what protects writ.
func TestFetchForced(t *testing.T) {
	t.Parallel()
	r, hs := linearRepo(t, 3)
	m := testFetchMain(t, r.Path, r, hs, Auth{})
	r.Git(t, "reset", "-q", "--hard", hs[0])
	rewritten := r.Commit(t, map[string]string{"g.txt": "x"}, "rewritten", nil)
	// Without '+', Fetch adds it.
	if err := m.Fetch(ctxTimeout(t, 30*time.Second), "refs/heads/main:refs/writ/heads/main"); err != nil {
		t.Fatal(err)
	}
	got, err := m.Ref("refs/writ/heads/main")
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != rewritten {
		t.Fatalf("ref %s, want rewritten %s", got, rewritten)
	}
}

func TestFetchMissingBranch(t *testing.T) {
	t.Parallel()
	r, _ := linearRepo(t, 1)
	m := mustMirror(t, r.Path, Auth{})
	err := m.Fetch(ctxTimeout(t, 30*time.Second), "+refs/heads/nope:refs/writ/heads/nope")
	wantErr(t, err, "does not exist")
}

func TestFetchTag(t *testing.T) {
	t.Parallel()
	r, hs := linearRepo(t, 2)
	tagHash := r.Tag(t, "v1.0.0", hs[0], nil)
	m := mustMirror(t, "file://"+r.Path, Auth{})
	spec, err := TagRefspec("v1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if spec != "+refs/tags/v1.0.0:refs/writ/tags/v1.0.0" {
		t.Fatalf("TagRefspec = %q", spec)
	}
	if err := m.Fetch(ctxTimeout(t, 30*time.Second), spec); err != nil {
		t.Fatal(err)
	}
	got, err := m.Ref("refs/writ/tags/v1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != tagHash {
		t.Fatalf("tag ref %s, want tag object %s", got, tagHash)
	}
	tag, err := m.Tag(tagHash)
	if err != nil {
		t.Fatal(err)
	}
	if tag.Target.String() != hs[0] {
		t.Fatalf("tag target %s, want %s", tag.Target, hs[0])
	}
	if _, err := m.Commit(hs[0]); err != nil {
		t.Fatal(err)
	}
	// Only the named tag: main was not fetched.
	if _, err := m.Commit(hs[1]); err == nil {
		t.Fatal("a commit outside the fetched tag is in the mirror")
	}
}

// gitHTTPServer serves the repositories under root with git http-backend
// on 127.0.0.1. wrap, if set, sees every request first.
func gitHTTPServer(t testing.TB, root string, wrap func(http.Handler) http.Handler) *httptest.Server {
	t.Helper()
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(out)), "git-http-backend"),
		Env: []string{
			"GIT_PROJECT_ROOT=" + root,
			"GIT_HTTP_EXPORT_ALL=1",
			"GIT_CONFIG_NOSYSTEM=1",
			"GIT_CONFIG_GLOBAL=/dev/null",
			"HOME=" + t.TempDir(),
		},
	}
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func httpURL(srv *httptest.Server, r *testkeys.Repo) string {
	return srv.URL + "/" + filepath.Base(r.Path) + "/.git"
}

func TestFetchSmartHTTP(t *testing.T) {
	t.Parallel()
	r, hs := linearRepo(t, 3)
	srv := gitHTTPServer(t, filepath.Dir(r.Path), nil)
	testFetchMain(t, httpURL(srv, r), r, hs, Auth{})
}

func TestFetchSmartHTTPToken(t *testing.T) {
	t.Parallel()
	r, hs := linearRepo(t, 2)
	const token = "glpat-s3cret"
	var mu sync.Mutex
	var seen []string
	srv := gitHTTPServer(t, filepath.Dir(r.Path), func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			got := req.Header.Get("Authorization")
			mu.Lock()
			seen = append(seen, got)
			mu.Unlock()
			if got != "Basic "+base64.StdEncoding.EncodeToString([]byte("ci-bot:"+token)) {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, req)
		})
	})
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(good, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	testFetchMain(t, httpURL(srv, r), r, hs, Auth{Kind: AuthTokenFile, TokenFile: good, Username: "ci-bot"})
	mu.Lock()
	n := len(seen)
	mu.Unlock()
	if n == 0 {
		t.Fatal("server saw no request")
	}

	m := mustMirror(t, httpURL(srv, r), Auth{Kind: AuthTokenFile, TokenFile: bad, Username: "ci-bot"})
	err := m.Fetch(ctxTimeout(t, 30*time.Second), "+refs/heads/main:refs/writ/heads/main")
	wantErr(t, err, "authentication required")
	if strings.Contains(err.Error(), "wrong") {
		t.Fatalf("error leaks the token: %v", err)
	}
	// Without auth the server refuses too, so the header above mattered.
	m = mustMirror(t, httpURL(srv, r), Auth{})
	if err := m.Fetch(ctxTimeout(t, 30*time.Second), "+refs/heads/main:refs/writ/heads/main"); err == nil {
		t.Fatal("fetch without token succeeded")
	}
}

// A server that accepts the connection and never answers: the fetch ends
// with the context.
func TestFetchTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		select {
		case <-req.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	m := mustMirror(t, srv.URL+"/hang.git", Auth{})
	start := time.Now()
	err := m.Fetch(ctxTimeout(t, 500*time.Millisecond), "+refs/heads/main:refs/writ/heads/main")
	if err == nil {
		t.Fatal("fetch from a hanging server succeeded")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v is not a deadline", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("fetch took %v after a 500ms deadline", d)
	}
	t.Logf("refused as expected after %v: %v", time.Since(start).Round(time.Millisecond), err)
}

// Fetching a commit by hash works only where the server allows it.
func TestFetchCommitByHash(t *testing.T) {
	t.Parallel()
	r, hs := linearRepo(t, 3)
	srv := gitHTTPServer(t, filepath.Dir(r.Path), nil)

	m := mustMirror(t, httpURL(srv, r), Auth{})
	err := m.FetchCommit(ctxTimeout(t, 30*time.Second), hs[1])
	wantErr(t, err, "does not allow fetching a commit by hash")

	r.Git(t, "config", "uploadpack.allowReachableSHA1InWant", "true")
	m = mustMirror(t, httpURL(srv, r), Auth{})
	if err := m.FetchCommit(ctxTimeout(t, 30*time.Second), hs[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Commit(hs[1]); err != nil {
		t.Fatal(err)
	}
	got, err := m.Ref("refs/writ/commits/" + hs[1])
	if err != nil || got.String() != hs[1] {
		t.Fatalf("commit ref %s, %v", got, err)
	}
	if _, err := m.Commit(hs[2]); err == nil {
		t.Fatal("a descendant of the fetched commit is in the mirror")
	}
	if err := m.FetchCommit(context.Background(), "HEAD"); err == nil {
		t.Fatal("FetchCommit accepted a non-hash")
	}
}

func TestOpenMirrorRefusesURLs(t *testing.T) {
	t.Parallel()
	tok := filepath.Join(t.TempDir(), "token")
	cases := []struct {
		url  string
		auth Auth
		want string
	}{
		{"", Auth{}, "empty"},
		{"relative/path", Auth{}, "use https://"},
		{"git://example.com/x.git", Auth{}, "not supported"},
		{"ext::sh -c touch% /tmp/pwned", Auth{}, "white space"},
		{"https://user:pw@example.com/x.git", Auth{}, "credentials"},
		{"https://user@example.com/x.git", Auth{}, "credentials"},
		{"https://example.com/x.git?a=b", Auth{}, "query"},
		{"/tmp/../etc", Auth{}, "not clean"},
		{"file://host/x", Auth{}, "file:///"},
		{"file://relative", Auth{}, "file:///"},
		{"-oProxyCommand=x:y", Auth{}, "use https://"},
		{"https://example.com/x\n.git", Auth{}, "control"},
		{"http://example.com/x.git", Auth{Kind: AuthTokenFile, TokenFile: tok}, "only sent over https"},
		{"ssh://git@example.com/x.git", Auth{Kind: AuthTokenFile, TokenFile: tok}, "works with https"},
		{"https://example.com/x.git", Auth{Kind: AuthSSHKey, SSHKeyFile: "k", KnownHostsFile: "kh"}, "works with ssh"},
		{"https://example.com/x.git", Auth{Kind: AuthSSHKey}, "known_hosts"},
		{"https://example.com/x.git", Auth{Kind: AuthTokenFile}, "needs a token file"},
		{"https://example.com/x.git", Auth{Kind: "password"}, "auth kind"},
		{"git@example.com:x.git", Auth{}, `set auth "ssh-key"`},
	}
	for _, c := range cases {
		_, err := OpenMirror(t.TempDir(), c.url, c.auth)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("OpenMirror(%q, %+v) = %v, want error containing %q", c.url, c.auth, err, c.want)
		}
	}
	// Accepted forms (no network is touched by OpenMirror).
	for _, u := range []string{"https://gitlab.example.com/g/p.git", "http://127.0.0.1:8080/p.git", "ssh://git@gitlab.example.com:2222/g/p.git", "git@gitlab.example.com:g/p.git", "file:///srv/p.git", "/srv/p.git"} {
		auth := Auth{}
		if strings.HasPrefix(u, "ssh://") || strings.HasPrefix(u, "git@") {
			auth = Auth{Kind: AuthSSHKey, SSHKeyFile: "k", KnownHostsFile: "kh"}
		}
		if _, err := OpenMirror(t.TempDir(), u, auth); err != nil {
			t.Errorf("OpenMirror(%q): %v", u, err)
		}
	}
	if _, err := OpenMirror(t.TempDir(), "http://127.0.0.1:1/p.git", Auth{Kind: AuthTokenFile, TokenFile: tok}); err != nil {
		t.Errorf("token over loopback http refused: %v", err)
	}
}

func TestOpenMirrorURLMismatch(t *testing.T) {
	t.Parallel()
	cache := t.TempDir()
	m := mustMirrorIn(t, cache, "/srv/a.git")
	// Simulate a collision: another URL's mirror in the same directory.
	if err := os.Rename(m.Dir(), filepath.Join(cache, "moved")); err != nil {
		t.Fatal(err)
	}
	other := mustMirrorIn(t, cache, "/srv/b.git")
	if err := os.Rename(filepath.Join(cache, "moved"), other.Dir()+".tmp"); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(other.Dir()); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(other.Dir()+".tmp", other.Dir()); err != nil {
		t.Fatal(err)
	}
	_, err := OpenMirror(cache, "/srv/b.git", Auth{})
	wantErr(t, err, "does not mirror /srv/b.git")
}

func mustMirrorIn(t *testing.T, cache, url string) *Mirror {
	t.Helper()
	m, err := OpenMirror(cache, url, Auth{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestFetchRefusesRefspecs(t *testing.T) {
	t.Parallel()
	r, _ := linearRepo(t, 1)
	m := mustMirror(t, r.Path, Auth{})
	for _, spec := range []string{
		"",
		"refs/heads/main",
		"refs/heads/main:refs/writ/x:y",
		"main:refs/writ/heads/main",
		"refs/heads/main:writ/main",
		"refs/heads/../../x:refs/writ/x",
		"refs/heads/a b:refs/writ/a",
		"refs/heads/a\x00:refs/writ/a",
		"refs/heads/a@{1}:refs/writ/a",
		"refs/heads/.hidden:refs/writ/a",
		"refs/heads/a.lock:refs/writ/a",
		"refs/heads/a/:refs/writ/a",
		"refs/heads/*:refs/writ/a",
		"refs/heads/a*:refs/writ/a*",
		"refs/heads/a:refs/writ/*",
		"--upload-pack=touch /tmp/x:refs/writ/a",
		"ABCDEF0123456789ABCDEF0123456789ABCDEF01:refs/writ/a",
	} {
		if err := m.Fetch(context.Background(), spec); err == nil {
			t.Errorf("refspec %q accepted", spec)
		}
	}
	if err := m.Fetch(context.Background()); err == nil {
		t.Error("fetch without refspec accepted")
	}
	// A wildcard on both sides is fine.
	if err := m.Fetch(ctxTimeout(t, 30*time.Second), "+refs/heads/*:refs/writ/heads/*"); err != nil {
		t.Fatal(err)
	}
}

func TestBranchRefspec(t *testing.T) {
	t.Parallel()
	if got, err := BranchRefspec("feature/x-1"); err != nil || got != "+refs/heads/feature/x-1:refs/writ/heads/feature/x-1" {
		t.Fatalf("BranchRefspec = %q, %v", got, err)
	}
	for _, b := range []string{"", "refs/heads/main", "a:b", "a..b", "*", "x/../../y", "a b", "-x\x01", "@{u}", "a.lock"} {
		if _, err := BranchRefspec(b); err == nil {
			t.Errorf("BranchRefspec(%q) accepted", b)
		}
	}
}

func TestCheckHash(t *testing.T) {
	t.Parallel()
	if err := CheckHash("0123456789abcdef0123456789abcdef01234567"); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"", "HEAD", "0123456789ABCDEF0123456789abcdef01234567", "0123456789abcdef", "0123456789abcdef0123456789abcdef012345678", "0123456789abcdef0123456789abcdef0123456g", "main~1"} {
		if CheckHash(h) == nil {
			t.Errorf("CheckHash(%q) accepted", h)
		}
	}
	r, _ := linearRepo(t, 1)
	m := localMirror(t, r.Path)
	for _, h := range []string{"HEAD", "main", "0123456789ABCDEF0123456789ABCDEF01234567"} {
		if _, err := m.Commit(h); err == nil {
			t.Errorf("Commit(%q) accepted", h)
		}
		if _, err := m.IsAncestor(h, h); err == nil {
			t.Errorf("IsAncestor(%q) accepted", h)
		}
	}
	if _, err := m.Ref("HEAD"); err == nil {
		t.Error(`Ref("HEAD") accepted`)
	}
}

// history: a - b - c - m (merge of c and x) - d ; x branches from a.
func historyRepo(t *testing.T) (*testkeys.Repo, map[string]string) {
	t.Helper()
	r := testkeys.GitRepo(t)
	h := map[string]string{}
	h["a"] = r.Commit(t, map[string]string{"a": "a"}, "a", nil)
	h["b"] = r.Commit(t, map[string]string{"b": "b"}, "b", nil)
	h["c"] = r.Commit(t, map[string]string{"c": "c"}, "c", nil)
	r.Git(t, "checkout", "-q", "-b", "side", h["a"])
	h["x"] = r.Commit(t, map[string]string{"x": "x"}, "x", nil)
	r.Git(t, "checkout", "-q", "main")
	r.Git(t, "merge", "-q", "--no-ff", "--no-edit", "side")
	r.When = r.When.Add(time.Minute)
	h["m"] = r.Git(t, "rev-parse", "HEAD")
	h["d"] = r.Commit(t, map[string]string{"d": "d"}, "d", nil)
	h["u"] = r.WriteObject(t, "commit", []byte("tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor A <a@x> 1 +0000\ncommitter A <a@x> 1 +0000\n\nunrelated root\n"))
	return r, h
}

func TestIsAncestor(t *testing.T) {
	t.Parallel()
	r, h := historyRepo(t)
	m := localMirror(t, r.Path)
	cases := []struct {
		a, d string
		want bool
	}{
		{"a", "d", true}, {"c", "d", true}, {"x", "d", true}, {"x", "m", true},
		{"d", "d", true}, {"a", "a", true},
		{"d", "a", false}, {"x", "c", false}, {"c", "x", false}, {"u", "d", false}, {"d", "u", false},
	}
	for _, c := range cases {
		got, err := m.IsAncestor(h[c.a], h[c.d])
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("IsAncestor(%s, %s) = %v, want %v", c.a, c.d, got, c.want)
		}
	}
	// A commit the mirror does not hold is no ancestor of one whose history
	// it holds; a missing descendant is an error.
	if ok, err := m.IsAncestor("0123456789abcdef0123456789abcdef01234567", h["d"]); ok || err != nil {
		t.Errorf("missing ancestor: %v, %v; want false, nil", ok, err)
	}
	if _, err := m.IsAncestor(h["a"], "0123456789abcdef0123456789abcdef01234567"); err == nil {
		t.Error("missing descendant commit accepted")
	}
}

func names(t *testing.T, h map[string]string, cs []string) string {
	t.Helper()
	rev := map[string]string{}
	for k, v := range h {
		rev[v] = k
	}
	var out []string
	for _, c := range cs {
		out = append(out, rev[c])
	}
	return strings.Join(out, "")
}

func TestCommitsBetween(t *testing.T) {
	t.Parallel()
	r, h := historyRepo(t)
	m := localMirror(t, r.Path)
	cases := []struct {
		base, head string
		want       string // newest first
	}{
		{"c", "d", "dmx"},
		{"x", "d", "dmcb"},
		{"m", "d", "d"},
		{"d", "d", ""},
		{"a", "c", "cb"},
		{"", "c", "cba"},
		{"d", "c", ""},   // base descends from head: nothing new
		{"x", "c", "cb"}, // diverged: only head's side, not x's
	}
	for _, c := range cases {
		base := ""
		if c.base != "" {
			base = h[c.base]
		}
		cs, err := m.CommitsBetween(base, h[c.head], 10)
		if err != nil {
			t.Fatalf("%s..%s: %v", c.base, c.head, err)
		}
		var hs []string
		for _, cm := range cs {
			hs = append(hs, cm.Hash.String())
		}
		if got := names(t, h, hs); got != c.want {
			t.Errorf("%s..%s = %q, want %q", c.base, c.head, got, c.want)
		}
		// Cross-check with git rev-list.
		args := []string{"rev-list", h[c.head]}
		if base != "" {
			args = append(args, "^"+base)
		}
		want := strings.Fields(r.Git(t, args...))
		sort.Strings(want)
		sort.Strings(hs)
		if strings.Join(want, " ") != strings.Join(hs, " ") {
			t.Errorf("%s..%s disagrees with git rev-list", c.base, c.head)
		}
	}
	_, err := m.CommitsBetween(h["a"], h["d"], 4)
	wantErr(t, err, "more than 4 commits")
	if cs, err := m.CommitsBetween(h["a"], h["d"], 5); err != nil || len(cs) != 5 {
		t.Fatalf("exactly max commits: %d, %v", len(cs), err)
	}
	_, err = m.CommitsBetween("", h["d"], 2)
	wantErr(t, err, "more than 2 commits")
}

// Commits with equal dates (as after a quick rebase) must not make the
// walk report commits base already reaches.
func TestCommitsBetweenEqualDates(t *testing.T) {
	t.Parallel()
	r := testkeys.GitRepo(t)
	var hs []string
	for i := 0; i < 12; i++ {
		hs = append(hs, r.Commit(t, map[string]string{"f": fmt.Sprint(i)}, fmt.Sprint(i), nil))
		r.When = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC) // every commit at the same second
	}
	// A side branch from the root, merged at the top: head's side reaches
	// the root through it, possibly before base's side gets there.
	r.Git(t, "checkout", "-q", "-b", "side", hs[0])
	side := r.Commit(t, map[string]string{"s": "s"}, "side", nil)
	r.Git(t, "checkout", "-q", "main")
	r.Git(t, "merge", "-q", "--no-ff", "--no-edit", "side")
	merge := r.Git(t, "rev-parse", "HEAD")
	m := localMirror(t, r.Path)
	for _, base := range hs {
		cs, err := m.CommitsBetween(base, merge, 100)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range cs {
			got = append(got, c.Hash.String())
		}
		want := strings.Fields(r.Git(t, "rev-list", merge, "^"+base))
		sort.Strings(got)
		sort.Strings(want)
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("base %s: got %d commits, git rev-list %d", base[:7], len(got), len(want))
		}
	}
	_ = side
}

// treeEntry is one entry of a hand-made tree object.
type treeEntry struct {
	mode, name, hash string
}

// mkTree stores a tree object with exactly these entries, in this order,
// whatever git would think of them.
func mkTree(t *testing.T, r *testkeys.Repo, entries ...treeEntry) string {
	t.Helper()
	var buf bytes.Buffer
	for _, e := range entries {
		raw, err := hex.DecodeString(e.hash)
		if err != nil || len(raw) != 20 {
			t.Fatalf("bad hash %q", e.hash)
		}
		buf.WriteString(e.mode + " " + e.name + "\x00")
		buf.Write(raw)
	}
	return r.WriteObject(t, "tree", buf.Bytes())
}

func mkBlob(t *testing.T, r *testkeys.Repo, content string) string {
	t.Helper()
	return r.GitInput(t, []byte(content), "hash-object", "-w", "--stdin")
}

func mkCommit(t *testing.T, r *testkeys.Repo, tree string) string {
	t.Helper()
	return r.WriteObject(t, "commit", []byte("tree "+tree+"\nauthor A <a@x> 1735689600 +0000\ncommitter A <a@x> 1735689600 +0000\n\ncrafted\n"))
}

func TestCheckout(t *testing.T) {
	t.Parallel()
	r := testkeys.GitRepo(t)
	readme := mkBlob(t, r, "hello\n")
	script := mkBlob(t, r, "#!/bin/sh\necho hi\n")
	docs := mkTree(t, r,
		treeEntry{"120000", "readme-link", mkBlob(t, r, "../README.md")},
		treeEntry{"100644", "x.md", mkBlob(t, r, "x\n")},
	)
	root := mkTree(t, r,
		treeEntry{"100644", "README.md", readme},
		treeEntry{"040000", "docs", docs},
		treeEntry{"100755", "run.sh", script},
		treeEntry{"120000", "self", mkBlob(t, r, "docs")},
		treeEntry{"160000", "vendor", "0123456789abcdef0123456789abcdef01234567"},
	)
	commit := mkCommit(t, r, root)
	m := localMirror(t, r.Path)
	dir := filepath.Join(t.TempDir(), "new", "build")
	if err := m.Checkout(commit, dir); err != nil {
		t.Fatal(err)
	}
	check := func(rel, content string, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(dir, rel)
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", rel, fi.Mode(), mode)
		}
		if content != "" {
			b, err := os.ReadFile(p)
			if err != nil || string(b) != content {
				t.Errorf("%s: content %q, %v", rel, b, err)
			}
		}
	}
	check("README.md", "hello\n", 0o644)
	check("run.sh", "#!/bin/sh\necho hi\n", 0o755)
	check("docs/x.md", "x\n", 0o644)
	check("docs", "", os.ModeDir|0o755)
	check("vendor", "", os.ModeDir|0o755)
	check("docs/readme-link", "hello\n", os.ModeSymlink|0o777)
	check("self", "", os.ModeSymlink|0o777)
	if target, _ := os.Readlink(filepath.Join(dir, "docs/readme-link")); target != "../README.md" {
		t.Errorf("symlink target %q", target)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "vendor"))
	if len(entries) != 0 {
		t.Errorf("submodule directory not empty: %v", entries)
	}
	if _, err := os.Stat(filepath.Join(dir, ".git")); !os.IsNotExist(err) {
		t.Errorf(".git exists in the checkout: %v", err)
	}

	// The same checkout into the now non-empty directory is refused.
	wantErr(t, m.Checkout(commit, dir), "not empty")
	// An existing empty directory is fine.
	empty := t.TempDir()
	if err := m.Checkout(commit, empty); err != nil {
		t.Fatal(err)
	}
}

// Hostile trees: each is refused, nothing is written outside the target
// directory, and the target is left empty.
func TestCheckoutHostileTrees(t *testing.T) {
	t.Parallel()
	r := testkeys.GitRepo(t)
	blob := mkBlob(t, r, "pwned\n")
	hookDir := mkTree(t, r, treeEntry{"100755", "post-checkout", blob})
	gitDir := mkTree(t, r, treeEntry{"040000", "hooks", hookDir})
	sub := func(entries ...treeEntry) string { return mkTree(t, r, entries...) }
	link := func(target string) string { return mkBlob(t, r, target) }
	cases := map[string][]treeEntry{
		"dotdot file":        {{"100644", "..", blob}},
		"dot file":           {{"100644", ".", blob}},
		"dotdot dir":         {{"040000", "..", sub(treeEntry{"100644", "x", blob})}},
		"slash in name":      {{"100644", "../x", blob}},
		"nested slash":       {{"040000", "a", sub(treeEntry{"100644", "b/../../../x", blob})}},
		".git dir":           {{"040000", ".git", gitDir}},
		".GIT dir":           {{"040000", ".GIT", gitDir}},
		"nested .git":        {{"040000", "a", sub(treeEntry{"040000", ".git", gitDir})}},
		".git file":          {{"100644", ".git", blob}},
		"absolute symlink":   {{"120000", "l", link("/etc/passwd")}},
		"escaping symlink":   {{"120000", "l", link("../x")}},
		"deep escape":        {{"040000", "a", sub(treeEntry{"120000", "l", link("../../x")})}},
		"chained escape":     {{"120000", "d", link(".")}, {"120000", "x", link("d/d/..")}},
		"escape via dir lnk": {{"040000", "a", sub(treeEntry{"120000", "up", link("..")})}, {"120000", "z", link("a/up/a/up/..")}},
		"symlink loop":       {{"120000", "p", link("q")}, {"120000", "q", link("p")}},
		"empty symlink":      {{"120000", "l", link("")}},
		"dup file":           {{"100644", "a", blob}, {"100644", "a", blob}},
		"dup dir over link":  {{"120000", "a", link("b")}, {"040000", "a", sub(treeEntry{"100644", "x", blob})}},
		"dup file in dir":    {{"040000", "a", sub(treeEntry{"100644", "x", blob})}, {"100644", "a", blob}},
	}
	m := localMirror(t, r.Path)
	for name, entries := range cases {
		commit := mkCommit(t, r, mkTree(t, r, entries...))
		parent := t.TempDir()
		dir := filepath.Join(parent, "build")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		err := m.Checkout(commit, dir)
		if err == nil {
			t.Errorf("%s: checkout succeeded", name)
			continue
		}
		t.Logf("%s: refused: %v", name, err)
		left, _ := os.ReadDir(dir)
		if len(left) != 0 {
			t.Errorf("%s: checkout left %d entries", name, len(left))
		}
		outside, _ := os.ReadDir(parent)
		if len(outside) != 1 {
			t.Errorf("%s: something was written next to the checkout: %v", name, outside)
		}
	}
}

func TestReadFile(t *testing.T) {
	t.Parallel()
	r := testkeys.GitRepo(t)
	c := r.Commit(t, map[string]string{"allowlist.yaml": "schema: writ/v2\n", "keys/a.asc": "key\n"}, "files", nil)
	link := mkCommit(t, r, mkTree(t, r,
		treeEntry{"120000", "allowlist.yaml", mkBlob(t, r, "/etc/passwd")},
	))
	m := localMirror(t, r.Path)
	got, err := m.ReadFile(c, "allowlist.yaml", 1024)
	if err != nil || string(got) != "schema: writ/v2\n" {
		t.Fatalf("ReadFile = %q, %v", got, err)
	}
	if got, err := m.ReadFile(c, "keys/a.asc", 4); err != nil || string(got) != "key\n" {
		t.Fatalf("ReadFile at exactly the limit = %q, %v", got, err)
	}
	_, err = m.ReadFile(c, "allowlist.yaml", 4)
	wantErr(t, err, "more than the 4 accepted")
	_, err = m.ReadFile(c, "keys", 1024)
	wantErr(t, err, "not a regular file")
	_, err = m.ReadFile(link, "allowlist.yaml", 1024)
	wantErr(t, err, "not a regular file")
	_, err = m.ReadFile(c, "missing.yaml", 1024)
	wantErr(t, err, "missing.yaml")
	for _, p := range []string{"", "/allowlist.yaml", "../allowlist.yaml", "keys/../allowlist.yaml", "./allowlist.yaml", ".git/config", "keys//a.asc"} {
		if _, err := m.ReadFile(c, p, 1024); err == nil {
			t.Errorf("ReadFile(%q) accepted", p)
		}
	}
}

// TestReadFileLargeBlob: a blob over largeObject is streamed from its pack
// (not read whole into memory) and reads back exactly, whether the pack
// holds it whole or as a delta against another version, and the checkout
// writes the same bytes.
func TestReadFileLargeBlob(t *testing.T) {
	t.Parallel()
	r := testkeys.GitRepo(t)
	var big strings.Builder
	for i := 0; big.Len() < 2*largeObject; i++ {
		fmt.Fprintf(&big, "  - name: job-%d\n    script: [echo %d]\n", i, i)
	}
	v1 := big.String()
	v2 := strings.Replace(v1, "job-777\n", "job-seven\n", 1) + "# v2\n"
	c1 := r.Commit(t, map[string]string{"allowlist.yaml": v1}, "v1", nil)
	c2 := r.Commit(t, map[string]string{"allowlist.yaml": v2}, "v2", nil)
	// One pack with both versions: git stores one of them as a delta.
	m := mustMirror(t, r.Path, Auth{})
	if err := m.Fetch(ctxTimeout(t, time.Minute), "+refs/heads/main:refs/writ/heads/main"); err != nil {
		t.Fatal(err)
	}
	idx, _ := filepath.Glob(filepath.Join(m.Dir(), "objects", "pack", "*.idx"))
	if len(idx) != 1 {
		t.Fatalf("%d packs", len(idx))
	}
	out, err := exec.Command("git", "verify-pack", "-v", idx[0]).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "chain length = 1:") {
		t.Fatalf("the pack holds no delta, the case this test is for: %v\n%s", err, out)
	}
	for c, want := range map[string]string{c1: v1, c2: v2} {
		got, err := m.ReadFile(c, "allowlist.yaml", 4*largeObject)
		if err != nil || string(got) != want {
			t.Fatalf("ReadFile at %s: %d bytes, %v; want %d bytes", c[:8], len(got), err, len(want))
		}
		dir := filepath.Join(t.TempDir(), "co")
		if err := m.Checkout(c, dir); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "allowlist.yaml")); err != nil || string(b) != want {
			t.Fatalf("checkout at %s differs", c[:8])
		}
	}
}
