package companion

import (
	"crypto/sha256"
	"encoding/hex"

	"gitlab.com/writ-ci/writ/allowlist"
)

// humanDiff is the allowlist package's human diff in Markdown.
func humanDiff(old, nw *allowlist.Allowlist) string {
	return allowlist.Diff(old, nw).Markdown()
}

// shortHash is 12 hex digits of SHA-256, for unique suffixes.
func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:12]
}
