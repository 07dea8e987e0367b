package etcdkv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/internal/state/etcdtest"
)

// ordered is a client of c's members in the order given (indexes into
// c.Endpoints), so a test knows which member is asked first.
func ordered(t *testing.T, c *etcdtest.Cluster, tc *tls.Config, order ...int) *Client {
	t.Helper()
	var eps []string
	for _, i := range order {
		eps = append(eps, c.Endpoints[i])
	}
	cl, err := New(Config{Endpoints: eps, TLS: tc, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return inOrder(t, cl, eps)
}

// inOrder puts cl's members back in the order of eps (New shuffles them),
// and closes cl when the test ends.
func inOrder(t testing.TB, cl *Client, eps []string) *Client {
	byURL := map[string]*member{}
	for _, m := range cl.members {
		byURL[m.url] = m
	}
	for i, e := range eps {
		cl.members[i] = byURL[e]
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func clientTLS(t *testing.T, c *etcdtest.Cluster) *tls.Config {
	t.Helper()
	tc, err := c.ClientTLS("etcdkv-test")
	if err != nil {
		t.Fatal(err)
	}
	return tc
}

func within(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestCluster(t *testing.T) {
	c := etcdtest.Start(t, 3)
	tc := clientTLS(t, c)

	t.Run("reads, compare-and-swap, leases", func(t *testing.T) {
		cl := ordered(t, c, tc, 0, 1, 2)
		ctx := within(t, 10*time.Second)
		if kv, err := cl.Get(ctx, "/t/absent"); err != nil || kv != nil {
			t.Fatalf("absent key: %+v, %v", kv, err)
		}
		// Create only if absent; the second attempt reads the holder.
		put := func(v string) *TxnResult {
			r, err := cl.Txn(ctx, []Compare{CreateRevisionIs("/t/a", 0)}, []Op{OpPut("/t/a", v, 0)}, []Op{OpGet("/t/a")})
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		if r := put("first"); !r.Succeeded || len(r.Gets) != 1 || r.Gets[0] != nil {
			t.Fatalf("first create: %+v", r)
		}
		r := put("second")
		if r.Succeeded || r.Gets[0] == nil || string(r.Gets[0].Value) != "first" {
			t.Fatalf("second create: %+v, want the first value held", r)
		}
		kv, err := cl.Get(ctx, "/t/a")
		if err != nil || string(kv.Value) != "first" || kv.CreateRevision < 1 || kv.ModRevision != kv.CreateRevision || kv.Version != 1 {
			t.Fatalf("get: %+v, %v", kv, err)
		}
		// Move it from the revision read; the same move again is stale.
		move := []Compare{ModRevisionIs("/t/a", kv.ModRevision)}
		if r, err := cl.Txn(ctx, move, []Op{OpPut("/t/a", "", 0)}, nil); err != nil || !r.Succeeded {
			t.Fatalf("compare-and-swap: %+v, %v", r, err)
		}
		if r, err := cl.Txn(ctx, move, []Op{OpPut("/t/a", "stale", 0)}, nil); err != nil || r.Succeeded {
			t.Fatalf("stale compare-and-swap: %+v, %v; want it refused", r, err)
		}
		if kv, err := cl.Get(ctx, "/t/a"); err != nil || len(kv.Value) != 0 || kv.Version != 2 {
			t.Fatalf("after the swap to an empty value: %+v, %v", kv, err)
		}
		// Leases: granted, attached, and a lost one is named.
		id, ttl, err := cl.Grant(ctx, 90*time.Second)
		if err != nil || id <= 0 || ttl != 90*time.Second {
			t.Fatalf("grant: %d %s %v", id, ttl, err)
		}
		if r, err := cl.Txn(ctx, nil, []Op{OpPut("/t/leased", "x", id)}, nil); err != nil || !r.Succeeded {
			t.Fatalf("put with a lease: %+v %v", r, err)
		}
		if kv, err := cl.Get(ctx, "/t/leased"); err != nil || kv.Lease != id {
			t.Fatalf("leased key: %+v %v, want lease %d", kv, err, id)
		}
		_, err = cl.Txn(ctx, nil, []Op{OpPut("/t/leased", "x", id+12345)}, nil)
		if !errors.Is(err, ErrLeaseNotFound) {
			t.Fatalf("put with an unknown lease: %v, want ErrLeaseNotFound", err)
		}
		if r, err := cl.Txn(ctx, nil, []Op{OpDelete("/t/leased")}, nil); err != nil || !r.Succeeded {
			t.Fatalf("delete: %+v %v", r, err)
		}
		if kv, err := cl.Get(ctx, "/t/leased"); err != nil || kv != nil {
			t.Fatalf("deleted key: %+v %v", kv, err)
		}
	})

	t.Run("a range is read in pages", func(t *testing.T) {
		cl := ordered(t, c, tc, 1, 2, 0)
		ctx := within(t, 10*time.Second)
		var want []string
		for i := range 5 {
			k := fmt.Sprintf("/p/%d", i)
			want = append(want, k)
			if _, err := cl.Txn(ctx, nil, []Op{OpPut(k, "v", 0)}, nil); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := cl.Txn(ctx, nil, []Op{OpPut("/q", "outside", 0)}, nil); err != nil {
			t.Fatal(err)
		}
		var got []string
		from, pages := "/p/", 0
		for more := true; more; pages++ {
			kvs, m, err := cl.Range(ctx, from, PrefixEnd("/p/"), 2)
			if err != nil {
				t.Fatal(err)
			}
			for _, kv := range kvs {
				got = append(got, string(kv.Key))
			}
			from, more = string(kvs[len(kvs)-1].Key)+"\x00", m
		}
		if strings.Join(got, " ") != strings.Join(want, " ") || pages != 3 {
			t.Fatalf("pages read %q in %d pages, want %q in 3", got, pages, want)
		}
	})

	t.Run("a member down: the next one answers, and Connect finds it ahead", func(t *testing.T) {
		c.Kill(0)
		defer restart(t, c, 0)
		if err := c.WaitHealthy(30 * time.Second); err != nil {
			t.Fatal(err)
		}
		cl := ordered(t, c, tc, 0, 1, 2)
		if _, err := cl.Get(within(t, 10*time.Second), "/t/a"); err != nil {
			t.Fatalf("with the first member down: %v", err)
		}
		if cl.current() == 0 {
			t.Fatal("the client still uses the member that is down")
		}
		pre := ordered(t, c, tc, 0, 1, 2)
		pre.Connect()
		if err := pre.waitConnect(within(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := pre.Get(within(t, 10*time.Second), "/t/a"); err != nil {
			t.Fatal(err)
		}
		// One handshake refused by the dead member, one that the request
		// used: none made on the request's own time.
		if n := pre.dials.Load(); n != 2 {
			t.Fatalf("%d handshakes after Connect and a request, want 2", n)
		}
	})

	t.Run("members from another CA are refused, at once", func(t *testing.T) {
		other, _, err := etcdtest.OtherCA(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		pem, err := os.ReadFile(other)
		if err != nil {
			t.Fatal(err)
		}
		wrong := tc.Clone()
		wrong.RootCAs = x509.NewCertPool()
		wrong.RootCAs.AppendCertsFromPEM(pem) // the intruder's own certificate: not a CA of the members
		cl := ordered(t, c, wrong, 0, 1, 2)
		start := time.Now()
		_, err = cl.Get(within(t, 10*time.Second), "/t/a")
		if err == nil || !strings.Contains(err.Error(), "certificate") || time.Since(start) > 2*time.Second {
			t.Fatalf("members whose certificates this client does not trust: %v after %s", err, time.Since(start))
		}
	})

	t.Run("a client certificate from another CA is refused, at once", func(t *testing.T) {
		cert, key, err := etcdtest.OtherCA(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		intruder := tc.Clone()
		intruder.Certificates = []tls.Certificate{pair}
		for _, write := range []bool{false, true} {
			cl := ordered(t, c, intruder, 0, 1, 2)
			start := time.Now()
			if write {
				_, err = cl.Txn(within(t, 10*time.Second), nil, []Op{OpPut("/t/intruder", "x", 0)}, nil)
			} else {
				_, err = cl.Get(within(t, 10*time.Second), "/t/a")
			}
			if err == nil || time.Since(start) > 2*time.Second {
				t.Fatalf("write %v with an untrusted client certificate: %v after %s", write, err, time.Since(start))
			}
		}
		if kv, err := ordered(t, c, tc, 0, 1, 2).Get(within(t, 10*time.Second), "/t/intruder"); err != nil || kv != nil {
			t.Fatalf("the intruder's write: %+v %v", kv, err)
		}
	})

	t.Run("quorum lost: the survivor refuses at once because of the require-leader metadata", func(t *testing.T) {
		c.Kill(0)
		c.Kill(1)
		defer restart(t, c, 0, 1)
		cl := ordered(t, c, tc, 2, 0, 1)
		// The survivor notices after an election timeout.
		deadline := time.Now().Add(15 * time.Second)
		var err error
		for time.Now().Before(deadline) {
			if _, err = cl.Get(within(t, 2*time.Second), "/t/a"); errors.Is(err, ErrNoLeader) {
				break
			}
		}
		if !errors.Is(err, ErrNoLeader) {
			t.Fatalf("without quorum: %v, want ErrNoLeader", err)
		}
		start := time.Now()
		_, err = cl.Txn(within(t, 5*time.Second), nil, []Op{OpPut("/t/b", "x", 0)}, nil)
		if !errors.Is(err, ErrNoLeader) || time.Since(start) > time.Second {
			t.Fatalf("write without quorum: %v after %s, want ErrNoLeader at once", err, time.Since(start))
		}
		// Without the metadata, the same read waits for a leader.
		cc, err := cl.ready(within(t, 5*time.Second), cl.members[0])
		if err != nil {
			t.Fatal(err)
		}
		var resp []byte
		start = time.Now()
		err = cc.Invoke(within(t, 1500*time.Millisecond), methodRange, rangeRequest(span{key: []byte("/t/a")}), &resp)
		// etcd answers "context deadline exceeded" when the deadline it
		// was sent passes.
		if err == nil || strings.Contains(err.Error(), "no leader") || time.Since(start) < 1400*time.Millisecond {
			t.Fatalf("a read without the require-leader metadata: %v after %s, want it to wait until the deadline", err, time.Since(start))
		}
	})
}

func restart(t *testing.T, c *etcdtest.Cluster, members ...int) {
	t.Helper()
	for _, i := range members {
		if err := c.Restart(i); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.WaitHealthy(60 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// With etcd's authentication on, etcd takes the common name of a client
// certificate for its user: a host whose role covers only its
// environment's prefix writes there, and is refused elsewhere, at once
// and by every member, with no second attempt.
func TestAuthRoles(t *testing.T) {
	c := etcdtest.Start(t, 1)
	tc := clientTLS(t, c)
	ctx := within(t, 20*time.Second)
	if _, err := ordered(t, c, tc, 0).Txn(ctx, nil, []Op{OpPut("/staging/mark", "staging's", 0)}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.EnableAuth(map[string]string{"prod-host": "/prod/"}); err != nil {
		t.Fatal(err)
	}
	root, err := c.ClientTLS("root")
	if err != nil {
		t.Fatal(err)
	}
	host, err := c.ClientTLS("prod-host")
	if err != nil {
		t.Fatal(err)
	}
	cl := ordered(t, c, host, 0)
	if r, err := cl.Txn(ctx, []Compare{CreateRevisionIs("/prod/mark", 0)}, []Op{OpPut("/prod/mark", "v", 0)}, nil); err != nil || !r.Succeeded {
		t.Fatalf("a write inside the host's prefix: %+v %v", r, err)
	}
	if kv, err := cl.Get(ctx, "/prod/mark"); err != nil || kv == nil || string(kv.Value) != "v" {
		t.Fatalf("a read inside the host's prefix: %+v %v", kv, err)
	}
	denied := func(what string, err error) {
		t.Helper()
		var se *Error
		if !errors.Is(err, ErrPermissionDenied) || !errors.As(err, &se) || !strings.Contains(se.Message, "permission denied") {
			t.Fatalf("%s outside the host's prefix: %v, want PermissionDenied", what, err)
		}
	}
	_, err = cl.Txn(ctx, nil, []Op{OpDelete("/staging/mark")}, nil)
	denied("a delete", err)
	_, err = cl.Txn(ctx, nil, []Op{OpPut("/staging/mark", "overwritten", 0)}, nil)
	denied("a write", err)
	_, err = cl.Get(ctx, "/staging/mark")
	denied("a read", err)
	if kv, err := ordered(t, c, root, 0).Get(ctx, "/staging/mark"); err != nil || kv == nil || string(kv.Value) != "staging's" {
		t.Fatalf("the other environment's key after the refused writes: %+v %v", kv, err)
	}
	// A certificate whose name is no etcd user reads nothing.
	stranger, err := c.ClientTLS("stranger")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ordered(t, c, stranger, 0).Get(ctx, "/prod/mark"); err == nil {
		t.Fatal("a certificate with no etcd user read a key")
	}
}

// Concurrent requests of one process share one connection (HTTP/2): one
// connection, whatever the number of requests in flight.
func TestOneHandshake(t *testing.T) {
	c := etcdtest.Start(t, 1)
	cl := ordered(t, c, clientTLS(t, c), 0)
	cl.Connect()
	ctx := within(t, 10*time.Second)
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			_, err := cl.Txn(ctx, nil, []Op{OpPut(fmt.Sprintf("/o/%d", i), "v", 0)}, nil)
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := cl.dials.Load(); n != 1 {
		t.Fatalf("%d connections for 8 concurrent requests, want 1", n)
	}
}
