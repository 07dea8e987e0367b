package allowlist

// The schema of the two-person rule: the top-level people and an entry's
// source.approvals.

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxApprovalThreshold bounds source.approvals.threshold: more people than
// this are never needed, and a larger number is a typo.
const MaxApprovalThreshold = 32

// people decodes the top-level people: a mapping of person name to the
// fingerprints of the keys they hold. Every key must be a key of a signer
// set (a typo would otherwise make one person count as two), and no key may
// belong to two people.
func (p *parser) people(n *yaml.Node, a *Allowlist) {
	if !p.mapping(n, "people", "a mapping of person names to key fingerprints") {
		return
	}
	known := setFingerprints(a)
	owner := map[string]*Person{}
	a.People = map[string]*Person{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !plainKey(k) || a.People[k.Value] != nil {
			continue
		}
		name := k.Value
		if !setName.MatchString(name) {
			p.errorf(k, "person name %q: use 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
		}
		person := &Person{Name: name, Pos: Pos{Line: k.Line, Column: k.Column}}
		a.People[name] = person
		keys, nodes, _ := p.strList(v, "person "+name, "key fingerprint", true)
		for j, fp := range keys {
			norm := fp
			if fingerprintRE.MatchString(fp) {
				norm = strings.ToUpper(fp)
			}
			switch first := owner[norm]; {
			case !known[norm]:
				p.errorf(nodes[j], "key %q of person %q is not a key of any signer set: write an OpenPGP primary-key fingerprint or an SSH SHA256:… fingerprint (ssh-keygen -lf KEY) of a key listed under signers", fp, name)
			case first == person:
				p.errorf(nodes[j], "key %s is listed twice for person %q: remove one", norm, name)
			case first != nil:
				p.errorf(nodes[j], "key %s is listed under person %q (line %d) and person %q: a key belongs to one person; remove it from one of them", norm, first.Name, first.Pos.Line, name)
			default:
				owner[norm] = person
				person.Keys = append(person.Keys, norm)
			}
		}
	}
}

// setFingerprints returns the fingerprint of every key of every signer set,
// as Approval.Signer names it.
func setFingerprints(a *Allowlist) map[string]bool {
	out := map[string]bool{}
	for _, s := range a.Signers {
		for _, k := range s.OpenPGP {
			out[k.Fingerprint] = true
		}
		for _, l := range s.SSH {
			if fp, msg := checkSSHLine(l); msg == "" {
				out[fp] = true
			}
		}
		for _, k := range s.Sigstore {
			out[k.Fingerprint] = true
		}
	}
	return out
}

// sigstoreKeys decodes a signer set's sigstore: a list of paths of PEM
// public keys in the repository, loaded like OpenPGP key files (so
// allowlist approvals cover them).
func (p *parser) sigstoreKeys(n *yaml.Node, set *SignerSet) {
	paths, nodes, ok := p.strList(n, "sigstore", "key file", false)
	if ok && len(nodes) == 0 {
		p.errorf(n, "sigstore is empty: list key files or remove the key")
	}
	seen := map[string]int{}
	for i, path := range paths {
		if msg := checkRepoPath(path); msg != "" {
			p.errorf(nodes[i], "sigstore key file %q %s", path, msg)
			continue
		}
		data, msg := p.loadKey(path)
		if msg != "" {
			p.errorf(nodes[i], "sigstore key file %q %s", path, msg)
			continue
		}
		fp, err := sigstorePublicKeyFingerprint(data)
		if err != nil {
			p.errorf(nodes[i], "sigstore key file %q: %v", path, err)
			continue
		}
		if line, dup := seen[fp]; dup {
			p.errorf(nodes[i], "sigstore key %s is listed twice in this set (first at line %d): remove one", fp, line)
			continue
		}
		seen[fp] = nodes[i].Line
		set.Sigstore = append(set.Sigstore, SigstoreKey{File: path, PEM: data, Fingerprint: fp})
	}
}

// parseSigstorePublicKey reads a PEM "PUBLIC KEY" (openssl pkey -pubout)
// of a kind Sigstore approvals can be verified with.
func parseSigstorePublicKey(data []byte) (crypto.PublicKey, error) {
	block, err := onePEMBlock(data)
	if err != nil {
		return nil, err
	}
	if block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("PEM block %q is not a \"PUBLIC KEY\" (openssl pkey -pubout)", block.Type)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	if _, err := sigstoreAlgorithm(pub); err != nil {
		return nil, err
	}
	return pub, nil
}

func sigstorePublicKeyFingerprint(data []byte) (string, error) {
	pub, err := parseSigstorePublicKey(data)
	if err != nil {
		return "", err
	}
	return SigstoreFingerprint(pub)
}

// sourceApprovals decodes source.approvals.
func (p *parser) sourceApprovals(n *yaml.Node, src *Source, sc *entryScope) {
	m, ok := p.keyed(n, "source.approvals", "signers", "threshold", "author_counts")
	if !ok {
		return
	}
	p.require(n, m, "source.approvals", "signers", "threshold")
	ap := &SourceApprovals{}
	src.Approvals = ap
	if v := m.get("signers"); v != nil {
		names, nodes, _ := p.strList(v, "approvals.signers", "signer set", true)
		for i, s := range names {
			if set, ok := sc.signer(s); !ok {
				p.errorf(nodes[i], "signer set %q is not defined: define it under signers at the top level%s", s, definedSets(sc))
			} else if set.foreignNamespace {
				// Its approvals could never verify, which would fail
				// only when a deploy is waiting.
				p.errorf(nodes[i], "signer set %q has an SSH key whose namespaces option does not include %s, so its approvals of commits cannot verify: add the namespace to the key's namespaces=\"…\"", s, SourceApprovalNamespace)
			}
		}
		ap.Signers = names
	}
	if v := m.get("threshold"); v != nil {
		ap.Threshold = p.threshold(v)
	}
	if v := m.get("author_counts"); v != nil {
		ap.AuthorCounts, _ = p.boolean(v, "author_counts")
	}
}

func (p *parser) threshold(n *yaml.Node) int {
	switch {
	case n.Kind == yaml.AliasNode || n.Style&yaml.TaggedStyle != 0:
		return 0
	case n.Kind != yaml.ScalarNode || n.Tag != "!!int" || !decimal.MatchString(n.Value) || len(n.Value) > 2:
		p.errorf(n, "threshold must be a whole number of people from 1 to %d, not %s", MaxApprovalThreshold, describe(n))
		return 0
	}
	var t int
	fmt.Sscan(n.Value, &t)
	if t < 1 || t > MaxApprovalThreshold {
		p.errorf(n, "threshold %d: write a whole number of people from 1 to %d", t, MaxApprovalThreshold)
		return 0
	}
	return t
}
