package companion

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/internal/companion/gitlabtest"
)

func TestLoadToken(t *testing.T) {
	t.Parallel()
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tok, err := LoadToken(file, env(map[string]string{TokenEnv: "from-env"}))
	if err != nil || string(tok) != testToken {
		t.Fatalf("file token: %v %q", err, tok)
	}
	if tok, err = LoadToken("", env(map[string]string{TokenEnv: "a", TokenFallbackEnv: "b"})); err != nil || tok != "a" {
		t.Fatalf("WRIT_GITLAB_TOKEN first: %v %q", err, tok)
	}
	if tok, err = LoadToken("", env(map[string]string{TokenFallbackEnv: "b"})); err != nil || tok != "b" {
		t.Fatalf("GITLAB_TOKEN fallback: %v %q", err, tok)
	}
	if _, err = LoadToken("", env(nil)); err == nil || !strings.Contains(err.Error(), "--token-file") {
		t.Fatalf("no token: %v", err)
	}
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("two\nlines "+testToken+"\n"), 0o600)
	if _, err = LoadToken(bad, nil); err == nil {
		t.Fatal("a token with a line break was accepted")
	} else {
		assertNoToken(t, err.Error())
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	if _, err = LoadToken(empty, nil); err == nil {
		t.Fatal("an empty token file was accepted")
	}
	if _, err = LoadToken(filepath.Join(dir, "missing"), nil); err == nil {
		t.Fatal("a missing token file was accepted")
	}
	// Formatting never reveals a token.
	if s := fmt.Sprintf("%v %s %+v %#v", Token(testToken), Token(testToken), Connection{Token: testToken}, Connection{Token: testToken}); strings.Contains(s, testToken) {
		t.Fatalf("formatting leaks the token: %s", s)
	}
}

func TestResolveURL(t *testing.T) {
	t.Parallel()
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	u, err := ResolveURL("", env(map[string]string{CIURLEnv: "https://ci/api/v4", URLEnv: "https://writ/api/v4"}))
	if err != nil || u != "https://writ/api/v4" {
		t.Fatalf("%v %q", err, u)
	}
	if u, _ = ResolveURL("https://flag", env(map[string]string{URLEnv: "x"})); u != "https://flag" {
		t.Fatal("the flag does not win")
	}
	if _, err = ResolveURL("", env(nil)); err == nil {
		t.Fatal("no URL accepted")
	}
}

func TestNewClientRefusesUnsafeURLs(t *testing.T) {
	t.Parallel()
	for _, u := range []string{
		"http://gitlab.example.com/api/v4",
		"https://user:" + testToken + "@gitlab.example.com/api/v4",
		"https://gitlab.example.com/api/v4?private_token=" + testToken,
		"gitlab.example.com",
		"ftp://gitlab.example.com",
	} {
		_, err := newClient(Connection{URL: u, Token: testToken})
		if err == nil {
			t.Errorf("%s accepted", u)
			continue
		}
		assertNoToken(t, err.Error())
	}
	if _, err := newClient(Connection{URL: "https://gitlab.example.com"}); err == nil {
		t.Error("no token accepted")
	}
	for _, u := range []string{"http://127.0.0.1:1/api/v4", "http://localhost:1", "http://[::1]:1", "https://gitlab.example.com"} {
		if _, err := newClient(Connection{URL: u, Token: testToken}); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
}

// countRequests counts the requests whose path ends with suffix.
func countRequests(s *gitlabtest.Server, suffix string) int {
	n := 0
	for _, r := range s.Requests() {
		if strings.HasSuffix(r.Path, suffix) {
			n++
		}
	}
	return n
}

func TestAPIErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cases := []struct {
		status   int
		header   map[string]string
		attempts int // requests expected for one GET: 1 + retries when retried
		want     string
	}{
		{401, nil, 1, "401 Unauthorized: GitLab rejected the token"},
		{403, nil, 1, "403 Forbidden"},
		{404, nil, 1, "404 Not Found: check the project path"},
		{429, map[string]string{"Retry-After": "0"}, 4, "429 Too Many Requests"},
		{500, nil, 4, "500: GitLab failed after 3 retries"},
		{502, nil, 4, "502"},
		{503, nil, 4, "503: GitLab failed after 3 retries"},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			t.Parallel()
			s := gitlabtest.New(t, testToken)
			s.AddProject("acme/web", "main")
			// The body echoes the token, as a hostile or buggy server might.
			s.AddFault(gitlabtest.Fault{Status: tc.status, Header: tc.header, Body: `{"message":"denied for token ` + testToken + `"}`})
			c, err := newClient(testConn(s))
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.project(ctx, "acme/web")
			var ae *APIError
			if !errors.As(err, &ae) || ae.Status != tc.status {
				t.Fatalf("error %v (%T), want *APIError with status %d", err, err, tc.status)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "read project acme/web") {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
			assertNoToken(t, err.Error())
			if tc.status != 404 && !strings.Contains(err.Error(), "[REDACTED]") {
				t.Errorf("GitLab's message is not shown (redacted): %q", err)
			}
			if n := countRequests(s, "/projects/acme/web"); n != tc.attempts {
				t.Fatalf("%d requests, want %d (retries must be bounded)", n, tc.attempts)
			}
		})
	}
}

func TestRetriesAreBoundedAndSafe(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t)

	// A POST that meets a 503 is not repeated: it may have taken effect.
	w.s.AddFault(gitlabtest.Fault{Method: http.MethodPost, Status: 503, Body: `{"message":"down"}`})
	_, err := Propose(ctx, w.proposeOpts())
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("err %v", err)
	}
	if n := len(w.s.Writes()); n != 1 {
		t.Fatalf("%d POST attempts, want exactly 1", n)
	}

	// A transient 503 on a GET is retried and the command succeeds.
	w2 := newWorld(t)
	w2.s.AddFault(gitlabtest.Fault{Method: http.MethodGet, PathPrefix: "/projects/acme/web", Status: 503, Times: 2})
	if _, err := Propose(ctx, w2.proposeOpts()); err != nil {
		t.Fatalf("transient 503 not retried: %v", err)
	}

	// Retries: 0 in Connection means the default 3; negative means none.
	w3 := newWorld(t)
	w3.s.AddFault(gitlabtest.Fault{Status: 503})
	o := w3.proposeOpts()
	o.Conn.Retries = -1
	if _, err := Propose(ctx, o); err == nil {
		t.Fatal("no error")
	}
	if n := len(w3.s.Requests()); n != 1 {
		t.Fatalf("%d requests with retries disabled, want 1", n)
	}
	o.Conn.Retries = 1
	w3.s.ResetRequests()
	Propose(ctx, o)
	if n := len(w3.s.Requests()); n != 2 {
		t.Fatalf("%d requests with 1 retry, want 2", n)
	}
}

func TestRetryAfterIsHonouredAndCapped(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := gitlabtest.New(t, testToken)
	s.AddProject("acme/web", "main")
	// Asking for longer than MaxRetryWait: no retry, a clear error.
	s.AddFault(gitlabtest.Fault{Status: 429, Header: map[string]string{"Retry-After": "3600"}})
	c, err := newClient(testConn(s))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.project(ctx, "acme/web")
	if err == nil || !strings.Contains(err.Error(), "429") || time.Since(start) > 5*time.Second {
		t.Fatalf("err %v after %s", err, time.Since(start))
	}
	if n := len(s.Requests()); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
	// A short Retry-After is waited for.
	s.ClearFaults()
	s.ResetRequests()
	s.AddFault(gitlabtest.Fault{Status: 429, Header: map[string]string{"Retry-After": "1"}, Times: 1})
	start = time.Now()
	if _, err = c.project(ctx, "acme/web"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("Retry-After: 1 was not honoured (retried after %s)", d)
	}
}

func TestHostileResponses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var body string
	var header http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, body)
	}))
	defer srv.Close()
	conn := Connection{URL: srv.URL + "/api/v4", Token: testToken, MaxResponseBytes: 1 << 10, retryWait: time.Millisecond}
	c, err := newClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	// Larger than the limit: refused, whatever Content-Length says.
	body = `{"id": 1, "path_with_namespace": "a/b", "description": "` + strings.Repeat("x", 4096) + `"}`
	if _, err := c.project(ctx, "a/b"); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("oversized response: %v", err)
	}
	// A malformed Link header (client-go would panic parsing it) is ignored.
	body = `[]`
	header = http.Header{"Link": {`<http://x>; rel`}, "X-Next-Page": {""}}
	if _, err := c.notes(ctx, "a/b", 1, 10); err != nil {
		t.Fatalf("malformed Link header: %v", err)
	}
	// A redirect is not followed (it could carry the token elsewhere).
	header = http.Header{"Location": {"http://127.0.0.1:1/elsewhere"}}
	srv2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://127.0.0.1:1/steal", http.StatusFound)
	}))
	defer srv2.Close()
	c2, _ := newClient(Connection{URL: srv2.URL, Token: testToken})
	if _, err := c2.project(ctx, "a/b"); err == nil || !strings.Contains(err.Error(), "302") {
		t.Fatalf("redirect: %v", err)
	}
	// A project without an ID or path is refused.
	header = nil
	body = `{"id": 0}`
	if _, err := c.project(ctx, "a/b"); err == nil {
		t.Fatal("empty project accepted")
	}
}

func TestUnreachableGitLab(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c, err := newClient(Connection{URL: "http://" + addr + "/api/v4", Token: testToken, retryWait: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.project(context.Background(), "a/b")
	if err == nil || !strings.Contains(err.Error(), "cannot reach GitLab") {
		t.Fatalf("err %v", err)
	}
	assertNoToken(t, err.Error())
}
