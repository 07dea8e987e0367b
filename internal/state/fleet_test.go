package state_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"gitlab.com/writ-ci/writ/internal/state"
	"gitlab.com/writ-ci/writ/internal/state/etcdtest"
)

const prefix = "/writ/test/"

func commit(n int) string { return fmt.Sprintf("%040x", n) }

// host is one runner host's view of the fleet state.
func host(t *testing.T, c *etcdtest.Cluster, name string, opts ...func(*state.FleetConfig)) *state.Fleet {
	t.Helper()
	cert, key, err := c.ClientCert(name)
	if err != nil {
		t.Fatal(err)
	}
	cfg := state.FleetConfig{Endpoints: c.Endpoints, CAFile: c.CAFile, CertFile: cert, KeyFile: key,
		Prefix: prefix, Timeout: 3 * time.Second, Host: name}
	for _, o := range opts {
		o(&cfg)
	}
	f, err := state.NewFleet(cfg, state.NewLocal(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// raw is a plain client, to play a store that lost or lowers marks.
func raw(t *testing.T, c *etcdtest.Cluster) *clientv3.Client {
	tc, err := c.ClientTLS("operator")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints, TLS: tc, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func accept(t *testing.T, s state.Store, v int64, c string) {
	t.Helper()
	ctx := context.Background()
	st, err := s.Allowlist(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := st.Advance(state.AllowlistMark{Version: v, Commit: c, Digest: "d" + c[:8], AcceptedAt: time.Now()}, time.Now(), "")
	if err := s.PutAllowlist(ctx, n); err != nil {
		t.Fatal(err)
	}
}

func mark(name, c string) state.EntryMark {
	return state.EntryMark{Entry: name, Repository: "https://git.example/app", Mode: "commit", Commit: c, Job: "1", Time: time.Now()}
}

func TestFleet(t *testing.T) {
	c := etcdtest.Start(t, 3)
	ctx := context.Background()

	t.Run("late host starts from the fleet's marks", func(t *testing.T) {
		a, b := host(t, c, "a1"), host(t, c, "b1")
		accept(t, a, 7, commit(7))
		e, err := a.Entry(ctx, "deploy")
		if err != nil {
			t.Fatal(err)
		}
		if err := a.PutEntry(ctx, e, mark("deploy", commit(70))); err != nil {
			t.Fatal(err)
		}
		st, err := b.Allowlist(ctx)
		if err != nil || st == nil || st.Version != 7 || st.Commit != commit(7) {
			t.Fatalf("fresh host reads %+v, %v; want the fleet's version 7", st, err)
		}
		be, err := b.Entry(ctx, "deploy")
		if err != nil || be.Last == nil || be.Last.Commit != commit(70) || be.Floor != nil {
			t.Fatalf("fresh host reads entry %+v, %v; want the fleet's mark", be, err)
		}
	})

	t.Run("compare-and-swap: two hosts advancing from one read", func(t *testing.T) {
		a, b := host(t, c, "a2"), host(t, c, "b2")
		ea, _ := a.Entry(ctx, "cas")
		eb, _ := b.Entry(ctx, "cas")
		if err := a.PutEntry(ctx, ea, mark("cas", commit(1))); err != nil {
			t.Fatal(err)
		}
		if err := b.PutEntry(ctx, eb, mark("cas", commit(2))); !errors.Is(err, state.ErrConflict) {
			t.Fatalf("second advance from a stale read: %v, want ErrConflict", err)
		}
		sa, _ := a.Allowlist(ctx)
		sb, _ := b.Allowlist(ctx)
		if err := a.PutAllowlist(ctx, sa.Advance(state.AllowlistMark{Version: 8, Commit: commit(8)}, time.Now(), "")); err != nil {
			t.Fatal(err)
		}
		if err := b.PutAllowlist(ctx, sb.Advance(state.AllowlistMark{Version: 9, Commit: commit(9)}, time.Now(), "")); !errors.Is(err, state.ErrConflict) {
			t.Fatalf("second allowlist advance from a stale read: %v, want ErrConflict", err)
		}
	})

	t.Run("16 hosts advance one entry concurrently: exactly one wins", func(t *testing.T) {
		hosts := make([]*state.Fleet, 16)
		entries := make([]*state.Entry, 16)
		for i := range hosts {
			hosts[i] = host(t, c, fmt.Sprintf("h%d", i))
			var err error
			if entries[i], err = hosts[i].Entry(ctx, "race"); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		errs := make([]error, 16)
		for i := range hosts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = hosts[i].PutEntry(ctx, entries[i], mark("race", commit(100+i)))
			}()
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, state.ErrConflict):
				t.Fatalf("unexpected error: %v", err)
			}
		}
		if won != 1 {
			t.Fatalf("%d hosts advanced the mark from the same value, want 1", won)
		}
	})

	t.Run("a store that loses or lowers a mark cannot lower a host's floor", func(t *testing.T) {
		a := host(t, c, "a3")
		cl := raw(t, c)
		e, _ := a.Entry(ctx, "floor")
		if err := a.PutEntry(ctx, e, mark("floor", commit(5))); err != nil {
			t.Fatal(err)
		}
		// The store loses the mark: the host's own is in force.
		if _, err := cl.Delete(ctx, prefix+"entries/"+state.EntryKey("floor")); err != nil {
			t.Fatal(err)
		}
		e, err := a.Entry(ctx, "floor")
		if err != nil || e.Last == nil || e.Last.Commit != commit(5) {
			t.Fatalf("after the store lost the mark: %+v %v, want the host's floor %s", e, err, commit(5))
		}
		// The store offers an older mark: both bind the job.
		if _, err := cl.Put(ctx, prefix+"entries/"+state.EntryKey("floor"),
			fmt.Sprintf(`{"entry":"floor","repository":"https://git.example/app","mode":"commit","commit":%q}`, commit(4))); err != nil {
			t.Fatal(err)
		}
		e, err = a.Entry(ctx, "floor")
		if err != nil || e.Floor == nil || e.Floor.Commit != commit(5) {
			t.Fatalf("with a lowered store mark: %+v %v, want floor %s", e, err, commit(5))
		}
		accept(t, a, 20, commit(20))
		if _, err := cl.Put(ctx, prefix+"allowlist/mark", fmt.Sprintf(`{"version":3,"commit":%q}`, commit(3))); err != nil {
			t.Fatal(err)
		}
		st, err := a.Allowlist(ctx)
		if err != nil || st.Version != 20 || !st.Withheld {
			t.Fatalf("with a lowered allowlist mark: %+v %v, want the host's version 20, withheld", st, err)
		}
		// A mark the store raised without this host verifying it never
		// becomes the host's floor.
		if _, err := cl.Put(ctx, prefix+"allowlist/mark", fmt.Sprintf(`{"version":99,"commit":%q}`, commit(99))); err != nil {
			t.Fatal(err)
		}
		st, _ = a.Allowlist(ctx)
		st.LastCheck = time.Now()
		if err := a.PutAllowlist(ctx, st); err != nil {
			t.Fatal(err)
		}
		if _, err := cl.Delete(ctx, prefix+"allowlist/mark"); err != nil {
			t.Fatal(err)
		}
		st, _ = a.Allowlist(ctx)
		if st.Version != 20 {
			t.Fatalf("host floor became %d after the store offered 99; want 20", st.Version)
		}
	})

	t.Run("a rejection is remembered fleet-wide and cleared by an acceptance", func(t *testing.T) {
		a, b := host(t, c, "a6"), host(t, c, "b6")
		accept(t, a, 40, commit(40))
		st, _ := a.Allowlist(ctx)
		st.RejectedHead, st.RejectedWhy, st.RejectedTrust = commit(41), "signature: unsigned", "trust-1"
		if err := a.PutAllowlist(ctx, st); err != nil {
			t.Fatal(err)
		}
		sb, err := b.Allowlist(ctx)
		if err != nil || sb.RejectedHead != commit(41) || sb.RejectedTrust != "trust-1" {
			t.Fatalf("the other host reads %+v, %v; want the remembered rejection", sb, err)
		}
		accept(t, b, 42, commit(42))
		if sa, _ := a.Allowlist(ctx); sa.RejectedHead != "" || sa.Version != 42 {
			t.Fatalf("after an acceptance: %+v", sa)
		}
	})

	t.Run("migrate publishes a host's local marks, never lowering the store's", func(t *testing.T) {
		dir := t.TempDir()
		l := state.NewLocal(dir)
		accept(t, l, 60, commit(60))
		le, _ := l.Entry(ctx, "migrated")
		if err := l.PutEntry(ctx, le, mark("migrated", commit(61))); err != nil {
			t.Fatal(err)
		}
		cert, key, err := c.ClientCert("m7")
		if err != nil {
			t.Fatal(err)
		}
		f, err := state.NewFleet(state.FleetConfig{Endpoints: c.Endpoints, CAFile: c.CAFile, CertFile: cert, KeyFile: key,
			Prefix: "/writ/migrate/", Timeout: 3 * time.Second, Host: "m7"}, l)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		lines, err := state.Migrate(ctx, f)
		if err != nil || len(lines) != 2 || !strings.Contains(lines[0], "copied") || !strings.Contains(lines[1], "copied") {
			t.Fatalf("first migration: %q %v", lines, err)
		}
		b := host(t, c, "b7", func(cfg *state.FleetConfig) { cfg.Prefix = "/writ/migrate/" })
		if st, err := b.Allowlist(ctx); err != nil || st.Version != 60 {
			t.Fatalf("another host after the migration: %+v %v", st, err)
		}
		if e, err := b.Entry(ctx, "migrated"); err != nil || e.Last == nil || e.Last.Commit != commit(61) {
			t.Fatalf("another host's entry after the migration: %+v %v", e, err)
		}
		accept(t, b, 70, commit(70))
		lines, err = state.Migrate(ctx, f)
		if err != nil || len(lines) != 2 || !strings.Contains(lines[0], "kept the store's version 70") || !strings.Contains(lines[1], "kept") {
			t.Fatalf("second migration: %q %v", lines, err)
		}
	})

	t.Run("job id claimed on one host is refused on another", func(t *testing.T) {
		a, b := host(t, c, "a4"), host(t, c, "b4")
		ca := state.JobClaim{ID: "4242", Token: "run-a", Host: "a4", PayloadSHA256: "aa"}
		if err := a.ClaimJob(ctx, ca); err != nil {
			t.Fatal(err)
		}
		if err := a.ClaimJob(ctx, ca); err != nil {
			t.Fatalf("a retried prepare of the same run: %v", err)
		}
		var ce *state.ClaimedError
		if err := b.ClaimJob(ctx, state.JobClaim{ID: "4242", Token: "run-b", Host: "b4"}); !errors.As(err, &ce) || ce.Holder.Host != "a4" {
			t.Fatalf("claim on a second host: %v, want ClaimedError naming a4", err)
		}
		// Claims share this host's lease; a lease the store lost is
		// granted again.
		leases, err := raw(t, c).Leases(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range leases.Leases {
			if _, err := raw(t, c).Revoke(ctx, l.ID); err != nil {
				t.Fatal(err)
			}
		}
		if err := a.ClaimJob(ctx, state.JobClaim{ID: "4243", Token: "run-a2", Host: "a4"}); err != nil {
			t.Fatalf("claim after the store lost the lease: %v", err)
		}
		if err := a.ClaimJob(ctx, ca); err != nil {
			t.Fatalf("re-claim after the lease was revoked: %v", err)
		}
		// Releasing on the host (cleanup) keeps the fleet-wide claim.
		if err := a.ReleaseJob(ctx, ca); err != nil {
			t.Fatal(err)
		}
		if err := b.ClaimJob(ctx, state.JobClaim{ID: "4242", Token: "run-b", Host: "b4"}); !errors.As(err, &ce) {
			t.Fatalf("claim after the first run's cleanup: %v, want ClaimedError", err)
		}
	})

	t.Run("an oversized or garbled store value is corrupt, even with the local fallback", func(t *testing.T) {
		const p = "/writ/oversized/"
		f := host(t, c, "a8", func(cfg *state.FleetConfig) { cfg.Prefix, cfg.FallbackLocal = p, true })
		cl := raw(t, c)
		big := `{"entry":"big","commit":"` + strings.Repeat("0", 200<<10) + `"}`
		if _, err := cl.Put(ctx, p+"entries/"+state.EntryKey("big"), big); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Entry(ctx, "big"); !errors.Is(err, state.ErrCorrupt) || !strings.Contains(err.Error(), "etcdctl del") {
			t.Fatalf("an oversized entry mark: %v, want ErrCorrupt naming the repair", err)
		}
		m, err := state.Export(ctx, f)
		if err != nil {
			t.Fatalf("export over an oversized value: %v", err)
		}
		if len(m[0].Problems) != 1 || !strings.Contains(m[0].Problems[0], "larger than") {
			t.Fatalf("export over an oversized value: problems %q, want it named", m[0].Problems)
		}
		if _, err := cl.Put(ctx, p+"allowlist/mark", "{garbled"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Allowlist(ctx); !errors.Is(err, state.ErrCorrupt) {
			t.Fatalf("a garbled allowlist mark: %v, want ErrCorrupt", err)
		}
		if _, err := cl.Put(ctx, p+"allowlist/mark", big); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Allowlist(ctx); !errors.Is(err, state.ErrCorrupt) {
			t.Fatalf("an oversized allowlist mark: %v, want ErrCorrupt", err)
		}
	})

	t.Run("export reads every mark, a page at a time", func(t *testing.T) {
		const p = "/writ/export/"
		f := host(t, c, "a9", func(cfg *state.FleetConfig) { cfg.Prefix = p })
		for i := range 150 {
			e, err := f.Entry(ctx, fmt.Sprintf("e%03d", i))
			if err != nil {
				t.Fatal(err)
			}
			if err := f.PutEntry(ctx, e, mark(fmt.Sprintf("e%03d", i), commit(i+1))); err != nil {
				t.Fatal(err)
			}
		}
		marks, err := state.Export(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if len(marks[0].Entries) != 150 || len(marks[0].Problems) != 0 {
			t.Fatalf("export: %d entries, problems %q; want 150", len(marks[0].Entries), marks[0].Problems)
		}
	})

	t.Run("a client certificate from another CA is refused", func(t *testing.T) {
		cert, key, err := etcdtest.OtherCA(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		f := host(t, c, "intruder", func(cfg *state.FleetConfig) { cfg.CertFile, cfg.KeyFile = cert, key })
		if _, err := f.Allowlist(ctx); !errors.Is(err, state.ErrUnavailable) {
			t.Fatalf("with an untrusted client certificate: %v, want ErrUnavailable", err)
		}
	})

	t.Run("one member down: requests go on; quorum lost: fail closed, then recover", func(t *testing.T) {
		a := host(t, c, "a5")
		fb := host(t, c, "fb5", func(cfg *state.FleetConfig) { cfg.FallbackLocal = true })
		accept(t, a, 50, commit(50))
		c.Kill(0)
		// Member 0 may have been the leader: then the two others elect
		// one (a randomized 1-2 s election timeout, again after a split
		// vote), which can outlast a host's 3 s request timeout. What is
		// checked here is that requests go on with a member down, not how
		// fast etcd elects.
		if err := c.WaitHealthy(30 * time.Second); err != nil {
			t.Fatal(err)
		}
		accept(t, a, 51, commit(51))
		c.Kill(1)
		start := time.Now()
		_, err := a.Allowlist(ctx)
		if !errors.Is(err, state.ErrUnavailable) || !strings.Contains(err.Error(), "fails closed") {
			t.Fatalf("without quorum: %v, want ErrUnavailable saying it fails closed", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("without quorum the read took %s", d)
		}
		if st, err := fb.Allowlist(ctx); err != nil || st != nil {
			t.Fatalf("fallback host without quorum: %+v, %v; want its (empty) local state", st, err)
		}
		for i := 0; i < 2; i++ {
			if err := c.Restart(i); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.WaitHealthy(60 * time.Second); err != nil {
			t.Fatal(err)
		}
		st, err := a.Allowlist(ctx)
		if err != nil || st.Version != 51 {
			t.Fatalf("after quorum returned: %+v %v, want version 51", st, err)
		}
	})
}
