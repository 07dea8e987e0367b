package allowlist

import "sort"

// SourceApprover is one person who may approve under a source.approvals
// policy, as the policy counts them: a person of people with every key of
// theirs in the sets, or a key listed under no person.
type SourceApprover struct {
	// Person is as PersonOf names it: "person NAME" or "key FINGERPRINT".
	Person string
	// Keys are the fingerprints in the sets that count as this person.
	Keys []string
}

// SourceApprovers lists who may approve with the keys of the named signer
// sets, each person once, sorted by Person: what a reviewer reads to know
// whom a two-person rule admits.
func (a *Allowlist) SourceApprovers(sets []string) []SourceApprover {
	keys := map[string]map[string]bool{}
	add := func(fp string) {
		p := a.PersonOf(fp)
		if keys[p] == nil {
			keys[p] = map[string]bool{}
		}
		keys[p][fp] = true
	}
	for _, name := range sets {
		s := a.Signers[name]
		if s == nil {
			continue
		}
		for _, k := range s.OpenPGP {
			add(k.Fingerprint)
		}
		for _, l := range s.SSH {
			if fp, msg := checkSSHLine(l); msg == "" {
				add(fp)
			}
		}
		for _, k := range s.Sigstore {
			add(k.Fingerprint)
		}
	}
	out := make([]SourceApprover, 0, len(keys))
	for p, fps := range keys {
		ap := SourceApprover{Person: p}
		for fp := range fps {
			ap.Keys = append(ap.Keys, fp)
		}
		sort.Strings(ap.Keys)
		out = append(out, ap)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Person < out[j].Person })
	return out
}
