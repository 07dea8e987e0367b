package allowlist

import (
	"crypto/sha256"
	"encoding/json"
	"sort"
	"strings"

	"gitlab.com/writ-ci/writ/internal/gitsig"
)

// An entry's view of the top level.
//
// An entry's decoding reads the top level only through an entryScope, which
// holds no more of it than the checks of an entry need: of each signer set,
// three facts (signerView), and of each variable set, its variables. The
// scope records every name an entry reads; those are the entry's uses, and
// the digest of what the scope answered for each (view) is what acceptance
// compares before it takes an unchanged entry from the store in force
// (memo.go). So an entry is re-decoded exactly when something it read
// changed: rotating a key in a signer set every entry names changes no
// entry's view, while making that set Sigstore-only, or restricting one of
// its SSH keys to other namespaces, changes every view that names it.
//
// Anything added to the scope must be part of the view it answers, or the
// digest would miss a change an entry's decoding can see.

// entryScope is what an entry's decoding may read of the top level.
type entryScope struct {
	signers map[string]signerView
	varSets map[string]*VariableSet
	// read records the names read since take: signer sets by name,
	// variable sets as varSetUse+name.
	read map[string]bool
}

// signerView is what an entry's checks read of a signer set.
type signerView struct {
	// commitKeys: the set holds OpenPGP or SSH keys, which sign commits
	// and tags.
	commitKeys bool
	// sigstoreKeys: the set holds Sigstore keys, which approve only.
	sigstoreKeys bool
	// foreignNamespace: one of its SSH keys is restricted to namespaces
	// without SourceApprovalNamespace, so its approvals cannot verify.
	foreignNamespace bool
}

// newEntryScope returns the scope entries of a are decoded in.
func newEntryScope(a *Allowlist) *entryScope {
	sc := &entryScope{
		signers: make(map[string]signerView, len(a.Signers)),
		varSets: a.VariableSets,
		read:    map[string]bool{},
	}
	for name, set := range a.Signers {
		sc.signers[name] = viewOf(set)
	}
	return sc
}

func viewOf(set *SignerSet) signerView {
	v := signerView{
		commitKeys:   len(set.OpenPGP) > 0 || len(set.SSH) > 0,
		sigstoreKeys: len(set.Sigstore) > 0,
	}
	for _, l := range set.SSH {
		signers, err := gitsig.ParseAllowedSigners([]byte(l))
		if err != nil || len(signers) != 1 {
			continue // reported under signers
		}
		if ns := signers[0].Namespaces; len(ns) > 0 && !contains(ns, SourceApprovalNamespace) {
			v.foreignNamespace = true
			break
		}
	}
	return v
}

// signer returns the view of the signer set name, and whether it is
// defined.
func (sc *entryScope) signer(name string) (signerView, bool) {
	sc.read[name] = true
	v, ok := sc.signers[name]
	return v, ok
}

// varSet returns the variable set name, or nil.
func (sc *entryScope) varSet(name string) *VariableSet {
	sc.read[varSetUse+name] = true
	return sc.varSets[name]
}

// take returns the names read since the last take, sorted, and forgets
// them.
func (sc *entryScope) take() []string {
	if len(sc.read) == 0 {
		return nil
	}
	out := make([]string, 0, len(sc.read))
	for n := range sc.read {
		out = append(out, n)
	}
	sort.Strings(out)
	clear(sc.read)
	return out
}

// signerNames and varSetNames list the defined names, for the message
// that refuses an undefined one. They are not views: a refused file keeps
// no memo.
func (sc *entryScope) signerNames() []string { return sortedKeys(sc.signers) }
func (sc *entryScope) varSetNames() []string { return sortedKeys(sc.varSets) }

// views returns the digest of what the scope answers for every name it
// can be asked: each signer set's view and each variable set's variables.
// An undefined name has no digest.
func (sc *entryScope) views() map[string][sha256.Size]byte {
	out := make(map[string][sha256.Size]byte, len(sc.signers)+len(sc.varSets))
	for name, v := range sc.signers {
		out[name] = sha256.Sum256([]byte(strings.Join([]string{"signer", flag(v.commitKeys), flag(v.sigstoreKeys), flag(v.foreignNamespace)}, " ")))
	}
	for name, set := range sc.varSets {
		// A Variable is strings and booleans: its JSON is one
		// encoding of exactly its fields, and cannot fail.
		b, _ := json.Marshal(set.Variables)
		out[varSetUse+name] = sha256.Sum256(append([]byte("variables "), b...))
	}
	return out
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
