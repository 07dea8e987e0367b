package etcdgw

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A member is not trusted to answer sensibly: a broken or hostile store
// (or something else on its port) gets a bounded read and a clear error.
// These members are TLS servers on 127.0.0.1 that answer what no etcd
// would; the real cluster's answers are in TestCluster.

type fakeMember struct {
	srv      *httptest.Server
	requests atomic.Int64
	written  atomic.Int64 // body bytes written before the client stopped reading
}

func fake(t *testing.T, h func(f *fakeMember, w http.ResponseWriter, r *http.Request)) *fakeMember {
	t.Helper()
	f := &fakeMember{}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		if r.Method != http.MethodPost || r.Header.Get("Grpc-Metadata-Hasleader") != "true" ||
			r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("request %s %s with headers %v: want a JSON POST with the require-leader header", r.Method, r.URL, r.Header)
		}
		h(f, w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// fakes is a client of the members, asked in this order.
func fakes(t *testing.T, members ...*fakeMember) *Client {
	t.Helper()
	pool := x509.NewCertPool()
	var eps []string
	for _, f := range members {
		pool.AddCert(f.srv.Certificate())
		eps = append(eps, f.srv.URL)
	}
	cl, err := New(Config{Endpoints: eps, TLS: &tls.Config{RootCAs: pool}, MaxValueBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	byURL := map[string]member{}
	for _, m := range cl.members {
		byURL[m.url] = m
	}
	for i, e := range eps {
		cl.members[i] = byURL[e]
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func answer(status int, contentType, body string) func(*fakeMember, http.ResponseWriter, *http.Request) {
	return func(_ *fakeMember, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

const (
	hdr = `"header":{"cluster_id":"1","member_id":"2","revision":"9","raft_term":"3"}`
	// "k" and "v" in base64.
	kvK = `{"key":"aw==","create_revision":"4","mod_revision":"5","version":"2","value":"dg=="}`
)

func TestHostileAnswers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		ctype  string
		body   string
		want   error
	}{
		{"not JSON", 200, "application/json", "<html>proxy error</html>", ErrProtocol},
		{"no header", 200, "application/json", `{"kvs":[` + kvK + `],"count":"1"}`, ErrProtocol},
		{"header without a revision", 200, "application/json", `{"header":{"cluster_id":"1"},"count":"0"}`, ErrProtocol},
		{"a key that was not asked for", 200, "application/json", `{` + hdr + `,"kvs":[{"key":"bA==","create_revision":"4","mod_revision":"5","version":"1"}],"count":"1"}`, ErrProtocol},
		{"two keys for one", 200, "application/json", `{` + hdr + `,"kvs":[` + kvK + `,` + kvK + `],"count":"2"}`, ErrProtocol},
		{"count that does not fit", 200, "application/json", `{` + hdr + `,"kvs":[` + kvK + `],"count":"0"}`, ErrProtocol},
		{"an integer as a number", 200, "application/json", `{"header":{"revision":9},"count":"0"}`, ErrProtocol},
		{"an integer with a leading zero", 200, "application/json", `{"header":{"revision":"09"},"count":"0"}`, ErrProtocol},
		{"base64 with a line break", 200, "application/json", `{` + hdr + `,"kvs":[{"key":"aw==","create_revision":"4","mod_revision":"5","version":"1","value":"d\ng=="}],"count":"1"}`, ErrProtocol},
		{"base64 with padding bits set", 200, "application/json", `{` + hdr + `,"kvs":[{"key":"aw==","create_revision":"4","mod_revision":"5","version":"1","value":"dh=="}],"count":"1"}`, ErrProtocol},
		{"one field in both spellings", 200, "application/json", `{` + hdr + `,"kvs":[{"key":"aw==","create_revision":"4","mod_revision":"5","modRevision":"6","version":"1"}],"count":"1"}`, ErrProtocol},
		{"a change after the store's revision", 200, "application/json", `{` + hdr + `,"kvs":[{"key":"aw==","create_revision":"4","mod_revision":"10","version":"1"}],"count":"1"}`, ErrProtocol},
		{"data after the answer", 200, "application/json", `{` + hdr + `}{}`, ErrProtocol},
		{"nested too deep", 200, "application/json", `{` + hdr + `,"x":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, ErrProtocol},
		{"not JSON by its type", 200, "text/html", `{` + hdr + `}`, ErrProtocol},
		{"an error that is not a gRPC status", 502, "text/html", "<html>Bad Gateway</html>", ErrProtocol},
		{"a value larger than the bound", 200, "application/json", `{` + hdr + `,"kvs":[{"key":"aw==","create_revision":"4","mod_revision":"5","version":"1","value":"` + strings.Repeat("AAAA", 2000) + `"}],"count":"1"}`, ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := fake(t, answer(tc.status, tc.ctype, tc.body))
			kv, err := fakes(t, f).Get(within(t, 5*time.Second), "k")
			if !errors.Is(err, tc.want) || kv != nil {
				t.Fatalf("got %+v, %v; want %v", kv, err, tc.want)
			}
		})
	}

	t.Run("a member without the gateway is named as such", func(t *testing.T) {
		f := fake(t, answer(404, "text/plain; charset=utf-8", "404 page not found\n"))
		_, err := fakes(t, f).Get(within(t, 5*time.Second), "k")
		if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "--enable-grpc-gateway") {
			t.Fatalf("%v, want the gateway named", err)
		}
	})

	t.Run("the same answer, well formed, is read", func(t *testing.T) {
		f := fake(t, answer(200, "application/json", `{`+hdr+`,"kvs":[`+kvK+`],"count":"1"}`))
		kv, err := fakes(t, f).Get(within(t, 5*time.Second), "k")
		if err != nil || string(kv.Key) != "k" || string(kv.Value) != "v" || kv.ModRevision != 5 || kv.CreateRevision != 4 || kv.Version != 2 {
			t.Fatalf("%+v, %v", kv, err)
		}
	})

	t.Run("an announced length over the bound is not read", func(t *testing.T) {
		f := fake(t, func(f *fakeMember, w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", "1073741824")
			w.WriteHeader(200)
			f.stream(w)
		})
		if _, err := fakes(t, f).Get(within(t, 5*time.Second), "k"); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("%v, want ErrTooLarge", err)
		}
		f.checkBounded(t)
	})

	t.Run("an endless answer is read up to the bound", func(t *testing.T) {
		f := fake(t, func(f *fakeMember, w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(200)
			f.stream(w)
		})
		if _, err := fakes(t, f).Get(within(t, 5*time.Second), "k"); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("%v, want ErrTooLarge", err)
		}
		f.checkBounded(t)
	})

	t.Run("an endless error is read up to the bound", func(t *testing.T) {
		f := fake(t, func(f *fakeMember, w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(503)
			f.stream(w)
		})
		if _, err := fakes(t, f).Get(within(t, 5*time.Second), "k"); !errors.Is(err, ErrProtocol) {
			t.Fatalf("%v, want ErrProtocol", err)
		}
		f.checkBounded(t)
	})

	t.Run("a member that never answers costs the deadline, no more", func(t *testing.T) {
		f := fake(t, func(_ *fakeMember, _ http.ResponseWriter, r *http.Request) {
			// Read the request, so the server notices the client leave.
			io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		})
		start := time.Now()
		_, err := fakes(t, f).Get(within(t, 500*time.Millisecond), "k")
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 3*time.Second {
			t.Fatalf("%v after %s", err, time.Since(start))
		}
	})
}

// stream writes up to 64 MiB of JSON-looking bytes until the client stops
// reading.
func (f *fakeMember) stream(w http.ResponseWriter) {
	chunk := []byte(`{"header":{"revision":"1"},"kvs":[` + strings.Repeat(" ", 4000))
	for f.written.Load() < 64<<20 {
		n, err := w.Write(chunk)
		f.written.Add(int64(n))
		if err != nil {
			return
		}
	}
}

func (f *fakeMember) checkBounded(t *testing.T) {
	t.Helper()
	// The client closes the connection; what the server wrote meanwhile
	// sits in socket buffers, not in the client's memory.
	time.Sleep(100 * time.Millisecond)
	if n := f.written.Load(); n >= 64<<20 {
		t.Fatalf("the client read all %d bytes of an endless answer", n)
	}
}

func TestMembersInTurn(t *testing.T) {
	noLeader := answer(503, "application/json", `{"error":"etcdserver: no leader","message":"etcdserver: no leader","code":14}`)
	ok := answer(200, "application/json", `{`+hdr+`,"succeeded":true,"responses":[{"response_put":{"header":{"revision":"9"}}}]}`)
	okRead := answer(200, "application/json", `{`+hdr+`,"kvs":[`+kvK+`],"count":"1"}`)
	hangUp := func(_ *fakeMember, w http.ResponseWriter, _ *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}
	leaderChanged := answer(503, "application/json", `{"code":14,"message":"etcdserver: leader changed","details":[]}`)

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
		if !errors.Is(err, ErrNoLeader) || time.Since(start) > time.Second || a.requests.Load() != 1 || b.requests.Load() != 1 {
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
		a := fake(t, func(f *fakeMember, w http.ResponseWriter, r *http.Request) {
			if changed.Add(1) <= 3 {
				leaderChanged(f, w, r)
				return
			}
			okRead(f, w, r)
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

	t.Run("a transaction's answer must fit the operations sent", func(t *testing.T) {
		for _, body := range []string{
			`{` + hdr + `,"succeeded":true,"responses":[]}`,
			`{` + hdr + `,"succeeded":true,"responses":[{"response_range":{"header":{"revision":"9"}}}]}`,
			`{` + hdr + `,"succeeded":true,"responses":[{"response_put":{},"response_delete_range":{}}]}`,
			`{` + hdr + `,"responses":[{"response_put":{}}]}`, // a failed compare runs the (empty) else branch
		} {
			a := fake(t, answer(200, "application/json", body))
			_, err := fakes(t, a).Txn(within(t, 5*time.Second), nil, []Op{OpPut("k", "v", 0)}, nil)
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("answer %s: %v, want ErrProtocol", body, err)
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
