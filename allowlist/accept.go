package allowlist

import (
	"bufio"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"runtime/metrics"
	"sort"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/hashicorp/go-hclog"

	"gitlab.com/writ-ci/writ/internal/audit"
	"gitlab.com/writ-ci/writ/internal/config"
	"gitlab.com/writ-ci/writ/internal/fsutil"
	"gitlab.com/writ-ci/writ/internal/gcstart"
	"gitlab.com/writ-ci/writ/internal/gitrepo"
	"gitlab.com/writ-ci/writ/internal/gitsig"
	wstate "gitlab.com/writ-ci/writ/internal/state"
)

// ErrCannotDecide is wrapped by every error of Current and Refresh that leaves
// the environment without a valid accepted version: the executor must then
// fail the job as a system failure, never admit it.
var ErrCannotDecide = errors.New("no valid accepted allowlist")

// Rule names, as reported in Report and in the audit log.
const (
	RuleFetch     = "fetch"
	RuleSignature = "signature"
	RuleFormat    = "format"
	RuleIdentity  = "identity"
	RuleApprovals = "approvals"
	// RuleFloor is the environment's own floor (allowlist.min_version,
	// allowlist.start_commit), which holds even on first contact.
	RuleFloor    = "floor"
	RuleVersion  = "version"
	RuleAncestry = "ancestry"
	RuleExpiry   = "expiry"
)

// Limits on what the allowlist repository may make writ read.
const (
	maxAllowlistBytes = 64 << 20
	maxKeyFileBytes   = 1 << 20
	// maxHistoryCommits bounds the walk that proves a start commit absent.
	maxHistoryCommits = 100000
)

// Check is the outcome of one acceptance rule.
type Check struct {
	Rule   string
	OK     bool
	Detail string
}

// Report says what happened to the remote head during one refresh.
type Report struct {
	// Head is the remote branch head that was examined ("" if the fetch failed).
	Head string
	// Checks are the rules evaluated, in order; evaluation stops at the
	// first failure, which is the one that decided.
	Checks []Check
	// Accepted is true when Head became (or already was) the accepted version.
	Accepted bool
	// FirstContact, when the environment had accepted no version before
	// (a new host, or lost state), says what it trusted the head for, or
	// why not, and whether a floor protected it.
	FirstContact string
}

// Failed returns the first failed check, or nil.
func (r *Report) Failed() *Check {
	for i := range r.Checks {
		if !r.Checks[i].OK {
			return &r.Checks[i]
		}
	}
	return nil
}

// Accepter fetches the allowlist repository and accepts a version only when
// every rule holds. It is built once from the environment's trust root; all
// persistent state lives in the configured state and cache directories, so
// several processes (concurrent jobs) can use it at once.
type Accepter struct {
	cfg       *config.Config
	rootKeys  *gitsig.Keys
	approvals *ApprovalVerifier
	audit     *audit.Log
	log       hclog.Logger
	now       func() time.Time
	trustID   string
	// store holds the high-water mark and remembered rejection (this
	// host's files, or the fleet's store); local is this host's own.
	store wstate.Store
	local *wstate.Local
}

// AccepterOption configures an Accepter.
type AccepterOption func(*Accepter)

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) AccepterOption { return func(a *Accepter) { a.now = now } }

// WithAudit records every acceptance and rejection in the audit log.
func WithAudit(l *audit.Log) AccepterOption { return func(a *Accepter) { a.audit = l } }

// WithState keeps the trust state in s (default: the local files under
// paths.state).
func WithState(s wstate.Store) AccepterOption { return func(a *Accepter) { a.store = s } }

// WithLogger sets the operational logger.
func WithLogger(l hclog.Logger) AccepterOption { return func(a *Accepter) { a.log = l } }

// NewAccepter loads the root signers named by cfg.Trust.
func NewAccepter(cfg *config.Config, opts ...AccepterOption) (*Accepter, error) {
	a := &Accepter{cfg: cfg, now: time.Now, log: hclog.NewNullLogger(), local: wstate.NewLocal(cfg.Paths.State)}
	for _, o := range opts {
		o(a)
	}
	if a.store == nil {
		a.store = a.local
	}
	tr, err := LoadTrust(cfg)
	if err != nil {
		return nil, err
	}
	a.rootKeys, a.approvals, a.trustID = tr.Keys, tr.Approvals, tr.ID
	return a, nil
}

// Trust is an environment's trust root, loaded from the files its config
// names: the keys that sign allowlist commits and the verifier of detached
// approvals. Acceptance and `writ review` both judge with it.
type Trust struct {
	Keys      *gitsig.Keys
	Approvals *ApprovalVerifier
	// ID identifies the trust root (keys, threshold, identity), so a head
	// rejected under one trust root is evaluated again under another.
	ID string
}

// LoadTrust reads the root signers named by cfg.Trust.
func LoadTrust(cfg *config.Config) (*Trust, error) {
	id := sha256.New()
	fmt.Fprintf(id, "identity=%q threshold=%d\n", cfg.Allowlist.Identity, cfg.Trust.Threshold)
	// The schema this writ reads is part of how it judges: a head an
	// older writ rejected as an unknown schema is evaluated again after
	// an upgrade.
	fmt.Fprintf(id, "schema=%s\n", SchemaV2)
	// The floor decides too: a head it rejected is judged again under
	// another floor.
	fmt.Fprintf(id, "floor min_version=%d start_commit=%q\n", cfg.Allowlist.MinVersion, cfg.Allowlist.StartCommit)
	var armored [][]byte
	if p := cfg.Trust.OpenPGPKeyring; p != "" {
		b, err := fsutil.ReadFileLimit(p, maxKeyFileBytes)
		if err != nil {
			return nil, fmt.Errorf("trust.openpgp_keyring: %w", err)
		}
		armored = append(armored, b)
		fmt.Fprintf(id, "openpgp %d\n%s", len(b), b)
	}
	var ssh []gitsig.AllowedSigner
	if p := cfg.Trust.SSHAllowedSigners; p != "" {
		b, err := fsutil.ReadFileLimit(p, maxKeyFileBytes)
		if err != nil {
			return nil, fmt.Errorf("trust.ssh_allowed_signers: %w", err)
		}
		fmt.Fprintf(id, "ssh %d\n%s", len(b), b)
		ssh, err = gitsig.ParseAllowedSigners(b)
		if err != nil {
			return nil, fmt.Errorf("trust.ssh_allowed_signers %s: %w", p, err)
		}
	}
	keys, err := gitsig.NewKeys(armored, ssh)
	if err != nil {
		return nil, fmt.Errorf("trust: %w", err)
	}
	var sigstoreKeys []crypto.PublicKey
	for _, p := range cfg.Trust.SigstorePublicKeys {
		k, err := LoadSigstorePublicKey(p)
		if err != nil {
			return nil, fmt.Errorf("trust.sigstore_public_keys: %w", err)
		}
		sigstoreKeys = append(sigstoreKeys, k)
		fp, err := SigstoreFingerprint(k)
		if err != nil {
			return nil, fmt.Errorf("trust.sigstore_public_keys: %w", err)
		}
		fmt.Fprintf(id, "sigstore %s\n", fp)
	}
	var opts []ApprovalOption
	if p := cfg.Trust.SigstoreTrustedRoot; p != "" {
		tr, err := LoadTrustedRoot(p)
		if err != nil {
			return nil, fmt.Errorf("trust.sigstore_trusted_root: %w", err)
		}
		raw, _ := tr.MarshalJSON()
		fmt.Fprintf(id, "sigstore-root %d\n%s\n", len(raw), raw)
		var ids []SigstoreIdentity
		for _, x := range cfg.Trust.SigstoreIdentities {
			ids = append(ids, SigstoreIdentity{Issuer: x.Issuer, Subject: x.Subject, SubjectRegexp: x.SubjectRegexp})
			fmt.Fprintf(id, "sigstore-identity %q %q %q\n", x.Issuer, x.Subject, x.SubjectRegexp)
		}
		opts = append(opts, WithKeylessApprovals(tr, ids))
	}
	av, err := NewApprovalVerifier(keys, sigstoreKeys, opts...)
	if err != nil {
		return nil, fmt.Errorf("trust: %w", err)
	}
	return &Trust{Keys: keys, Approvals: av, ID: hex.EncodeToString(id.Sum(nil))}, nil
}

// state is the environment's memory of what it accepted (see
// internal/state). It only moves forward: the high-water version never
// decreases.
type state = wstate.Allowlist

// cached is the verified allowlist kept so jobs run while the remote is down.
type cached struct {
	Commit     string            `json:"commit"`
	Version    int64             `json:"version"`
	Digest     string            `json:"digest"`
	Statement  string            `json:"statement"`
	Signer     string            `json:"signer"`
	Approvers  []string          `json:"approvers"`
	AcceptedAt time.Time         `json:"accepted_at"`
	Files      map[string][]byte `json:"files"`
	// Parsed is the allowlist as Parse returned it at acceptance, so a job
	// does not parse a large allowlist again; CacheSHA256 in the state
	// covers it. The entries acceptance took from the store in force are
	// nil until writeVerified decodes those it cannot copy (memo.go).
	Parsed *Allowlist `json:"parsed"`
	// memo is what the store keeps for the next acceptance (memo.go).
	memo *acceptMemo
}

func (a *Accepter) lockPath() string { return filepath.Join(a.cfg.Paths.State, "allowlist.lock") }

// cachePath names the verified store whose header has SHA-256 sum. Each
// store has a name of its own, so the state (written after the store) names
// either the new store or the previous one, which is kept until the state
// has moved: a crash between the two writes loses nothing.
func (a *Accepter) cachePath(sum string) string {
	return filepath.Join(a.cfg.Paths.Cache, "allowlist-verified-"+sum+".store")
}

// pruneStores removes the verified stores other than keep's. A job still
// reading one keeps its open file; one that had not opened it yet finds
// the state's new store instead.
func (a *Accepter) pruneStores(keep string) {
	old, _ := filepath.Glob(filepath.Join(a.cfg.Paths.Cache, "allowlist-verified-*.store"))
	for _, p := range old {
		if p != a.cachePath(keep) {
			_ = os.Remove(p)
		}
	}
	_ = os.Remove(filepath.Join(a.cfg.Paths.Cache, "allowlist-verified.gob")) // an earlier writ's cache
	// Sections, and the store's own temp file (fsutil's ".NAME.tmp-*"), a
	// writer killed mid-store left behind (stores are written under the
	// state lock, so none is being written now). Each is as large as a
	// store, and nothing else would ever remove it.
	for _, glob := range []string{".allowlist-sections-*", ".allowlist-verified-*.store.tmp-*"} {
		tmps, _ := filepath.Glob(filepath.Join(a.cfg.Paths.Cache, glob))
		for _, p := range tmps {
			_ = os.Remove(p)
		}
	}
}

// Current returns the accepted allowlist a job must be judged by. It fetches
// the remote unless the last successful check is younger than the configured
// refresh interval. If the remote head fails a rule or the remote is
// unreachable, the last accepted version stays in use (with a Warning) until
// it expires. Errors wrap ErrCannotDecide.
func (a *Accepter) Current(ctx context.Context) (*Accepted, error) {
	if iv := a.cfg.Allowlist.RefreshInterval.Duration; iv > 0 {
		// This host's own state: the fast path needs no network. A
		// last check in the future (the clock jumped back) is due.
		st, err := a.local.Allowlist(ctx)
		if err == nil && st != nil && fresh(a.now().Sub(st.LastCheck), iv) && st.RejectedHead == "" {
			if acc, err := a.Cached(); err == nil {
				return acc, nil
			}
		}
	}
	if acc, ok := a.unchanged(ctx); ok {
		return acc, nil
	}
	acc, _, err := a.Refresh(ctx)
	return acc, err
}

// unchanged answers a job without taking any lock when the remote's head is
// the version already in force: it reads only the remote's ref
// advertisement (no pack) and the verified store, so concurrent jobs never
// queue behind each other or behind the network. Anything else — a new
// head, a remembered rejection, a remote that does not answer, a store that
// does not check out — goes through Refresh, which decides under the lock;
// jobs that find the same new head there wait for the first to accept it
// and then take this path's answer from the state it wrote.
func (a *Accepter) unchanged(ctx context.Context) (*Accepted, bool) {
	// The store's word (the fleet's, in fleet mode): a head this host
	// accepted but the fleet moved past is not unchanged. It is read
	// while the remote is asked for its head: both are round trips.
	type stored struct {
		st  *state
		err error
	}
	sc := make(chan stored, 1)
	go func() {
		st, err := a.store.Allowlist(ctx)
		sc <- stored{st, err}
	}()
	pctx, cancel := context.WithTimeout(ctx, a.cfg.Allowlist.FetchTimeout.Duration)
	defer cancel()
	head, herr := a.remoteHead(pctx)
	s := <-sc
	st := s.st
	if s.err != nil || st == nil || st.Commit == "" || st.RejectedHead != "" {
		return nil, false
	}
	if herr != nil || head != st.Commit {
		return nil, false
	}
	acc, err := a.loadCache(st)
	if err != nil {
		return nil, false
	}
	return acc, true
}

// remoteHead asks the remote for the allowlist branch's head (its ref
// advertisement only, no pack).
func (a *Accepter) remoteHead(ctx context.Context) (string, error) {
	m, err := a.openMirror()
	if err != nil {
		return "", err
	}
	head, err := m.RemoteRef(ctx, "refs/heads/"+a.cfg.Allowlist.Branch)
	if err != nil {
		return "", err
	}
	return head.String(), nil
}

// Cached returns the last accepted version from the local cache without any
// network access, if it is still valid.
func (a *Accepter) Cached() (*Accepted, error) {
	st, err := a.local.Allowlist(context.Background())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCannotDecide, err)
	}
	if st == nil {
		return nil, fmt.Errorf("%w: this environment has never accepted a version (run `writ allowlist verify`)", ErrCannotDecide)
	}
	return a.loadCache(st)
}

// fresh reports whether a check age old is younger than the refresh
// interval. A negative age (a last check in the future: the clock jumped
// forward, then back) is never fresh.
func fresh(age, interval time.Duration) bool { return age >= 0 && age < interval }

// conflictRetries bounds how often Refresh decides again when another host
// moved the fleet's mark while it decided.
const conflictRetries = 3

// Refresh fetches the allowlist branch and evaluates its head under the
// state lock. It returns the version now in force, a report on the head, and
// an error wrapping ErrCannotDecide when no valid version is in force.
func (a *Accepter) Refresh(ctx context.Context) (*Accepted, *Report, error) {
	for i := 1; ; i++ {
		acc, rep, err := a.refresh(ctx)
		if !errors.Is(err, wstate.ErrConflict) || i == conflictRetries {
			return acc, rep, err
		}
		a.log.Info("another host moved the allowlist mark meanwhile; deciding again", "error", err)
	}
}

func (a *Accepter) refresh(ctx context.Context) (*Accepted, *Report, error) {
	lockCtx, cancel := context.WithTimeout(ctx, a.cfg.Allowlist.FetchTimeout.Duration+30*time.Second)
	defer cancel()
	if err := os.MkdirAll(a.cfg.Paths.State, 0o700); err != nil {
		return nil, nil, fmt.Errorf("%w: state directory: %v", ErrCannotDecide, err)
	}
	unlock, err := fsutil.Lock(lockCtx, a.lockPath())
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrCannotDecide, err)
	}
	defer unlock()

	st, err := a.store.Allowlist(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrCannotDecide, err)
	}
	rep := &Report{}
	m, head, ferr := a.fetch(ctx)
	if ferr != nil {
		rep.Checks = append(rep.Checks, Check{Rule: RuleFetch, Detail: ferr.Error()})
		a.log.Warn("allowlist remote unreachable; using the cached version", "error", ferr)
		acc, cerr := a.fallback(st, "allowlist remote unreachable: "+ferr.Error())
		if acc != nil {
			acc.FromCache = true
		}
		a.record(ctx, "allowlist-cache", rep, acc)
		return acc, rep, cerr
	}
	rep.Head = head
	rep.Checks = append(rep.Checks, Check{Rule: RuleFetch, OK: true, Detail: "fetched " + a.cfg.Allowlist.Branch + " at " + head})
	now := a.now()

	if st != nil && head == st.Commit {
		acc, err := a.loadCache(st)
		if err == nil {
			st.LastCheck = now
			st.RejectedHead, st.RejectedWhy, st.RejectedTrust = "", "", ""
			if werr := a.writeState(ctx, st); werr != nil {
				return nil, rep, fmt.Errorf("%w: %v", ErrCannotDecide, werr)
			}
			rep.Accepted = true
			rep.Checks = append(rep.Checks, Check{Rule: RuleVersion, OK: true, Detail: fmt.Sprintf("head is the accepted version %d", acc.Allowlist.Version)})
			return acc, rep, nil
		}
		// The cache is gone or invalid: verify the head again from scratch.
		a.log.Warn("verified cache unusable; verifying the head again", "error", err)
	}
	if st != nil && head == st.RejectedHead && st.RejectedTrust == a.trustID {
		rep.Checks = append(rep.Checks, Check{Rule: "rejected", Detail: st.RejectedWhy})
		st.LastCheck = now
		_ = a.writeState(ctx, st)
		acc, err := a.fallback(st, "allowlist head "+short(head)+" was rejected: "+st.RejectedWhy)
		return acc, rep, err
	}

	heap := boundHeap()
	defer heap.restore()
	c, checks, derr := a.evaluate(m, head, st, now, heap)
	rep.Checks = append(rep.Checks, checks...)
	if derr != nil {
		// A rule that could not be evaluated because writ's mirror is
		// damaged says nothing about the head: it is not remembered as
		// rejected, and the next fetch rebuilds the mirror.
		m.MarkDamaged(derr.Error())
		rep.Checks = append(rep.Checks, Check{Rule: RuleFetch, Detail: "writ's mirror is damaged: " + derr.Error()})
		a.log.Warn("allowlist mirror damaged; using the cached version", "error", derr)
		acc, cerr := a.fallback(st, "writ's allowlist mirror is damaged (it is rebuilt on the next check): "+derr.Error())
		if acc != nil {
			acc.FromCache = true
		}
		a.record(ctx, "allowlist-cache", rep, acc)
		return acc, rep, cerr
	}
	if st == nil || st.Commit == "" {
		rep.FirstContact = a.firstContact(rep)
	}
	if f := rep.Failed(); f != nil {
		why := f.Rule + ": " + f.Detail
		a.log.Error("allowlist head rejected", "head", head, "rule", f.Rule, "detail", f.Detail)
		if st == nil {
			st = &state{}
		}
		st.LastCheck, st.RejectedHead, st.RejectedWhy, st.RejectedTrust = now, head, why, a.trustID
		if werr := a.writeState(ctx, st); werr != nil {
			return nil, rep, fmt.Errorf("%w: %v", ErrCannotDecide, werr)
		}
		acc, err := a.fallback(st, "allowlist head "+short(head)+" rejected, "+why)
		a.record(ctx, "allowlist-reject", rep, acc)
		return acc, rep, err
	}

	// Store first, then state: a crash between the two leaves the state
	// naming the previous store, which is still there.
	cacheSum, err := a.writeCache(c)
	if err != nil {
		return nil, rep, fmt.Errorf("%w: write verified cache: %v", ErrCannotDecide, err)
	}
	nst := st.Advance(wstate.AllowlistMark{Version: c.Version, Commit: c.Commit, Digest: c.Digest, Statement: c.Statement, AcceptedAt: c.AcceptedAt}, now, cacheSum)
	if err := a.writeState(ctx, nst); err != nil {
		return nil, rep, fmt.Errorf("%w: write state: %w", ErrCannotDecide, err)
	}
	a.pruneStores(cacheSum)
	acc, err := a.loadCache(nst)
	if err != nil {
		return nil, rep, err
	}
	rep.Accepted = true
	a.record(ctx, "allowlist-accept", rep, acc)
	a.log.Info("allowlist version accepted", "version", acc.Allowlist.Version, "commit", acc.Commit, "approvers", len(acc.Approvers))
	return acc, rep, nil
}

// openMirror opens writ's mirror of the allowlist repository.
func (a *Accepter) openMirror() (*gitrepo.Mirror, error) {
	al := a.cfg.Allowlist
	return gitrepo.OpenMirror(filepath.Join(a.cfg.Paths.Cache, "allowlist"), al.URL, gitrepo.Auth{
		Kind: al.Auth, TokenFile: al.TokenFile, Username: al.Username,
		SSHKeyFile: al.SSHKeyFile, KnownHostsFile: al.KnownHostsFile,
	}, gitrepo.WithLimits(gitrepo.Limits(a.cfg.Fetch)),
		// A new version's allowlist.yaml is read right after the fetch
		// that brings it: the fetch keeps it, already named.
		gitrepo.WithReadAhead())
}

func (a *Accepter) fetch(ctx context.Context) (*gitrepo.Mirror, string, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.Allowlist.FetchTimeout.Duration)
	defer cancel()
	al := a.cfg.Allowlist
	m, err := a.openMirror()
	if err != nil {
		return nil, "", err
	}
	ref := "refs/writ/allowlist/" + al.Branch
	if err := m.Fetch(ctx, "+refs/heads/"+al.Branch+":"+ref); err != nil {
		return nil, "", err
	}
	h, err := m.Ref(ref)
	if err != nil {
		return nil, "", err
	}
	return m, h.String(), nil
}

// evaluate applies every acceptance rule to head, in the order the issue
// states them, stopping at the first failure.
//
// An error means a rule could not be evaluated because the mirror is
// damaged (gitrepo.IsDamage): the head is then neither accepted nor
// rejected.
func (a *Accepter) evaluate(m *gitrepo.Mirror, head string, st *state, now time.Time, heap *heapBound) (*cached, []Check, error) {
	var checks []Check
	var damage error
	fail := func(rule, format string, args ...any) (*cached, []Check, error) {
		for _, a := range args {
			if err, ok := a.(error); ok && gitrepo.IsDamage(err) {
				return nil, checks, err
			}
		}
		if damage != nil {
			return nil, checks, damage
		}
		return nil, append(checks, Check{Rule: rule, Detail: fmt.Sprintf(format, args...)}), nil
	}
	pass := func(rule, format string, args ...any) {
		checks = append(checks, Check{Rule: rule, OK: true, Detail: fmt.Sprintf(format, args...)})
	}
	commit, err := m.Commit(head)
	if err != nil {
		return fail(RuleSignature, "read head commit: %v", err)
	}
	// A head accepted here before (only verified again when its cache is
	// lost) is judged as it was then: a root key retired since does not undo
	// the acceptance. Any other head is a new decision, so its key must be
	// valid now as well as when the signature says it was made.
	var sigOpts []gitsig.VerifyOption
	approvalsAt := now
	if st != nil && st.Commit == head {
		sigOpts = append(sigOpts, gitsig.PreviouslyAdmitted())
		if !st.AcceptedAt.IsZero() {
			approvalsAt = st.AcceptedAt
		}
	}
	signer, err := a.rootKeys.VerifyCommit(commit, now, sigOpts...)
	if err != nil {
		return fail(RuleSignature, "head commit %s: %v", short(head), err)
	}
	pass(RuleSignature, "signed by %s key %s%s", signer.Kind, signer.Fingerprint, principal(signer))

	data, err := m.ReadFile(head, FileName, maxAllowlistBytes)
	if err != nil {
		return fail(RuleFormat, "%s at %s: %v", FileName, short(head), err)
	}
	load, files := RecordLoads(func(p string) ([]byte, error) {
		b, err := m.ReadFile(head, p, maxKeyFileBytes)
		if err != nil && gitrepo.IsDamage(err) {
			damage = err
		}
		return b, err
	})
	// The file's SHA-256 is taken on another core while the parse starts
	// reading it.
	var sum [sha256.Size]byte
	summed := make(chan struct{})
	go func() {
		sum = sha256.Sum256(data)
		close(summed)
	}()
	fileSum := func() [sha256.Size]byte { <-summed; return sum }
	// Entries the version in force holds with the same bytes, in the same
	// context, are taken from its verified store (memo.go). The parse may
	// let the file's bytes go early, and read them again if it must.
	reread := func() ([]byte, error) {
		b, err := m.ReadFile(head, FileName, maxAllowlistBytes)
		if err == nil && sha256.Sum256(b) != fileSum() {
			err = fmt.Errorf("%w: %s at %s read differently twice", gitrepo.ErrDamaged, FileName, short(head))
		}
		if err != nil && gitrepo.IsDamage(err) {
			damage = err
		}
		return b, err
	}
	heap.forFile(len(data))
	al, memo, err := parseAccept(FileName, data, reread, load, a.storeInForce(st))
	<-summed // sum is set from here on
	digest := hex.EncodeToString(sum[:])
	if err != nil {
		return fail(RuleFormat, "%v", err)
	}
	stmt, stmtErr := versionStatement(al, sum, files)
	pass(RuleFormat, "%s parses (version %d, %d jobs)", FileName, al.Version, len(al.Jobs))

	if al.Repository != a.cfg.Allowlist.Identity {
		return fail(RuleIdentity, "allowlist names repository %q, this environment trusts %q", al.Repository, a.cfg.Allowlist.Identity)
	}
	pass(RuleIdentity, "repository %q", al.Repository)

	if stmtErr != nil {
		return fail(RuleApprovals, "%v", stmtErr)
	}
	stmtSum := sha256.Sum256(stmt)
	stmtDigest := hex.EncodeToString(stmtSum[:])
	approvers, detail, err := a.countApprovals(commit, al.Version, stmt, signer, approvalsAt)
	if err != nil {
		return fail(RuleApprovals, "%v", err)
	}
	if len(approvers) < a.cfg.Trust.Threshold {
		return fail(RuleApprovals, "%d of %d required approvals (%s)", len(approvers), a.cfg.Trust.Threshold, detail)
	}
	pass(RuleApprovals, "%d of %d required approvals (%s)", len(approvers), a.cfg.Trust.Threshold, detail)

	floor, err := a.checkFloor(m, head, al.Version)
	if gitrepo.IsDamage(err) {
		return nil, checks, err
	}
	if checks = append(checks, floor); !floor.OK {
		return nil, checks, nil
	}

	if st != nil && st.Commit != "" {
		switch {
		case al.Version < st.Version:
			return fail(RuleVersion, "version %d is lower than %d, the highest this environment accepted (rollback)", al.Version, st.Version)
		case al.Version == st.Version && digest != st.Digest:
			return fail(RuleVersion, "version %d was already accepted with other content (sha256 %s, now %s): bump the version", al.Version, short(st.Digest), short(digest))
		case al.Version == st.Version && st.Statement != "" && stmtDigest != st.Statement:
			return fail(RuleVersion, "version %d was already accepted with other content: %s is the same but a file it loads (a key file) differs: bump the version", al.Version, FileName)
		}
		ok, err := m.IsAncestor(st.Commit, head)
		if err != nil {
			return fail(RuleAncestry, "cannot tell whether %s descends from %s: %v", short(head), short(st.Commit), err)
		}
		if !ok {
			return fail(RuleAncestry, "head %s does not descend from the last accepted commit %s (rewritten history or a fork)", short(head), short(st.Commit))
		}
		if f := st.Floor; f != nil && f.Commit != st.Commit {
			// The fleet's mark is past this host's own: the head must
			// descend from both, so a store cannot lead a host onto a fork.
			if ok, err := m.IsAncestor(f.Commit, head); err != nil || !ok {
				return fail(RuleAncestry, "head %s does not descend from %s, the last version this host accepted itself (the fleet's state store names %s)", short(head), short(f.Commit), short(st.Commit))
			}
		}
		pass(RuleVersion, "version %d ≥ high-water mark %d", al.Version, st.Version)
		pass(RuleAncestry, "descends from %s", short(st.Commit))
	} else {
		pass(RuleVersion, "version %d (first version accepted here)", al.Version)
		pass(RuleAncestry, "no earlier accepted commit")
	}
	if !al.Expires.After(now) {
		return fail(RuleExpiry, "expired at %s", al.Expires.UTC().Format(time.RFC3339))
	}
	pass(RuleExpiry, "expires %s (in %s)", al.Expires.UTC().Format(time.RFC3339), al.Expires.Sub(now).Round(time.Minute))

	return &cached{
		Commit: head, Version: al.Version, Digest: digest, Statement: stmtDigest, Signer: signer.Fingerprint,
		Approvers: approvers, AcceptedAt: now, Files: files, Parsed: al, memo: memo,
	}, checks, nil
}

// storeInForce opens the verified store of the version in force, or
// returns nil when there is none that matches the state.
func (a *Accepter) storeInForce(st *state) *verifiedStore {
	if st == nil || st.CacheSHA256 == "" {
		return nil
	}
	vs, err := openVerified(a.cachePath(st.CacheSHA256), st.CacheSHA256)
	if err != nil {
		return nil
	}
	return vs
}

// checkFloor applies the environment's floor: a version at least
// allowlist.min_version, at a head that is allowlist.start_commit or
// descends from it. The high-water mark protects an environment that has
// accepted a version before; the floor is what protects one that has not.
// An error is returned with the failed check when the mirror could not
// answer.
func (a *Accepter) checkFloor(m *gitrepo.Mirror, head string, version int64) (Check, error) {
	cfg := a.cfg.Allowlist
	var held []string
	if cfg.MinVersion > 0 {
		if version < cfg.MinVersion {
			return Check{Rule: RuleFloor, Detail: fmt.Sprintf("version %d is below %d, this environment's allowlist.min_version (a superseded version)", version, cfg.MinVersion)}, nil
		}
		held = append(held, fmt.Sprintf("version %d ≥ allowlist.min_version %d", version, cfg.MinVersion))
	}
	if sc := cfg.StartCommit; sc != "" {
		if _, err := m.Commit(sc); err != nil {
			// A start commit missing from the mirror is no ancestor of
			// the head if the head's whole history is there without it;
			// anything else is a damaged mirror, not a verdict.
			if !errors.Is(err, plumbing.ErrObjectNotFound) {
				return Check{Rule: RuleFloor}, err
			}
			if _, werr := m.CommitsBetween("", head, maxHistoryCommits); werr != nil {
				return Check{Rule: RuleFloor, Detail: fmt.Sprintf("cannot tell whether %s descends from allowlist.start_commit %s: %v", short(head), short(sc), werr)}, werr
			}
			return Check{Rule: RuleFloor, Detail: fmt.Sprintf("head %s does not descend from %s, this environment's allowlist.start_commit (it is not in the branch's history)", short(head), short(sc))}, nil
		}
		ok, err := m.IsAncestor(sc, head)
		if err != nil {
			return Check{Rule: RuleFloor, Detail: fmt.Sprintf("cannot tell whether %s descends from allowlist.start_commit %s: %v", short(head), short(sc), err)}, err
		}
		if !ok {
			return Check{Rule: RuleFloor, Detail: fmt.Sprintf("head %s does not descend from %s, this environment's allowlist.start_commit", short(head), short(sc))}, nil
		}
		held = append(held, "descends from allowlist.start_commit "+short(sc))
	}
	if len(held) == 0 {
		return Check{Rule: RuleFloor, OK: true, Detail: "none set (allowlist.min_version, allowlist.start_commit)"}, nil
	}
	return Check{Rule: RuleFloor, OK: true, Detail: strings.Join(held, "; ")}, nil
}

// firstContact explains a decision made with no earlier accepted version.
func (a *Accepter) firstContact(rep *Report) string {
	msg := "this environment had accepted no version before (a new host, or its state was lost)"
	if f := rep.Failed(); f != nil {
		msg += fmt.Sprintf(", and refused head %s (%s: %s)", short(rep.Head), f.Rule, f.Detail)
	} else {
		var why []string
		for _, c := range rep.Checks {
			switch c.Rule {
			case RuleSignature, RuleApprovals, RuleFloor:
				why = append(why, c.Rule+": "+c.Detail)
			}
		}
		msg += fmt.Sprintf("; it trusted head %s for %s", short(rep.Head), strings.Join(why, "; "))
	}
	if a.cfg.Allowlist.MinVersion == 0 && a.cfg.Allowlist.StartCommit == "" {
		msg += ". No floor is set: any unexpired version with enough approvals would have been accepted, a superseded one too; set allowlist.min_version (or allowlist.start_commit) in the configuration"
	}
	return msg
}

// countApprovals returns the distinct root signers approving exactly this
// content: the commit signer plus valid detached approvals of the statement.
func (a *Accepter) countApprovals(commit *object.Commit, version int64, stmt []byte, signer gitsig.Signer, now time.Time) ([]string, string, error) {
	tree, err := commit.Tree()
	if err != nil {
		return nil, "", err
	}
	dir := ApprovalDir(version)
	approvals, err := ReadApprovalFiles(tree, dir)
	if err != nil {
		return nil, "", err
	}
	set := map[string]bool{signer.Fingerprint: true}
	valid, errs := a.approvals.Verify(stmt, dir, approvals, now)
	for _, ap := range valid {
		set[ap.Signer] = true
	}
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	detail := fmt.Sprintf("commit signer + %d valid detached approval(s)", len(valid))
	if len(errs) > 0 {
		msgs := make([]string, 0, len(errs))
		for _, e := range errs {
			msgs = append(msgs, e.Error())
		}
		detail += "; ignored: " + strings.Join(msgs, "; ")
	}
	return out, detail, nil
}

// ReadApprovalFiles reads the approval files directly in dir (see
// ApprovalDir) of an allowlist repository tree, bounded in count and size.
// A missing directory holds no approvals.
func ReadApprovalFiles(tree *object.Tree, dir string) (map[string][]byte, error) {
	sub, err := tree.Tree(dir)
	if errors.Is(err, object.ErrDirectoryNotFound) {
		return map[string][]byte{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	files := map[string][]byte{}
	for _, e := range sub.Entries {
		if !e.Mode.IsFile() {
			continue
		}
		if len(files) == MaxApprovalFiles {
			return nil, fmt.Errorf("%s holds more than %d approvals", dir, MaxApprovalFiles)
		}
		f, err := sub.TreeEntryFile(&e)
		if err != nil {
			return nil, err
		}
		if f.Size > MaxApprovalFileBytes {
			return nil, fmt.Errorf("%s/%s is larger than %d bytes", dir, e.Name, MaxApprovalFileBytes)
		}
		s, err := f.Contents()
		if err != nil {
			return nil, err
		}
		files[path.Join(dir, e.Name)] = []byte(s)
	}
	return files, nil
}

// fallback returns the last accepted version when it is still valid.
func (a *Accepter) fallback(st *state, why string) (*Accepted, error) {
	if st == nil || st.Commit == "" {
		return nil, fmt.Errorf("%w: %s, and this environment has never accepted a version", ErrCannotDecide, why)
	}
	acc, err := a.loadCache(st)
	if err != nil {
		return nil, fmt.Errorf("%w: %s, and %v", ErrCannotDecide, why, err)
	}
	acc.Warning = why
	return acc, nil
}

func (a *Accepter) loadCache(st *state) (*Accepted, error) {
	vs, err := openVerified(a.cachePath(st.CacheSHA256), st.CacheSHA256)
	if err != nil {
		return nil, fmt.Errorf("%w: no usable verified cache: %v", ErrCannotDecide, err)
	}
	c, al := &vs.header.Meta, vs.header.Allowlist
	if c.Commit != st.Commit || c.Digest != st.Digest {
		return nil, fmt.Errorf("%w: verified cache does not match the accepted state", ErrCannotDecide)
	}
	if al.Schema != SchemaV2 {
		// Accepted by a writ that read another schema: its refs and
		// variables do not mean what this writ's do.
		return nil, fmt.Errorf("%w: the verified cache holds a %q allowlist, which this writ does not apply: publish a %s version (docs/allowlist.md, \"Migrating from writ/v1\")", ErrCannotDecide, al.Schema, SchemaV2)
	}
	if now := a.now(); !al.Expires.After(now) {
		return nil, fmt.Errorf("%w: the accepted version %d expired at %s; publish a new signed version", ErrCannotDecide, al.Version, al.Expires.UTC().Format(time.RFC3339))
	}
	return &Accepted{
		Allowlist: al, Commit: c.Commit, Digest: c.Digest,
		Signer: c.Signer, Approvers: c.Approvers, Threshold: a.cfg.Trust.Threshold,
		AcceptedAt: c.AcceptedAt, store: vs,
	}, nil
}

func (a *Accepter) writeState(ctx context.Context, st *state) error {
	return a.store.PutAllowlist(ctx, st)
}

// writeCache writes the verified store of c and returns the hex SHA-256
// the state must record for it to be used.
func (a *Accepter) writeCache(c *cached) (string, error) {
	if err := os.MkdirAll(a.cfg.Paths.Cache, 0o700); err != nil {
		return "", err
	}
	// The sections go to a temp file first: the header, which comes
	// before them, is known only once they are written, and a large
	// allowlist's sections need not be held in memory meanwhile.
	tmp, err := os.CreateTemp(a.cfg.Paths.Cache, ".allowlist-sections-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	bw := bufio.NewWriterSize(tmp, 256<<10)
	head, sum, err := writeVerified(c, bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		_, err = tmp.Seek(0, io.SeekStart)
	}
	if err != nil {
		return "", err
	}
	return sum, fsutil.WriteFileAtomicFrom(a.cachePath(sum), 0o600, head, tmp)
}

func (a *Accepter) record(ctx context.Context, event string, rep *Report, acc *Accepted) {
	if a.audit == nil {
		return
	}
	fields := map[string]any{"head": rep.Head}
	if rep.FirstContact != "" {
		fields["first_contact"] = rep.FirstContact
	}
	reason := "accepted"
	if f := rep.Failed(); f != nil {
		reason = f.Rule + ": " + f.Detail
	}
	if acc != nil {
		fields["in_force_version"] = acc.Allowlist.Version
		fields["in_force_commit"] = acc.Commit
		fields["in_force_digest"] = acc.Digest
		fields["from_cache"] = acc.FromCache || acc.Warning != ""
	}
	if _, err := a.audit.Append(ctx, audit.Record{Event: event, Env: a.cfg.Environment, Reason: reason, Fields: fields}); err != nil {
		a.log.Error("audit log append failed", "error", err)
	}
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

func principal(s gitsig.Signer) string {
	if s.Principal == "" {
		return ""
	}
	return " (" + s.Principal + ")"
}

// heapBound is how acceptance bounds the process's memory: tightly while
// a version is fetched and read, then by what acceptance promises once the
// file's size is known (forFile).
type heapBound struct {
	gcPercent int   // the process's own settings, restored at the end
	limit     int64 // (GOGC and GOMEMLIMIT from its environment)
}

// boundHeap collects at 10 % heap growth until forFile, which costs little
// while the heap is small. restore puts the process's settings back.
func boundHeap() *heapBound {
	// From here the heap is bounded by these settings, not by the
	// postponement of the process's first collection.
	gcstart.Restore()
	h := &heapBound{gcPercent: debug.SetGCPercent(10), limit: debug.SetMemoryLimit(-1)}
	if h.gcPercent >= 0 && h.gcPercent < 10 {
		debug.SetGCPercent(h.gcPercent) // the operator asked for tighter still
	}
	return h
}

func (h *heapBound) restore() {
	debug.SetGCPercent(h.gcPercent)
	debug.SetMemoryLimit(h.limit)
}

// forFile bounds the process, while a file of fileBytes is parsed and its
// store written, by what acceptance promises: a peak RSS of at most 4× the
// file + 32 MiB. Parsing leaves much short-lived garbage while what is live
// stays small (the decoded entries take about the file's size), so
// collecting at 10 % growth spent about as much CPU in the collector as in
// the parse (a 10,000-entry first contact, profiled). Instead the
// collector paces as usual (GOGC=100: a heap of at most twice what is
// live) under a memory limit of that promise less what the process holds
// outside the runtime's memory (its mapped binary, chiefly): it collects
// more often only as the process nears the promise. Measured on that first
// contact: a peak RSS no higher than at 10 %, about a sixth less CPU. An
// operator's lower GOGC or GOMEMLIMIT is kept.
func (h *heapBound) forFile(fileBytes int) {
	limit := 4*int64(fileBytes) + 32<<20 - outsideHeap() - 2<<20
	if limit < 2*int64(fileBytes)+16<<20 {
		// Too little room for the file, its entries and a heap paced as
		// usual (a small file, whose promise is mostly the binary's
		// own pages): keep collecting at 10 % growth.
		return
	}
	debug.SetMemoryLimit(min(limit, h.limit))
	if h.gcPercent < 0 || h.gcPercent > 100 {
		debug.SetGCPercent(100)
	} else {
		debug.SetGCPercent(h.gcPercent)
	}
}

// outsideHeap estimates the resident memory the Go runtime's limit does not
// count: the process's resident set less the runtime's own resident memory.
func outsideHeap() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 16 << 20 // a 45 MB binary's touched pages, about
	}
	var size, resident int64
	if _, err := fmt.Sscan(string(b), &size, &resident); err != nil {
		return 16 << 20
	}
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	runtimeResident := int64(s[0].Value.Uint64()) - int64(s[1].Value.Uint64())
	return max(0, resident*int64(os.Getpagesize())-runtimeResident)
}
