package gitrepo

import (
	"fmt"
	"strings"
)

// maxRefNameLen bounds ref names; git has no limit, file systems do.
const maxRefNameLen = 1024

// CheckHash checks that h is a full SHA-1 object name in lower-case hex, the
// only form writ accepts on input (no abbreviations, no upper case).
func CheckHash(h string) error {
	if len(h) != 40 {
		return fmt.Errorf("object name %q is not 40 hex digits; give the full commit hash", clip(h))
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("object name %q is not lower-case hex", clip(h))
		}
	}
	return nil
}

// CheckRefName checks that name is a full ref name ("refs/…") that git's
// check-ref-format accepts, without the pattern character '*'. Names from
// GitLab's job payload go through it before they reach a refspec.
func CheckRefName(name string) error {
	return checkRefName(name, false)
}

func checkRefName(name string, pattern bool) error {
	bad := func(why string) error {
		return fmt.Errorf("ref name %q: %s", clip(name), why)
	}
	if len(name) > maxRefNameLen {
		return bad("too long")
	}
	if !strings.HasPrefix(name, "refs/") {
		return bad(`must start with "refs/"`)
	}
	if strings.HasSuffix(name, "/") || strings.Contains(name, "//") {
		return bad("empty path component")
	}
	if strings.HasSuffix(name, ".") {
		return bad("ends with '.'")
	}
	if strings.Contains(name, "..") {
		return bad(`contains ".."`)
	}
	if strings.Contains(name, "@{") {
		return bad(`contains "@{"`)
	}
	stars := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c < 0x20 || c == 0x7f:
			return bad("contains a control character")
		case c == '*':
			stars++
		case strings.IndexByte(" ~^:?[\\", c) >= 0:
			return bad(fmt.Sprintf("contains %q", c))
		}
	}
	for _, comp := range strings.Split(name, "/") {
		if strings.HasPrefix(comp, ".") {
			return bad("a component starts with '.'")
		}
		if strings.HasSuffix(comp, ".lock") {
			return bad(`a component ends with ".lock"`)
		}
		if strings.Contains(comp, "*") && comp != "*" {
			return bad("'*' must be a whole component")
		}
	}
	if stars > 0 && (!pattern || stars > 1) {
		return bad("contains '*'")
	}
	return nil
}

// BranchRefspec returns the refspec writ uses to fetch branch (a short
// name such as "main") into its own namespace:
// "+refs/heads/<branch>:refs/writ/heads/<branch>".
func BranchRefspec(branch string) (string, error) {
	return shortRefspec("refs/heads/", "refs/writ/heads/", branch)
}

// TagRefspec is BranchRefspec for a tag:
// "+refs/tags/<tag>:refs/writ/tags/<tag>".
func TagRefspec(tag string) (string, error) {
	return shortRefspec("refs/tags/", "refs/writ/tags/", tag)
}

func shortRefspec(src, dst, short string) (string, error) {
	if short == "" || strings.HasPrefix(short, "refs/") {
		return "", fmt.Errorf("ref %q: give the short branch or tag name", clip(short))
	}
	if err := CheckRefName(src + short); err != nil {
		return "", err
	}
	return "+" + src + short + ":" + dst + short, nil
}

// checkRefspec validates one fetch refspec and returns it forced.
func checkRefspec(spec string) (string, error) {
	s := strings.TrimPrefix(spec, "+")
	src, dst, ok := strings.Cut(s, ":")
	if !ok || strings.Contains(dst, ":") {
		return "", fmt.Errorf("refspec %q: want <src>:<dst>", clip(spec))
	}
	if CheckHash(src) == nil {
		if err := CheckRefName(dst); err != nil {
			return "", fmt.Errorf("refspec %q: %w", clip(spec), err)
		}
		return "+" + s, nil
	}
	pattern := strings.Contains(src, "*")
	if err := checkRefName(src, true); err != nil {
		return "", fmt.Errorf("refspec %q: %w", clip(spec), err)
	}
	if err := checkRefName(dst, true); err != nil {
		return "", fmt.Errorf("refspec %q: %w", clip(spec), err)
	}
	if pattern != strings.Contains(dst, "*") {
		return "", fmt.Errorf("refspec %q: '*' must appear on both sides or neither", clip(spec))
	}
	return "+" + s, nil
}

// clip keeps hostile input short in error messages.
func clip(s string) string {
	const max = 200
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
