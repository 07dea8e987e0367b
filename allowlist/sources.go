package allowlist

import (
	"fmt"
	"path"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxExtraSources bounds an entry's source.extra: each is a fetch and a
// verification before the job starts.
const MaxExtraSources = 16

// GitMode says whether a job's checkout carries a git repository.
type GitMode string

const (
	// GitNone (the default, also written "none"): the checkout is the
	// verified tree alone, without a .git directory.
	GitNone GitMode = ""
	// GitReadOnly: the checkout, and every extra source's, carries a .git
	// directory writ builds from its verified mirror: the verified commit's
	// history only, no remote, no hooks, the verified commit checked out and
	// the verified ref's branch or tag pointing at it.
	GitReadOnly GitMode = "read-only"
)

// ExtraSource is a second repository an entry checks out into the build
// directory, with its own signer policy (source.extra).
type ExtraSource struct {
	// Path is where it is checked out, relative to the build directory:
	// clean, slash-separated, without a .git component.
	Path string
	// Ref is the full ref (refs/heads/… or refs/tags/…) writ fetches; the
	// checked-out commit is always on it.
	Ref string
	// Submodule: the commit is the gitlink at Path in the main source's
	// verified tree, exactly. Otherwise the commit is Policy.Pin, or, with
	// no pin, the tip of Ref.
	Submodule bool
	// Policy is how the commit must be signed, as for the main source:
	// repository, signers, mode, signature, pin, descends_from,
	// allow_rollback and approvals. git and extra do not apply to an
	// extra source.
	Policy Source
	Pos    Pos
}

// extraKeys are the keys of one source.extra item; sourcePolicyKeys those
// of them the main source's decoder reads.
var (
	extraKeys        = []string{"path", "ref", "submodule", "repository", "signers", "mode", "signature", "pin", "descends_from", "allow_rollback", "approvals"}
	sourcePolicyKeys = []string{"repository", "signers", "mode", "signature", "pin", "descends_from", "allow_rollback", "approvals"}
)

// sourceExtensions decodes source.git and source.extra from the source
// mapping's fields.
func (p *parser) sourceExtensions(m fields, src *Source, sc *entryScope) {
	if v := m.get("git"); v != nil {
		if s, ok := p.reqStr(v, "git"); ok {
			switch s {
			case "none":
				src.Git = GitNone
			case string(GitReadOnly):
				src.Git = GitReadOnly
			default:
				p.errorf(v, "git %q: use read-only (the checkout gets a .git built from writ's verified mirror) or none", s)
			}
		}
	}
	v := m.get("extra")
	if v == nil {
		return
	}
	items, ok := p.list(v, "source.extra")
	if !ok {
		return
	}
	if len(items) > MaxExtraSources {
		p.errorf(v, "source.extra lists %d repositories; the limit is %d", len(items), MaxExtraSources)
		return
	}
	for _, it := range items {
		if x := p.extraSource(it, sc); x != nil {
			src.Extra = append(src.Extra, x)
		}
	}
	p.extraPaths(v, src.Extra)
}

// extraSource decodes one item of source.extra. The policy keys go through
// the main source's decoder, so both are read by the same rules.
func (p *parser) extraSource(n *yaml.Node, sc *entryScope) *ExtraSource {
	m, ok := p.keyed(n, "a source.extra item", extraKeys...)
	if !ok {
		return nil
	}
	x := &ExtraSource{Pos: Pos{Line: n.Line, Column: n.Column}}
	// signers is required unless signature is none: the main source's
	// decoder says so, for an item as for the source.
	p.require(n, m, "source.extra item", "path", "ref", "repository", "mode")
	if v := m.get("path"); v != nil {
		if s, ok := p.reqStr(v, "path"); ok {
			if msg := checkSourcePath(s); msg != "" {
				p.errorf(v, "path %q %s", s, msg)
			}
			x.Path = s
		}
	}
	if v := m.get("ref"); v != nil {
		if s, ok := p.reqStr(v, "ref"); ok {
			if msg := CheckRef(s); msg != "" {
				p.errorf(v, "ref %q: %s", s, msg)
			}
			x.Ref = s
		}
	}
	if v := m.get("submodule"); v != nil {
		x.Submodule, _ = p.boolean(v, "submodule")
	}
	if m.has("repository") && m.has("mode") {
		policy := &yaml.Node{Kind: yaml.MappingNode, Tag: n.Tag, Line: n.Line, Column: n.Column}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if contains(sourcePolicyKeys, n.Content[i].Value) {
				policy.Content = append(policy.Content, n.Content[i], n.Content[i+1])
			}
		}
		p.source(policy, &x.Policy, sc)
	}
	if x.Policy.Mode == ModeTag && x.Ref != "" && !strings.HasPrefix(x.Ref, TagPrefix) {
		p.errorf(n, "source.extra %q: mode tag verifies a signed tag, and ref %q is a branch: name a tag (refs/tags/…), or use mode commit", x.Path, x.Ref)
	}
	return x
}

// extraPaths refuses two extra sources whose paths are equal or nested:
// one checkout would be written into the other.
func (p *parser) extraPaths(n *yaml.Node, xs []*ExtraSource) {
	for i, x := range xs {
		for _, y := range xs[:i] {
			if x.Path == "" || y.Path == "" {
				continue
			}
			if x.Path == y.Path || strings.HasPrefix(x.Path, y.Path+"/") || strings.HasPrefix(y.Path, x.Path+"/") {
				p.add(&p.errs, x.Pos.Line, x.Pos.Column, "source.extra path %q overlaps path %q (line %d): give each repository its own directory, neither inside the other", x.Path, y.Path, y.Pos.Line)
			}
		}
	}
}

// checkSourcePath checks where an extra source is checked out: a clean
// relative path inside the build directory that is not, and is not
// inside, a .git directory.
func checkSourcePath(s string) string {
	switch {
	case len(s) > 1024:
		return "is longer than 1024 bytes"
	case strings.HasPrefix(s, "/"):
		return "is absolute: write a path relative to the build directory, such as settings"
	case strings.ContainsRune(s, '\\'):
		return "contains a backslash: separate directories with /"
	case s == "." || s != path.Clean(s):
		return "is not a clean path: write it as " + path.Clean(s) + ", naming a directory below the build directory"
	case s == ".." || strings.HasPrefix(s, "../"):
		return "leaves the build directory (..)"
	}
	for _, c := range strings.Split(s, "/") {
		if strings.EqualFold(c, ".git") {
			return "names a .git directory: check the repository out elsewhere"
		}
		for _, r := range c {
			if r < ' ' || r == 0x7f {
				return "contains a control character"
			}
		}
	}
	return ""
}

// describeSourceExtensions is a one-line account of an entry's source.git
// and source.extra, for diffs and reviews.
func describeSourceExtensions(s Source) (git, extra string) {
	git = string(s.Git)
	if git == "" {
		git = "none"
	}
	if len(s.Extra) == 0 {
		return git, "none"
	}
	parts := make([]string, 0, len(s.Extra))
	for _, x := range s.Extra {
		parts = append(parts, DescribeExtraSource(x))
	}
	return git, strings.Join(parts, "; ")
}

// DescribeExtraSource says in one line what an extra source checks out
// and how it must be signed.
func DescribeExtraSource(x *ExtraSource) string {
	commit := "the tip of " + x.Ref
	switch {
	case x.Submodule && x.Policy.Pin != "":
		commit = "the submodule's gitlink, which must be " + x.Policy.Pin + ", on " + x.Ref
	case x.Submodule:
		commit = "the submodule's gitlink, on " + x.Ref
	case x.Policy.Pin != "":
		commit = x.Policy.Pin + " on " + x.Ref
	}
	s := fmt.Sprintf("%s: %s at %s, mode %s, signed by %s", x.Path, x.Policy.Repository, commit, x.Policy.Mode, strings.Join(x.Policy.Signers, ", "))
	if x.Policy.ApprovalsOnly() {
		s = fmt.Sprintf("%s: %s at %s, mode %s, no author signature (approvals only)", x.Path, x.Policy.Repository, commit, x.Policy.Mode)
	}
	if x.Policy.DescendsFrom != "" {
		s += ", descending from " + x.Policy.DescendsFrom
	}
	if x.Policy.AllowRollback {
		s += ", rollback allowed"
	}
	if x.Policy.Approvals != nil {
		s += ", approvals " + describeApprovals(x.Policy.Approvals)
	}
	return s
}

// sourceExtensions writes source.git and source.extra.
func (w *writer) sourceExtensions(s Source) {
	if s.Git != GitNone {
		w.kv(6, "git", string(s.Git))
	}
	if len(s.Extra) == 0 {
		return
	}
	w.line(6, "extra:")
	for _, x := range s.Extra {
		if x == nil {
			if w.err == nil {
				w.err = fmt.Errorf("nil source.extra item")
			}
			return
		}
		w.item(8, "- path:", x.Path)
		w.kv(10, "ref", x.Ref)
		if x.Submodule {
			w.line(10, "submodule: true")
		}
		pol := x.Policy
		w.kv(10, "repository", pol.Repository)
		if len(pol.Signers) > 0 || !pol.ApprovalsOnly() {
			w.list(10, "signers", pol.Signers, true)
		}
		w.kv(10, "mode", string(pol.Mode))
		if pol.Signature != SignatureRequired {
			w.kv(10, "signature", string(pol.Signature))
		}
		if pol.Pin != "" {
			w.kv(10, "pin", pol.Pin)
		}
		if pol.DescendsFrom != "" {
			w.kv(10, "descends_from", pol.DescendsFrom)
		}
		if pol.AllowRollback {
			w.line(10, "allow_rollback: true")
		}
		if ap := pol.Approvals; ap != nil {
			w.line(10, "approvals:")
			w.list(12, "signers", ap.Signers, true)
			w.line(12, fmt.Sprintf("threshold: %d", ap.Threshold))
			if ap.AuthorCounts {
				w.line(12, "author_counts: true")
			}
		}
	}
}

// extraSignerSets are the signer sets an entry's extra sources name, as
// signers or approvers, each once.
func extraSignerSets(s Source) []string {
	var out []string
	for _, x := range s.Extra {
		names := x.Policy.Signers
		if x.Policy.Approvals != nil {
			names = append(append([]string(nil), names...), x.Policy.Approvals.Signers...)
		}
		for _, n := range names {
			if !contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out
}

// extraSignerChanges reports the changed signer sets that an entry's extra
// sources use in both versions and its own source does not (those are
// reported already): their keys decide what the extra checkouts hold.
func extraSignerChanges(o, n *Entry, changed map[string]SignerSetDiff) []FieldChange {
	var ch []FieldChange
	old := extraSignerSets(o.Source)
	for _, s := range extraSignerSets(n.Source) {
		sd, ok := changed[s]
		if !ok || !contains(old, s) || contains(n.Source.Signers, s) || (n.Source.Approvals != nil && contains(n.Source.Approvals.Signers, s)) {
			continue
		}
		ch = append(ch, FieldChange{Field: "source.extra signer set " + s, Old: "", New: sd.summary()})
	}
	return ch
}
