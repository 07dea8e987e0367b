package allowlist

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"gitlab.com/writ-ci/writ/internal/lazyre"
	suggestpkg "gitlab.com/writ-ci/writ/internal/suggest"

	"go.yaml.in/yaml/v3"
)

// FileLoader returns the content of a file of the allowlist repository, by
// slash-separated path relative to the repository root. Parse calls it only
// with paths it has checked stay inside the repository; the loader should
// still refuse anything else, and bound what it reads.
type FileLoader func(path string) ([]byte, error)

// Error is one problem found in an allowlist file.
type Error struct {
	File string
	// Line and Column are 1-based; Column counts characters. Zero means
	// unknown (a file-wide problem, or a YAML syntax error whose column the
	// YAML parser does not report).
	Line, Column int
	Msg          string
}

// Error formats e as file:line:column: message, leaving out what is unknown.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		if b.Len() > 0 {
			b.WriteByte(':')
		}
		b.WriteString(strconv.Itoa(e.Line))
		if e.Column > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Column))
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorList is every problem found in a file, sorted by position. Parse
// returns one as its error.
type ErrorList []*Error

// Error joins the errors, one a line.
func (l ErrorList) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Limits on an allowlist. They bound the memory and time a hostile file can
// cost, far above what a real allowlist needs.
const (
	// MaxFileBytes bounds the size of allowlist.yaml.
	MaxFileBytes = 64 << 20
	// MaxEntries bounds the number of job entries.
	MaxEntries = 100000
	// MaxStringBytes bounds every string value and key.
	MaxStringBytes = 64 << 10
	// MaxScriptLines bounds script and after_script, counting the lines
	// inside multi-line items.
	MaxScriptLines = 10000
	// MaxMatchPairs bounds the (environment, ref) combinations of all
	// entries together: the sum over entries of environments × refs.
	MaxMatchPairs = 1000000
	// MaxKeyFileBytes bounds one armored OpenPGP key file.
	MaxKeyFileBytes = 1 << 20
)

// Parse decodes and validates allowlist.yaml strictly. file names the file in
// error messages; load reads the OpenPGP key files the allowlist refers to
// (nil refuses every key file). On failure the error is an ErrorList holding
// every problem found, sorted by position, each saying what to do.
func Parse(file string, data []byte, load FileLoader) (*Allowlist, error) {
	a, _, err := Lint(file, data, load)
	return a, err
}

// Lint is Parse that also returns warnings: things that are valid but
// probably mistakes, such as a signer set no entry uses. Warnings are
// returned whether or not there are errors.
func Lint(file string, data []byte, load FileLoader) (*Allowlist, ErrorList, error) {
	if len(data) >= splitMinBytes {
		if a, ok := parseSplit(file, data, load); ok {
			return a, nil, nil
		}
		// Anything to report, or a layout the split did not expect: the
		// whole-file parse decides and words every message.
	}
	p := &parser{file: file, data: data, load: load}
	a := p.run()
	errs, warns := p.finish()
	if len(errs) > 0 {
		return nil, warns, errs
	}
	return a, warns, nil
}

// parser holds the state of one Parse.
type parser struct {
	file string
	data []byte
	load FileLoader

	errs, warns ErrorList
	dropped     int

	// cursor walks data forward to find the byte at a node's position.
	curLine, curCol, curOff int

	keys     map[string]keyFile
	keyBytes int64
	// keyChecks caches checkOpenPGPKey results by path and fingerprint,
	// so that many sets naming one large key file cost one check.
	keyChecks map[[2]string]string
	// patterns caches checkPattern results: large allowlists repeat the
	// same few patterns.
	patterns map[string]string
	// split, when set, has the top level parsed from its head and the job
	// items one at a time (see split.go).
	split *jobsSplit
	// usedVarSets records the variable sets entries include, for the
	// unused-set warning.
	usedVarSets map[string]bool
	// reuse, when set, supplies the items an earlier acceptance decoded
	// from the same bytes in the same context (see memo.go); memo records
	// what the next acceptance needs of each item (split parses only).
	reuse *reuseSource
	memo  []entryMemo
	// inJobs is true while the job entries are decoded, so that a file
	// an entry loads is told from one the top level loads.
	inJobs bool
}

func (p *parser) checkKey(path string, data []byte, fpr string) string {
	k := [2]string{path, fpr}
	msg, ok := p.keyChecks[k]
	if !ok {
		if p.keyChecks == nil {
			p.keyChecks = map[[2]string]string{}
		}
		msg = checkOpenPGPKey(data, fpr)
		p.keyChecks[k] = msg
	}
	return msg
}

func (p *parser) checkPattern(s string) string {
	msg, ok := p.patterns[s]
	if !ok {
		if p.patterns == nil {
			p.patterns = map[string]string{}
		}
		msg = checkPattern(s)
		p.patterns[s] = msg
	}
	return msg
}

type keyFile struct {
	data []byte
	err  error
}

func (p *parser) add(list *ErrorList, line, col int, format string, a ...any) {
	if len(p.errs)+len(p.warns) >= maxErrors {
		p.dropped++
		return
	}
	*list = append(*list, &Error{File: p.file, Line: line, Column: col, Msg: fmt.Sprintf(format, a...)})
}

// errorf reports an error at n's position.
func (p *parser) errorf(n *yaml.Node, format string, a ...any) {
	p.add(&p.errs, n.Line, n.Column, format, a...)
}

func (p *parser) finish() (ErrorList, ErrorList) {
	for _, l := range []ErrorList{p.errs, p.warns} {
		sort.SliceStable(l, func(i, j int) bool {
			if l[i].Line != l[j].Line {
				return l[i].Line < l[j].Line
			}
			return l[i].Column < l[j].Column
		})
	}
	if p.dropped > 0 {
		p.errs = append(p.errs, &Error{File: p.file, Msg: fmt.Sprintf("%d more problems not listed: fix the ones above first", p.dropped)})
	}
	return p.errs, p.warns
}

var yamlLineErr = lazyre.New(`^yaml: line ([0-9]+): (.*)$`)

// decodeYAML parses data into one document node. The YAML library panics on
// its own errors internally and recovers them; anything else it panics with
// is turned into an error too, so hostile input cannot crash the caller.
func decodeYAML(data []byte) (doc *yaml.Node, second *yaml.Node, err error) {
	defer func() {
		if r := recover(); r != nil {
			doc, second, err = nil, nil, fmt.Errorf("yaml: the YAML parser failed on this file (%v)", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var d yaml.Node
	if err := dec.Decode(&d); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, nil
		}
		return nil, nil, err
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
		return &d, nil, nil
	case err != nil:
		return &d, nil, err
	}
	return &d, &extra, nil
}

func (p *parser) run() *Allowlist {
	// Acceptance may run this on a copy of the file with unchanged job
	// items blanked (memo.go): a check added here that reads the whole
	// file at once must be added to wholeFileClean too.
	if len(p.data) > MaxFileBytes {
		p.add(&p.errs, 0, 0, "the file is %d bytes; the limit is %d (64 MiB): split the allowlist or remove unused entries", len(p.data), MaxFileBytes)
		return nil
	}
	if n := structureCount(p.data); n > maxStructure {
		p.add(&p.errs, 0, 0, "the file has %d YAML structure characters (line breaks and - : , ? [ {); the limit is %d: split the allowlist", n, maxStructure)
		return nil
	}
	textErrs, fatal := checkText(p.data)
	for _, e := range textErrs {
		p.add(&p.errs, e.Line, e.Column, "%s", e.Msg)
	}
	if fatal {
		// The YAML parser would count lines differently or stop at the
		// first of these; fix them first.
		return nil
	}
	p.checkDirectives()

	src := p.data
	if p.split != nil {
		src = p.split.head
	}
	doc, second, err := decodeYAML(src)
	if err != nil {
		p.yamlError(err)
		return nil
	}
	if doc == nil || len(doc.Content) == 0 || isNull(doc.Content[0]) {
		p.add(&p.errs, 1, 1, "the file holds no allowlist: start it with \"schema: %s\" followed by repository, version, expires, signers and jobs", SchemaV1)
		return nil
	}
	if second != nil {
		p.add(&p.errs, second.Line, second.Column, "a second YAML document: an allowlist is a single document; remove the \"---\" and what follows it")
	}
	root := doc.Content[0]
	p.structure(root, 0)
	if root.Kind != yaml.MappingNode {
		p.errorf(root, "the file must be a mapping of keys (schema, repository, version, expires, signers, jobs), not %s", describe(root))
		return nil
	}
	return p.decodeRoot(root)
}

// maxStructure bounds structureCount. The YAML library builds a tree of
// about 200 bytes per node before anything can be checked, and every node
// but the root follows one of the counted characters, so this bounds that
// memory (to about 1.6 GB) for any input. A real allowlist has one such
// character in about twelve bytes, so a real file of MaxFileBytes stays
// below the bound.
const maxStructure = 8000000

// structureCount counts the characters that can start a YAML node.
func structureCount(data []byte) int {
	n := 0
	// One vectorised count per character is several times faster than a
	// switch per byte over a large file.
	for _, c := range []byte("\n-:,?[{") {
		n += bytes.Count(data, []byte{c})
	}
	return n
}

// checkDirectives refuses %YAML and %TAG directives, which change how the
// rest of the file is read.
func (p *parser) checkDirectives() {
	line := 0
	for rest := p.data; len(rest) > 0; {
		line++
		l := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			l, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		t := bytes.TrimLeft(l, " ")
		switch {
		case len(t) == 0 || t[0] == '#':
			continue
		case l[0] == '%':
			p.add(&p.errs, line, 1, "YAML directive %q: directives are not allowed; remove the line", string(l))
			continue
		}
		return
	}
}

func (p *parser) yamlError(err error) {
	msg := err.Error()
	if m := yamlLineErr.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		// The YAML library reports the line of the construct it was
		// reading, which can be a line before or after the mistake, and
		// no column.
		p.add(&p.errs, line, 0, "YAML syntax error: %s (check the indentation and quoting around this line)", m[2])
		return
	}
	p.add(&p.errs, 0, 0, "YAML syntax error: %s", strings.TrimPrefix(msg, "yaml: "))
}

// runeAt returns the character at a node's 1-based line and column. Nodes
// are visited in document order, so a forward-moving cursor keeps the cost
// linear in the file size.
func (p *parser) runeAt(line, col int) rune {
	if line < p.curLine || (line == p.curLine && col < p.curCol) || p.curLine == 0 {
		p.curLine, p.curCol, p.curOff = 1, 1, 0
	}
	for p.curLine < line && p.curOff < len(p.data) {
		i := bytes.IndexByte(p.data[p.curOff:], '\n')
		if i < 0 {
			return 0
		}
		p.curOff += i + 1
		p.curLine, p.curCol = p.curLine+1, 1
	}
	for p.curCol < col && p.curOff < len(p.data) {
		r, size := utf8.DecodeRune(p.data[p.curOff:])
		if r == '\n' {
			return 0
		}
		p.curOff += size
		p.curCol++
	}
	if p.curLine != line || p.curCol != col || p.curOff >= len(p.data) {
		return 0
	}
	r, _ := utf8.DecodeRune(p.data[p.curOff:])
	return r
}

// tagged reports whether n carries an explicit tag. The YAML library marks
// most with TaggedStyle, but silently drops the non-specific tag "!", which
// a node can only start with when it is tagged.
func (p *parser) tagged(n *yaml.Node) bool {
	if n.Style&yaml.TaggedStyle != 0 {
		return true
	}
	if n.Kind == yaml.ScalarNode && n.Value == "" && n.Style == 0 {
		// An empty plain scalar has no text of its own at its position.
		return false
	}
	return p.runeAt(n.Line, n.Column) == '!'
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null" && n.Style&yaml.TaggedStyle == 0
}

// describe names what a node holds, for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	switch n.Tag {
	case "!!null":
		return "nothing (null)"
	case "!!str":
		return "text"
	case "!!int":
		return "a number"
	case "!!float":
		return "a number"
	case "!!bool":
		return "true/false"
	case "!!timestamp":
		return "a date"
	}
	return "a value tagged " + n.Tag
}

// structure walks the whole tree once and refuses YAML features an
// allowlist must not use: anchors, aliases, tags, merge keys, non-text keys
// and duplicate keys, at any depth, including inside keys that are unknown.
func (p *parser) structure(n *yaml.Node, depth int) {
	if depth > 64 {
		p.errorf(n, "nesting deeper than 64 levels: an allowlist never needs this")
		return
	}
	if n.Kind == yaml.AliasNode {
		p.errorf(n, "alias *%s: aliases are not allowed; write the value out in full", n.Value)
		return
	}
	if n.Anchor != "" {
		p.errorf(n, "anchor &%s: anchors are not allowed; remove it and write every value out in full", n.Anchor)
	}
	if p.tagged(n) {
		tag := n.Tag
		if n.Style&yaml.TaggedStyle == 0 {
			tag = "!"
		}
		p.errorf(n, "explicit tag %s: tags are not allowed; remove it (quote a value to make it text)", tag)
	}
	if n.Kind == yaml.MappingNode {
		seen := make(map[string]*yaml.Node, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			switch {
			case k.Kind == yaml.AliasNode:
				p.structure(k, depth+1)
			case k.Kind != yaml.ScalarNode:
				p.errorf(k, "a key must be plain text, not %s", describe(k))
				p.structure(k, depth+1)
			case k.Tag == "!!merge":
				p.errorf(k, "merge key <<: merge keys are not allowed; write the keys out in full")
			default:
				p.structure(k, depth+1)
				if k.Tag != "!!str" && k.Style&yaml.TaggedStyle == 0 {
					p.errorf(k, "key %s is read as %s, not text: quote it or rename it", k.Value, describe(k))
				}
				if len(k.Value) > MaxStringBytes {
					p.errorf(k, "key is %d bytes long; the limit is %d", len(k.Value), MaxStringBytes)
				} else if first, dup := seen[k.Value]; dup {
					p.errorf(k, "duplicate key %q (first at line %d): remove one of them", k.Value, first.Line)
				} else {
					seen[k.Value] = k
				}
			}
			p.structure(v, depth+1)
		}
		return
	}
	for _, c := range n.Content {
		p.structure(c, depth+1)
	}
}

// plainKey reports whether k is a usable key (the structure pass reported
// the others).
func plainKey(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.Tag == "!!str" && k.Style&yaml.TaggedStyle == 0
}

// keyed returns the values of mapping n by key. It reports n if it is not a
// mapping and every key not in allowed. The first of duplicate keys wins
// (the others were reported). A key whose value is null is reported here,
// at the key, and maps to nil, so that callers neither use it nor report it
// as missing.
func (p *parser) keyed(n *yaml.Node, what string, allowed ...string) (fields, bool) {
	switch {
	case n == nil || n.Kind == yaml.AliasNode:
		return nil, false
	case n.Kind != yaml.MappingNode:
		p.errorf(n, "%s must be a mapping of keys (%s), not %s", what, strings.Join(allowed, ", "), describe(n))
		return nil, false
	}
	m := make(fields, 0, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !plainKey(k) {
			continue
		}
		if m.has(k.Value) {
			continue
		}
		if !contains(allowed, k.Value) {
			msg := fmt.Sprintf("unknown key %q in %s: use one of %s", k.Value, what, strings.Join(allowed, ", "))
			if s := suggest(k.Value, allowed); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			p.errorf(k, "%s", msg)
			continue
		}
		if isNull(v) {
			p.errorf(k, "%s has no value: write one or remove the key", k.Value)
			m = append(m, field{k.Value, nil})
			continue
		}
		m = append(m, field{k.Value, v})
	}
	return m, true
}

// fields are the keys of a mapping that keyed let through, in file order.
// Mappings hold a handful of keys, so a slice beats a map.
type fields []field

type field struct {
	key string
	val *yaml.Node
}

// get returns the value of key, nil if it is absent or null.
func (f fields) get(key string) *yaml.Node {
	v, _ := f.lookup(key)
	return v
}

func (f fields) has(key string) bool {
	_, ok := f.lookup(key)
	return ok
}

func (f fields) lookup(key string) (*yaml.Node, bool) {
	for _, x := range f {
		if x.key == key {
			return x.val, true
		}
	}
	return nil, false
}

// mapping reports n if it is not a mapping.
func (p *parser) mapping(n *yaml.Node, what, want string) bool {
	switch {
	case n == nil || n.Kind == yaml.AliasNode:
		return false
	case n.Kind != yaml.MappingNode:
		p.errorf(n, "%s must be %s, not %s", what, want, describe(n))
		return false
	}
	return true
}

// require reports each key of keys missing from m.
func (p *parser) require(n *yaml.Node, m fields, what string, keys ...string) {
	for _, k := range keys {
		if !m.has(k) {
			p.errorf(n, "%s: missing required key %q; add it", what, k)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// suggest returns the allowed key closest to an unknown one, if it is close.
func suggest(key string, allowed []string) string {
	return suggestpkg.Closest(strings.ToLower(key), allowed, 3)
}

// str decodes a text scalar. Anything the YAML reader resolves to another
// type (a number, true/false, a date, null) is refused with a hint to quote
// it, so a value never silently changes type.
func (p *parser) str(n *yaml.Node, what string) (string, bool) {
	switch {
	case n == nil || n.Kind == yaml.AliasNode || n.Style&yaml.TaggedStyle != 0:
		// Reported already.
		return "", false
	case n.Kind != yaml.ScalarNode:
		p.errorf(n, "%s must be text, not %s", what, describe(n))
		return "", false
	case n.Tag == "!!null":
		p.errorf(n, "%s has no value: write one (an empty text is written \"\")", what)
		return "", false
	case n.Tag != "!!str":
		p.errorf(n, "%s: %s is read as %s, not text: quote it: %s", what, n.Value, describe(n), strconv.Quote(n.Value))
		return "", false
	case len(n.Value) > MaxStringBytes:
		p.errorf(n, "%s is %d bytes long; the limit is %d", what, len(n.Value), MaxStringBytes)
		return "", false
	case strings.IndexByte(n.Value, 0) >= 0:
		p.errorf(n, "%s contains a NUL character (\\0), which cannot reach a job: remove it", what)
		return "", false
	}
	return n.Value, true
}

// reqStr is str for a value that must not be empty.
func (p *parser) reqStr(n *yaml.Node, what string) (string, bool) {
	s, ok := p.str(n, what)
	if ok && s == "" {
		p.errorf(n, "%s is empty: write a value", what)
		return "", false
	}
	return s, ok
}

func (p *parser) boolean(n *yaml.Node, what string) (bool, bool) {
	switch {
	case n == nil || n.Kind == yaml.AliasNode || n.Style&yaml.TaggedStyle != 0:
		return false, false
	case n.Kind != yaml.ScalarNode || n.Tag != "!!bool":
		p.errorf(n, "%s must be true or false, not %s", what, describe(n))
		return false, false
	case n.Value == "true":
		return true, true
	case n.Value == "false":
		return false, true
	}
	p.errorf(n, "%s: write %s in lower case", what, strings.ToLower(n.Value))
	return false, false
}

// list decodes a sequence; null was reported by keyed.
func (p *parser) list(n *yaml.Node, what string) ([]*yaml.Node, bool) {
	switch {
	case n == nil || n.Kind == yaml.AliasNode:
		return nil, false
	case n.Kind != yaml.SequenceNode:
		p.errorf(n, "%s must be a list, not %s (a single item is written [item])", what, describe(n))
		return nil, false
	}
	return n.Content, true
}

// strList decodes a list of text items. nonEmpty refuses an empty list;
// every list refuses duplicate items.
func (p *parser) strList(n *yaml.Node, what, item string, nonEmpty bool) ([]string, []*yaml.Node, bool) {
	items, ok := p.list(n, what)
	if !ok {
		return nil, nil, false
	}
	if nonEmpty && len(items) == 0 {
		p.errorf(n, "%s is empty: list at least one %s", what, item)
		return nil, nil, false
	}
	var out []string
	var nodes []*yaml.Node
	seen := make(map[string]int, len(items))
	good := true
	for _, it := range items {
		s, ok := p.str(it, item)
		if !ok {
			good = false
			continue
		}
		if line, dup := seen[s]; dup {
			p.errorf(it, "%s %q is listed twice (first at line %d): remove one", item, s, line)
			good = false
			continue
		}
		seen[s] = it.Line
		out = append(out, s)
		nodes = append(nodes, it)
	}
	return out, nodes, good
}
