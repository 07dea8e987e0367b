package allowlist

import (
	"errors"
	"time"
)

// Accepted is a version of the allowlist that passed every acceptance rule in
// this environment, as the executor uses it.
type Accepted struct {
	// Allowlist is the accepted allowlist. Read from the verified store it
	// has no Jobs: use JobIndex.
	Allowlist *Allowlist
	// Index indexes every entry when the whole allowlist is in memory; it
	// is nil when the entries stay in the verified store (see JobIndex).
	Index *Index
	// Commit is the allowlist repository commit (full hex) of this version.
	Commit string
	// Digest is the hex SHA-256 of allowlist.yaml's bytes.
	Digest string
	// Signer is the fingerprint of the commit's root signer.
	Signer string
	// Approvers are the distinct root signers that approved this content
	// (the commit signer included), as fingerprints.
	Approvers []string
	Threshold int
	// AcceptedAt is when this environment first accepted the version.
	AcceptedAt time.Time
	// FromCache is true when the remote could not be reached and the cached
	// verified copy is in use.
	FromCache bool
	// Warning, if set, says why the remote head was not accepted while an
	// earlier accepted version stays in use (for example a rollback attempt).
	Warning string

	// store holds the entries when they were not loaded (see JobIndex).
	store *verifiedStore
}

// JobIndex returns an index of the entries for project and job, the only
// ones a job's lookup and its refusal hints need. An accepted version read
// from the verified store reads just the part of the store that holds them
// (checked against its recorded SHA-256); an error means writ cannot decide.
func (a *Accepted) JobIndex(project, job string) (*Index, error) {
	if a.store != nil {
		return a.store.jobIndex(project, job)
	}
	if a.Index == nil {
		return nil, errors.New("the accepted allowlist has no index")
	}
	return a.Index, nil
}
