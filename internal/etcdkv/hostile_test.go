package etcdkv

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

// A member is not trusted to answer sensibly: a broken or hostile store
// (or something else on its port) gets a bounded read and a clear error.
// These members are gRPC servers on 127.0.0.1, with TLS, that answer any
// method with crafted bytes (a raw codec) or a crafted status; the real
// cluster's answers are in TestCluster.

type fakeMember struct {
	url      string
	cert     *x509.Certificate
	requests atomic.Int64

	mu    sync.Mutex
	conns []net.Conn // accepted, so that a handler can hang up
}

// handler answers one request: with bytes (sent as the response message)
// or an error (sent as the status).
type handler func(f *fakeMember, method string, req []byte, ctx context.Context) ([]byte, error)

type trackingListener struct {
	net.Listener
	f *fakeMember
}

func (l trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.f.mu.Lock()
		l.f.conns = append(l.f.conns, c)
		l.f.mu.Unlock()
	}
	return c, err
}

func fake(t *testing.T, h handler) *fakeMember {
	t.Helper()
	// httptest's certificate is for 127.0.0.1.
	hs := httptest.NewTLSServer(nil)
	pair, leaf := hs.TLS.Certificates[0], hs.Certificate()
	hs.Close()
	f := &fakeMember{cert: leaf}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.url = "https://" + lis.Addr().String()
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pair}})),
		grpc.ForceServerCodec(rawCodec{}),
		grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
			f.requests.Add(1)
			method, _ := grpc.MethodFromServerStream(stream)
			md, _ := metadata.FromIncomingContext(stream.Context())
			if v := md.Get("hasleader"); len(v) != 1 || v[0] != "true" {
				t.Errorf("request %s with metadata %v: want the require-leader metadata", method, md)
			}
			var req []byte
			if err := stream.RecvMsg(&req); err != nil {
				return err
			}
			resp, err := h(f, method, req, stream.Context())
			if err != nil {
				return err
			}
			return stream.SendMsg(resp)
		}))
	go srv.Serve(trackingListener{lis, f})
	t.Cleanup(srv.Stop)
	return f
}

// fakes is a client of the members, asked in this order.
func fakes(t *testing.T, members ...*fakeMember) *Client {
	t.Helper()
	pool := x509.NewCertPool()
	var eps []string
	for _, f := range members {
		pool.AddCert(f.cert)
		eps = append(eps, f.url)
	}
	cl, err := New(Config{Endpoints: eps, TLS: &tls.Config{RootCAs: pool}, MaxValueBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	return inOrder(t, cl, eps)
}

func answer(resp []byte) handler {
	return func(*fakeMember, string, []byte, context.Context) ([]byte, error) { return resp, nil }
}

func fail(code codes.Code, msg string) handler {
	return func(*fakeMember, string, []byte, context.Context) ([]byte, error) {
		return nil, status.Error(code, msg)
	}
}

// Protobuf by hand, to write what no etcd would.
func pb(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func vint(n protowire.Number, v int64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, n, protowire.VarintType), uint64(v))
}

func lenf(n protowire.Number, v string) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, n, protowire.BytesType), []byte(v))
}

var (
	hdr = lenf(1, string(pb(vint(1, 1), vint(2, 2), vint(hdrRevision, 9), vint(4, 3))))
	// The key "k" with the value "v".
	kvK = lenf(rangeRespKvs, string(pb(lenf(kvKey, "k"), vint(kvCreate, 4), vint(kvMod, 5), vint(kvVersion, 2), lenf(kvValue, "v"))))
	// A transaction whose one put succeeded.
	txnPut = pb(hdr, vint(txnRespSucceeded, 1), lenf(txnRespResponses, string(lenf(oneofPut, string(hdr)))))
)

func kvWith(fields ...[]byte) []byte { return lenf(rangeRespKvs, string(pb(fields...))) }

func TestHostileAnswers(t *testing.T) {
	for _, tc := range []struct {
		name string
		body []byte
		want error
	}{
		{"not protobuf", []byte("<html>proxy error</html>"), ErrProtocol},
		{"cut short", pb(hdr, kvK)[:len(hdr)+5], ErrProtocol},
		{"no header", pb(kvK, vint(rangeRespCount, 1)), ErrProtocol},
		{"header without a revision", pb(lenf(1, string(vint(1, 1)))), ErrProtocol},
		{"a key that was not asked for", pb(hdr, kvWith(lenf(kvKey, "l"), vint(kvCreate, 4), vint(kvMod, 5), vint(kvVersion, 1)), vint(rangeRespCount, 1)), ErrProtocol},
		{"two keys for one", pb(hdr, kvK, kvK, vint(rangeRespCount, 2)), ErrProtocol},
		{"count that does not fit", pb(hdr, kvK), ErrProtocol},
		{"a revision with the wrong wire type", pb(lenf(1, string(lenf(hdrRevision, "9"))), vint(rangeRespCount, 0)), ErrProtocol},
		{"a key's field twice", pb(hdr, kvWith(lenf(kvKey, "k"), vint(kvCreate, 4), vint(kvMod, 5), vint(kvMod, 6), vint(kvVersion, 1)), vint(rangeRespCount, 1)), ErrProtocol},
		{"the header twice", pb(hdr, hdr, vint(rangeRespCount, 0)), ErrProtocol},
		{"a bool that is not 0 or 1", pb(hdr, vint(rangeRespMore, 2)), ErrProtocol},
		{"a group", pb(hdr, protowire.AppendTag(nil, 9, protowire.StartGroupType), protowire.AppendTag(nil, 9, protowire.EndGroupType)), ErrProtocol},
		{"a change after the store's revision", pb(hdr, kvWith(lenf(kvKey, "k"), vint(kvCreate, 4), vint(kvMod, 10), vint(kvVersion, 1)), vint(rangeRespCount, 1)), ErrProtocol},
		{"a negative lease", pb(hdr, kvWith(lenf(kvKey, "k"), vint(kvCreate, 4), vint(kvMod, 5), vint(kvVersion, 1), vint(kvLease, -1)), vint(rangeRespCount, 1)), ErrProtocol},
		{"a value larger than the bound", pb(hdr, kvWith(lenf(kvKey, "k"), vint(kvCreate, 4), vint(kvMod, 5), vint(kvVersion, 1), lenf(kvValue, strings.Repeat("A", 8000))), vint(rangeRespCount, 1)), ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := fake(t, answer(tc.body))
			kv, err := fakes(t, f).Get(within(t, 5*time.Second), "k")
			if !errors.Is(err, tc.want) || kv != nil {
				t.Fatalf("got %+v, %v; want %v", kv, err, tc.want)
			}
		})
	}

	t.Run("the same answer, well formed, is read; unknown fields are skipped", func(t *testing.T) {
		f := fake(t, answer(pb(hdr, kvK, vint(rangeRespCount, 1), lenf(99, "from a newer etcd"))))
		kv, err := fakes(t, f).Get(within(t, 5*time.Second), "k")
		if err != nil || string(kv.Key) != "k" || string(kv.Value) != "v" || kv.ModRevision != 5 || kv.CreateRevision != 4 || kv.Version != 2 {
			t.Fatalf("%+v, %v", kv, err)
		}
	})

	t.Run("an oversized answer is refused by its announced length", func(t *testing.T) {
		f := fake(t, answer(make([]byte, 8<<20)))
		start := time.Now()
		if _, err := fakes(t, f).Get(within(t, 5*time.Second), "k"); !errors.Is(err, ErrTooLarge) || time.Since(start) > 3*time.Second {
			t.Fatalf("%v after %s, want ErrTooLarge", err, time.Since(start))
		}
	})

	t.Run("a member that is not etcd is an error", func(t *testing.T) {
		f := fake(t, fail(codes.Unimplemented, "unknown service etcdserverpb.KV"))
		var se *Error
		if _, err := fakes(t, f).Get(within(t, 5*time.Second), "k"); !errors.As(err, &se) || se.Code != int(codes.Unimplemented) {
			t.Fatalf("%v, want the status", err)
		}
	})

	t.Run("an oversized status is refused", func(t *testing.T) {
		f := fake(t, fail(codes.PermissionDenied, strings.Repeat("x", 1<<20)))
		_, err := fakes(t, f).Get(within(t, 5*time.Second), "k")
		if err == nil || len(err.Error()) > 4096 {
			t.Fatalf("an error of %d bytes", len(fmt.Sprint(err)))
		}
		if se := (*Error)(nil); errors.As(err, &se) && se.Code == int(codes.PermissionDenied) {
			t.Fatalf("the status's 1 MiB message was read: %.80s", se.Message)
		}
	})

	t.Run("a member that never answers costs the deadline, no more", func(t *testing.T) {
		f := fake(t, func(_ *fakeMember, _ string, _ []byte, ctx context.Context) ([]byte, error) {
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Second):
			}
			return nil, status.Error(codes.Canceled, "gone")
		})
		start := time.Now()
		_, err := fakes(t, f).Get(within(t, 500*time.Millisecond), "k")
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 3*time.Second {
			t.Fatalf("%v after %s", err, time.Since(start))
		}
	})
}

func TestMembersInTurn(t *testing.T) {
	noLeader := fail(codes.Unavailable, "etcdserver: no leader")
	ok := answer(txnPut)
	okRead := answer(pb(hdr, kvK, vint(rangeRespCount, 1)))
	hangUp := func(f *fakeMember, _ string, _ []byte, _ context.Context) ([]byte, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, c := range f.conns {
			c.Close()
		}
		return nil, status.Error(codes.Internal, "hung up")
	}
	leaderChanged := fail(codes.Unavailable, "etcdserver: leader changed")

	t.Run("no leader: the next member answers a write", func(t *testing.T) {
		a, b := fake(t, noLeader), fake(t, ok)
		cl := fakes(t, a, b)
		r, err := cl.Txn(within(t, 5*time.Second), nil, []Op{OpPut("k", "v", 0)}, nil)
		if err != nil || !r.Succeeded || a.requests.Load() != 1 || b.requests.Load() != 1 {
			t.Fatalf("%+v %v; requests %d, %d", r, err, a.requests.Load(), b.requests.Load())
		}
		// The next request goes straight to the member that answered.
		if _, err := cl.Txn(within(t, 5*time.Second), nil, []Op{OpPut("k", "v", 0)}, nil); err != nil || a.requests.Load() != 1 {
			t.Fatalf("second write: %v; the leaderless member was asked %d times", err, a.requests.Load())
		}
	})

	t.Run("no member has a leader: fail at once", func(t *testing.T) {
		a, b := fake(t, noLeader), fake(t, noLeader)
		start := time.Now()
		_, err := fakes(t, a, b).Get(within(t, 5*time.Second), "k")
		if !errors.Is(err, ErrNoLeader) || time.Since(start) > 2*time.Second || a.requests.Load() != 1 || b.requests.Load() != 1 {
			t.Fatalf("%v after %s; requests %d, %d", err, time.Since(start), a.requests.Load(), b.requests.Load())
		}
	})

	t.Run("a write cut off in flight is not sent again", func(t *testing.T) {
		a, b := fake(t, hangUp), fake(t, ok)
		_, err := fakes(t, a, b).Txn(within(t, 5*time.Second), nil, []Op{OpPut("k", "v", 0)}, nil)
		if err == nil || a.requests.Load() != 1 || b.requests.Load() != 0 {
			t.Fatalf("%v; requests %d, %d: want one, and an error", err, a.requests.Load(), b.requests.Load())
		}
	})

	t.Run("a read cut off in flight goes to the next member", func(t *testing.T) {
		a, b := fake(t, hangUp), fake(t, okRead)
		kv, err := fakes(t, a, b).Get(within(t, 5*time.Second), "k")
		if err != nil || kv == nil || b.requests.Load() != 1 {
			t.Fatalf("%+v %v; requests %d, %d", kv, err, a.requests.Load(), b.requests.Load())
		}
	})

	t.Run("a read rides through a leader change", func(t *testing.T) {
		var changed atomic.Int64
		a := fake(t, func(f *fakeMember, m string, req []byte, ctx context.Context) ([]byte, error) {
			if changed.Add(1) <= 3 {
				return leaderChanged(f, m, req, ctx)
			}
			return okRead(f, m, req, ctx)
		})
		if kv, err := fakes(t, a).Get(within(t, 5*time.Second), "k"); err != nil || kv == nil {
			t.Fatalf("%+v %v after %d requests", kv, err, a.requests.Load())
		}
	})

	t.Run("a write is not repeated after a leader change", func(t *testing.T) {
		a := fake(t, leaderChanged)
		_, err := fakes(t, a).Txn(within(t, 5*time.Second), nil, []Op{OpPut("k", "v", 0)}, nil)
		var se *Error
		if !errors.As(err, &se) || se.Code != 14 || a.requests.Load() != 1 {
			t.Fatalf("%v after %d requests", err, a.requests.Load())
		}
	})

	t.Run("concurrent reads all move past a member that is down", func(t *testing.T) {
		b := fake(t, okRead)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
		down := &fakeMember{url: "https://" + l.Addr().String(), cert: b.cert}
		cl := fakes(t, down, b)
		errs := make(chan error, 8)
		for range 8 {
			go func() {
				_, err := cl.Get(within(t, 5*time.Second), "k")
				errs <- err
			}()
		}
		for range 8 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("a member that never completes the handshake costs the dial timeout, then the next answers", func(t *testing.T) {
		b := fake(t, okRead)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close() // held open, silent, until the test ends
			}
		}()
		silent := &fakeMember{url: "https://" + l.Addr().String(), cert: b.cert}
		start := time.Now()
		kv, err := fakes(t, silent, b).Get(within(t, 10*time.Second), "k")
		if err != nil || kv == nil || time.Since(start) > 4*time.Second {
			t.Fatalf("%+v %v after %s", kv, err, time.Since(start))
		}
	})

	t.Run("a permission refusal is not tried elsewhere", func(t *testing.T) {
		a, b := fake(t, fail(codes.PermissionDenied, "etcdserver: permission denied")), fake(t, okRead)
		_, err := fakes(t, a, b).Get(within(t, 5*time.Second), "k")
		var se *Error
		if !errors.As(err, &se) || se.Code != int(codes.PermissionDenied) || b.requests.Load() != 0 {
			t.Fatalf("%v; the next member was asked %d times", err, b.requests.Load())
		}
	})

	t.Run("a transaction's answer must fit the operations sent", func(t *testing.T) {
		for i, body := range [][]byte{
			pb(hdr, vint(txnRespSucceeded, 1)),
			pb(hdr, vint(txnRespSucceeded, 1), lenf(txnRespResponses, string(lenf(oneofRange, string(hdr))))),
			pb(hdr, vint(txnRespSucceeded, 1), lenf(txnRespResponses, string(pb(lenf(oneofPut, ""), lenf(oneofDeleteRange, ""))))),
			pb(hdr, lenf(txnRespResponses, string(lenf(oneofPut, "")))), // a failed compare runs the (empty) else branch
			pb(hdr, vint(txnRespSucceeded, 1), vint(txnRespSucceeded, 0), lenf(txnRespResponses, string(lenf(oneofPut, "")))),
		} {
			a := fake(t, answer(body))
			_, err := fakes(t, a).Txn(within(t, 5*time.Second), nil, []Op{OpPut("k", "v", 0)}, nil)
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("answer %d (%x): %v, want ErrProtocol", i, body, err)
			}
		}
	})
}

func TestEndpoints(t *testing.T) {
	tc := &tls.Config{}
	for _, bad := range []string{"http://127.0.0.1:2379", "https://", "https://u:p@h:1", "https://h:1/x", "https://h:1?q", "127.0.0.1:2379"} {
		if _, err := New(Config{Endpoints: []string{bad}, TLS: tc}); err == nil {
			t.Errorf("endpoint %q accepted", bad)
		}
	}
	cl, err := New(Config{Endpoints: []string{"https://etcd.example", "https://[::1]:2379/"}, TLS: tc})
	if err != nil {
		t.Fatal(err)
	}
	addrs := map[string]bool{}
	for _, m := range cl.members {
		addrs[m.addr] = true
	}
	if !addrs["etcd.example:443"] || !addrs["[::1]:2379"] {
		t.Fatalf("members %v", addrs)
	}
	if _, err := New(Config{Endpoints: []string{"https://h:1"}}); err == nil {
		t.Error("a client without TLS")
	}
}
