package companion

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"gitlab.com/writ-ci/writ/allowlist"
)

// editAllowlist returns data with the version set to version and each entry
// of put replacing the entry of the same name, or appended to jobs when there
// is none. It edits the text, not a re-encoding of it: comments, key order,
// quoting and every other entry stay byte for byte as they were, so the
// merge request's diff shows only what changed. (Comments inside a replaced
// entry are not kept.) The caller must re-parse the result and compare it
// with what was intended: this function only locates lines.
func editAllowlist(data []byte, put []*allowlist.Entry, version int64) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("read allowlist.yaml: %w", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("allowlist.yaml is not a mapping")
	}
	root := doc.Content[0]
	lines := strings.SplitAfter(string(data), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) > 0 && !strings.HasSuffix(lines[len(lines)-1], "\n") {
		lines[len(lines)-1] += "\n"
	}

	var versionNode, jobsKey, jobsNode *yaml.Node
	jobsEnd := len(lines) // 1-based line number of the last line that can belong to jobs
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch k.Value {
		case "version":
			versionNode = v
		case "jobs":
			jobsKey, jobsNode = k, v
			if i+2 < len(root.Content) {
				jobsEnd = root.Content[i+2].Line - 1
			}
		}
	}
	if versionNode == nil || versionNode.Kind != yaml.ScalarNode {
		return nil, errors.New("allowlist.yaml has no scalar version")
	}

	// The version: replace the digits in place.
	{
		ln := versionNode.Line - 1
		if ln < 0 || ln >= len(lines) {
			return nil, errors.New("allowlist.yaml: version position out of range")
		}
		off := runeOffset(lines[ln], versionNode.Column-1)
		if off < 0 {
			return nil, errors.New("allowlist.yaml: version position out of range")
		}
		rest := lines[ln][off:]
		if !strings.HasPrefix(rest, versionNode.Value) || (len(rest) > len(versionNode.Value) && isDigit(rest[len(versionNode.Value)])) {
			return nil, fmt.Errorf("allowlist.yaml line %d: write the version as a plain number to let writ update it", versionNode.Line)
		}
		lines[ln] = lines[ln][:off] + strconv.FormatInt(version, 10) + rest[len(versionNode.Value):]
	}

	type edit struct {
		from, to int // 1-based, inclusive; to == from-1 inserts before from
		text     string
	}
	var edits []edit
	byName := map[string]*allowlist.Entry{}
	for _, e := range put {
		byName[e.Name] = e
	}
	done := map[string]bool{}

	switch {
	case jobsNode == nil || isNullNode(jobsNode) || (jobsNode.Kind == yaml.SequenceNode && len(jobsNode.Content) == 0):
		// No entries yet: write "jobs:" with a block sequence.
		var b strings.Builder
		b.WriteString("jobs:\n")
		for i, e := range put {
			if i > 0 {
				b.WriteString("\n")
			}
			b.WriteString(entryText(e, "  "))
			done[e.Name] = true
		}
		if jobsKey == nil {
			edits = append(edits, edit{from: len(lines) + 1, to: len(lines), text: b.String()})
			break
		}
		if jobsKey.Column != 1 || !onlyValueOnLine(lines[jobsKey.Line-1], jobsNode) {
			return nil, fmt.Errorf("allowlist.yaml line %d: write the empty jobs as \"jobs: []\" on one line to let writ add entries", jobsKey.Line)
		}
		edits = append(edits, edit{from: jobsKey.Line, to: jobsKey.Line, text: b.String()})
	case jobsNode.Kind != yaml.SequenceNode || jobsNode.Style&yaml.FlowStyle != 0:
		return nil, fmt.Errorf("allowlist.yaml line %d: jobs must be a block list (\"- name: …\" items) for writ to edit it", jobsNode.Line)
	default:
		items := jobsNode.Content
		starts := make([]int, len(items))
		var indent string
		for i, it := range items {
			ln, ind, err := dashLine(lines, it)
			if err != nil {
				return nil, err
			}
			starts[i] = ln
			if i == 0 {
				indent = ind
			}
		}
		ends := make([]int, len(items))
		for i := range items {
			end := jobsEnd
			if i+1 < len(items) {
				end = starts[i+1] - 1
			}
			// Trailing blank and comment lines belong to what follows.
			for end > starts[i] && isBlankOrComment(lines[end-1]) {
				end--
			}
			ends[i] = end
		}
		for i, it := range items {
			name := entryName(it)
			e := byName[name]
			if e == nil || done[name] {
				continue
			}
			done[name] = true
			_, ind, _ := dashLine(lines, it)
			edits = append(edits, edit{from: starts[i], to: ends[i], text: entryText(e, ind)})
		}
		var add strings.Builder
		for _, e := range put {
			if !done[e.Name] {
				// A blank line between entries, as allowlist.Marshal writes them.
				add.WriteString("\n" + entryText(e, indent))
				done[e.Name] = true
			}
		}
		if add.Len() > 0 {
			last := ends[len(ends)-1]
			edits = append(edits, edit{from: last + 1, to: last, text: add.String()})
		}
	}

	sort.Slice(edits, func(i, j int) bool { return edits[i].from > edits[j].from })
	for _, e := range edits {
		if e.from < 1 || e.to > len(lines) || e.to < e.from-1 {
			return nil, errors.New("allowlist.yaml: internal error locating an entry")
		}
		repl := strings.SplitAfter(e.text, "\n")
		if repl[len(repl)-1] == "" {
			repl = repl[:len(repl)-1]
		}
		tail := append([]string(nil), lines[e.to:]...)
		lines = append(append(lines[:e.from-1], repl...), tail...)
	}
	return []byte(strings.Join(lines, "")), nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isNullNode(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// onlyValueOnLine reports whether a "jobs:" line holds nothing but the empty
// value (and perhaps a comment).
func onlyValueOnLine(line string, v *yaml.Node) bool {
	rest := strings.TrimSpace(strings.TrimPrefix(strings.TrimRight(line, "\n"), "jobs:"))
	if i := strings.Index(rest, "#"); i >= 0 {
		rest = strings.TrimSpace(rest[:i])
	}
	return rest == "" || rest == "[]" || (isNullNode(v) && (rest == "null" || rest == "~"))
}

func isBlankOrComment(line string) bool {
	t := strings.TrimSpace(line)
	return t == "" || strings.HasPrefix(t, "#")
}

// runeOffset converts a 0-based rune column to a byte offset in line, or -1.
func runeOffset(line string, col int) int {
	off := 0
	for i := 0; i < col; i++ {
		if off >= len(line) {
			return -1
		}
		_, size := utf8.DecodeRuneInString(line[off:])
		off += size
	}
	return off
}

// dashLine finds the line (1-based) holding the "-" that opens a sequence
// item, and that line's indentation.
func dashLine(lines []string, item *yaml.Node) (int, string, error) {
	for ln := item.Line; ln >= 1 && ln >= item.Line-3; ln-- {
		l := lines[ln-1]
		t := strings.TrimLeft(l, " ")
		ind := l[:len(l)-len(t)]
		if strings.HasPrefix(t, "-") && (len(t) == 1 || t[1] == ' ' || t[1] == '\n') && (ln < item.Line || len(ind) < item.Column-1) {
			return ln, ind, nil
		}
		if ln < item.Line && !isBlankOrComment(l) {
			break
		}
	}
	return 0, "", fmt.Errorf("allowlist.yaml line %d: cannot find the \"-\" of this entry; write entries as \"- name: …\" items", item.Line)
}

// entryName returns the name of a job entry node ("" if it has none).
func entryName(n *yaml.Node) string {
	if n.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "name" && n.Content[i+1].Kind == yaml.ScalarNode {
			return n.Content[i+1].Value
		}
	}
	return ""
}
