// Package etcdkv is a small client of etcd's v3 key-value API over gRPC
// (etcd 3.4 and later): Range, Txn and LeaseGrant.
//
// writ runs as a short process per executor stage, about ten per job, and
// each makes a handful of requests. etcd's own client
// (go.etcd.io/etcd/client/v3) links etcd's generated protobuf packages,
// whose registration alone cost about 3 ms at every start of writ, whether
// a fleet store is configured or not. This client speaks the same gRPC
// service with google.golang.org/grpc, which writ links anyway (through
// sigstore-go), and encodes the few messages it sends and reads field by
// field with protowire (wire.go): nothing is registered at start-up. (etcd's
// JSON gateway would need no gRPC at all, but etcd refuses gateway requests
// from certificates with a common name when its authentication is on, so
// per-host roles would be lost.)
//
// It keeps what writ relied on in clientv3:
//   - mutual TLS, with the member's certificate checked against its URL's
//     host; with etcd's authentication on, etcd takes the client
//     certificate's common name for the etcd user, so that each host is
//     held to its role's key prefixes (a refusal is [ErrPermissionDenied],
//     never retried);
//   - one member at a time, in a random order per [Client], so a fleet's
//     hosts spread over the members; the next member when one cannot be
//     reached, refuses the TLS handshake or has no leader, and, for reads,
//     when a request fails in flight or the member's leader changes;
//   - require-leader on every request (the gRPC metadata "hasleader: true",
//     as clientv3.WithRequireLeader): a member cut off from its cluster
//     answers at once instead of waiting for a leader;
//   - one connection (HTTP/2) per member used, shared by a process's
//     concurrent requests;
//   - linearizable reads, compare-and-swap transactions on revisions, and
//     leases.
//
// It leaves out what writ does not use: watches, lease keep-alive,
// password authentication, member discovery, and retrying a write whose
// fate is unknown (a write that failed in flight is an error, never
// repeated elsewhere).
//
// Every response is untrusted input. Its size is bounded before it is
// read (gRPC reads the length first), and it is decoded strictly: no
// wrong wire types, no singular field twice, keys inside the range that
// was read and in order, one response per operation of the kind sent,
// revisions that fit together. Anything else is [ErrProtocol].
package etcdkv

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// etcd's gRPC methods (service KV and Lease of etcdserverpb).
const (
	methodRange      = "/etcdserverpb.KV/Range"
	methodTxn        = "/etcdserverpb.KV/Txn"
	methodLeaseGrant = "/etcdserverpb.Lease/LeaseGrant"
)

// Config configures a Client.
type Config struct {
	// Endpoints are the members' client URLs, https://host:port.
	Endpoints []string
	// TLS holds the CA that verifies the members and this client's
	// certificate, whose common name is the etcd user when etcd's
	// authentication is on. Required: members are reached over TLS only.
	TLS *tls.Config
	// DialTimeout bounds the TCP, TLS and HTTP/2 handshakes with one
	// member, so that a member that does not answer leaves time to try
	// the next. Default: 2s.
	DialTimeout time.Duration
	// MaxValueBytes is the largest key plus value a read expects; it
	// bounds how much of a response is read. Default: 64 KiB.
	MaxValueBytes int
}

// Client talks to one member at a time. It is safe for concurrent use.
// Each call is bounded by its context only (a read is retried while a
// member's leader changes): give it a deadline.
type Client struct {
	members     []*member
	dialTimeout time.Duration
	maxValue    int

	mu  sync.Mutex
	cur int // the member in use
	// Connect's handshake: connecting is closed when it is over.
	connecting    chan struct{}
	cancelConnect context.CancelFunc
	closed        bool

	dials atomic.Int64 // TCP connections started, for tests
}

type member struct {
	url  string // https://host:port
	addr string // host:port
	tls  *tls.Config
	conn *grpc.ClientConn // under Client.mu; made on first use

	lastErr atomic.Pointer[error] // why the last connection failed
}

// New returns a client of the members cfg names. Nothing is contacted
// until the first request, or Connect.
func New(cfg Config) (*Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcdkv: no endpoints")
	}
	if cfg.TLS == nil {
		return nil, errors.New("etcdkv: no TLS configuration (members are reached over TLS only)")
	}
	c := &Client{dialTimeout: cfg.DialTimeout, maxValue: cfg.MaxValueBytes}
	if c.dialTimeout <= 0 {
		c.dialTimeout = 2 * time.Second
	}
	if c.maxValue <= 0 {
		c.maxValue = 64 << 10
	}
	for _, e := range cfg.Endpoints {
		u, err := url.Parse(e)
		if err != nil || u.Scheme != "https" || u.Hostname() == "" || (u.Path != "" && u.Path != "/") ||
			u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("etcdkv: endpoint %q is not https://host:port", e)
		}
		port := u.Port()
		if port == "" {
			port = "443" // as gRPC, and so clientv3, read such an endpoint
		}
		addr := net.JoinHostPort(u.Hostname(), port)
		tc := cfg.TLS.Clone()
		tc.ServerName = u.Hostname()
		c.members = append(c.members, &member{url: "https://" + addr, addr: addr, tls: tc})
	}
	// A random order per client spreads a fleet's hosts over the members.
	rand.Shuffle(len(c.members), func(i, j int) { c.members[i], c.members[j] = c.members[j], c.members[i] })
	return c, nil
}

// Connect starts the handshakes with a member in the background (the next
// one if that one cannot be reached), for a caller that has other work to
// do before its first request, which then uses this connection. Errors
// surface on that request.
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
			if _, err := c.ready(ctx, c.members[i]); err == nil || ctx.Err() != nil {
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
	defer c.mu.Unlock()
	for _, m := range c.members {
		if m.conn != nil {
			m.conn.Close()
			m.conn = nil
		}
	}
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

var errClosed = errors.New("etcdkv: client closed")

// maxHeaderBytes bounds an answer's headers and trailers (gRPC's status
// and etcd's message among them).
const maxHeaderBytes = 64 << 10

// dialError is a failed TCP, TLS or HTTP/2 handshake: nothing was sent.
type dialError struct{ err error }

func (e *dialError) Error() string { return "connect: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// conn is m's connection, made on first use. gRPC's ClientConn connects
// lazily and reconnects by itself; ready waits for it.
func (c *Client) conn(m *member) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errClosed
	}
	if m.conn != nil {
		return m.conn, nil
	}
	m.lastErr.Store(nil)
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		c.dials.Add(1)
		var d net.Dialer // directly, never through the environment's proxy
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			m.lastErr.Store(&err)
		}
		return conn, err
	}
	cc, err := grpc.NewClient("passthrough:///"+m.addr,
		grpc.WithTransportCredentials(&recordingCreds{credentials.NewTLS(m.tls), m}),
		grpc.WithContextDialer(dial),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: c.dialTimeout,
		}),
		grpc.WithDisableServiceConfig(),
		// A status's message travels in headers, which the size of the
		// response message does not bound.
		grpc.WithMaxHeaderListSize(maxHeaderBytes),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		return nil, err
	}
	m.conn = cc
	return cc, nil
}

// ready returns m's connection once its handshakes are over, within the
// dial timeout. A connection that failed is closed, so that no
// reconnection runs in the background and the next use starts afresh.
func (c *Client) ready(ctx context.Context, m *member) (*grpc.ClientConn, error) {
	cc, err := c.conn(m)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, c.dialTimeout)
	defer cancel()
	for {
		s := cc.GetState()
		switch s {
		case connectivity.Ready:
			return cc, nil
		case connectivity.Shutdown:
			// Closed by Close, or dropped by a concurrent request that
			// saw it fail.
			c.mu.Lock()
			closed := c.closed
			c.mu.Unlock()
			if closed {
				return nil, errClosed
			}
			return nil, c.drop(m, cc, errors.New("connection closed"))
		case connectivity.Idle:
			cc.Connect()
		case connectivity.TransientFailure:
			return nil, c.drop(m, cc, nil)
		}
		if !cc.WaitForStateChange(wctx, s) {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, c.drop(m, cc, wctx.Err())
		}
	}
}

func (c *Client) drop(m *member, cc *grpc.ClientConn, err error) error {
	if p := m.lastErr.Load(); p != nil {
		err = *p
	} else if err == nil {
		err = errors.New("the member closed the connection (refused this client's certificate?)")
	}
	c.mu.Lock()
	if m.conn == cc {
		m.conn = nil
	}
	c.mu.Unlock()
	cc.Close()
	return &dialError{err}
}

// recordingCreds keeps the reason a TLS handshake failed, which gRPC
// reports only in its log.
type recordingCreds struct {
	credentials.TransportCredentials
	m *member
}

func (r *recordingCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := r.TransportCredentials.ClientHandshake(ctx, authority, raw)
	if err != nil {
		r.m.lastErr.Store(&err)
	}
	return conn, info, err
}

func (r *recordingCreds) Clone() credentials.TransportCredentials {
	return &recordingCreds{r.TransportCredentials.Clone(), r.m}
}

// rawCodec sends requests as encoded in wire.go and hands responses over
// as bytes, decoded there. Its name is protobuf's, which etcd reads.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.([]byte)
	if !ok {
		return nil, fmt.Errorf("etcdkv: cannot marshal %T", v)
	}
	return b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	p, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("etcdkv: cannot unmarshal into %T", v)
	}
	*p = append([]byte(nil), data...) // gRPC may reuse data's buffer
	return nil
}

func (rawCodec) Name() string { return "proto" }

// waitConnect waits for Connect's handshake, so that a request goes to
// the member it reached.
func (c *Client) waitConnect(ctx context.Context) error {
	c.mu.Lock()
	done, closed := c.connecting, c.closed
	c.mu.Unlock()
	if closed {
		return errClosed
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

// call sends req to method and returns the answer, at most limit bytes.
// It moves to the next member while one cannot be reached, refuses the
// TLS handshake or has no leader, or, for a read (idempotent), while a
// request fails in flight or the member is briefly unavailable (its
// leader changed). Only that last kind of failure starts another round of
// the members, after a pause, until ctx ends: a cluster whose reachable
// members all say they have no leader has lost quorum, and the caller
// learns it at once. A write whose fate is unknown is never sent again.
func (c *Client) call(ctx context.Context, method string, req []byte, limit int, idempotent bool) ([]byte, error) {
	if err := c.waitConnect(ctx); err != nil {
		return nil, err
	}
	last := make([]error, len(c.members)) // each member's last error
	backoff, transient := 25*time.Millisecond, false
	for n := 1; ; n++ {
		i := c.current()
		data, err := c.invoke(ctx, c.members[i], method, req, limit)
		if err == nil {
			return data, nil
		}
		if errors.Is(err, errClosed) {
			return nil, err
		}
		last[i] = fmt.Errorf("member %s: %w", c.members[i].addr, err)
		if err := ended(ctx); err != nil {
			return nil, errors.Join(append(last, err)...)
		}
		next, again := retryable(err, idempotent)
		if !next {
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

// ended returns why ctx has ended, or nil. A context's deadline is
// reported by a timer, which may fire a moment after the member (told the
// deadline in the request) or gRPC has already cut the request off; the
// caller's deadline is still what ended it, so it is reported as such.
func ended(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

// retryable reports whether a request that failed with err may go to the
// next member, and whether the same member may answer it if asked again
// a little later.
func retryable(err error, idempotent bool) (next, again bool) {
	var de *dialError
	var se *Error
	switch {
	case errors.As(err, &de), errors.Is(err, ErrNoLeader):
		// Nothing was sent, or the member refused it before acting.
		return true, false
	case idempotent && errors.As(err, &se) && se.Code == codeUnavailable:
		// Cut off in flight, or the member's leader changed.
		return true, true
	}
	return false, false
}

// invoke makes one request of m.
func (c *Client) invoke(ctx context.Context, m *member, method string, req []byte, limit int) ([]byte, error) {
	cc, err := c.ready(ctx, m)
	if err != nil {
		return nil, err
	}
	// A member without a leader refuses at once (etcdserver: no leader)
	// rather than holding the request until it has one.
	ctx = metadata.AppendToOutgoingContext(ctx, "hasleader", "true")
	var resp []byte
	if err := cc.Invoke(ctx, method, req, &resp, grpc.MaxCallRecvMsgSize(limit)); err != nil {
		return nil, statusError(err)
	}
	return resp, nil
}

// statusError turns a gRPC status, the member's or gRPC's own, into an
// Error, and gRPC's refusal of an oversized answer into ErrTooLarge.
func statusError(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	if st.Code() == codes.ResourceExhausted && strings.HasPrefix(st.Message(), "grpc: received message larger than max") {
		return fmt.Errorf("%w: %s", ErrTooLarge, st.Message())
	}
	return &Error{Code: int(st.Code()), Message: truncate([]byte(st.Message()), 500)}
}
