package companion

import (
	"strings"

	"gitlab.com/writ-ci/writ/allowlist"
)

// entryText renders an entry as a block sequence item of allowlist.yaml in
// the allowlist package's layout (allowlist.MarshalEntry), every line
// shifted so the item's "-" sits at indent. An entry that cannot be written
// (bytes that are not UTF-8) renders as a line that never parses, so the
// edit's verification refuses it; errors are not expected from values that
// came through JSON or YAML.
func entryText(e *allowlist.Entry, indent string) string {
	b, err := allowlist.MarshalEntry(e)
	if err != nil {
		return indent + "- !!error " + quoteLine(err.Error()) + "\n"
	}
	// MarshalEntry writes "  - name: …": re-indent from two spaces.
	lines := strings.SplitAfter(string(b), "\n")
	var out strings.Builder
	for _, l := range lines {
		switch {
		case l == "":
		case l == "\n":
			out.WriteString(l)
		case strings.HasPrefix(l, "  "):
			out.WriteString(indent + l[2:])
		default:
			out.WriteString(indent + l)
		}
	}
	return out.String()
}

func quoteLine(s string) string {
	return "\"" + strings.NewReplacer("\\", "\\\\", "\"", "\\\"", "\n", " ").Replace(s) + "\""
}
