package state

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"gitlab.com/writ-ci/writ/internal/etcdkv"
)

// sharedAllowlist is what the shared store held when an Allowlist was read.
type sharedAllowlist struct {
	markRev int64 // mod revision of the mark key (0: absent)
	// read is the mark in force when read (the shared one or this
	// host's floor); shared is the store's.
	read, shared AllowlistMark
	// local is this host's own mark when read: it stays the floor unless
	// this host advances it.
	local      AllowlistMark
	localCache string // this host's cache digest, which belongs to local
	rejected   Rejection
}

// Advance returns the state after this host accepted m, to be put in place
// of st (nil when nothing was read): the mark moves, the rejection is
// cleared, and the compare-and-swap base is kept.
func (st *Allowlist) Advance(m AllowlistMark, lastCheck time.Time, cacheSHA256 string) *Allowlist {
	n := &Allowlist{Version: m.Version, Commit: m.Commit, Digest: m.Digest, Statement: m.Statement, AcceptedAt: m.AcceptedAt,
		LastCheck: lastCheck, CacheSHA256: cacheSHA256, verified: true}
	if st != nil {
		n.base = st.base
	}
	return n
}

// FleetConfig configures the shared store.
type FleetConfig struct {
	// Endpoints are the etcd members' client URLs (https only).
	Endpoints []string
	// CAFile verifies the members; CertFile and KeyFile are this host's
	// client certificate (mutual TLS).
	CAFile, CertFile, KeyFile string
	// Prefix is this environment's key prefix, ending in "/".
	Prefix string
	// Timeout bounds every request (and the wait for a leader).
	Timeout time.Duration
	// JobClaimTTL is how long a job id stays claimed fleet-wide.
	JobClaimTTL time.Duration
	// Host names this runner host in what it writes.
	Host string
	// FallbackLocal: when the store is unavailable, decide on this host's
	// local state alone (weaker: a fresh host knows no marks).
	FallbackLocal bool
	// Log receives warnings (fallbacks, a store below this host's floor).
	Log hclog.Logger
}

// Fleet is the trust state shared by a fleet of runner hosts through etcd,
// with this host's local state as a floor. Every advance of a mark is an
// etcd transaction conditioned on the mark's mod revision as read, so two
// hosts never both move a mark from the same value; each host checks a job
// against the fleet's mark and its own, so a store that lost or withholds a
// mark cannot lower what this host has seen.
//
// Key layout under the prefix P:
//
//	P allowlist/mark          AllowlistMark (JSON)
//	P allowlist/rejected      Rejection (JSON)
//	P entries/<EntryKey>      EntryMark (JSON)
//	P jobs/<job id>           JobClaim (JSON), under a lease (see claimLease)
type Fleet struct {
	cfg   FleetConfig
	local *Local

	once    sync.Once
	connect atomic.Bool // Connect was called
	client  *etcdkv.Client
	err     error
}

// NewFleet returns the shared state for cfg, with local as the floor. It
// connects on first use.
func NewFleet(cfg FleetConfig, local *Local) (*Fleet, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("state: the etcd backend needs endpoints")
	}
	for _, e := range cfg.Endpoints {
		if !strings.HasPrefix(e, "https://") {
			return nil, fmt.Errorf("state: etcd endpoint %q is not https:// (the store is reached over mutual TLS only)", e)
		}
	}
	if cfg.CAFile == "" || cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, errors.New("state: the etcd backend needs ca_file, cert_file and key_file (mutual TLS)")
	}
	if !strings.HasSuffix(cfg.Prefix, "/") || !strings.HasPrefix(cfg.Prefix, "/") {
		return nil, fmt.Errorf("state: etcd prefix %q must start and end with /", cfg.Prefix)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.JobClaimTTL <= 0 {
		cfg.JobClaimTTL = 7 * 24 * time.Hour
	}
	if cfg.Log == nil {
		cfg.Log = hclog.NewNullLogger()
	}
	return &Fleet{cfg: cfg, local: local}, nil
}

func (f *Fleet) tlsConfig() (*tls.Config, error) {
	ca, err := os.ReadFile(f.cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("state.etcd.ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("state.etcd.ca_file %s holds no PEM certificate", f.cfg.CAFile)
	}
	cert, err := tls.LoadX509KeyPair(f.cfg.CertFile, f.cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("state.etcd.cert_file/key_file: %w", err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// Connect starts the TCP and TLS handshakes with a member in the
// background, so that a caller about to use the store can do its own work
// meanwhile. Errors surface on first use.
func (f *Fleet) Connect() {
	f.connect.Store(true)
	// Reading the certificate files is part of the work overlapped.
	go func() { _, _ = f.kv() }()
}

// kv returns the client. It talks to one member at a time, in a random
// order per process, and to the next only when that one cannot be reached
// or has no leader: a writ process lives for a few requests, which any
// member serves (a follower forwards writes and linearizable reads to the
// leader), and the random order spreads a fleet's hosts over the members.
func (f *Fleet) kv() (*etcdkv.Client, error) {
	f.once.Do(func() {
		tc, err := f.tlsConfig()
		if err != nil {
			f.err = err
			return
		}
		// Each member gets a share of the timeout to answer the
		// handshakes, so an unresponsive one leaves time for the next.
		dial := max(f.cfg.Timeout/time.Duration(len(f.cfg.Endpoints)), min(f.cfg.Timeout, time.Second))
		f.client, f.err = etcdkv.New(etcdkv.Config{Endpoints: f.cfg.Endpoints, TLS: tc, DialTimeout: dial, MaxValueBytes: maxRecordBytes})
		if f.err == nil && f.connect.Load() {
			// Inside once: a request that waits for the client also
			// waits for this handshake, rather than making its own.
			f.client.Connect()
		}
	})
	if f.client == nil && f.err == nil {
		return nil, errors.New("state: the fleet store was closed")
	}
	return f.client, f.err
}

// do runs one request against the store, bounded by the timeout; every
// request fails fast when the member it reaches has no leader.
func (f *Fleet) do(ctx context.Context, op func(context.Context, *etcdkv.Client) error) error {
	c, err := f.kv()
	if err == nil {
		ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
		err = op(ctx, c)
		cancel()
	}
	if errors.Is(err, etcdkv.ErrPermissionDenied) {
		return f.denied(err)
	}
	if err != nil && !errors.Is(err, errConflictTxn) && !errors.Is(err, ErrCorrupt) {
		return f.unavailable(err)
	}
	return err
}

// denied is a refusal by etcd's authentication: this host's role does not
// cover the prefix. It fails closed like an unavailable store, but never
// falls back to the local state: it is a configuration to fix, not an
// outage to ride out.
func (f *Fleet) denied(err error) error {
	return fmt.Errorf("%w: the fleet state store (etcd %s) refused this host's request under %q: %w; writ fails closed: the etcd user named by this host's client certificate (its common name) needs a role with readwrite on that prefix (docs/install.md, fleet profile)",
		ErrUnavailable, strings.Join(f.cfg.Endpoints, ", "), f.cfg.Prefix, err)
}

func (f *Fleet) unavailable(err error) error {
	return fmt.Errorf("%w: the fleet state store (etcd %s) did not answer: %v; writ fails closed and the runner retries the job: check the store's members and quorum (etcdctl endpoint health), and this host's client certificate",
		ErrUnavailable, strings.Join(f.cfg.Endpoints, ", "), err)
}

// fallback reports whether err lets this host go on with its local state.
func (f *Fleet) fallback(err error) bool {
	if !f.cfg.FallbackLocal || !errors.Is(err, ErrUnavailable) || errors.Is(err, etcdkv.ErrPermissionDenied) {
		return false
	}
	f.cfg.Log.Warn("fleet state store unavailable; deciding on this host's local state alone (state.fallback = \"local\")", "error", err)
	return true
}

func (f *Fleet) key(parts ...string) string { return f.cfg.Prefix + strings.Join(parts, "/") }

// tooLarge turns a store answer too large to read into the error of a
// corrupt value at one of keys, with its repair; other errors pass.
func tooLarge(err error, keys ...string) error {
	if errors.Is(err, etcdkv.ErrTooLarge) {
		k := strings.Join(keys, " or ")
		return fmt.Errorf("%w: store value %s is larger than %d bytes (%v); delete it (etcdctl del <key>): every host's own floor still holds its marks, and `writ state migrate` on a host publishes them again",
			ErrCorrupt, k, maxRecordBytes, err)
	}
	return err
}

func decode(key string, b []byte, v any) error {
	if len(b) > maxRecordBytes {
		return fmt.Errorf("%w: store value %s is larger than %d bytes", ErrCorrupt, key, maxRecordBytes)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: store value %s: %v; delete it (etcdctl del %s): every host's own floor still holds its marks, and `writ state migrate` on a host publishes them again", ErrCorrupt, key, err, key)
	}
	return nil
}

// Allowlist implements Store: the fleet's mark unless this host's own is
// higher, the fleet's remembered rejection, this host's own check times.
func (f *Fleet) Allowlist(ctx context.Context) (*Allowlist, error) {
	local, err := f.local.Allowlist(ctx)
	if err != nil {
		return nil, err
	}
	var base sharedAllowlist
	var shared *AllowlistMark
	var rej *Rejection
	markKey, rejKey := f.key("allowlist", "mark"), f.key("allowlist", "rejected")
	err = f.do(ctx, func(ctx context.Context, c *etcdkv.Client) error {
		// Both keys in one read-only transaction: one snapshot.
		resp, err := c.Txn(ctx, nil, []etcdkv.Op{etcdkv.OpGet(markKey), etcdkv.OpGet(rejKey)}, nil)
		if err != nil {
			return tooLarge(err, markKey, rejKey)
		}
		if kv := resp.Gets[0]; kv != nil {
			shared = &AllowlistMark{}
			base.markRev = kv.ModRevision
			if err := decode(markKey, kv.Value, shared); err != nil {
				return err
			}
			if !shaPattern.MatchString(shared.Commit) || shared.Version < 1 {
				return fmt.Errorf("%w: store value %s names version %d at %q", ErrCorrupt, markKey, shared.Version, shared.Commit)
			}
		}
		if kv := resp.Gets[1]; kv != nil {
			rej = &Rejection{}
			if err := decode(rejKey, kv.Value, rej); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, ErrCorrupt) {
		return nil, err
	}
	if err != nil {
		if f.fallback(err) {
			return local, nil
		}
		return nil, err
	}
	return f.mergeAllowlist(local, shared, rej, base), nil
}

func (f *Fleet) mergeAllowlist(local *Allowlist, shared *AllowlistMark, rej *Rejection, base sharedAllowlist) *Allowlist {
	if local == nil && shared == nil && rej == nil {
		return nil
	}
	st := &Allowlist{}
	if local != nil {
		*st = *local
		base.local, base.localCache = local.Mark(), local.CacheSHA256
	}
	if shared != nil {
		base.shared = *shared
	}
	switch {
	case shared != nil && shared.Version > st.Version:
		// A host that joins late starts from the fleet's mark.
		if shared.Commit != st.Commit {
			st.CacheSHA256 = ""
			if st.Commit != "" {
				floor := st.Mark()
				st.Floor = &floor
			}
		}
		st.Version, st.Commit, st.Digest, st.Statement, st.AcceptedAt = shared.Version, shared.Commit, shared.Digest, shared.Statement, shared.AcceptedAt
	case local != nil && local.Commit != "" && (shared == nil || shared.Version < local.Version):
		st.Withheld = true
		f.cfg.Log.Warn("the fleet store's allowlist mark is below this host's own; this host's mark stays in force", "host_version", local.Version)
	}
	if rej != nil {
		st.RejectedHead, st.RejectedWhy, st.RejectedTrust = rej.Head, rej.Why, rej.Trust
		base.rejected = *rej
	} else {
		st.RejectedHead, st.RejectedWhy, st.RejectedTrust = "", "", ""
	}
	base.read = st.Mark()
	st.base = &base
	return st
}

// PutAllowlist implements Store. A changed mark is an advance this host
// verified: it is written to the store if the store still holds what was
// read, and becomes this host's floor. A mark only adopted from the store
// is never written to the floor, so a store cannot raise a host's floor
// with a mark the host did not verify.
func (f *Fleet) PutAllowlist(ctx context.Context, st *Allowlist) error {
	base := sharedAllowlist{}
	if st.base != nil {
		base = *st.base
	}
	if st.verified && st.Version < base.read.Version {
		return fmt.Errorf("state: refusing to move the allowlist mark from version %d down to %d", base.read.Version, st.Version)
	}
	advanced := st.verified && (st.Version != base.shared.Version || st.Commit != base.shared.Commit || st.Digest != base.shared.Digest)
	rej := Rejection{Head: st.RejectedHead, Why: st.RejectedWhy, Trust: st.RejectedTrust}
	err := f.do(ctx, func(ctx context.Context, c *etcdkv.Client) error {
		var ops []etcdkv.Op
		var conds []etcdkv.Compare
		if advanced {
			m := st.Mark()
			b, err := json.Marshal(struct {
				AllowlistMark
				Host string `json:"host"`
			}{m, f.cfg.Host})
			if err != nil {
				return err
			}
			conds = append(conds, etcdkv.ModRevisionIs(f.key("allowlist", "mark"), base.markRev))
			ops = append(ops, etcdkv.OpPut(f.key("allowlist", "mark"), string(b), 0))
		}
		if rej != base.rejected {
			if rej.Head == "" {
				ops = append(ops, etcdkv.OpDelete(f.key("allowlist", "rejected")))
			} else {
				b, err := json.Marshal(rej)
				if err != nil {
					return err
				}
				ops = append(ops, etcdkv.OpPut(f.key("allowlist", "rejected"), string(b), 0))
			}
		}
		if len(ops) == 0 {
			return nil
		}
		resp, err := c.Txn(ctx, conds, ops, nil)
		if err != nil {
			return err
		}
		if !resp.Succeeded {
			return errConflictTxn
		}
		return nil
	})
	if errors.Is(err, errConflictTxn) {
		return fmt.Errorf("%w: another host moved the fleet's allowlist mark", ErrConflict)
	}
	if err != nil && !f.fallback(err) {
		return err
	}
	floor := *st
	if !st.verified && st.base != nil {
		// Keep this host's own verified mark as its floor.
		m := base.local
		floor.Version, floor.Commit, floor.Digest, floor.Statement, floor.AcceptedAt = m.Version, m.Commit, m.Digest, m.Statement, m.AcceptedAt
		if m.Commit != st.Commit {
			floor.CacheSHA256 = base.localCache
		}
	}
	return f.local.PutAllowlist(ctx, &floor)
}

var errConflictTxn = errors.New("compare-and-swap failed")

// validEntryMark reports whether m is a mark for entry name on a full
// commit id (what the rollback check compares).
func validEntryMark(m *EntryMark, name string) bool {
	return m.Entry == name && shaPattern.MatchString(m.Commit)
}

// Entry implements Store.
func (f *Fleet) Entry(ctx context.Context, name string) (*Entry, error) {
	local, err := f.local.entryMark(name)
	if err != nil {
		return nil, err
	}
	e := &Entry{Name: name}
	var shared *EntryMark
	key := f.key("entries", EntryKey(name))
	err = f.do(ctx, func(ctx context.Context, c *etcdkv.Client) error {
		kv, err := c.Get(ctx, key)
		if err != nil {
			return tooLarge(err, key)
		}
		if kv != nil {
			shared = &EntryMark{}
			e.rev = kv.ModRevision
			if err := decode(key, kv.Value, shared); err != nil {
				return err
			}
			if !validEntryMark(shared, name) {
				return fmt.Errorf("%w: store value %s does not hold a mark for entry %q", ErrCorrupt, key, name)
			}
		}
		return nil
	})
	if errors.Is(err, ErrCorrupt) {
		return nil, err
	}
	if err != nil {
		if f.fallback(err) {
			return &Entry{Name: name, Last: local, rev: -1, unshared: true}, nil
		}
		return nil, err
	}
	switch {
	case shared == nil:
		e.Last, e.unshared = local, local != nil
	case local == nil || (local.Commit == shared.Commit && local.Repository == shared.Repository):
		e.Last, e.synced = shared, local != nil
	default:
		e.Last, e.Floor = shared, local
	}
	return e, nil
}

// PutEntry implements Store: the store's mark moves only if it still is
// what Entry read; this host's floor follows.
func (f *Fleet) PutEntry(ctx context.Context, e *Entry, next EntryMark) error {
	if next.Entry != e.Name {
		return fmt.Errorf("state: mark for entry %q stored under %q", next.Entry, e.Name)
	}
	if e.rev >= 0 {
		next.Host = f.cfg.Host
		b, err := json.Marshal(next)
		if err != nil {
			return err
		}
		key := f.key("entries", EntryKey(e.Name))
		err = f.do(ctx, func(ctx context.Context, c *etcdkv.Client) error {
			resp, err := c.Txn(ctx, []etcdkv.Compare{etcdkv.ModRevisionIs(key, e.rev)}, []etcdkv.Op{etcdkv.OpPut(key, string(b), 0)}, nil)
			if err != nil {
				return err
			}
			if !resp.Succeeded {
				return errConflictTxn
			}
			return nil
		})
		if errors.Is(err, errConflictTxn) {
			return fmt.Errorf("%w: another host admitted a job of entry %q meanwhile", ErrConflict, e.Name)
		}
		if err != nil && !f.fallback(err) {
			return err
		}
	}
	return f.local.PutEntry(ctx, e, next)
}

// ClaimJob implements Store: the id is claimed fleet-wide (an etcd key
// created only if absent, under a lease), then on this host.
func (f *Fleet) ClaimJob(ctx context.Context, c JobClaim) error {
	if !jobIDPattern.MatchString(c.ID) {
		return fmt.Errorf("state: job id %q is not a GitLab job id", c.ID)
	}
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	key := f.key("jobs", c.ID)
	var held *JobClaim
	err = f.do(ctx, func(ctx context.Context, cl *etcdkv.Client) error {
		lease, err := f.lease(ctx, cl, false)
		if err != nil {
			return err
		}
		claim := func(lease int64) (*etcdkv.TxnResult, error) {
			return cl.Txn(ctx, []etcdkv.Compare{etcdkv.CreateRevisionIs(key, 0)},
				[]etcdkv.Op{etcdkv.OpPut(key, string(b), lease)}, []etcdkv.Op{etcdkv.OpGet(key)})
		}
		resp, err := claim(lease)
		if errors.Is(err, etcdkv.ErrLeaseNotFound) {
			// The store lost the lease (restored, or another cluster).
			if lease, err = f.lease(ctx, cl, true); err == nil {
				resp, err = claim(lease)
			}
		}
		if err != nil || resp.Succeeded {
			return tooLarge(err, key)
		}
		held = &JobClaim{ID: c.ID}
		if kv := resp.Gets[0]; kv != nil {
			return decode(key, kv.Value, held)
		}
		return nil
	})
	if err != nil && (errors.Is(err, ErrCorrupt) || !f.fallback(err)) {
		return err
	}
	if held != nil && held.Token != c.Token {
		return &ClaimedError{Holder: *held}
	}
	return f.local.ClaimJob(ctx, c)
}

// claimLease is the lease this host attaches its job claims to, kept in
// <state>/fleet-lease.json. It is granted for twice JobClaimTTL and used
// while at least JobClaimTTL remains, so a claim lives between one and two
// TTLs and a prepare grants a lease about once per TTL, not every time
// (a grant is a write every member must sync to disk).
type claimLease struct {
	ID      int64     `json:"id"`
	Prefix  string    `json:"prefix"`
	Expires time.Time `json:"expires"`
}

func (f *Fleet) lease(ctx context.Context, cl *etcdkv.Client, fresh bool) (int64, error) {
	path := filepath.Join(f.local.Dir(), "fleet-lease.json")
	var l claimLease
	if ok, err := readJSON(path, &l); !fresh && err == nil && ok && l.Prefix == f.cfg.Prefix &&
		time.Until(l.Expires) >= f.cfg.JobClaimTTL {
		return l.ID, nil
	}
	ttl := 2 * f.cfg.JobClaimTTL
	start := time.Now()
	id, granted, err := cl.Grant(ctx, ttl)
	if err != nil {
		return 0, err
	}
	l = claimLease{ID: id, Prefix: f.cfg.Prefix, Expires: start.Add(granted)}
	if err := writeJSON(path, l); err != nil {
		f.cfg.Log.Warn("cannot keep the job claim lease; the next prepare grants another", "error", err)
	}
	return id, nil
}

// Claim implements Store: this host's claim.
func (f *Fleet) Claim(ctx context.Context, id string) (*JobClaim, error) {
	return f.local.Claim(ctx, id)
}

// ReleaseJob implements Store: this host's claim goes; the fleet-wide
// claim stays until its lease ends, so the id cannot be replayed on
// another host meanwhile.
func (f *Fleet) ReleaseJob(ctx context.Context, c JobClaim) error {
	return f.local.ReleaseJob(ctx, c)
}

// DropClaim implements Store: the fleet-wide claim goes if c.Token still
// holds it, then this host's.
func (f *Fleet) DropClaim(ctx context.Context, c JobClaim) error {
	key := f.key("jobs", c.ID)
	err := f.do(ctx, func(ctx context.Context, cl *etcdkv.Client) error {
		kv, err := cl.Get(ctx, key)
		if err != nil || kv == nil {
			return tooLarge(err, key)
		}
		var held JobClaim
		if err := decode(key, kv.Value, &held); err != nil || held.Token != c.Token {
			return err
		}
		_, err = cl.Txn(ctx, []etcdkv.Compare{etcdkv.ModRevisionIs(key, kv.ModRevision)}, []etcdkv.Op{etcdkv.OpDelete(key)}, nil)
		return err
	})
	if err != nil && !f.fallback(err) {
		return err
	}
	return f.local.ReleaseJob(ctx, c)
}

// Close implements Store.
func (f *Fleet) Close() error {
	// Forbid a later connection.
	f.once.Do(func() {})
	if f.client != nil {
		return f.client.Close()
	}
	return nil
}
