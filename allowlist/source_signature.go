package allowlist

// source.signature: whether the job's commit must carry an author's
// signature, or may be unsigned when enough people approved it.
//
// GitLab makes the merge commits of a merge-request flow at merge time: they
// are unsigned, or signed by the forge's own key, which a compromised forge
// uses as it likes. An entry for such a branch cannot ask for an author
// signature, and trusting the forge's key would hand the signature to the
// attacker. With signature: none the entry instead requires approvals
// (source.approvals) of exactly the job's commit: the approvals are then
// what vouches for the commit, so the parser refuses signature: none
// without them, and a misconfiguration can never turn every check off.

import "go.yaml.in/yaml/v3"

// SourceSignature says whether an entry requires an author signature on
// the job's commit (or tag).
type SourceSignature string

const (
	// SignatureRequired (the default, also written "required"): the job's
	// commit or tag is signed by a key of source.signers, as Mode says.
	SignatureRequired SourceSignature = ""
	// SignatureNone: no author signature is required or checked; the
	// job's commit is admitted only with source.approvals' threshold of
	// approvals of exactly that commit. With mode strict, every
	// first-parent commit since the last admitted one must be approved
	// too (see ApprovedHistory). Mode tag is refused: a tag's signature is
	// all that mode checks.
	SignatureNone SourceSignature = "none"
)

// signatureRequiredWord is how the default is written when it is written.
const signatureRequiredWord = "required"

// RecommendedUnsignedThreshold is the smallest threshold lint accepts
// without a warning for an entry with signature: none: one approver alone
// would be one person deciding what runs.
const RecommendedUnsignedThreshold = 2

// ApprovalsOnly reports whether the approvals alone vouch for the job's
// commit (signature: none).
func (s *Source) ApprovalsOnly() bool { return s.Signature == SignatureNone }

// ApprovedHistory reports whether every first-parent commit since the last
// admitted one must be approved (signature: none with mode strict).
//
// Why first-parent: in a merge-request flow the protected branch's
// first-parent chain is its merge commits, each the result of a reviewed
// merge request, while the second parents bring in the merge request's
// own commits, which the approval of the merge covers. A commit that was
// pushed straight onto the branch (by a compromised forge) sits on that
// chain unapproved, and is refused, even though a later merge commit's
// tree contains it and its merge request's diff did not show it.
func (s *Source) ApprovedHistory() bool { return s.ApprovalsOnly() && s.Mode == ModeStrict }

// sourceSignature decodes source.signature (v, nil when absent) into src.
func (p *parser) sourceSignature(v *yaml.Node, src *Source) {
	if v == nil {
		return
	}
	s, ok := p.reqStr(v, "signature")
	if !ok {
		return
	}
	switch s {
	case signatureRequiredWord:
		src.Signature = SignatureRequired
	case string(SignatureNone):
		src.Signature = SignatureNone
	default:
		p.errorf(v, "signature %q: use required (the default: the commit is signed by source.signers) or none (approvals alone vouch for the commit)", s)
	}
}

// checkSourceSignature enforces what signature: none needs, once the whole
// source is decoded: approvals that vouch for the commit instead of a
// signature, no signer sets that would vouch for nothing, and a mode that
// checks commits.
func (p *parser) checkSourceSignature(n *yaml.Node, m fields, src *Source) {
	if !src.ApprovalsOnly() {
		p.require(n, m, "source", "signers")
		return
	}
	at := m.get("signature")
	if at == nil {
		at = n
	}
	switch {
	case !m.has("approvals"):
		p.errorf(at, "signature: none requires source.approvals: with no author signature, approvals of the job's commit are all that vouches for it; add approvals: {signers: [SET], threshold: %d}", RecommendedUnsignedThreshold)
	case src.Approvals != nil && src.Approvals.AuthorCounts:
		p.errorf(m.get("approvals"), "author_counts with signature: none: no author signature is checked, so no author can count; remove author_counts")
	case src.Approvals != nil && src.Approvals.Threshold > 0 && src.Approvals.Threshold < RecommendedUnsignedThreshold:
		p.add(&p.warns, at.Line, at.Column, "signature: none with approvals.threshold %d: one person alone decides what runs; %d or more is recommended",
			src.Approvals.Threshold, RecommendedUnsignedThreshold)
	}
	if v := m.get("signers"); v != nil {
		p.errorf(v, "signers with signature: none: no commit signature is checked, so these sets would vouch for nothing; remove signers (approvers are named under approvals.signers)")
	}
	if src.Mode == ModeTag {
		p.errorf(m.get("mode"), "mode tag with signature: none: tag mode checks only the tag's signature; use mode commit (the job's commit approved) or strict (every first-parent commit since the last admitted one approved)")
	}
}

// describeSignature is how review and diff name a source.signature.
func describeSignature(s SourceSignature) string {
	if s == SignatureNone {
		return "none (no author signature: approvals alone vouch for the commit)"
	}
	return signatureRequiredWord
}
