package allowlist

import "time"

// Accepted is a version of the allowlist that passed every acceptance rule in
// this environment, as the executor uses it.
type Accepted struct {
	Allowlist *Allowlist
	Index     *Index
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
}
