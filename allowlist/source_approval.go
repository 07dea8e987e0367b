package allowlist

// Approvals of application commits: the two-person rule for what runs.
//
// An entry with source.approvals admits a job only when enough distinct
// people of the named signer sets approved exactly the job's commit of the
// entry's repository for the job's environment. An approval is a detached
// signature (SSH, OpenPGP, Sigstore: the same files and the same
// ApprovalVerifier as approvals of allowlist versions) over a
// SourceStatement. It is published in the source repository itself, one
// ref per approval:
//
//	refs/writ/approvals/<commit>/<label>  ->  a commit whose tree holds
//	    statement                          the statement's exact bytes
//	    signature.sshsig | signature.asc | signature.sigstore.json
//
// The statement is kept next to its signature so that an approval of
// something else is ignored with the reason (another commit, repository or
// environment) rather than as a bad signature; writ never trusts it: it
// parses it, checks that it is the canonical form of what it says, and
// verifies the signature over exactly those bytes.

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"gitlab.com/writ-ci/writ/internal/gitsig"
)

// SourceApprovalNamespace is the SSH signature namespace of approvals of
// application commits: a signature made for git, or for an allowlist
// approval, never counts as one.
const SourceApprovalNamespace = "writ-source@writ-ci.gitlab.com"

// SourceApprovalRefPrefix is the ref namespace approvals are published in:
// SourceApprovalRefPrefix + <commit> + "/" + <label>.
const SourceApprovalRefPrefix = "refs/writ/approvals/"

// MaxSourceApprovals is the most approval refs writ reads for one commit;
// more is a refusal, not a choice of which to read.
const MaxSourceApprovals = 64

// Names of the two files of an approval's tree.
const (
	SourceStatementFile = "statement"
	sourceSignatureBase = "signature"
)

const sourceStatementHeader = "writ source approval v1\n"

// SourceStatement is what an approver of an application commit signs.
type SourceStatement struct {
	// Repository is the entry's source.repository exactly as the allowlist
	// writes it (never GitLab's repo_url).
	Repository string
	// Commit is the full commit id, 40 lower-case hex digits.
	Commit string
	// Environments are the writ environments the commit is approved for.
	Environments []string
}

// Bytes returns the canonical statement:
//
//	writ source approval v1
//	repository: <repository>
//	commit: <commit>
//	environments: <environment> <environment> …
//
// environments sorted byte by byte, each once, separated by one space; LF
// line endings and a final LF. It refuses a repository that is not a clean
// one-line identity, a commit that is not 40 lower-case hex digits, and
// environment names that are not 1 to 64 letters, digits, '.', '_' or '-'.
func (s SourceStatement) Bytes() ([]byte, error) {
	if err := checkRepository(s.Repository); err != nil {
		return nil, err
	}
	if !isLowerHex(s.Commit, 40) {
		return nil, fmt.Errorf("approval statement: commit %q is not a full commit id of 40 lower-case hex digits", truncateHint(s.Commit))
	}
	if len(s.Environments) == 0 {
		return nil, errors.New("approval statement: no environment: approve the commit for at least one environment")
	}
	envs := slices.Clone(s.Environments)
	sort.Strings(envs)
	for i, e := range envs {
		if !envRE.MatchString(e) {
			return nil, fmt.Errorf("approval statement: environment %q: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", truncateHint(e))
		}
		if i > 0 && envs[i-1] == e {
			return nil, fmt.Errorf("approval statement: environment %q is given twice", e)
		}
	}
	var b bytes.Buffer
	b.WriteString(sourceStatementHeader)
	b.WriteString("repository: " + s.Repository + "\n")
	b.WriteString("commit: " + s.Commit + "\n")
	b.WriteString("environments: " + strings.Join(envs, " ") + "\n")
	return b.Bytes(), nil
}

// ParseSourceStatement reads a statement and refuses anything that is not
// byte for byte the canonical form of what it says.
func ParseSourceStatement(b []byte) (SourceStatement, error) {
	if len(b) > 4096 {
		return SourceStatement{}, errors.New("the statement is larger than 4096 bytes")
	}
	rest, ok := bytes.CutPrefix(b, []byte(sourceStatementHeader))
	if !ok {
		return SourceStatement{}, errors.New("the statement does not start with \"writ source approval v1\"")
	}
	lines := strings.Split(string(rest), "\n")
	if len(lines) != 4 || lines[3] != "" {
		return SourceStatement{}, errors.New("the statement does not have exactly three lines after its header, each ending in LF")
	}
	var s SourceStatement
	var envs string
	for i, f := range []struct {
		key string
		dst *string
	}{{"repository: ", &s.Repository}, {"commit: ", &s.Commit}, {"environments: ", &envs}} {
		v, ok := strings.CutPrefix(lines[i], f.key)
		if !ok {
			return SourceStatement{}, fmt.Errorf("line %d of the statement does not start with %q", i+2, f.key)
		}
		*f.dst = v
	}
	s.Environments = strings.Split(envs, " ")
	canon, err := s.Bytes()
	if err != nil {
		return SourceStatement{}, err
	}
	if !bytes.Equal(canon, b) {
		return SourceStatement{}, errors.New("the statement is not in canonical form (environments sorted, each once, one space apart)")
	}
	return s, nil
}

// SourceApprovalRef is the ref an approval of commit by label is published
// under.
func SourceApprovalRef(commit, label string) string {
	return SourceApprovalRefPrefix + commit + "/" + label
}

// SourceSignatureFile is the name, in an approval's tree, of a signature of
// kind (KindSSH, KindOpenPGP or KindSigstore).
func SourceSignatureFile(kind string) string {
	switch kind {
	case KindSSH:
		return sourceSignatureBase + sshSuffix
	case KindOpenPGP:
		return sourceSignatureBase + openpgpSuffix
	default:
		return sourceSignatureBase + sigstoreSuffix
	}
}

// SourceApproval is one published approval as read from its ref: the
// label (the ref's last component), the statement and the signature file.
type SourceApproval struct {
	Label string
	// Files are the blobs of the approval's tree, by name.
	Files map[string][]byte
}

// Why an approval is ignored.
const (
	IgnoredMalformed        = "malformed"
	IgnoredOtherRepository  = "other repository"
	IgnoredOtherCommit      = "other commit"
	IgnoredOtherEnvironment = "other environment"
	IgnoredKeyOutsideSets   = "key outside the approver sets"
	IgnoredBadSignature     = "bad signature"
	IgnoredDuplicatePerson  = "duplicate person"
)

// CountedApproval is an approval that counts.
type CountedApproval struct {
	// Label is the approval ref's label; "" for the commit's own signature
	// counted under author_counts.
	Label string
	Kind  string
	// Signer is the key's fingerprint (see Approval.Signer).
	Signer string
	// Person is who the key belongs to (Allowlist.PersonOf).
	Person string
}

// IgnoredApproval is an approval that does not count, and why.
type IgnoredApproval struct {
	Label  string
	Reason string // one of the Ignored… constants
	Detail string
}

// SourceTally is the outcome of counting a commit's approvals.
type SourceTally struct {
	Threshold int
	Valid     []CountedApproval
	Ignored   []IgnoredApproval
}

// Needed is how many more people must approve.
func (t *SourceTally) Needed() int { return max(0, t.Threshold-len(t.Valid)) }

// SourcePolicy is what approvals of one job must say and who counts.
type SourcePolicy struct {
	Repository  string // the entry's source.repository, as written
	Commit      string
	Environment string
	Threshold   int
	// Author, if set, is the commit (or tag) signer counted as one person
	// (author_counts, and their key is in the approver sets).
	Author *CountedApproval
	// Person names the holder of a key (Allowlist.PersonOf); nil counts
	// each key as a person.
	Person func(fingerprint string) string
}

// TallySource counts approvals under pol: each must be a well-formed
// statement of pol's repository, commit and an environment list holding
// pol's environment, signed by a key v trusts (v checks SSH signatures in
// SourceApprovalNamespace; see ForNamespace), by a person not counted yet.
// Approvals are judged in label order, so the outcome does not depend on
// the order the server listed them.
func (v *ApprovalVerifier) TallySource(pol SourcePolicy, approvals []SourceApproval, now time.Time) SourceTally {
	v = v.ForNamespace(SourceApprovalNamespace)
	person := pol.Person
	if person == nil {
		person = func(fp string) string { return "key " + fp }
	}
	t := SourceTally{Threshold: pol.Threshold}
	counted := map[string]string{} // person -> label that counted them
	if a := pol.Author; a != nil {
		a.Person = person(a.Signer)
		counted[a.Person] = "the commit's own signature"
		t.Valid = append(t.Valid, *a)
	}
	sorted := slices.Clone(approvals)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Label < sorted[j].Label })
	for _, ap := range sorted {
		a, ig := v.judgeSource(pol, ap, now)
		if ig != nil {
			t.Ignored = append(t.Ignored, *ig)
			continue
		}
		a.Person = person(a.Signer)
		if first, dup := counted[a.Person]; dup {
			t.Ignored = append(t.Ignored, IgnoredApproval{Label: ap.Label, Reason: IgnoredDuplicatePerson,
				Detail: fmt.Sprintf("%s already counted (%s); a person counts once however many keys they hold", a.Person, first)})
			continue
		}
		counted[a.Person] = "approval " + ap.Label
		t.Valid = append(t.Valid, a)
	}
	return t
}

// judgeSource checks one approval.
func (v *ApprovalVerifier) judgeSource(pol SourcePolicy, ap SourceApproval, now time.Time) (CountedApproval, *IgnoredApproval) {
	ignore := func(reason, format string, args ...any) (CountedApproval, *IgnoredApproval) {
		return CountedApproval{}, &IgnoredApproval{Label: ap.Label, Reason: reason, Detail: fmt.Sprintf(format, args...)}
	}
	if !ValidLabel(ap.Label) {
		return ignore(IgnoredMalformed, "label %q: use a letter or digit, then letters, digits, '.', '_' or '-' (at most 64)", truncateHint(ap.Label))
	}
	stmt, sigName, sig, err := splitSourceApproval(ap.Files)
	if err != nil {
		return ignore(IgnoredMalformed, "%v", err)
	}
	s, err := ParseSourceStatement(stmt)
	switch {
	case err != nil:
		return ignore(IgnoredMalformed, "%v", err)
	case s.Repository != pol.Repository:
		return ignore(IgnoredOtherRepository, "approves repository %q, not the entry's %q", truncateHint(s.Repository), pol.Repository)
	case s.Commit != pol.Commit:
		return ignore(IgnoredOtherCommit, "approves commit %s, not %s", s.Commit, pol.Commit)
	case !slices.Contains(s.Environments, pol.Environment):
		return ignore(IgnoredOtherEnvironment, "approves environments %s, not %s", strings.Join(s.Environments, ", "), pol.Environment)
	}
	// The file names are the ones Verify knows; the directory is the ref.
	dir := strings.TrimSuffix(SourceApprovalRef(pol.Commit, ap.Label), "/"+ap.Label)
	name := dir + "/" + ap.Label + strings.TrimPrefix(sigName, sourceSignatureBase)
	ok, errs := v.Verify(stmt, dir, map[string][]byte{name: sig}, now)
	if len(ok) == 1 {
		return CountedApproval{Label: ap.Label, Kind: ok[0].Kind, Signer: ok[0].Signer}, nil
	}
	var why error = errors.New("the signature does not verify")
	if len(errs) > 0 {
		why = errs[0]
		var ae *ApprovalError
		if errors.As(why, &ae) {
			why = ae.Err
		}
	}
	msg := why.Error()
	// The verifier's words are about allowlist approvals and the trust
	// root; say what they mean here.
	if i := strings.Index(msg, ": it approves another statement"); i >= 0 {
		msg = msg[:i] + ": the statement or the signature was changed after signing"
	}
	msg = strings.ReplaceAll(msg, " (trust.ssh_allowed_signers)", "")
	if strings.Contains(msg, "not among the trusted keys") || strings.Contains(msg, "not signed by a trusted key") ||
		strings.Contains(msg, "keys are trusted") {
		return ignore(IgnoredKeyOutsideSets, "%s (only keys of the entry's source.approvals.signers count)", msg)
	}
	return ignore(IgnoredBadSignature, "%s", msg)
}

// splitSourceApproval finds the statement and the one signature in an
// approval's tree.
func splitSourceApproval(files map[string][]byte) (stmt []byte, sigName string, sig []byte, err error) {
	if len(files) != 2 {
		return nil, "", nil, fmt.Errorf("the approval's tree holds %d files, not exactly %s and one signature file", len(files), SourceStatementFile)
	}
	stmt, ok := files[SourceStatementFile]
	if !ok {
		return nil, "", nil, fmt.Errorf("the approval's tree has no %s file", SourceStatementFile)
	}
	for name, data := range files {
		if name == SourceStatementFile {
			continue
		}
		for _, k := range []string{KindSSH, KindOpenPGP, KindSigstore} {
			if name == SourceSignatureFile(k) {
				return stmt, name, data, nil
			}
		}
		return nil, "", nil, fmt.Errorf("the approval's tree holds %q; a signature file is named %s, %s or %s",
			truncateHint(name), SourceSignatureFile(KindSSH), SourceSignatureFile(KindOpenPGP), SourceSignatureFile(KindSigstore))
	}
	return nil, "", nil, errors.New("unreachable")
}

// SetKeys builds the OpenPGP and SSH keys of the named signer sets.
func (a *Allowlist) SetKeys(sets []string) (*gitsig.Keys, error) {
	keys, _, err := a.setKeys(sets)
	if err == nil && keys == nil {
		err = errors.New("the signer sets hold no OpenPGP or SSH key")
	}
	return keys, err
}

// setKeys returns the OpenPGP and SSH keys (nil when there are none) and
// the Sigstore keys of the named signer sets.
func (a *Allowlist) setKeys(sets []string) (*gitsig.Keys, []crypto.PublicKey, error) {
	var armored [][]byte
	var lines []string
	var sigstore []crypto.PublicKey
	for _, name := range sets {
		set := a.Signers[name]
		if set == nil {
			return nil, nil, fmt.Errorf("signer set %q is not defined in the allowlist", name)
		}
		for _, k := range set.OpenPGP {
			armored = append(armored, k.Armored)
		}
		lines = append(lines, set.SSH...)
		for _, k := range set.Sigstore {
			pub, err := parseSigstorePublicKey(k.PEM)
			if err != nil {
				return nil, nil, fmt.Errorf("sigstore key file %s: %w", k.File, err)
			}
			sigstore = append(sigstore, pub)
		}
	}
	var ssh []gitsig.AllowedSigner
	if len(lines) > 0 {
		var err error
		if ssh, err = gitsig.ParseAllowedSigners([]byte(strings.Join(lines, "\n") + "\n")); err != nil {
			return nil, nil, err
		}
	}
	if len(armored) == 0 && len(ssh) == 0 {
		return nil, sigstore, nil
	}
	keys, err := gitsig.NewKeys(armored, ssh)
	return keys, sigstore, err
}

// TallySourceApprovals counts the approvals of commit for environment env
// under entry e's source.approvals (which must be set). author is the
// verified signer of the commit (or tag), counted as one person when the
// entry's author_counts is true and the key is in the approver sets; nil
// when there is none.
func (a *Allowlist) TallySourceApprovals(e *Entry, commit, env string, author *gitsig.Signer, approvals []SourceApproval, now time.Time) (SourceTally, error) {
	rule := e.Source.Approvals
	if rule == nil {
		return SourceTally{}, fmt.Errorf("entry %q requires no approvals", e.Name)
	}
	keys, sigstore, err := a.setKeys(rule.Signers)
	if err == nil && keys == nil && len(sigstore) == 0 {
		err = errors.New("the signer sets hold no key")
	}
	if err != nil {
		return SourceTally{}, fmt.Errorf("the approver sets of entry %q: %w", e.Name, err)
	}
	v, err := NewApprovalVerifier(keys, sigstore)
	if err != nil {
		return SourceTally{}, err
	}
	pol := SourcePolicy{Repository: e.Source.Repository, Commit: commit, Environment: env,
		Threshold: rule.Threshold, Person: a.PersonOf}
	if author != nil && rule.AuthorCounts && keys != nil && slices.Contains(keys.Fingerprints(), author.Fingerprint) {
		pol.Author = &CountedApproval{Kind: author.Kind, Signer: author.Fingerprint}
	}
	return v.TallySource(pol, approvals, now), nil
}
