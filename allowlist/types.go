// Package allowlist defines writ's signed, versioned allowlist: its file
// format, the approvals that authorise a version, and the rules by which an
// environment accepts a version.
//
// The allowlist is the root of authority for what an environment runs. Its
// content arrives through a repository GitLab may host, so everything here
// treats the bytes as hostile until the acceptance rules in accept.go hold.
package allowlist

import "time"

// SchemaV2 is the schema this version of writ understands: match.refs
// holds full ref names (refs/heads/…, refs/tags/…), and variables state
// their kind.
const SchemaV2 = "writ/v2"

// SchemaV1 is the retired first schema. Parse refuses it with a message
// that says what to change: its refs did not say whether a name was a
// branch or a tag, so GitLab's ref_type chose.
const SchemaV1 = "writ/v1"

// FileName is the allowlist's path at the root of an allowlist repository.
const FileName = "allowlist.yaml"

// Allowlist is a parsed, validated allowlist.yaml.
type Allowlist struct {
	// Schema is the schema identifier, always SchemaV2.
	Schema string
	// Repository is the identity of the allowlist repository. Approvals bind
	// it, and an environment refuses an allowlist whose Repository differs
	// from the identity in its own configuration (a fork or a copy).
	Repository string
	// Version increases strictly from one release to the next.
	Version int64
	// Expires is when environments stop trusting this version.
	Expires time.Time
	// Signers are the named signer sets for application source commits,
	// keyed by set name.
	Signers map[string]*SignerSet
	// People maps a person's name to the fingerprints of the keys they hold
	// (OpenPGP primary-key fingerprints in upper-case hex, SSH "SHA256:…"),
	// so that source approvals count a person once however many keys they
	// hold. A key listed under no person is a person of its own.
	People map[string]*Person
	// VariableSets are the named variable sets entries include, keyed by
	// set name (see VariableSet).
	VariableSets map[string]*VariableSet
	// Jobs are the job entries in file order. Entry names are unique.
	Jobs []*Entry
}

// SignerSet is a named set of keys that may sign application commits or tags.
type SignerSet struct {
	Name string
	// OpenPGP keys, each pinned by its full primary-key fingerprint.
	OpenPGP []OpenPGPKey
	// SSH lines in git's allowed_signers syntax.
	SSH []string
	// Sigstore public keys, which can approve application commits
	// (source.approvals) but sign no commit or tag.
	Sigstore []SigstoreKey
	Pos      Pos
}

// SigstoreKey is a PEM public key (ECDSA P-256 or Ed25519) kept in the
// allowlist repository.
type SigstoreKey struct {
	// File is the path of the PEM file, relative to the repository root.
	File string
	// PEM is the file's content, loaded by the parser through its
	// FileLoader.
	PEM []byte
	// Fingerprint is "sigstore:" and the hex SHA-256 of the DER public key
	// (SigstoreFingerprint).
	Fingerprint string
}

// Person is one entry of the allowlist's people: a name and the keys that
// are theirs.
type Person struct {
	Name string
	// Keys are key fingerprints, as Approval.Signer names them.
	Keys []string
	Pos  Pos
}

// PersonOf returns the name of the person holding the key with
// fingerprint fp, or fp itself when no person lists it: counting by
// PersonOf counts a person once however many keys they hold.
func (a *Allowlist) PersonOf(fp string) string {
	for _, p := range a.People {
		for _, k := range p.Keys {
			if k == fp {
				return "person " + p.Name
			}
		}
	}
	return "key " + fp
}

// OpenPGPKey pins an armored public key kept in the allowlist repository.
type OpenPGPKey struct {
	// Fingerprint is the full primary key fingerprint, upper-case hex, no spaces.
	Fingerprint string
	// File is the path of the armored key, relative to the repository root.
	File string
	// Armored is the file's content, loaded by the parser through its
	// FileLoader. The parser checks that it holds a key with Fingerprint.
	Armored []byte
}

// Entry is one allowlisted job.
type Entry struct {
	// Name identifies the entry; unique within the allowlist.
	Name       string
	Match      Match
	Definition Definition
	Source     Source
	Pos        Pos
}

// Match selects an entry for a job. Every field is compared exactly.
type Match struct {
	// Project is the GitLab project path, for example "group/app".
	Project string
	// Job is the job name as in .gitlab-ci.yml.
	Job string
	// Environments are writ environment names (the "environment" of an
	// environment's writ config) this entry applies to.
	Environments []string
	// Refs are the full names of the refs the job may run for, each
	// refs/heads/<branch> or refs/tags/<tag> (see SplitRef). The kind is
	// part of the name, so a tag never matches an entry for a branch of
	// the same name.
	Refs []string
}

// Ref kinds, as GitLab's git_info.ref_type names them.
const (
	RefBranch = "branch"
	RefTag    = "tag"
)

// Full-ref prefixes of the two kinds of ref an entry can admit.
const (
	BranchPrefix = "refs/heads/"
	TagPrefix    = "refs/tags/"
)

// Definition is the exact job definition that must match the payload and is
// what actually runs.
type Definition struct {
	Script      []string
	AfterScript []string
	// Image is an image reference pinned by digest ("name@sha256:…"), or empty
	// for none. Services are image references likewise pinned.
	Image    string
	Services []string
	// Variables are the entry's own job variables. They and the variables
	// of VariableSets are the only job variables that reach the job.
	Variables []Variable
	// VariableSets names the allowlist's variable sets the entry includes.
	VariableSets []string
	// Included are the variables of VariableSets, in order, as Parse
	// resolved them: the entry carries them so that a job needs nothing
	// else of the allowlist (see AllVariables).
	Included []Variable
	// Timeout bounds the script; zero means the executor's default.
	Timeout      time.Duration
	Artifacts    bool
	Uploads      *Uploads // if set, the only files writ uploads; GitLab's artifacts must equal them
	Cache        bool
	Dependencies bool
	// Network is the job's network in writ's sandbox: "host" (the host's
	// network), "none" (a private loopback only), or empty for "host".
	Network string
}

// Variable is a job variable the entry lets through, with either an exact
// pinned Value or a Pattern that must match the whole value.
type Variable struct {
	Name string
	// Exactly one of Value and Pattern is set (HasValue tells an empty pinned
	// value from an absent one).
	Value    string
	HasValue bool
	// Pattern is a Go regular expression, anchored with ^ and $ in the file.
	Pattern string
	// File: the variable is a file variable (GitLab's "file" type): the job
	// sees the path of a file holding the value. A job whose variable has
	// the other kind is refused, since the kind changes what the job sees.
	File bool
	// Raw: GitLab does not expand $NAME references in the value (the
	// variable's "expand: false", raw in the job payload). A job whose
	// variable says otherwise is refused, since the flag changes what the
	// job sees.
	Raw bool
	// Dangerous acknowledges a name that controls the loader, the shell,
	// git or a language runtime (see DangerousName). Without it such a
	// name is refused.
	Dangerous bool
}

// SourceMode is how an application commit must be signed.
type SourceMode string

const (
	// ModeCommit: the job's commit carries a valid signature by the entry's signers.
	ModeCommit SourceMode = "commit"
	// ModeTag: a signed annotated tag by the entry's signers, named as the
	// job's ref, points at the job's commit.
	ModeTag SourceMode = "tag"
	// ModeStrict: every commit since the last one admitted for this entry is
	// signed by the entry's signers.
	ModeStrict SourceMode = "strict"
)

// Source is where an entry's code comes from and how it must be signed.
type Source struct {
	// Repository is the URL writ fetches from, never GitLab's repo_url.
	Repository string
	// Signers names signer sets of the allowlist.
	Signers []string
	Mode    SourceMode
	// Signature says whether the job's commit must carry an author
	// signature (see SourceSignature).
	Signature SourceSignature
	// Pin, if set, is the only commit (full hex) the entry admits.
	Pin string
	// DescendsFrom, if set, is a commit every admitted commit descends from.
	DescendsFrom  string
	AllowRollback bool
	// Approvals, if set, requires signed approvals of the job's commit by
	// distinct people (see SourceApprovals), in addition to Mode.
	Approvals *SourceApprovals
	// Git says whether the checkout carries a .git (GitMode); Extra are
	// further verified repositories checked out into it (ExtraSource).
	Git   GitMode        `json:",omitempty"`
	Extra []*ExtraSource `json:",omitempty"`
}

// SourceApprovals is an entry's two-person rule: Threshold distinct people
// of the Signers sets must have approved the job's commit for the job's
// environment (see SourceStatement).
type SourceApprovals struct {
	// Signers names the signer sets whose keys may approve.
	Signers []string
	// Threshold is how many distinct people must approve, at least 1.
	Threshold int
	// AuthorCounts: the signer of the job's commit (or tag, in tag mode)
	// counts as one approving person when their key is in Signers.
	AuthorCounts bool
}

// Pos is a position in a file, 1-based.
type Pos struct {
	Line, Column int
}
