package companion

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"

	retryablehttp "github.com/hashicorp/go-retryablehttp"
	gitlab "gitlab.com/gitlab-org/api/client-go"

	"gitlab.com/writ-ci/writ/internal/fsutil"
)

// Token environment variables, in the order LoadToken reads them.
const (
	TokenEnv         = "WRIT_GITLAB_TOKEN"
	TokenFallbackEnv = "GITLAB_TOKEN"
)

// URL environment variables, in the order ResolveURL reads them. CI_API_V4_URL
// is set by GitLab in every CI job.
const (
	URLEnv   = "WRIT_GITLAB_URL"
	CIURLEnv = "CI_API_V4_URL"
)

// Defaults for Connection.
const (
	DefaultRetries          = 3
	DefaultRequestTimeout   = 30 * time.Second
	DefaultMaxRetryWait     = 60 * time.Second
	DefaultMaxResponseBytes = 64 << 20
	maxTokenFileBytes       = 64 << 10
)

// Token is a GitLab API token. Its String and GoString never reveal it, so a
// token that reaches a log line or an error by mistake prints as [REDACTED].
type Token string

// String implements fmt.Stringer.
func (Token) String() string { return "[REDACTED]" }

// GoString implements fmt.GoStringer.
func (Token) GoString() string { return "[REDACTED]" }

// LoadToken reads the GitLab token from file when file is set, otherwise from
// $WRIT_GITLAB_TOKEN, then $GITLAB_TOKEN (getenv is os.Getenv when nil). A
// token file holds the token on one line; a trailing newline is ignored.
func LoadToken(file string, getenv func(string) string) (Token, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	if file != "" {
		b, err := fsutil.ReadFileLimit(file, maxTokenFileBytes)
		if err != nil {
			return "", fmt.Errorf("read GitLab token file: %w", err)
		}
		return validToken(string(b), "token file "+file, getenv)
	}
	for _, name := range []string{TokenEnv, TokenFallbackEnv} {
		if v := getenv(name); v != "" {
			return validToken(v, "$"+name, getenv)
		}
	}
	return "", fmt.Errorf("no GitLab token: set --token-file, $%s or $%s to a project, group or personal access token (docs/companion.md, \"Tokens\", names the scope and role each command needs)", TokenEnv, TokenFallbackEnv)
}

// LoadTokenEnv reads the GitLab token from the environment variable name
// (getenv is os.Getenv when nil). CI templates use it to give each job the
// token of its purpose (WRIT_READ_TOKEN, WRIT_REVIEW_TOKEN,
// WRIT_PROPOSE_TOKEN) without renaming variables.
func LoadTokenEnv(name string, getenv func(string) string) (Token, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	v := getenv(name)
	if v == "" {
		return "", fmt.Errorf("no GitLab token: $%s is empty or not set (is it a protected variable in an unprotected pipeline?)", name)
	}
	return validToken(v, "$"+name, getenv)
}

// validToken checks a token read from "from" before it is ever sent.
func validToken(raw, from string, getenv func(string) string) (Token, error) {
	t := strings.TrimRight(raw, "\r\n")
	if t == "" {
		return "", fmt.Errorf("the GitLab token in %s is empty", from)
	}
	if jt := getenv("CI_JOB_TOKEN"); strings.HasPrefix(t, jobTokenPrefix) || (jt != "" && t == jt) {
		return "", fmt.Errorf("%s: %w", from, errJobToken)
	}
	for _, r := range t {
		// A token goes into an HTTP header: refuse anything that could
		// split or corrupt it rather than send it.
		if r > unicode.MaxASCII || unicode.IsSpace(r) || unicode.IsControl(r) {
			return "", fmt.Errorf("the GitLab token in %s contains whitespace or non-ASCII characters; it must be one line with the token only", from)
		}
	}
	return Token(t), nil
}

// ResolveURL returns the GitLab API URL: flag, then $WRIT_GITLAB_URL, then
// $CI_API_V4_URL (getenv is os.Getenv when nil).
func ResolveURL(flag string, getenv func(string) string) (string, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	for _, v := range []string{flag, getenv(URLEnv), getenv(CIURLEnv)} {
		if v != "" {
			return v, nil
		}
	}
	return "", fmt.Errorf("no GitLab URL: set --gitlab-url, $%s or $%s (for example https://gitlab.example.com/api/v4)", URLEnv, CIURLEnv)
}

// Connection says how to reach GitLab. Every companion command takes one.
type Connection struct {
	// URL is GitLab's API base, for example https://gitlab.example.com/api/v4.
	// Plain http is refused except to a loopback address.
	URL string
	// Token authenticates as a user or project/group access token (PRIVATE-TOKEN).
	Token Token
	// Retries bounds the retries of one request after 429 or 5xx; 0 means
	// DefaultRetries and a negative value means none.
	Retries int
	// RequestTimeout bounds one HTTP request; 0 means DefaultRequestTimeout.
	RequestTimeout time.Duration
	// MaxRetryWait caps how long a Retry-After header may make writ wait; a
	// server asking for longer gets an error instead. 0 means DefaultMaxRetryWait.
	MaxRetryWait time.Duration
	// MaxResponseBytes bounds one response body; 0 means DefaultMaxResponseBytes.
	MaxResponseBytes int64

	// retryWait is the first backoff step (tests shorten it).
	retryWait time.Duration
}

// client is a GitLab API client plus what is needed to turn its errors into
// messages that say what to do, without the token.
type client struct {
	gl      *gitlab.Client
	token   string
	retries int
	base    string
}

func (c Connection) retries() int {
	switch {
	case c.Retries < 0:
		return 0
	case c.Retries == 0:
		return DefaultRetries
	}
	return c.Retries
}

// newClient validates conn and builds a client-go client with bounded
// retries, bounded response sizes and a per-request timeout.
func newClient(conn Connection) (*client, error) {
	if conn.Token == "" {
		return nil, fmt.Errorf("no GitLab token: set --token-file, $%s or $%s", TokenEnv, TokenFallbackEnv)
	}
	u, err := url.Parse(conn.URL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("GitLab URL %q: use an absolute https:// URL such as https://gitlab.example.com/api/v4", conn.URL)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("GitLab URL %q: remove credentials, query and fragment; pass the token with --token-file or $%s", redactURL(u), TokenEnv)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return nil, fmt.Errorf("GitLab URL %s: plain http would send the token in clear; use https", u.Redacted())
	}
	timeout := conn.RequestTimeout
	if timeout <= 0 {
		timeout = DefaultRequestTimeout
	}
	maxBody := conn.MaxResponseBytes
	if maxBody <= 0 {
		maxBody = DefaultMaxResponseBytes
	}
	maxWait := conn.MaxRetryWait
	if maxWait <= 0 {
		maxWait = DefaultMaxRetryWait
	}
	step := conn.retryWait
	if step <= 0 {
		step = 500 * time.Millisecond
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.Proxy = http.ProxyFromEnvironment
	hc := &http.Client{
		Timeout:   timeout,
		Transport: &limitTransport{next: transport, limit: maxBody},
		// GitLab's API never needs a redirect; following one could carry
		// the token to another host.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	retries := conn.retries()
	gl, err := gitlab.NewClient(string(conn.Token),
		gitlab.WithBaseURL(u.String()),
		gitlab.WithHTTPClient(hc),
		gitlab.WithCustomRetryMax(retries),
		gitlab.WithCustomRetry(checkRetry(maxWait)),
		gitlab.WithCustomBackoff(backoff(step, maxWait)),
		gitlab.WithUserAgent("writ-companion"),
		gitlab.WithURLWarningLogger(slog.New(slog.DiscardHandler)),
		// client-go's limiter is disabled until the first response's
		// RateLimit headers tune it; a hostile server could set it to
		// stall us, and 429 handling already bounds our load.
		gitlab.WithCustomLimiter(noLimiter{}),
	)
	if err != nil {
		return nil, fmt.Errorf("GitLab client: %s", redact(err.Error(), string(conn.Token)))
	}
	return &client{gl: gl, token: string(conn.Token), retries: retries, base: u.Redacted()}, nil
}

type noLimiter struct{}

func (noLimiter) Wait(context.Context) error { return nil }

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func redactURL(u *url.URL) string {
	v := *u
	v.User, v.RawQuery, v.Fragment = nil, "", ""
	return v.String()
}

// checkRetry retries only what is safe: 429 (the request was not processed)
// and, for idempotent methods, 5xx and network errors; a POST that reached a
// failing server may have taken effect, so it is not repeated.
func checkRetry(maxWait time.Duration) retryablehttp.CheckRetry {
	return func(ctx context.Context, resp *http.Response, err error) (bool, error) {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		if err != nil {
			var op *net.OpError
			if errors.As(err, &op) && op.Op == "dial" {
				return true, nil // nothing was sent
			}
			return false, nil
		}
		if resp.StatusCode == http.StatusTooManyRequests {
			if d, ok := retryAfter(resp); ok && d > maxWait {
				return false, nil
			}
			return true, nil
		}
		if resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented {
			switch resp.Request.Method {
			case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete:
				return true, nil
			}
		}
		return false, nil
	}
}

// backoff honours Retry-After (capped by checkRetry) and otherwise doubles
// step per attempt with jitter, up to 16 steps.
func backoff(step, maxWait time.Duration) retryablehttp.Backoff {
	return func(_, _ time.Duration, attempt int, resp *http.Response) time.Duration {
		if resp != nil {
			if d, ok := retryAfter(resp); ok {
				return min(d, maxWait)
			}
		}
		d := step << min(attempt, 4)
		return d + time.Duration(rand.Int64N(int64(step)/2+1))
	}
}

// retryAfter parses a Retry-After header: seconds or an HTTP date.
func retryAfter(resp *http.Response) (time.Duration, bool) {
	v := strings.TrimSpace(resp.Header.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
		if n > int64(24*time.Hour/time.Second) {
			return 24 * time.Hour, true
		}
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0), true
	}
	return 0, false
}

// limitTransport fails a response whose body is larger than limit, so a
// hostile server cannot make writ buffer without bound.
type limitTransport struct {
	next  http.RoundTripper
	limit int64
}

func (t *limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > t.limit {
		resp.Body.Close()
		return nil, fmt.Errorf("response to %s %s is %d bytes, more than the limit of %d", req.Method, req.URL.Path, resp.ContentLength, t.limit)
	}
	// client-go parses Link headers assuming they are well formed and
	// panics on some malformed ones; writ reads them itself (eachPage).
	if l := resp.Header.Values("Link"); len(l) > 0 {
		resp.Header.Set(linkHeader, strings.Join(l, ","))
		resp.Header.Del("Link")
	}
	resp.Body = &limitedBody{rc: resp.Body, left: t.limit, limit: t.limit}
	return resp, nil
}

type limitedBody struct {
	rc          io.ReadCloser
	left, limit int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// Probe for one more byte: exactly limit bytes is fine.
		var one [1]byte
		if n, _ := b.rc.Read(one[:]); n > 0 {
			return 0, fmt.Errorf("GitLab response is larger than the limit of %d bytes", b.limit)
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// APIError is a failed GitLab API call, with a message that says what to do.
// It never contains the token.
type APIError struct {
	// Op says what writ was doing, for example "read merge request !3".
	Op string
	// Status is the HTTP status, or 0 when no response arrived.
	Status int
	// Msg is the explanation and advice.
	Msg string
}

func (e *APIError) Error() string { return e.Op + ": " + e.Msg }

// wrap turns a client-go error into an *APIError. The token is scrubbed from
// everything GitLab sent back, because a hostile server may echo it.
func (c *client) wrap(op string, resp *gitlab.Response, err error) error {
	if err == nil {
		return nil
	}
	status := 0
	if resp != nil && resp.Response != nil {
		status = resp.StatusCode
	}
	var er *gitlab.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		status = er.Response.StatusCode
	}
	detail := ""
	if er != nil && er.Message != "" {
		detail = " (GitLab said: " + sanitize(redact(er.Message, c.token), 300) + ")"
	}
	retried := ""
	if c.retries > 0 {
		retried = fmt.Sprintf(" after %d retries", c.retries)
	}
	var msg string
	switch {
	case er == nil && status >= 200 && status < 300:
		msg = "GitLab's answer could not be read: " + sanitize(redact(err.Error(), c.token), 300)
	case status == http.StatusUnauthorized:
		msg = "401 Unauthorized: GitLab rejected the token; check that --token-file, $" + TokenEnv + " or $" + TokenFallbackEnv + " holds a valid, unexpired token with the api scope" + detail
	case status == http.StatusForbidden && er != nil && strings.Contains(er.Message, "insufficient_scope"):
		msg = "403 Forbidden: the token's scopes do not allow this (read_api allows reading only; writing needs api); docs/companion.md, \"Tokens\", lists what each command needs" + detail
	case status == http.StatusForbidden:
		msg = "403 Forbidden: the token's user may not do this: its role is too low, or the branch is protected; docs/companion.md, \"Tokens\", lists the role each command needs" + detail
	case status == http.StatusNotFound:
		msg = "404 Not Found: check the project path or ID, merge request number, branch or runner ID, and that the token's user can see it" + detail
	case status == http.StatusTooManyRequests:
		msg = "429 Too Many Requests: GitLab is rate limiting writ" + retried + "; wait and run the command again" + detail
	case status >= 500:
		msg = fmt.Sprintf("%d: GitLab failed%s; try again later or ask the GitLab administrators%s", status, retried, detail)
	case status != 0:
		msg = fmt.Sprintf("unexpected HTTP status %d%s", status, detail)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		msg = "timed out or cancelled: " + sanitize(redact(err.Error(), c.token), 300)
	default:
		msg = "cannot reach GitLab at " + c.base + ": " + sanitize(redact(err.Error(), c.token), 300)
	}
	return &APIError{Op: op, Status: status, Msg: msg}
}

// redact replaces every occurrence of token in s.
func redact(s, token string) string {
	if token == "" {
		return s
	}
	return strings.ReplaceAll(s, token, "[REDACTED]")
}

// sanitize makes text from GitLab safe to print on one line: control
// characters become spaces and it is cut to at most n runes.
func sanitize(s string, n int) string {
	var b strings.Builder
	i := 0
	for _, r := range s {
		if i == n {
			b.WriteString("…")
			break
		}
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			r = ' '
		}
		b.WriteRune(r)
		i++
	}
	return b.String()
}
