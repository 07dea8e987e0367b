package allowlist

import "os"

// Variable expansion as GitLab Runner does it.
//
// The runner expands "$NAME" and "${NAME}" in every job variable's value
// (except raw ones, GitLab's "expand: false") and in the image and service
// names, with Go's os.Expand and a lookup of its own (common/spec's
// Variables.ExpandValue). writ uses the same os.Expand, so that the two
// cannot read a reference differently, and the same lookup rules for the
// shell's special names. What a reference resolves to is writ's business,
// never GitLab's: the executor looks names up in the admitted variables and
// in the values writ derives, and the parser checks an entry's pinned
// values against the names the entry admits.
//
// The runner's expansion is one level deep: a variable's value is expanded
// against the unexpanded values of the others, so with A="$B" and B="$C",
// A becomes "$C". Image and service names are expanded against the
// expanded variables.

// Expand returns s with every reference replaced as GitLab Runner replaces
// it: "$$" is a literal "$"; the shell's special names ($*, $#, $@, $!, $?,
// $0 … $9) are empty; any other name is lookup's value for it. A "$" that
// starts no reference stays; "${" without its "}" and "${}" are removed.
func Expand(s string, lookup func(name string) string) string {
	return os.Expand(s, func(name string) string {
		if v, special := specialName(name); special {
			return v
		}
		return lookup(name)
	})
}

// ExpandMax is Expand for text from an untrusted source: ok is false, and
// the result incomplete, when the values looked up would add more than max
// bytes in all. One short reference to a long value, repeated, would
// otherwise grow without bound ($A$A$A… with A a megabyte).
func ExpandMax(s string, lookup func(name string) string, max int) (out string, ok bool) {
	added := 0
	ok = true
	out = Expand(s, func(name string) string {
		if !ok {
			return ""
		}
		v := lookup(name)
		if added += len(v); added > max {
			ok = false
			return ""
		}
		return v
	})
	return out, ok
}

// References returns the names s refers to, in order of first use, each
// once: the names Expand would look up. "$$" and the shell's special names
// are not references.
func References(s string) []string {
	var refs []string
	var seen map[string]bool
	Expand(s, func(name string) string {
		if !seen[name] {
			if seen == nil {
				seen = map[string]bool{}
			}
			seen[name] = true
			refs = append(refs, name)
		}
		return ""
	})
	return refs
}

// specialName reports whether the runner resolves name itself (its
// Variables.value), and to what.
func specialName(name string) (string, bool) {
	switch name {
	case "$":
		return "$", true
	case "*", "#", "@", "!", "?", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9":
		return "", true
	}
	return "", false
}
