package allowlist

import (
	"net/url"
	"path"
	"regexp"
	"regexp/syntax"
	"strings"
	"unicode"

	"gitlab.com/writ-ci/writ/internal/lazyre"
)

// The checks below return "" for a good value, or the end of a message
// ("is …: do …") that the caller prefixes with the field and the value.

// checkIdentity checks the allowlist's repository identity. It is compared
// byte for byte with the environment's configuration, so anything that could
// hide a difference is refused.
func checkIdentity(s string) string {
	if len(s) > 1024 {
		return "is longer than 1024 bytes"
	}
	for _, r := range s {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return "contains spaces or non-printing characters: write the identity exactly as in writ's configuration (allowlist.identity)"
		}
	}
	return ""
}

// checkRepoPath checks a path inside the allowlist repository: relative,
// slash-separated, clean, and never leaving the repository.
func checkRepoPath(p string) string {
	switch {
	case strings.HasPrefix(p, "/"):
		return "is absolute: write a path relative to the repository root, such as keys/alice.asc"
	case strings.ContainsRune(p, '\\'):
		return "contains a backslash: separate directories with /"
	case p == ".." || strings.HasPrefix(p, "../") || strings.Contains(p, "/../") || strings.HasSuffix(p, "/.."):
		return "leaves the repository (..): keep key files inside the allowlist repository"
	case p != path.Clean(p) || p == ".":
		return "is not a clean path: write it as " + path.Clean(p)
	case p == ".git" || strings.HasPrefix(p, ".git/"):
		return "is inside .git: commit the key file to the repository"
	}
	return ""
}

// checkRefName checks a branch or tag name by git's rules for ref names
// (git check-ref-format), as a short name such as main or v1.2.3.
func checkRefName(s string) string {
	switch {
	case len(s) > 1024:
		return "it is longer than 1024 bytes"
	case s == "@":
		return "\"@\" is not a ref name"
	case strings.HasPrefix(s, "-"):
		return "it must not start with '-'"
	case strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/") || strings.Contains(s, "//"):
		return "write it without leading, trailing or doubled '/'"
	case strings.HasSuffix(s, "."):
		return "it must not end with '.'"
	case strings.Contains(s, ".."):
		return "it must not contain \"..\""
	case strings.Contains(s, "@{"):
		return "it must not contain \"@{\""
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7F || strings.ContainsRune("~^:?*[\\", r) {
			return "it must not contain spaces, control characters or any of ~ ^ : ? * [ \\"
		}
	}
	for _, c := range strings.Split(s, "/") {
		if strings.HasPrefix(c, ".") || strings.HasSuffix(c, ".lock") {
			return "no part between slashes may start with '.' or end with \".lock\""
		}
	}
	return ""
}

// imageRE is a container image reference (registry/path[:tag]) that must end
// in a sha256 digest.
var imageRE = lazyre.New(`^` +
	// optional registry host[:port]/
	`(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]+)?/)?` +
	// path components
	`[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*` +
	// optional tag
	`(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?` +
	`@sha256:[0-9a-f]{64}$`)

func checkImage(s string) string {
	if len(s) > 1024 {
		return "is longer than 1024 bytes"
	}
	if !imageRE.MatchString(s) {
		if i := strings.LastIndex(s, "@sha256:"); i < 0 {
			return "is not pinned by digest: write it as name@sha256:<64 lower-case hex digits> (docker buildx imagetools inspect shows the digest)"
		}
		return "is not a valid image reference pinned by digest: write it as registry/path[:tag]@sha256:<64 lower-case hex digits>"
	}
	return ""
}

// checkPattern checks a variable pattern: it must begin with ^, end with an
// unescaped $, compile as a Go (RE2) regular expression, and — read as a
// syntax tree — be anchored at the start and end of the whole text, so that
// regexp.MatchString(pattern, v) only ever matches all of v. "^a|b$" and
// "(?m)^a$" begin and end with the anchors yet match part of a value; they
// are refused.
func checkPattern(p string) string {
	if !strings.HasPrefix(p, "^") {
		return "must begin with ^ so that it matches from the start of the value"
	}
	if !strings.HasSuffix(p, "$") || escapedEnd(p) {
		return "must end with an unescaped $ so that it matches to the end of the value"
	}
	re, err := syntax.Parse(p, syntax.Perl)
	if err != nil {
		return "does not compile: " + strings.TrimPrefix(err.Error(), "error parsing regexp: ") + ": fix the regular expression (Go RE2 syntax)"
	}
	if re.Op != syntax.OpConcat || len(re.Sub) < 2 ||
		re.Sub[0].Op != syntax.OpBeginText || re.Sub[len(re.Sub)-1].Op != syntax.OpEndText {
		return "does not match whole values only: ^ and $ must anchor all of it (group alternatives as ^(a|b)$; do not use the m flag)"
	}
	if _, err := regexp.Compile(p); err != nil {
		return "does not compile: " + err.Error()
	}
	return ""
}

// escapedEnd reports whether the final $ of p is escaped by an odd number
// of backslashes.
func escapedEnd(p string) bool {
	n := 0
	for i := len(p) - 2; i >= 0 && p[i] == '\\'; i-- {
		n++
	}
	return n%2 == 1
}

var scpLike = lazyre.New(`^([A-Za-z0-9_][A-Za-z0-9._-]*)@([A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9A-Fa-f:.]+\]):(.+)$`)

// checkRepoURL checks an application repository URL: https://, ssh://,
// file://, or scp-like user@host:path. Credentials, plain http and git://
// are refused, as is anything an ssh client could take for an option.
func checkRepoURL(s string) string {
	if len(s) > 2048 {
		return "is longer than 2048 bytes"
	}
	for _, r := range s {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return "contains spaces or non-printing characters: write the URL without them"
		}
	}
	if !strings.Contains(s, "://") {
		m := scpLike.FindStringSubmatch(s)
		if m == nil {
			return "is not a repository URL: write https://host/path.git, ssh://user@host/path.git, file:///path or user@host:path"
		}
		if strings.HasPrefix(m[3], "-") {
			return "has a path starting with '-': write the path out in full"
		}
		return ""
	}
	u, err := url.Parse(s)
	if err != nil {
		return "is not a valid URL: write https://host/path.git, ssh://user@host/path.git, file:///path or user@host:path"
	}
	if !strings.HasPrefix(s, u.Scheme+"://") {
		return "has an upper-case scheme: write it in lower case"
	}
	switch u.Scheme {
	case "https", "ssh":
		if u.Host == "" || strings.HasPrefix(u.Host, "-") {
			return "has no valid host: write " + u.Scheme + "://host/path"
		}
		if u.Path == "" || u.Path == "/" {
			return "has no repository path: write " + u.Scheme + "://host/group/project.git"
		}
		if u.User != nil {
			if _, hasPassword := u.User.Password(); hasPassword || u.Scheme == "https" {
				return "contains credentials: remove them (writ's configuration holds how to authenticate, never the allowlist)"
			}
		}
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return "names a host: write file:///absolute/path"
		}
		if !strings.HasPrefix(u.Path, "/") || u.Path == "/" {
			return "has no absolute path: write file:///absolute/path"
		}
	case "http":
		return "uses plain http: use https://"
	case "git":
		return "uses the unauthenticated git:// protocol: use https:// or ssh://"
	default:
		return "has scheme " + u.Scheme + ": use https://, ssh://, file:// or user@host:path"
	}
	if u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(s, "?") || strings.HasSuffix(s, "#") {
		return "has a query or fragment: remove it"
	}
	return ""
}
