package allowlist

import (
	"fmt"
	"strings"
)

// SplitRef returns the kind (RefBranch or RefTag) and the short name of a
// full ref refs/heads/<branch> or refs/tags/<tag>, and ok false for any
// other text. It does not check the short name: CheckRef does.
func SplitRef(full string) (kind, short string, ok bool) {
	switch {
	case strings.HasPrefix(full, BranchPrefix):
		return RefBranch, full[len(BranchPrefix):], true
	case strings.HasPrefix(full, TagPrefix):
		return RefTag, full[len(TagPrefix):], true
	}
	return "", "", false
}

// RefError says why a job's ref, as GitLab describes it, names no ref an
// entry could admit.
type RefError struct{ Msg string }

func (e *RefError) Error() string { return e.Msg }

// JobRef returns the full ref of a job from GitLab's git_info.ref and
// git_info.ref_type: refs/heads/<ref> for "branch", refs/tags/<ref> for
// "tag". Any other kind, and any name CheckRef refuses (revision syntax
// such as main^{} or main~0, or names git could read as another ref such
// as heads/main), is an error: writ admits only a ref it can name exactly.
func JobRef(refType, ref string) (string, error) {
	var full string
	switch refType {
	case RefBranch:
		full = BranchPrefix + ref
	case RefTag:
		full = TagPrefix + ref
	default:
		return "", &RefError{fmt.Sprintf("the job's ref type %q is neither branch nor tag: writ admits branch and tag pipelines only (not merge request or detached refs)", Visible(clipText(refType)))}
	}
	if msg := CheckRef(full); msg != "" {
		return "", &RefError{fmt.Sprintf("the job's %s %q is not a ref writ can name exactly: %s", refType, Visible(clipText(ref)), msg)}
	}
	return full, nil
}

// ambiguousFirst are first components of a short name that git's revision
// lookup (refs/%s, refs/tags/%s, refs/heads/%s, …) would resolve to a
// different ref than the one named: a branch "heads/main" reads as
// refs/heads/main, "tags/v1" as refs/tags/v1. A ref named so is refused,
// so that no tool that takes short names can be pointed at another ref.
var ambiguousFirst = map[string]bool{"refs": true, "heads": true, "tags": true, "remotes": true}

// ambiguousWhole are names git resolves specially before any ref.
var ambiguousWhole = map[string]bool{
	"HEAD": true, "FETCH_HEAD": true, "ORIG_HEAD": true, "MERGE_HEAD": true,
	"CHERRY_PICK_HEAD": true, "REVERT_HEAD": true, "REBASE_HEAD": true,
	"BISECT_HEAD": true, "AUTO_MERGE": true,
}

// CheckRef checks a full ref as an entry's match.refs item: refs/heads/ or
// refs/tags/ followed by a valid git ref name that is not revision syntax
// and not ambiguous. It returns "" for a good ref, or what is wrong and
// what to write instead.
func CheckRef(full string) string {
	kind, short, ok := SplitRef(full)
	if !ok {
		switch {
		case strings.HasPrefix(full, "refs/"):
			return "writ admits branches (refs/heads/…) and tags (refs/tags/…) only"
		case strings.HasPrefix(full, "heads/") || strings.HasPrefix(full, "tags/"):
			return "write the full ref: refs/" + full
		}
		return fmt.Sprintf("write the full ref: refs/heads/%s for a branch or refs/tags/%s for a tag", full, full)
	}
	if short == "" {
		return "the " + kind + " name is empty"
	}
	if msg := checkRefName(short); msg != "" {
		return msg + " (revision syntax such as main^{} or main~0 names a commit, not a ref)"
	}
	first, _, _ := strings.Cut(short, "/")
	if ambiguousFirst[first] || ambiguousWhole[short] {
		return fmt.Sprintf("git would read %q as another ref (%s): rename the %s", short, ambiguousAs(short), kind)
	}
	return ""
}

func ambiguousAs(short string) string {
	if ambiguousWhole[short] {
		return "a special revision name"
	}
	first, _, _ := strings.Cut(short, "/")
	if first == "refs" {
		return short
	}
	return "refs/" + short
}

// clipText bounds hostile text quoted in a message.
func clipText(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}
