package companion

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"gitlab.com/writ-ci/writ/internal/lazyre"
)

// GitLab runs quick actions from notes and merge request descriptions, on
// creation and on every edit (app/services/notes/create_service.rb,
// update_service.rb): a line that starts with "/" and a command name — such
// as "/merge", "/approve" or "/close" — is executed as the author and removed
// from the stored text (lib/gitlab/quick_actions/extractor.rb, which skips
// only ``` code blocks, HTML blocks and >>> quotes, as its own regular
// expression recognises them). writ's notes quote text from the allowlist
// and from GitLab: a job script line "/merge" would act as writ's bot.
//
// inertQuickActions therefore makes sure no line of a note starts with "/",
// whatever GitLab's idea of a code block, without changing what the note
// shows:
//   - outside fenced code, a leading "/" becomes "\/", a Markdown escape
//     that renders as "/";
//   - inside fenced code, the line is indented by one space and the fence
//     is indented by one space too: CommonMark removes from each content
//     line as many leading spaces as the opening fence is indented, so the
//     code renders unchanged (CommonMark spec, "Fenced code blocks").
func inertQuickActions(md string) string {
	// GitLab deletes carriage returns before it scans (Extractor#perform_regex),
	// so "\r/merge" is a command line: delete them first, as it would.
	lines := strings.Split(strings.ReplaceAll(md, "\r", ""), "\n")
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		indent, run, ok := fenceOpen(l)
		if !ok {
			if strings.HasPrefix(strings.TrimLeft(l, " \t"), "/") {
				// Escape the first "/" wherever the line starts: GitLab
				// matches at column 0 only, but indentation differs between
				// Markdown dialects and costs nothing to cover.
				j := strings.Index(l, "/")
				lines[i] = l[:j] + `\` + l[j:]
			}
			continue
		}
		end := i + 1
		for end < len(lines) && !fenceClose(lines[end], run) {
			end++
		}
		slash := false
		for _, c := range lines[i+1 : end] {
			slash = slash || strings.HasPrefix(c, "/")
		}
		if slash {
			if indent == 0 {
				lines[i] = " " + l
				if end < len(lines) && !strings.HasPrefix(lines[end], "   ") {
					lines[end] = " " + lines[end]
				}
			}
			for k := i + 1; k < end; k++ {
				if strings.HasPrefix(lines[k], "/") {
					lines[k] = " " + lines[k]
				}
			}
		}
		i = end
	}
	return strings.Join(lines, "\n")
}

var fenceOpenRE = lazyre.New("^( {0,3})(`{3,}|~{3,})")

// fenceOpen reports whether l opens a fenced code block (CommonMark: up to
// three spaces, then three or more backticks or tildes; a backtick fence's
// info string has no backtick).
func fenceOpen(l string) (indent int, run string, ok bool) {
	m := fenceOpenRE.FindStringSubmatch(l)
	if m == nil {
		return 0, "", false
	}
	if m[2][0] == '`' && strings.Contains(l[len(m[0]):], "`") {
		return 0, "", false
	}
	return len(m[1]), m[2], true
}

// fenceClose reports whether l closes a block opened by run: the same
// character, at least as many, nothing else but spaces.
func fenceClose(l, run string) bool {
	t := strings.TrimLeft(l, " ")
	if len(l)-len(t) > 3 {
		return false
	}
	t = strings.TrimRight(t, " \t")
	return len(t) >= len(run) && strings.Trim(t, run[:1]) == ""
}

// The first line of every note and description writ writes carries the
// SHA-256 of the rest, as posted. GitLab rewrites what it stores (quick
// action lines removed, carriage returns deleted, trailing whitespace
// stripped, lib/gitlab/quick_actions/extractor.rb), so comparing stored
// text with fresh text would see a change every time; comparing the digest
// writ recorded with the digest of what it would post now does not.
var digestRE = lazyre.New(`<!-- sha256:([0-9a-f]{64}) -->`)

// withDigest prefixes body with marker and the digest of body.
func withDigest(marker, body string) string {
	sum := sha256.Sum256([]byte(body))
	return marker + "<!-- sha256:" + hex.EncodeToString(sum[:]) + " -->\n" + body
}

// sameDigest reports whether stored (a note GitLab returned) was written by
// withDigest from the same body as fresh.
func sameDigest(stored, fresh string) bool {
	first, _, _ := strings.Cut(stored, "\n")
	m := digestRE.FindStringSubmatch(first)
	f, _, _ := strings.Cut(fresh, "\n")
	n := digestRE.FindStringSubmatch(f)
	return m != nil && n != nil && m[1] == n[1]
}

// gitlabStored is the text GitLab stores for body when no quick action
// runs: carriage returns deleted, trailing whitespace stripped.
func gitlabStored(body string) string {
	return strings.TrimRight(strings.ReplaceAll(body, "\r", ""), " \t\n\v\f")
}
