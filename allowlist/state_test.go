package allowlist_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/config"
	"gitlab.com/writ-ci/writ/internal/state"
	"gitlab.com/writ-ci/writ/internal/state/etcdtest"
)

// Issue #12: after a forward clock jump and its correction, the last check
// lies in the future; it counts as due, so a newer version is not ignored
// for the size of the jump.
func TestFutureLastCheckIsDue(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.cfg.Allowlist.RefreshInterval.Duration = time.Hour
	w.repo.Commit(t, map[string]string{"allowlist.yaml": good(1)}, "v1", w.alice)
	w.clock = time.Now().AddDate(0, 0, 30)
	mustAccept(t, w.accepter(), 1)
	w.clock = time.Time{} // the clock is corrected
	w.repo.Commit(t, map[string]string{"allowlist.yaml": good(2)}, "v2", w.alice)
	acc, err := w.accepter().Current(context.Background())
	if err != nil || acc.Allowlist.Version != 2 {
		t.Fatalf("after the clock came back: %v, version %d; want version 2 (a future last check is due)", err, acc.Allowlist.Version)
	}
}

// Issue #12: a corrupt state file fails closed, names the repair command,
// and is left as it is (never silently reset).
func TestCorruptStateFailsClosed(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.repo.Commit(t, map[string]string{"allowlist.yaml": good(1)}, "v1", w.alice)
	mustAccept(t, w.accepter(), 1)
	p := filepath.Join(w.cfg.Paths.State, "allowlist-state.json")
	if err := os.WriteFile(p, []byte(`{"version": 1, "comm`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := w.accepter().Refresh(context.Background())
	if !errors.Is(err, allowlist.ErrCannotDecide) || !strings.Contains(err.Error(), "writ state repair") {
		t.Fatalf("corrupt state: %v; want ErrCannotDecide naming `writ state repair`", err)
	}
	if b, _ := os.ReadFile(p); string(b) != `{"version": 1, "comm` {
		t.Fatalf("the corrupt state file was rewritten: %q", b)
	}
}

// fleetHost is an environment on its own runner host (own state and cache)
// sharing the fleet store c.
func fleetHost(t *testing.T, w *world, c *etcdtest.Cluster, name, repo string) *allowlist.Accepter {
	t.Helper()
	cfg := *w.cfg
	dir := t.TempDir()
	cfg.Paths.State, cfg.Paths.Cache = filepath.Join(dir, "state"), filepath.Join(dir, "cache")
	cfg.Allowlist.URL = repo
	cert, key, err := c.ClientCert(name)
	if err != nil {
		t.Fatal(err)
	}
	cfg.State = config.State{Backend: "etcd", Fallback: "none", Host: name, Etcd: config.StateEtcd{
		Endpoints: c.Endpoints, CAFile: c.CAFile, CertFile: cert, KeyFile: key, Prefix: "/writ/production/"}}
	cfg.State.Etcd.Timeout.Duration = 3 * time.Second
	st, err := state.Open(&cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	a, err := allowlist.NewAccepter(&cfg, allowlist.WithState(st))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// Issue #15: a fresh host whose allowlist remote serves a version the fleet
// superseded refuses it as a rollback; a host that joins late starts from
// the fleet's mark.
func TestFleetAllowlistRollbackToFreshHost(t *testing.T) {
	c := etcdtest.Start(t, 3)
	w := newWorld(t, worldOpts{})
	w.repo.Commit(t, map[string]string{"allowlist.yaml": good(1)}, "v1", w.alice)
	// The stale copy GitLab's git server could serve a new host.
	stale := testkeysClone(t, w.repo.Path)
	w.repo.Commit(t, map[string]string{"allowlist.yaml": good(2)}, "v2", w.alice)

	mustAccept(t, fleetHost(t, w, c, "host-a", w.repo.Path), 2)
	mustRefuse(t, fleetHost(t, w, c, "host-b", stale), allowlist.RuleVersion, "lower than 2")
	// Without the fleet store, the same fresh host accepts version 1.
	local := *w.cfg
	local.Paths.State, local.Paths.Cache, local.Allowlist.URL = t.TempDir(), t.TempDir(), stale
	a, err := allowlist.NewAccepter(&local)
	if err != nil {
		t.Fatal(err)
	}
	mustAccept(t, a, 1)
	// A late host on the honest remote accepts the fleet's version.
	mustAccept(t, fleetHost(t, w, c, "host-c", w.repo.Path), 2)
}

func testkeysClone(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "stale.git")
	if out, err := exec.Command("git", "clone", "-q", "--bare", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	return dst
}

// Issue #15's threat model: a store that names a fork (a signed, approved
// version on an abandoned branch) cannot lead a host off its own history.
func TestFleetStoreCannotLeadOntoAFork(t *testing.T) {
	c := etcdtest.Start(t, 3)
	w := newWorld(t, worldOpts{})
	v1 := w.repo.Commit(t, map[string]string{"allowlist.yaml": good(1)}, "v1", w.alice)
	v2 := w.repo.Commit(t, map[string]string{"allowlist.yaml": good(2)}, "v2", w.alice)
	a := fleetHost(t, w, c, "host-a", w.repo.Path)
	mustAccept(t, a, 2)
	// An abandoned branch forked off version 1, signed by a root signer.
	w.repo.Git(t, "checkout", "-q", "-b", "fork", v1)
	forkDoc := doc(3, now.AddDate(1, 0, 0), "./deploy.sh fork")
	fork := w.repo.Commit(t, map[string]string{"allowlist.yaml": forkDoc}, "v3 on a fork", w.alice)
	w.repo.Git(t, "update-ref", "refs/heads/main", fork)
	// Whoever controls the store names the fork as the fleet's mark.
	tc, err := c.ClientTLS("intruder")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints, TLS: tc, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	mark := fmt.Sprintf(`{"version":3,"commit":%q,"digest":%q}`, fork, digest(forkDoc))
	if _, err := cl.Put(context.Background(), "/writ/production/allowlist/mark", mark); err != nil {
		t.Fatal(err)
	}
	// Refused; and since the fleet says a version newer than this host's
	// own exists, the host does not go on judging by its own: it fails
	// closed (the store can deny service, not lead a host astray).
	if acc := mustRefuse(t, a, allowlist.RuleAncestry, "the last version this host accepted itself"); acc != nil {
		t.Fatalf("in force after the fork was refused: version %d, want none", acc.Allowlist.Version)
	}
	// The store repaired, the honest head again: the host's own version 2.
	if _, err := cl.Delete(context.Background(), "/writ/production/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	w.repo.Git(t, "update-ref", "refs/heads/main", v2)
	mustAccept(t, a, 2)
}

// Two fleet hosts accepting the same new head at once: one advances the
// fleet's mark, the other's compare-and-swap fails and it decides again;
// both end with the new version, and neither fails.
func TestFleetConcurrentAcceptance(t *testing.T) {
	c := etcdtest.Start(t, 3)
	w := newWorld(t, worldOpts{})
	w.repo.Commit(t, map[string]string{"allowlist.yaml": good(1)}, "v1", w.alice)
	hosts := []*allowlist.Accepter{fleetHost(t, w, c, "host-a", w.repo.Path), fleetHost(t, w, c, "host-b", w.repo.Path)}
	for _, h := range hosts {
		mustAccept(t, h, 1)
	}
	w.repo.Commit(t, map[string]string{"allowlist.yaml": good(2)}, "v2", w.alice)
	errs := make(chan error, 2)
	for _, h := range hosts {
		go func() {
			acc, err := h.Current(context.Background())
			if err == nil && acc.Allowlist.Version != 2 {
				err = fmt.Errorf("version %d in force", acc.Allowlist.Version)
			}
			errs <- err
		}()
	}
	for range hosts {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
