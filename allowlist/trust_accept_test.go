package allowlist_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/audit"
	"gitlab.com/writ-ci/writ/internal/testkeys"
)

// auditedAccepter is w.accepter with an audit log in w.dir.
func (w *world) auditedAccepter() *allowlist.Accepter {
	w.t.Helper()
	a, err := allowlist.NewAccepter(w.cfg, allowlist.WithAudit(audit.Open(w.cfg.Paths.Audit)), allowlist.WithClock(func() time.Time {
		if w.clock.IsZero() {
			return time.Now()
		}
		return w.clock
	}))
	if err != nil {
		w.t.Fatal(err)
	}
	return a
}

// lastAudit returns the last record of the audit log, after verifying its
// chain.
func (w *world) lastAudit() audit.Record {
	w.t.Helper()
	if _, err := audit.VerifyFile(w.cfg.Paths.Audit); err != nil {
		w.t.Fatalf("audit log: %v", err)
	}
	f, err := os.Open(w.cfg.Paths.Audit)
	if err != nil {
		w.t.Fatal(err)
	}
	defer f.Close()
	recs, err := audit.ReadAll(f)
	if err != nil || len(recs) == 0 {
		w.t.Fatalf("audit records: %v (%d)", err, len(recs))
	}
	return recs[len(recs)-1]
}

func wantAudit(t *testing.T, r audit.Record, event, reasonPrefix string) {
	t.Helper()
	if r.Event != event || !strings.HasPrefix(r.Reason, reasonPrefix) {
		t.Fatalf("audit record %s %q, want %s with a reason starting %q", r.Event, r.Reason, event, reasonPrefix)
	}
}

// retireRootKeys rewrites the trust root's allowed_signers so that alice's
// and bob's keys retired yesterday.
func (w *world) retireRootKeys() {
	yesterday := `valid-before="` + time.Now().UTC().AddDate(0, 0, -1).Format("20060102") + `Z"`
	write(w.t, filepath.Join(w.dir, "allowed_signers"),
		w.alice.AllowedSignersLine("", yesterday)+"\n"+w.bob.AllowedSignersLine("", yesterday)+"\n")
}

// Hole 2 of issue 8, for allowlist heads: root keys retired yesterday
// signed and approved a version a week ago.
func TestRetiredRootKeys(t *testing.T) {
	weekAgo := time.Now().UTC().AddDate(0, 0, -7)
	t.Run("accepted then: still accepted", func(t *testing.T) {
		w := newWorld(t, worldOpts{threshold: 2})
		w.repo.When = weekAgo
		content := good(1)
		p, s := sshApproval(t, w.bob, "bob", 1, content)
		v1 := w.repo.Commit(t, map[string]string{"allowlist.yaml": content, p: s}, "v1", w.alice)
		w.clock = weekAgo.Add(time.Hour)
		mustAccept(t, w.accepter(), 1)

		w.clock = time.Time{}
		w.retireRootKeys()
		if acc := mustAccept(t, w.accepter(), 1); acc.Commit != v1 {
			t.Fatalf("in force %s, want %s", acc.Commit, v1)
		}
		// The verified cache is lost: the head is verified again, as of its
		// acceptance (signature at its date, approvals when accepted).
		removeStore(t, w)
		if acc := mustAccept(t, w.accepter(), 1); acc.Commit != v1 || len(acc.Approvers) != 2 {
			t.Fatalf("after losing the cache: %+v", acc)
		}

		// A new head by the retired key, dated back to before retirement.
		w.repo.When = weekAgo.Add(time.Hour)
		w.repo.Commit(t, map[string]string{"allowlist.yaml": good(2)}, "v2 backdated", w.alice)
		acc := mustRefuse(t, w.auditedAccepter(), allowlist.RuleSignature, "the key is retired")
		if acc == nil || acc.Commit != v1 {
			t.Fatalf("version 1 must stay in force, got %+v", acc)
		}
		wantAudit(t, w.lastAudit(), "allowlist-reject", "signature: ")
	})
	t.Run("first seen today: refused", func(t *testing.T) {
		w := newWorld(t, worldOpts{})
		w.repo.When = weekAgo
		w.repo.Commit(t, map[string]string{"allowlist.yaml": good(1)}, "v1", w.alice)
		w.retireRootKeys()
		if acc := mustRefuse(t, w.accepter(), allowlist.RuleSignature, "the key is retired"); acc != nil {
			t.Fatalf("a version is in force: %+v", acc)
		}
	})
	t.Run("approval by a retired key does not count", func(t *testing.T) {
		w := newWorld(t, worldOpts{threshold: 2})
		w.repo.When = weekAgo
		content := good(1)
		p, s := sshApproval(t, w.bob, "bob", 1, content)
		// carol's OpenPGP key signs the head and is not retired.
		w.repo.Commit(t, map[string]string{"allowlist.yaml": content, p: s}, "v1", w.carol)
		w.retireRootKeys()
		mustRefuse(t, w.accepter(), allowlist.RuleApprovals, "1 of 2")
	})
}

// docWithKey is an allowlist whose signer set "dev" pins an OpenPGP key
// file, keys/dev.asc.
func docWithKey(version int, fingerprint string) string {
	return strings.Replace(good(version), `signers:
  web-team:
`, fmt.Sprintf(`signers:
  dev:
    openpgp:
      - fingerprint: %s
        key: keys/dev.asc
  web-team:
`, fingerprint), 1)
}

// approveFiles is an SSH approval by key of the version made of files.
func approveFiles(t *testing.T, key *testkeys.SSH, label string, version int, files map[string]string) (string, string) {
	t.Helper()
	m := map[string][]byte{}
	for p, c := range files {
		m[p] = []byte(c)
	}
	stmt, err := allowlist.NewStatement(identity, int64(version), allowlist.Manifest(m))
	if err != nil {
		t.Fatal(err)
	}
	return allowlist.ApprovalDir(int64(version)) + "/" + label + ".sshsig", string(key.Sign(t, stmt, allowlist.ApprovalNamespace))
}

// Hole 5 of issue 8: a root signer below the threshold swaps a key file
// back to its export from before revocation, with allowlist.yaml and the
// other approver's approval unchanged.
func TestKeyFileSwapNeedsNewApprovals(t *testing.T) {
	w := newWorld(t, worldOpts{threshold: 2})
	dev := testkeys.GPGKey(t, "Dev", "dev@example.com")
	beforeRevocation := string(dev.ArmoredPublic)
	dev.Revoke(t)
	content := docWithKey(1, dev.Fingerprint)
	files := map[string]string{"allowlist.yaml": content, "keys/dev.asc": string(dev.ArmoredPublic)}
	p, s := approveFiles(t, w.bob, "bob", 1, files)
	v1 := w.repo.Commit(t, map[string]string{"allowlist.yaml": content, "keys/dev.asc": files["keys/dev.asc"], p: s}, "v1, dev's key revoked", w.alice)
	mustAccept(t, w.accepter(), 1)

	w.repo.Commit(t, map[string]string{"keys/dev.asc": beforeRevocation}, "refresh dev's key", w.alice)
	a := w.auditedAccepter()
	acc := mustRefuse(t, a, allowlist.RuleApprovals, "1 of 2")
	if acc == nil || acc.Commit != v1 || acc.Allowlist.Version != 1 {
		t.Fatalf("version 1 at %s must stay in force, got %+v", v1, acc)
	}
	if got := string(acc.Allowlist.Signers["dev"].OpenPGP[0].Armored); got != files["keys/dev.asc"] {
		t.Fatal("the key file in force is not the approved one")
	}
	wantAudit(t, w.lastAudit(), "allowlist-reject", "approvals: 1 of 2")

	// Even approved by both, the same version with another key file is
	// other content: it needs a new version.
	swapped := map[string]string{"allowlist.yaml": content, "keys/dev.asc": beforeRevocation}
	p, s = approveFiles(t, w.bob, "bob", 1, swapped)
	w.repo.Commit(t, map[string]string{p: s}, "bob approves the swap", w.alice)
	mustRefuse(t, w.auditedAccepter(), allowlist.RuleVersion, "a key file")
	wantAudit(t, w.lastAudit(), "allowlist-reject", "version: ")
}

// Hole 7 of issue 8, at acceptance: with OpenPGP-only root signers, a
// detached OpenPGP approval by a second key reaches threshold 2, and the
// commit signer's own detached approval counts once.
func TestOpenPGPApprovalsReachThreshold(t *testing.T) {
	frank := testkeys.GPGKey(t, "Frank", "frank@example.com")
	w := newWorld(t, worldOpts{threshold: 2, extraGPG: []*testkeys.GPG{frank}})
	content := good(1)
	stmt := statement(t, 1, content)
	carolSig, err := allowlist.SignOpenPGP(context.Background(), stmt, w.carol.Fingerprint, w.carol.Program)
	if err != nil {
		t.Fatal(err)
	}
	dir := allowlist.ApprovalDir(1) + "/"
	w.repo.Commit(t, map[string]string{"allowlist.yaml": content, dir + "carol.asc": string(carolSig)}, "v1", w.carol)
	mustRefuse(t, w.accepter(), allowlist.RuleApprovals, "1 of 2")

	frankSig, err := allowlist.SignOpenPGP(context.Background(), stmt, frank.Fingerprint, frank.Program)
	if err != nil {
		t.Fatal(err)
	}
	w.repo.Commit(t, map[string]string{dir + "frank.asc": string(frankSig)}, "frank approves", w.carol)
	acc := mustAccept(t, w.accepter(), 1)
	if strings.Join(acc.Approvers, ",") != strings.Join(sorted(w.carol.Fingerprint, frank.Fingerprint), ",") {
		t.Fatalf("approvers %v", acc.Approvers)
	}
}

func sorted(a, b string) []string {
	if a > b {
		return []string{b, a}
	}
	return []string{a, b}
}

// Hole 6 of issue 8: a new host (or one whose state was lost) is served a
// superseded version. With a floor in its configuration it refuses it.
func TestFirstContactFloor(t *testing.T) {
	setup := func(t *testing.T) (*world, string, string) {
		w := newWorld(t, worldOpts{})
		v1 := w.repo.Commit(t, map[string]string{"allowlist.yaml": good(1)}, "v1", w.alice)
		v2 := w.repo.Commit(t, map[string]string{"allowlist.yaml": good(2)}, "v2 removes a job", w.alice)
		// GitLab serves the branch at the superseded version.
		w.repo.Git(t, "update-ref", "refs/heads/main", v1)
		return w, v1, v2
	}
	t.Run("no floor: accepted, and verify says so", func(t *testing.T) {
		w, _, _ := setup(t)
		_, rep, err := w.accepter().Refresh(context.Background())
		if err != nil || !rep.Accepted {
			t.Fatalf("without a floor the superseded version is accepted (the hole): %v %+v", err, rep)
		}
		for _, want := range []string{"accepted no version before", "No floor is set", "allowlist.min_version"} {
			if !strings.Contains(rep.FirstContact, want) {
				t.Fatalf("first contact %q does not say %q", rep.FirstContact, want)
			}
		}
	})
	t.Run("min_version", func(t *testing.T) {
		w, _, v2 := setup(t)
		w.cfg.Allowlist.MinVersion = 2
		a := w.auditedAccepter()
		if acc := mustRefuse(t, a, allowlist.RuleFloor, "below 2, this environment's allowlist.min_version"); acc != nil {
			t.Fatalf("a version is in force: %+v", acc)
		}
		wantAudit(t, w.lastAudit(), "allowlist-reject", "floor: version 1 is below 2")
		w.repo.Git(t, "update-ref", "refs/heads/main", v2)
		_, rep, err := w.auditedAccepter().Refresh(context.Background())
		if err != nil || !rep.Accepted || !strings.Contains(rep.FirstContact, "floor: version 2 ≥ allowlist.min_version 2") || strings.Contains(rep.FirstContact, "No floor") {
			t.Fatalf("v2 on first contact: %v, %+v", err, rep)
		}
	})
	t.Run("start_commit", func(t *testing.T) {
		w, _, v2 := setup(t)
		w.cfg.Allowlist.StartCommit = v2
		mustRefuse(t, w.auditedAccepter(), allowlist.RuleFloor, "does not descend from")
		wantAudit(t, w.lastAudit(), "allowlist-reject", "floor: head ")
		w.repo.Git(t, "update-ref", "refs/heads/main", v2)
		mustAccept(t, w.accepter(), 2)
	})
	t.Run("floor raised above the state", func(t *testing.T) {
		w, v1, _ := setup(t)
		mustAccept(t, w.accepter(), 1)
		w.cfg.Allowlist.MinVersion = 2
		// The floor also holds for a head accepted before: its cache lost,
		// version 1 is not accepted again.
		removeStore(t, w)
		acc, rep, err := w.accepter().Refresh(context.Background())
		if acc != nil || !errors.Is(err, allowlist.ErrCannotDecide) || rep.Failed() == nil || rep.Failed().Rule != allowlist.RuleFloor {
			t.Fatalf("v1 (%s) under a floor of 2: %v %+v %+v", v1, err, acc, rep)
		}
	})
}

// removeStore deletes the verified store the state names: the cache is lost.
func removeStore(t *testing.T, w *world) {
	t.Helper()
	p, err := w.accepter().StorePath()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
}
