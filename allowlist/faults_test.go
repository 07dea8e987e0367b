package allowlist_test

import (
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/audit"
	"gitlab.com/writ-ci/writ/internal/config"
	"gitlab.com/writ-ci/writ/internal/gitrepo"
	"gitlab.com/writ-ci/writ/internal/testfault"
)

// The fault cases of acceptance: each asserts that nothing wrong is
// accepted, nothing accepted is lost, and the next run recovers without a
// hand. WRIT_FAULTS=long (make faults) runs the loops longer.

func allowlistMirror(t *testing.T, w *world) *gitrepo.Mirror {
	t.Helper()
	m, err := gitrepo.OpenMirror(filepath.Join(w.cfg.Paths.Cache, "allowlist"), w.repo.Path, gitrepo.Auth{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A kill -9 (the issue saw 2 in 52) left the mirror's ref empty; every
// later fetch failed until the version expired. Now the ref is written
// atomically, and an empty one is repaired by the next fetch.
func TestFaultEmptyAllowlistRef(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.repo.Commit(t, map[string]string{"allowlist.yaml": good(1)}, "v1", w.alice)
	a := w.accepter()
	mustAccept(t, a, 1)
	ref := filepath.Join(allowlistMirror(t, w).Dir(), "refs", "writ", "allowlist", "main")
	for _, junk := range []string{"", "garbage\n"} {
		if err := os.WriteFile(ref, []byte(junk), 0o600); err != nil {
			t.Fatal(err)
		}
		v := 2
		if junk != "" {
			v = 3
		}
		w.repo.Commit(t, map[string]string{"allowlist.yaml": good(v)}, "next", w.alice)
		mustAccept(t, a, int64(v))
	}
}

// corruptObject flips bytes inside object hash's data in the mirror's pack:
// the index still lists it, so only reading it shows the damage.
func corruptObject(t *testing.T, mirrorDir string, hash plumbing.Hash) {
	t.Helper()
	idxs, _ := filepath.Glob(filepath.Join(mirrorDir, "objects", "pack", "*.idx"))
	for _, p := range idxs {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		idx := idxfile.NewMemoryIndex()
		err = idxfile.NewDecoder(f).Decode(idx)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		off, err := idx.FindOffset(hash)
		if err != nil {
			continue
		}
		pack := strings.TrimSuffix(p, ".idx") + ".pack"
		data, err := os.ReadFile(pack)
		if err != nil {
			t.Fatal(err)
		}
		for i := off + 4; i < off+24 && i < int64(len(data))-20; i++ {
			data[i] ^= 0xff
		}
		if err := os.WriteFile(pack, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("object %s is in no pack of %s", hash, mirrorDir)
}

// A rejection caused by a damaged mirror must never be remembered: the
// properly signed version is accepted once the mirror is rebuilt.
func TestFaultDamagedMirrorRejectionIsNotRemembered(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.repo.Commit(t, map[string]string{"allowlist.yaml": good(1)}, "v1", w.alice)
	a := w.accepter()
	mustAccept(t, a, 1)
	w.repo.Commit(t, map[string]string{"allowlist.yaml": good(2)}, "v2", w.alice)
	m := allowlistMirror(t, w)
	if err := m.Fetch(context.Background(), "+refs/heads/main:refs/writ/allowlist/main"); err != nil {
		t.Fatal(err)
	}
	blob := plumbing.ComputeHash(plumbing.BlobObject, []byte(good(2)))
	corruptObject(t, m.Dir(), blob)

	acc, rep, err := a.Refresh(context.Background())
	if err != nil || acc.Allowlist.Version != 1 || !strings.Contains(acc.Warning, "damaged") {
		t.Fatalf("damaged mirror: want v1 in force with a warning, got %v %+v", err, acc)
	}
	for _, c := range rep.Checks {
		if !c.OK && c.Rule != allowlist.RuleFetch {
			t.Fatalf("the damage was reported as a failed rule: %+v", c)
		}
	}
	mustAccept(t, a, 2)
}

// A mirror whose pack is damaged where the head's tree is stored (the ref
// already points at the head, so nothing is wanted from the server) is
// rebuilt by the next fetch.
func TestFaultCorruptPackInMirror(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.repo.Commit(t, map[string]string{"allowlist.yaml": good(1)}, "v1", w.alice)
	a := w.accepter()
	mustAccept(t, a, 1)
	head := w.repo.Commit(t, map[string]string{"allowlist.yaml": good(2)}, "v2", w.alice)
	m := allowlistMirror(t, w)
	if err := m.Fetch(context.Background(), "+refs/heads/main:refs/writ/allowlist/main"); err != nil {
		t.Fatal(err)
	}
	c, err := m.Commit(head)
	if err != nil {
		t.Fatal(err)
	}
	corruptObject(t, m.Dir(), c.TreeHash)
	mustAccept(t, a, 2)
}

// A version holding an object over fetch.max_object_bytes is refused while
// the pack is read, naming the key; the version in force stays in force,
// and nothing is remembered against the head.
func TestFaultFetchLimit(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.repo.Commit(t, map[string]string{"allowlist.yaml": good(1)}, "v1", w.alice)
	a := w.accepter()
	mustAccept(t, a, 1)
	w.repo.Commit(t, map[string]string{"allowlist.yaml": good(2), "huge.bin": strings.Repeat("z", 3<<20)}, "v2", w.alice)
	w.cfg.Fetch.MaxObjectBytes = 1 << 20
	acc, rep, err := w.accepter().Refresh(context.Background())
	if err != nil || acc.Allowlist.Version != 1 || !strings.Contains(acc.Warning, "fetch.max_object_bytes") {
		t.Fatalf("want v1 in force with a warning naming the limit, got %v %+v", err, acc)
	}
	if f := rep.Failed(); f == nil || f.Rule != allowlist.RuleFetch {
		t.Fatalf("failed check %+v, want the fetch", f)
	}
	w.cfg.Fetch.MaxObjectBytes = 100 << 20
	mustAccept(t, w.accepter(), 2)
}

func faultLoops(short, long int) int {
	if os.Getenv("WRIT_FAULTS") == "long" {
		return long
	}
	return short
}

// TestFaultHelperRefresh is the process the kill -9 loop kills: it runs
// acceptance once, as `writ allowlist verify` would.
func TestFaultHelperRefresh(t *testing.T) {
	cfgPath := os.Getenv("WRIT_FAULT_HELPER_CONFIG")
	if cfgPath == "" {
		t.Skip("helper process for TestFaultKill9DuringAcceptance")
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	a, err := allowlist.NewAccepter(cfg, allowlist.WithAudit(audit.Open(cfg.Paths.Audit)))
	if err != nil {
		t.Fatal(err)
	}
	for {
		_, _, _ = a.Refresh(context.Background())
	}
}

// kill -9 at random moments of acceptance, while new versions arrive:
// after each kill the state is either the old version or the new one, the
// mirror's ref is never empty, the audit log verifies, and the last run
// accepts the newest version.
func TestFaultKill9DuringAcceptance(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.repo.Commit(t, map[string]string{"allowlist.yaml": good(1)}, "v1", w.alice)
	mustAccept(t, w.accepter(), 1)
	auditPath := w.cfg.Paths.Audit
	kills := faultLoops(12, 100)
	version := 1
	inForce := int64(1)
	rng := rand.New(rand.NewPCG(1, 2))
	start := time.Now()
	for i := range kills {
		if i%3 == 0 {
			version++
			w.repo.Commit(t, map[string]string{"allowlist.yaml": good(version)}, "v"+strconv.Itoa(version), w.alice)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestFaultHelperRefresh$")
		cmd.Env = append(os.Environ(), "WRIT_FAULT_HELPER_CONFIG="+w.cfg.Path)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(20+rng.IntN(400)) * time.Millisecond)
		testfault.Kill9(cmd)
		_ = cmd.Wait()

		// Offline, with no check of the remote: a kill at any moment, even
		// between writing the verified store and the state, leaves a version
		// in force (each store has a name of its own; the state names one
		// that exists).
		acc, err := w.accepter().Cached()
		if err != nil || acc.Allowlist.Version < inForce || acc.Allowlist.Version > int64(version) {
			t.Fatalf("kill %d: the accepted version is lost or wrong: %v %+v", i, err, acc)
		}
		inForce = acc.Allowlist.Version
		ref := filepath.Join(allowlistMirror(t, w).Dir(), "refs", "writ", "allowlist", "main")
		if b, err := os.ReadFile(ref); err == nil && len(b) != 41 {
			t.Fatalf("kill %d: the mirror's ref is %q", i, b)
		}
	}
	mustAccept(t, w.accepter(), int64(version))
	if _, err := audit.VerifyFile(auditPath); err != nil {
		// A kill may leave the last record torn; the next append repairs it.
		t.Logf("audit log after the kills: %v", err)
		if _, err := audit.Open(auditPath).Append(context.Background(), audit.Record{Event: "stage"}); err != nil {
			t.Fatalf("the audit log did not recover: %v", err)
		}
		if _, err := audit.VerifyFile(auditPath); err != nil {
			t.Fatalf("the audit log did not recover: %v", err)
		}
	}
	t.Logf("%d kills in %v", kills, time.Since(start).Round(time.Millisecond))
}
