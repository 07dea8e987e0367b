// Package state keeps an environment's trust state: the accepted allowlist
// version and commit (the high-water mark), the remembered rejection of an
// allowlist head, the last commit admitted for each allowlist entry
// (rollback protection), and job-id claims.
//
// Two backends implement Store. Local keeps the state in files under the
// state directory, for one runner host. Fleet shares it between runner hosts
// through etcd, a strongly consistent store, so a job GitLab routes to a
// fresh host is judged against the marks the whole fleet has reached; each
// host keeps its local files too, as a floor the store can withhold but
// never lower.
//
// The store is not a trust root. It holds no keys and no allowlist; what it
// holds only ever makes writ refuse more (a higher mark, a claimed id, a
// remembered rejection), never admit what a signature does not cover.
package state

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Store is where an environment's trust state lives. Every Put is a
// compare-and-swap against the value the argument was read as: it fails
// with ErrConflict when another writer moved the state in between, so a
// mark is never moved by a decision taken on stale state.
//
// Errors wrapping ErrUnavailable mean the state could not be read or
// written: the caller cannot decide and must fail closed.
type Store interface {
	// Allowlist returns the accepted allowlist's state, or nil if this
	// environment never accepted or rejected a version.
	Allowlist(ctx context.Context) (*Allowlist, error)
	// PutAllowlist records st, read by Allowlist (or new).
	PutAllowlist(ctx context.Context, st *Allowlist) error
	// Entry returns the last commits admitted for an allowlist entry.
	Entry(ctx context.Context, name string) (*Entry, error)
	// PutEntry records next as entry e's last admitted commit. e is what
	// Entry returned for the same name.
	PutEntry(ctx context.Context, e *Entry, next EntryMark) error
	// ClaimJob claims job id c.ID for the run c.Token names. A claim
	// already held with the same token is kept; one held by another run
	// fails with a *ClaimedError.
	ClaimJob(ctx context.Context, c JobClaim) error
	// Claim returns this host's claim on a job id, or nil.
	Claim(ctx context.Context, id string) (*JobClaim, error)
	// ReleaseJob releases this host's claim on c.ID if c.Token holds it
	// (the job ended; a fleet-wide claim stays until it expires, so the id
	// cannot be replayed on another host).
	ReleaseJob(ctx context.Context, c JobClaim) error
	// DropClaim removes c.Token's claim on c.ID everywhere: its prepare
	// decided nothing (a system failure), and the runner's retry, which
	// comes with a payload file of its own, must be able to claim it.
	DropClaim(ctx context.Context, c JobClaim) error
	// Close releases connections.
	Close() error
}

// Connector is implemented by a Store that reaches a server: Connect
// starts the connection in the background, for a caller that is about to
// use the store and has other work to do first.
type Connector interface {
	Connect()
}

// ErrConflict is wrapped by a Put whose compare-and-swap failed: another
// writer (a concurrent job, another host) changed the state after it was
// read. Read it again and decide again.
var ErrConflict = errors.New("the trust state changed while this decision was taken")

// ErrUnavailable is wrapped by every error that leaves the state unknown:
// the shared store is unreachable or has no quorum, or a local file cannot
// be read. Writ then fails closed (a system failure the runner retries).
var ErrUnavailable = errors.New("trust state unavailable")

// ErrCorrupt is wrapped when a state file or record cannot be decoded. Writ
// never resets a mark silently; the error names the repair command.
var ErrCorrupt = errors.New("trust state is corrupt")

// Allowlist is the state of allowlist acceptance. Version, Commit, Digest
// and AcceptedAt are the high-water mark, shared by the fleet; Rejected*
// remember a head that failed a rule, so each job does not verify it
// again. LastCheck and CacheSHA256 belong to one host.
type Allowlist struct {
	Version int64  `json:"version"`
	Commit  string `json:"commit"`
	Digest  string `json:"digest"`
	// Statement is the hex SHA-256 of the version's approval statement,
	// which covers every file it loads (key files too); empty in states
	// written before it existed.
	Statement  string    `json:"statement,omitempty"`
	AcceptedAt time.Time `json:"accepted_at"`
	// LastCheck is when this host last fetched the remote successfully.
	LastCheck time.Time `json:"last_check"`
	// RejectedHead is a head that failed a rule under the trust root
	// RejectedTrust; RejectedWhy is the reason.
	RejectedHead  string `json:"rejected_head,omitempty"`
	RejectedWhy   string `json:"rejected_why,omitempty"`
	RejectedTrust string `json:"rejected_trust,omitempty"`
	// CacheSHA256 is the hex SHA-256 of this host's verified cache file.
	CacheSHA256 string `json:"cache_sha256"`

	// Floor is this host's own accepted mark when the fleet's (in force
	// above) is another: a head must descend from both.
	Floor *AllowlistMark `json:"-"`

	// Withheld is set when the shared store holds a lower mark than this
	// host's own floor (a store that lost or withholds progress): the
	// floor is in force.
	Withheld bool `json:"-"`

	// base is what the shared store held when this was read, for the
	// compare-and-swap of PutAllowlist.
	base *sharedAllowlist
	// verified: this host accepted the mark (Advance), so it may become
	// the fleet's mark and this host's floor.
	verified bool
}

// Mark is the high-water part of st.
func (st *Allowlist) Mark() AllowlistMark {
	return AllowlistMark{Version: st.Version, Commit: st.Commit, Digest: st.Digest, Statement: st.Statement, AcceptedAt: st.AcceptedAt}
}

// AllowlistMark is the accepted allowlist version as the fleet shares it.
type AllowlistMark struct {
	Version    int64     `json:"version"`
	Commit     string    `json:"commit"`
	Digest     string    `json:"digest"`
	Statement  string    `json:"statement,omitempty"`
	AcceptedAt time.Time `json:"accepted_at"`
}

// Rejection is a remembered rejection of an allowlist head.
type Rejection struct {
	Head  string `json:"head"`
	Why   string `json:"why"`
	Trust string `json:"trust"`
}

// EntryMark is the last commit admitted for an allowlist entry.
type EntryMark struct {
	Entry      string    `json:"entry"`
	Repository string    `json:"repository"`
	Mode       string    `json:"mode"`
	Commit     string    `json:"commit"`
	Job        string    `json:"job"`
	Time       time.Time `json:"time"`
	// Host is the runner host that admitted it (shared store only).
	Host string `json:"host,omitempty"`
}

// Entry is what the state says about one allowlist entry.
type Entry struct {
	Name string
	// Last is the mark a job's commit must descend from: the fleet's, or
	// this host's own when the fleet has none. Nil: nothing admitted yet.
	Last *EntryMark
	// Floor is this host's own mark when it differs from Last (the store
	// lost or withholds it): a job's commit must descend from it too.
	Floor *EntryMark

	rev int64 // shared store's mod revision of Last (0: absent)
	// unshared: Last is this host's own and the shared store has none.
	unshared bool
	// synced: Last is the mark both in the shared store (if any) and in
	// this host's files.
	synced bool
}

// Holds reports whether commit of repository is already the entry's mark
// everywhere it is kept, so admitting it again moves nothing.
func (e *Entry) Holds(repository, commit string) bool {
	return e.synced && e.Last != nil && e.Last.Repository == repository && e.Last.Commit == commit
}

// JobClaim says which run of the runner owns a job id.
type JobClaim struct {
	ID string `json:"id"`
	// Token identifies one run of the runner (its payload file on its
	// host): a retried prepare of the same run holds the same token.
	Token         string    `json:"token"`
	Host          string    `json:"host"`
	PayloadSHA256 string    `json:"payload_sha256"`
	Time          time.Time `json:"time"`
}

// ClaimedError is returned by ClaimJob when another run holds the id.
type ClaimedError struct{ Holder JobClaim }

func (e *ClaimedError) Error() string {
	return fmt.Sprintf("job id %s is already claimed by a run on host %q since %s (payload sha256 %.12s)",
		e.Holder.ID, e.Holder.Host, e.Holder.Time.UTC().Format(time.RFC3339), e.Holder.PayloadSHA256)
}
