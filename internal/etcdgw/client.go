// Package etcdgw is a small client of etcd's v3 key-value API through the
// JSON gateway that every etcd member (3.4 and later) serves on its client
// port next to gRPC: POST /v3/kv/range, /v3/kv/txn and /v3/lease/grant.
//
// writ runs as a short process per executor stage, about ten per job, and
// each makes a handful of requests. etcd's own client
// (go.etcd.io/etcd/client/v3) links gRPC and etcd's generated protobuf
// packages, whose package initialisation alone cost about 3 ms at every
// start of writ, whether a fleet store is configured or not. This client
// needs nothing beyond net/http and encoding/json, which writ links
// anyway. The price is on the member: the gateway decodes JSON and calls
// the member's own gRPC service, about 0.3 ms more per request.
//
// It keeps what writ relied on in clientv3:
//   - mutual TLS, with the member's certificate checked against its URL's
//     host;
//   - one member at a time, in a random order per [Client], so a fleet's
//     hosts spread over the members; the next member when one cannot be
//     reached, refuses the TLS handshake or has no leader, and, for reads,
//     when a request fails in flight or the member's leader changes;
//   - require-leader on every request (the header
//     "Grpc-Metadata-hasleader: true", which the gateway passes on as the
//     gRPC metadata clientv3.WithRequireLeader sets): a member cut off from
//     its cluster answers at once instead of waiting for a leader;
//   - one connection per process: concurrent requests take turns on it
//     (HTTP/1.1, cheaper than HTTP/2 for a few small requests);
//   - linearizable reads, compare-and-swap transactions on revisions, and
//     leases.
//
// It leaves out what writ does not use: watches, lease keep-alive, auth
// tokens (etcd refuses the gateway to certificate common names when its
// authentication is on: [ErrCommonNameAuth]), member discovery, and
// retrying a write whose fate is unknown (a write that failed in flight is
// an error, never repeated elsewhere).
//
// Every response is untrusted input. Its size is bounded before it is
// read, and it is decoded strictly: canonical base64 and integers, no
// field twice, keys inside the range that was read and in order, one
// response per operation of the kind sent, revisions that fit together.
// Anything else is [ErrProtocol].
package etcdgw

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a Client.
type Config struct {
	// Endpoints are the members' client URLs, https://host:port.
	Endpoints []string
	// TLS holds the CA that verifies the members and this client's
	// certificate. Required: the gateway is reached over TLS only.
	TLS *tls.Config
	// DialTimeout bounds the TCP and TLS handshakes with one member, so
	// that a member that does not answer leaves time to try the next.
	// Default: 2s.
	DialTimeout time.Duration
	// MaxValueBytes is the largest key plus value a read expects; it
	// bounds how much of a response is read. Default: 64 KiB.
	MaxValueBytes int
}

// Client talks to one member at a time. It is safe for concurrent use.
// Each call is bounded by its context only (a read is retried while a
// member's leader changes): give it a deadline.
type Client struct {
	members     []member
	dialTimeout time.Duration
	maxValue    int
	hc          *http.Client

	mu  sync.Mutex
	cur int // the member in use
	// Connect's handshake: connecting is closed when it is over; pre is
	// its connection to members[preIdx], until a request takes it.
	connecting    chan struct{}
	cancelConnect context.CancelFunc
	pre           net.Conn
	preIdx        int
	closed        bool

	dials atomic.Int64 // handshakes started, for tests
}

type member struct {
	url  string // https://host:port
	addr string // host:port
	tls  *tls.Config
}

// New returns a client of the members cfg names. Nothing is contacted
// until the first request, or Connect.
func New(cfg Config) (*Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcdgw: no endpoints")
	}
	if cfg.TLS == nil {
		return nil, errors.New("etcdgw: no TLS configuration (the gateway is reached over TLS only)")
	}
	c := &Client{dialTimeout: cfg.DialTimeout, maxValue: cfg.MaxValueBytes}
	if c.dialTimeout <= 0 {
		c.dialTimeout = 2 * time.Second
	}
	if c.maxValue <= 0 {
		c.maxValue = 64 << 10
	}
	c.hc = &http.Client{Transport: &http.Transport{
		DialTLSContext: c.dialTLS,
		Proxy:          nil, // the store is reached directly, never through the environment's proxy
		// HTTP/1.1 only: for a few small requests it costs this process
		// and the member less than HTTP/2 (about 0.5 ms of client CPU per
		// prepare, BenchmarkClient), and a non-nil empty map keeps the
		// transport from ever switching.
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
		// One connection per member: a process's concurrent requests
		// take turns on it rather than each making a handshake.
		MaxConnsPerHost:        1,
		MaxIdleConnsPerHost:    1,
		IdleConnTimeout:        90 * time.Second,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 64 << 10,
	}}
	for _, e := range cfg.Endpoints {
		u, err := url.Parse(e)
		if err != nil || u.Scheme != "https" || u.Hostname() == "" || (u.Path != "" && u.Path != "/") ||
			u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("etcdgw: endpoint %q is not https://host:port", e)
		}
		port := u.Port()
		if port == "" {
			port = "443" // as gRPC, and so clientv3, read such an endpoint
		}
		addr := net.JoinHostPort(u.Hostname(), port)
		tc := cfg.TLS.Clone()
		tc.ServerName = u.Hostname()
		tc.NextProtos = []string{"http/1.1"}
		c.members = append(c.members, member{url: "https://" + addr, addr: addr, tls: tc})
	}
	// A random order per client spreads a fleet's hosts over the members.
	rand.Shuffle(len(c.members), func(i, j int) { c.members[i], c.members[j] = c.members[j], c.members[i] })
	return c, nil
}

// Connect starts the TCP and TLS handshakes with a member in the
// background (the next one if that one cannot be reached), for a caller
// that has other work to do before its first request, which then uses
// this connection. Errors surface on that request.
func (c *Client) Connect() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.connecting != nil || c.closed {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(len(c.members))*c.dialTimeout)
	c.connecting, c.cancelConnect = make(chan struct{}), cancel
	go func(done chan struct{}) {
		defer close(done)
		defer cancel()
		for range c.members {
			i := c.current()
			conn, err := c.dial(ctx, c.members[i])
			if err == nil {
				c.mu.Lock()
				if c.closed {
					conn.Close()
				} else {
					c.pre, c.preIdx = conn, i
				}
				c.mu.Unlock()
				return
			}
			if ctx.Err() != nil {
				return
			}
			c.advance(i)
		}
	}(c.connecting)
}

// Close closes the client's connections. A request after Close fails.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	done, cancel := c.connecting, c.cancelConnect
	c.mu.Unlock()
	if done != nil {
		cancel()
		<-done
	}
	c.mu.Lock()
	if c.pre != nil {
		c.pre.Close()
		c.pre = nil
	}
	c.mu.Unlock()
	c.hc.CloseIdleConnections()
	return nil
}

func (c *Client) current() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

// advance moves on from member i, unless another request already did.
func (c *Client) advance(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == i {
		c.cur = (i + 1) % len(c.members)
	}
}

// dialError is a failed TCP or TLS handshake: nothing was sent.
type dialError struct{ err error }

func (e *dialError) Error() string { return "connect: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

func (c *Client) dial(ctx context.Context, m member) (net.Conn, error) {
	c.dials.Add(1)
	ctx, cancel := context.WithTimeout(ctx, c.dialTimeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", m.addr)
	if err != nil {
		return nil, &dialError{err}
	}
	conn := tls.Client(raw, m.tls)
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, &dialError{err}
	}
	return conn, nil
}

// dialTLS is the transport's dialer: Connect's connection if it is to
// addr, else a new one.
func (c *Client) dialTLS(ctx context.Context, _, addr string) (net.Conn, error) {
	c.mu.Lock()
	if c.pre != nil && c.members[c.preIdx].addr == addr {
		conn := c.pre
		c.pre = nil
		c.mu.Unlock()
		return conn, nil
	}
	c.mu.Unlock()
	for _, m := range c.members {
		if m.addr == addr {
			return c.dial(ctx, m)
		}
	}
	return nil, &dialError{fmt.Errorf("%s is not a member", addr)}
}

// waitConnect waits for Connect's handshake, so that a request goes to
// the member it reached.
func (c *Client) waitConnect(ctx context.Context) error {
	c.mu.Lock()
	done, closed := c.connecting, c.closed
	c.mu.Unlock()
	if closed {
		return errors.New("etcdgw: client closed")
	}
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// call posts body to path and returns the body of a 200 answer, at most
// limit bytes. It moves to the next member while one cannot be reached,
// refuses the TLS handshake or has no leader, or, for a read
// (idempotent), while a request fails in flight or the member is briefly
// unavailable (its leader changed). Only that last kind of failure starts
// another round of the members, after a pause, until ctx ends: a cluster
// whose reachable members all say they have no leader has lost quorum,
// and the caller learns it at once. A write whose fate is unknown is
// never sent again.
func (c *Client) call(ctx context.Context, path string, body []byte, limit int64, idempotent bool) ([]byte, error) {
	if err := c.waitConnect(ctx); err != nil {
		return nil, err
	}
	last := make([]error, len(c.members)) // each member's last error
	backoff, transient := 25*time.Millisecond, false
	for n := 1; ; n++ {
		i := c.current()
		data, err := c.post(ctx, c.members[i], path, body, limit)
		if err == nil {
			return data, nil
		}
		last[i] = fmt.Errorf("member %s: %w", c.members[i].addr, err)
		next, again := retryable(err, idempotent)
		if !next || ctx.Err() != nil {
			return nil, errors.Join(last...)
		}
		transient = transient || again
		c.advance(i)
		if n%len(c.members) != 0 {
			continue
		}
		// A round of members failed. Try again only if one may soon
		// answer, after a pause.
		if !transient {
			return nil, errors.Join(last...)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, errors.Join(append(last, ctx.Err())...)
		case <-t.C:
		}
		backoff, transient = min(2*backoff, 400*time.Millisecond), false
	}
}

// retryable reports whether a request that failed with err may go to the
// next member, and whether the same member may answer it if asked again
// a little later.
func retryable(err error, idempotent bool) (next, again bool) {
	var de *dialError
	var oe *net.OpError
	switch {
	case errors.As(err, &de), errors.Is(err, ErrNoLeader),
		// A TLS alert: with TLS 1.3 a member refuses this client's
		// certificate after the client's side of the handshake.
		errors.As(err, &oe) && oe.Op == "remote error":
		// Nothing was sent, or the member refused it before acting.
		return true, false
	}
	var ue *url.Error
	var se *Error
	if idempotent && (errors.As(err, &ue) || errors.As(err, &se) && se.Code == codeUnavailable) {
		return true, true
	}
	return false, false
}

// maxErrorBytes bounds an error response's body.
const maxErrorBytes = 64 << 10

func (c *Client) post(ctx context.Context, m member, path string, body []byte, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.url+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	// Passed on by the gateway as the gRPC metadata "hasleader: true":
	// a member without a leader refuses at once (etcdserver: no leader).
	req.Header.Set("Grpc-Metadata-Hasleader", "true")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := readLimit(resp.Body, resp.ContentLength, maxErrorBytes)
		return nil, decodeError(resp.StatusCode, data)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return nil, fmt.Errorf("%w: content type %q", ErrProtocol, ct)
	}
	return readLimit(resp.Body, resp.ContentLength, limit)
}

// readLimit reads a body of at most limit bytes, refusing a larger one
// before reading it when its length is announced.
func readLimit(r io.Reader, length, limit int64) ([]byte, error) {
	if length > limit {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrTooLarge, length, limit)
	}
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
	}
	return data, nil
}
