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
// laid out the usual way. It walks the lines without keeping them: a list
// of every line of a large file would cost more than the file.
func splitJobs(data []byte) *jobsSplit {
	// Characters the YAML library counts as line breaks, which a split on
	// '\n' would not (the text check refuses them too).
	for _, b := range [][]byte{{0xc2, 0x85}, {0xe2, 0x80, 0xa8}, {0xe2, 0x80, 0xa9}, {'\r'}} {
		if bytes.Contains(data, b) {
			return nil
		}
	}
	// lineAt returns the line starting at off and where the next starts.
	lineAt := func(off int) ([]byte, int) {
		if i := bytes.IndexByte(data[off:], '\n'); i >= 0 {
			return data[off : off+i+1], off + i + 1
		}
		return data[off:], len(data)
	}
	keyOff, keyEnd, ok := jobsKey(data)
	if !ok {
		return nil
	}
	key := 1 + bytes.Count(data[:keyOff], []byte{'\n'})
	// The items' indentation is that of the first line after the key that
	// is not blank or a comment, which must start an item.
	indent, end, endLine := -1, len(data), 0
	var items []span
	n := key + 1
	for off := keyEnd; off < len(data); n++ {
		if indent >= 0 {
			// A line indented past the items' is inside one, whatever
			// it holds: skip it without reading more of it.
			sp := 0
			for sp <= indent && off+sp < len(data) && data[off+sp] == ' ' {
				sp++
			}
			if sp > indent {
				if i := bytes.IndexByte(data[off+sp:], '\n'); i >= 0 {
					off += sp + i + 1
				} else {
					off = len(data)
				}
				continue
			}
		}
		l, next := lineAt(off)
		t := bytes.TrimLeft(l, " ")
		if len(bytes.TrimSpace(t)) == 0 || t[0] == '#' {
			off = next
			continue
		}
		ind := len(l) - len(t)
		isItem := t[0] == '-' && (len(t) == 1 || t[1] == ' ' || t[1] == '\n')
		if indent < 0 {
			if !isItem {
				return nil
			}
			indent = ind
		}
		if ind < indent || (ind == indent && !isItem) {
			end, endLine = off, n
			break
		}
		if ind == indent && isItem {
			items = append(items, span{start: off, line: n})
		}
		off = next
	}
	if len(items) == 0 {
		return nil
	}
	if endLine == 0 {
		endLine = n // the list runs to the end of the file
	}
	for k := range items {
		if k+1 < len(items) {
			items[k].end = items[k+1].start
		} else {
			items[k].end = end
		}
	}
	// The head keeps every line: the list's lines become empty ones, so
	// that what follows the list keeps its line numbers. A list that runs
	// to the end of the file (the usual layout) is followed by nothing.
	blank := endLine - key - 1
	if end == len(data) {
		blank = 0
	}
	head := make([]byte, 0, keyOff+len("jobs: []\n")+blank+len(data)-end)
	head = append(head, data[:keyOff]...)
	head = append(head, "jobs: []\n"...)
	head = append(head, bytes.Repeat([]byte{'\n'}, blank)...)
	head = append(head, data[end:]...)
	return &jobsSplit{head: head, jobsLine: key, items: items}
}

// jobsKey returns where the one "jobs:" key line (isJobsKeyLine) starts
// and where the line after it starts; ok is false if there is none, or
// more than one.
func jobsKey(data []byte) (keyOff, keyEnd int, ok bool) {
	found := false
	for at := 0; at < len(data); {
		// Candidates are lines that start with "jobs:", found by a
		// vectorised search rather than by walking every line.
		i := bytes.Index(data[at:], []byte("jobs:"))
		if i < 0 {
			break
		}
		off := at + i
		at = off + 1
		if off > 0 && data[off-1] != '\n' {
			continue
		}
		end := len(data)
		if j := bytes.IndexByte(data[off:], '\n'); j >= 0 {
			end = off + j + 1
		}
		if !isJobsKeyLine(data[off:end]) {
			continue
		}
		if found {
			return 0, 0, false // two of them: let the whole parse say so
		}
		found, keyOff, keyEnd = true, off, end
	}
	return keyOff, keyEnd, found
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

// decoded is a run of items' trees, their nodes already on their lines in
// the file.
type decoded struct {
	nodes []*yaml.Node
	ok    bool
}

// A run is at most runItems consecutive items, or runBytes of them, decoded
// as one document: a decoder's set-up costs about as much as a small
// item, and a bounded run keeps the trees held at once few.
const (
	runItems = 32
	runBytes = 32 << 10
)

// itemNodes decodes the items on every core, in order, keeping at most a
// bounded number of runs decoded ahead of the consumer, so a huge list
// never holds more than a few trees at once. Items for which skip is true
// are not decoded: they are yielded with a nil node.
func (s *jobsSplit) itemNodes(data []byte, skip func(int) bool) iter.Seq2[int, *yaml.Node] {
	return func(yield func(int, *yaml.Node) bool) {
		const ahead = 8 // runs
		runs := s.runs(skip)
		slots := make([]chan decoded, len(runs))
		for k := range slots {
			slots[k] = make(chan decoded, 1)
		}
		next, stop := make(chan int), make(chan struct{})
		tokens := make(chan struct{}, ahead)
		go func() {
			defer close(next)
			for k := range runs {
				select {
				case tokens <- struct{}{}:
				case <-stop:
					return
				}
				select {
				case next <- k:
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
				for k := range next {
					slots[k] <- decodeRun(data, s.items[runs[k][0]:runs[k][1]])
				}
			}()
		}
		defer func() {
			close(stop)
			wg.Wait()
		}()
		k := 0
		for i := 0; i < len(s.items); {
			if k == len(runs) || runs[k][0] != i {
				if !yield(i, nil) {
					return
				}
				i++
				continue
			}
			d := <-slots[k]
			<-tokens
			k++
			if !d.ok {
				s.failed = true
				return
			}
			for _, n := range d.nodes {
				if !yield(i, n) {
					return
				}
				i++
			}
		}
	}
}

// runs returns the runs of consecutive items skip leaves to decode, each
// as [first, end) indices of s.items.
func (s *jobsSplit) runs(skip func(int) bool) [][2]int {
	var out [][2]int
	for i := 0; i < len(s.items); {
		if skip(i) {
			i++
			continue
		}
		first := i
		for i < len(s.items) && !skip(i) && i-first < runItems &&
			(i == first || s.items[i].end-s.items[first].start <= runBytes) {
			i++
		}
		out = append(out, [2]int{first, i})
	}
	return out
}

// decodeRun parses consecutive items as one document and moves their
// nodes to their lines in the file. It must be exactly one block list of
// as many items, each starting within its own item's lines, and nothing
// else: the list the whole file holds there.
func decodeRun(data []byte, items []span) decoded {
	first := items[0]
	doc, second, err := decodeYAML(data[first.start:items[len(items)-1].end])
	if err != nil || second != nil || doc == nil || len(doc.Content) != 1 {
		return decoded{}
	}
	seq := doc.Content[0]
	if seq.Kind != yaml.SequenceNode || len(seq.Content) != len(items) || seq.Style&yaml.FlowStyle != 0 {
		return decoded{}
	}
	for j, n := range seq.Content {
		line := first.line - 1 + n.Line
		if line < items[j].line || (j+1 < len(items) && line >= items[j+1].line) {
			return decoded{}
		}
		shiftLines(n, first.line-1)
	}
	return decoded{nodes: seq.Content, ok: true}
}

func shiftLines(n *yaml.Node, by int) {
	n.Line += by
	for _, c := range n.Content {
		shiftLines(c, by)
	}
}
