package allowlist

import (
	"bytes"
	"iter"
	"runtime"
	"sync"

	"go.yaml.in/yaml/v3"
)

// Parsing a large allowlist one entry at a time.
//
// The YAML library builds a tree of about 200 bytes per node before anything
// can be checked, so a whole 100,000-entry file costs more than a gigabyte.
// An allowlist written the usual way — a top-level "jobs:" key followed by a
// block list — is read instead as its top level (the file with the list's
// lines left blank and "jobs: []" in place of the key's line) and then each
// list item as a document of its own, with its nodes moved to their lines in
// the file. Memory then grows with the entries, not with the YAML tree, and
// the items decode on every core.
//
// The split is only a faster way to the same answer: it is used only when
// every piece parses cleanly, as exactly what the split expects, with no
// error or warning at all; anything else — a syntax error anywhere, an
// unusual layout, any message to report — is judged by parsing the whole
// file at once, so what a maintainer reads is always the whole-file parse's.
// FuzzSplitParse checks that a split parse that succeeds equals the
// whole-file parse.

// splitMinBytes is the file size below which the whole-file parse is cheap
// enough that splitting gains nothing.
const splitMinBytes = 256 << 10

// parseSplit parses data through its split. ok is false unless the split
// applies and the parse found nothing at all to report.
func parseSplit(file string, data []byte, load FileLoader) (*Allowlist, bool) {
	if len(data) > MaxFileBytes {
		return nil, false
	}
	s := splitJobs(data)
	if s == nil {
		return nil, false
	}
	p := &parser{file: file, data: data, load: load, split: s}
	a := p.run()
	errs, warns := p.finish()
	return a, a != nil && len(errs) == 0 && len(warns) == 0 && s.consumed && !s.failed
}

// jobsSplit is a file cut into its top level and its job items.
type jobsSplit struct {
	head     []byte // the file with the items blanked and "jobs: []" on jobsLine
	jobsLine int    // 1-based line of the "jobs:" key
	items    []span // each item's bytes in the file and its first line
	consumed bool   // the top level's jobs key reached the items
	failed   bool   // an item was not a clean single list item
}

type span struct {
	start, end int // byte offsets in the file
	line       int // 1-based line of start
}

// splitJobs cuts data at its jobs list, or returns nil when the file is not
// laid out the usual way.
func splitJobs(data []byte) *jobsSplit {
	// Characters the YAML library counts as line breaks, which a split on
	// '\n' would not (the text check refuses them too).
	for _, b := range [][]byte{{0xc2, 0x85}, {0xe2, 0x80, 0xa8}, {0xe2, 0x80, 0xa9}, {'\r'}} {
		if bytes.Contains(data, b) {
			return nil
		}
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	offs := make([]int, len(lines)+1)
	for i, l := range lines {
		offs[i+1] = offs[i] + len(l)
	}
	key := -1
	for i, l := range lines {
		if isJobsKeyLine(l) {
			if key >= 0 {
				return nil // two of them: let the whole parse say so
			}
			key = i
		}
	}
	if key < 0 {
		return nil
	}
	// The items' indentation is that of the first line after the key that
	// is not blank or a comment, which must start an item.
	indent, end := -1, len(lines)
	var items []span
	for i := key + 1; i < len(lines); i++ {
		t := bytes.TrimLeft(lines[i], " ")
		if len(bytes.TrimSpace(t)) == 0 || t[0] == '#' {
			continue
		}
		n := len(lines[i]) - len(t)
		isItem := t[0] == '-' && (len(t) == 1 || t[1] == ' ' || t[1] == '\n')
		if indent < 0 {
			if !isItem {
				return nil
			}
			indent = n
		}
		if n < indent || (n == indent && !isItem) {
			end = i
			break
		}
		if n == indent && isItem {
			items = append(items, span{start: offs[i], line: i + 1})
		}
	}
	if len(items) == 0 {
		return nil
	}
	for k := range items {
		if k+1 < len(items) {
			items[k].end = items[k+1].start
		} else {
			items[k].end = offs[end]
		}
	}
	head := make([]byte, 0, offs[key+1]+(end-key)+len(data)-offs[end]+8)
	head = append(head, data[:offs[key]]...)
	head = append(head, "jobs: []\n"...)
	for i := key + 1; i < end; i++ {
		head = append(head, '\n')
	}
	head = append(head, data[offs[end]:]...)
	return &jobsSplit{head: head, jobsLine: key + 1, items: items}
}

// isJobsKeyLine reports whether l is "jobs:" at the start of a line, with
// nothing after it but blanks and a comment.
func isJobsKeyLine(l []byte) bool {
	rest, ok := bytes.CutPrefix(l, []byte("jobs:"))
	if !ok {
		return false
	}
	rest = bytes.TrimLeft(rest, " ")
	return len(rest) == 0 || rest[0] == '\n' || rest[0] == '#'
}

// decoded is one item's tree, its nodes already on their lines in the file.
type decoded struct {
	node *yaml.Node
	ok   bool
}

// itemNodes decodes the items on every core, in order, keeping at most a
// bounded number decoded ahead of the consumer, so a huge list never holds
// more than a few trees at once.
func (s *jobsSplit) itemNodes(data []byte) iter.Seq[*yaml.Node] {
	return func(yield func(*yaml.Node) bool) {
		const ahead = 64
		slots := make([]chan decoded, len(s.items))
		for i := range slots {
			slots[i] = make(chan decoded, 1)
		}
		next, stop := make(chan int), make(chan struct{})
		tokens := make(chan struct{}, ahead)
		go func() {
			defer close(next)
			for i := range s.items {
				select {
				case tokens <- struct{}{}:
				case <-stop:
					return
				}
				select {
				case next <- i:
				case <-stop:
					return
				}
			}
		}()
		var wg sync.WaitGroup
		for range max(1, runtime.GOMAXPROCS(0)) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					slots[i] <- decodeItem(data, s.items[i])
				}
			}()
		}
		defer func() {
			close(stop)
			wg.Wait()
		}()
		for i := range s.items {
			d := <-slots[i]
			<-tokens
			if !d.ok {
				s.failed = true
				return
			}
			if !yield(d.node) {
				return
			}
		}
	}
}

// decodeItem parses one item alone and moves its nodes to their lines in
// the file. It must be exactly one list item and nothing else.
func decodeItem(data []byte, sp span) decoded {
	doc, second, err := decodeYAML(data[sp.start:sp.end])
	if err != nil || second != nil || doc == nil || len(doc.Content) != 1 {
		return decoded{}
	}
	seq := doc.Content[0]
	if seq.Kind != yaml.SequenceNode || len(seq.Content) != 1 || seq.Style&yaml.FlowStyle != 0 {
		return decoded{}
	}
	item := seq.Content[0]
	shiftLines(item, sp.line-1)
	return decoded{node: item, ok: true}
}

func shiftLines(n *yaml.Node, by int) {
	n.Line += by
	for _, c := range n.Content {
		shiftLines(c, by)
	}
}
