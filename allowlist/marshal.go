package allowlist

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Marshal renders a as allowlist.yaml text in the documented layout:
// signer sets sorted by name, entries in order, optional fields only when
// set. It writes what a holds, valid or not, so that Parse can say what is
// wrong with it; Parse(Marshal(a)) equals a for an a that Parse returned.
// Armored key content is not written: it lives in the key files.
func Marshal(a *Allowlist) ([]byte, error) {
	if a == nil {
		return nil, errors.New("marshal allowlist: nil allowlist")
	}
	w := &writer{}
	schema := a.Schema
	if schema == "" {
		schema = SchemaV2
	}
	w.kv(0, "schema", schema)
	w.kv(0, "repository", a.Repository)
	w.line(0, "version: "+strconv.FormatInt(a.Version, 10))
	w.line(0, "expires: "+a.Expires.UTC().Format(time.RFC3339Nano))
	if len(a.Signers) > 0 {
		w.line(0, "")
		w.line(0, "signers:")
		names := make([]string, 0, len(a.Signers))
		for n := range a.Signers {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			w.signerSet(n, a.Signers[n])
		}
	}
	if len(a.People) > 0 {
		w.line(0, "")
		w.line(0, "people:")
		for _, n := range sortedKeys(a.People) {
			w.list(2, n, a.People[n].Keys, false)
		}
	}
	if len(a.VariableSets) > 0 {
		w.line(0, "")
		w.line(0, "variable_sets:")
		for _, n := range sortedKeys(a.VariableSets) {
			w.variableSet(n, a.VariableSets[n])
		}
	}
	w.line(0, "")
	if len(a.Jobs) == 0 {
		w.line(0, "jobs: []")
	} else {
		w.line(0, "jobs:")
		for i, e := range a.Jobs {
			if i > 0 {
				w.line(0, "")
			}
			w.entry(e)
		}
	}
	if w.err != nil {
		return nil, fmt.Errorf("marshal allowlist: %w", w.err)
	}
	return []byte(w.b.String()), nil
}

// MarshalEntry renders one entry as a YAML list item indented for the
// jobs list of allowlist.yaml ("  - name: …"): appended under "jobs:", it
// is what Parse reads back as e. Like Marshal it writes what e holds, so
// an incomplete entry (say, without signers) comes out with the empty
// value Parse will ask to fill in.
func MarshalEntry(e *Entry) ([]byte, error) {
	w := &writer{}
	w.entry(e)
	if w.err != nil {
		return nil, fmt.Errorf("marshal entry: %w", w.err)
	}
	return []byte(w.b.String()), nil
}

type writer struct {
	b   strings.Builder
	err error
}

func (w *writer) line(indent int, s string) {
	if s == "" {
		w.b.WriteByte('\n')
		return
	}
	w.b.WriteString(strings.Repeat(" ", indent))
	w.b.WriteString(s)
	w.b.WriteByte('\n')
}

// kv writes "key: value" with value quoted as needed; a multi-line value
// becomes a literal block indented under the key.
func (w *writer) kv(indent int, key, value string) {
	w.item(indent, w.key(key)+":", value)
}

// item writes prefix followed by value ("key:" or "-"), choosing the
// scalar style for value.
func (w *writer) item(indent int, prefix, value string) {
	if !utf8.ValidString(value) {
		if w.err == nil {
			w.err = fmt.Errorf("%s %s holds bytes that are not UTF-8; YAML cannot carry them", strings.TrimSuffix(prefix, ":"), strconv.Quote(value))
		}
		return
	}
	if lines, chomp, ok := literalLines(value); ok {
		// The block must be indented more than the key it belongs to:
		// in "- key: |" the key sits two columns right of the dash.
		content := indent + 2
		if strings.HasPrefix(prefix, "- ") {
			content += 2
		}
		w.line(indent, prefix+" |"+chomp)
		for _, l := range lines {
			if l == "" {
				w.line(0, "")
			} else {
				w.line(content, l)
			}
		}
		return
	}
	w.line(indent, prefix+" "+quote(value, false))
}

func (w *writer) key(k string) string {
	if !utf8.ValidString(k) {
		if w.err == nil {
			w.err = fmt.Errorf("key %s holds bytes that are not UTF-8", strconv.Quote(k))
		}
		return `""`
	}
	return quote(k, false)
}

// list writes key: [a, b] when every item can be written plain in a flow
// list, else a block list.
func (w *writer) list(indent int, key string, items []string, flowOK bool) {
	if len(items) == 0 {
		w.line(indent, w.key(key)+": []")
		return
	}
	if flowOK {
		flow := true
		for _, it := range items {
			if !plainOK(it, true) {
				flow = false
				break
			}
		}
		if flow {
			w.line(indent, w.key(key)+": ["+strings.Join(items, ", ")+"]")
			return
		}
	}
	w.line(indent, w.key(key)+":")
	for _, it := range items {
		w.item(indent+2, "-", it)
	}
}

func (w *writer) signerSet(name string, s *SignerSet) {
	w.line(2, w.key(name)+":")
	if s == nil || (len(s.OpenPGP) == 0 && len(s.SSH) == 0 && len(s.Sigstore) == 0) {
		w.line(4, "ssh: []")
		return
	}
	if len(s.OpenPGP) > 0 {
		w.line(4, "openpgp:")
		for _, k := range s.OpenPGP {
			w.item(6, "- fingerprint:", k.Fingerprint)
			w.kv(8, "key", k.File)
		}
	}
	if len(s.SSH) > 0 {
		w.list(4, "ssh", s.SSH, false)
	}
	if len(s.Sigstore) > 0 {
		files := make([]string, len(s.Sigstore))
		for i, k := range s.Sigstore {
			files[i] = k.File
		}
		w.list(4, "sigstore", files, false)
	}
}

func (w *writer) entry(e *Entry) {
	if e == nil {
		if w.err == nil {
			w.err = errors.New("nil entry")
		}
		return
	}
	w.item(2, "- name:", e.Name)
	w.line(4, "match:")
	w.kv(6, "project", e.Match.Project)
	w.kv(6, "job", e.Match.Job)
	w.list(6, "environments", e.Match.Environments, true)
	w.list(6, "refs", e.Match.Refs, true)

	d := e.Definition
	w.line(4, "definition:")
	if d.Image != "" {
		w.kv(6, "image", d.Image)
	}
	if len(d.Services) > 0 {
		w.list(6, "services", d.Services, false)
	}
	w.list(6, "script", d.Script, false)
	if len(d.AfterScript) > 0 {
		w.list(6, "after_script", d.AfterScript, false)
	}
	if len(d.VariableSets) > 0 {
		w.list(6, "variable_sets", d.VariableSets, true)
	}
	if len(d.Variables) > 0 {
		w.line(6, "variables:")
		for _, v := range d.Variables {
			w.variable(8, v)
		}
	}
	if d.Timeout != 0 {
		w.line(6, "timeout: "+formatDuration(d.Timeout))
	}
	if d.Network != "" {
		w.kv(6, "network", d.Network)
	}
	for _, f := range []struct {
		key string
		on  bool
	}{{"artifacts", d.Artifacts}, {"cache", d.Cache}, {"dependencies", d.Dependencies}} {
		if f.on {
			w.line(6, f.key+": true")
		}
	}
	if d.Uploads != nil {
		w.uploads(6, d.Uploads)
	}

	s := e.Source
	w.line(4, "source:")
	w.kv(6, "repository", s.Repository)
	if len(s.Signers) > 0 || !s.ApprovalsOnly() {
		w.list(6, "signers", s.Signers, true)
	}
	w.kv(6, "mode", string(s.Mode))
	if s.ApprovalsOnly() {
		w.kv(6, "signature", string(s.Signature))
	}
	if s.Pin != "" {
		w.kv(6, "pin", s.Pin)
	}
	if s.DescendsFrom != "" {
		w.kv(6, "descends_from", s.DescendsFrom)
	}
	if s.AllowRollback {
		w.line(6, "allow_rollback: true")
	}
	if ap := s.Approvals; ap != nil {
		w.line(6, "approvals:")
		w.list(8, "signers", ap.Signers, true)
		w.line(8, "threshold: "+strconv.Itoa(ap.Threshold))
		if ap.AuthorCounts {
			w.line(8, "author_counts: true")
		}
	}
	w.sourceExtensions(s)
}

func (w *writer) variable(indent int, v Variable) {
	w.variableTODOs(indent, v)
	k := w.key(v.Name)
	var flags []string
	if v.File {
		flags = append(flags, "file: true")
	}
	if v.Raw {
		flags = append(flags, "raw: true")
	}
	if v.Dangerous {
		flags = append(flags, "dangerous: true")
	}
	var kind, val string
	switch {
	case v.HasValue && v.Pattern != "":
		// Not a valid variable; write both so Parse says so.
		w.line(indent, k+":")
		w.kv(indent+2, "value", v.Value)
		w.kv(indent+2, "pattern", v.Pattern)
		for _, f := range flags {
			w.line(indent+2, f)
		}
		return
	case v.HasValue:
		kind, val = "value", v.Value
	case v.Pattern != "":
		kind, val = "pattern", v.Pattern
	default:
		w.line(indent, k+": {"+strings.Join(flags, ", ")+"}")
		return
	}
	if !strings.Contains(val, "\n") && utf8.ValidString(val) {
		w.line(indent, k+": {"+strings.Join(append([]string{kind + ": " + quote(val, true)}, flags...), ", ")+"}")
		return
	}
	w.line(indent, k+":")
	w.kv(indent+2, kind, val)
	for _, f := range flags {
		w.line(indent+2, f)
	}
}

// variableTODOs writes, above a variable Parse will refuse for a reason
// the maintainer must decide, a comment saying what to decide. Parse
// ignores comments; the refusal is what makes the TODO impossible to miss.
func (w *writer) variableTODOs(indent int, v Variable) {
	if !v.HasValue && v.Pattern == TODOPattern {
		what := "a masked or protected variable"
		if v.File {
			what = "a file variable"
		}
		w.line(indent, "# TODO: "+w.key(v.Name)+" is "+what+", so its value is not shown here. Replace TODO with")
		w.line(indent, "# {value: ...} or a pattern '^...$' admitting only the values you allow; lint refuses TODO.")
	}
	if ReservedName(v.Name) != "" {
		w.line(indent, "# TODO: "+w.key(v.Name)+" is set by writ and cannot be admitted: remove it from the job and this entry.")
	} else if why := DangerousName(v.Name); why != "" && !v.Dangerous {
		w.line(indent, "# TODO: "+w.key(v.Name)+" is a dangerous name ("+why+"). Remove it from the job,")
		w.line(indent, "# or add dangerous: true if GitLab must set it; lint refuses it until you decide.")
	}
}

// formatDuration writes d as Go's time.ParseDuration reads it, without the
// zero units time.Duration.String adds ("15m", not "15m0s").
func formatDuration(d time.Duration) string {
	if d <= 0 || d%time.Second != 0 {
		return d.String()
	}
	h, m, s := d/time.Hour, (d%time.Hour)/time.Minute, (d%time.Minute)/time.Second
	var b strings.Builder
	if h > 0 {
		fmt.Fprintf(&b, "%dh", h)
	}
	if m > 0 {
		fmt.Fprintf(&b, "%dm", m)
	}
	if s > 0 {
		fmt.Fprintf(&b, "%ds", s)
	}
	return b.String()
}

// plainWords are scalars that some YAML reader takes for something other
// than text (YAML 1.1 booleans included), so they are always quoted.
var plainWords = map[string]bool{
	"true": true, "false": true, "null": true, "~": true,
	"yes": true, "no": true, "on": true, "off": true, "y": true, "n": true,
	"<<": true, "=": true,
}

// safeRune reports runes that may appear literally in any scalar style:
// printable, and nothing CheckText refuses.
func safeRune(r rune) bool {
	return r == ' ' || (r >= 0x21 && r < 0x7F) ||
		(r >= 0xA0 && unicode.IsPrint(r) && !isInvisible(r) && !isNoncharacter(r))
}

// plainOK reports whether s reads back as the same text when written
// unquoted. It is deliberately narrow: anything unusual is quoted.
func plainOK(s string, inFlow bool) bool {
	if s == "" || plainWords[strings.ToLower(s)] || len(s) > 1024 {
		return false
	}
	c := s[0]
	if c == ' ' || (c >= '0' && c <= '9') || strings.IndexByte("-?:,[]{}#&*!|>'\"%@`+\\", c) >= 0 {
		return false
	}
	// A leading '.' can start a number (.5, .inf); allow only paths.
	if c == '.' && !strings.HasPrefix(s, "./") && !strings.HasPrefix(s, "../") {
		return false
	}
	if strings.HasSuffix(s, " ") || strings.HasSuffix(s, ":") ||
		strings.Contains(s, ": ") || strings.Contains(s, " #") {
		return false
	}
	if inFlow && strings.ContainsAny(s, ",[]{}:?") {
		return false
	}
	for _, r := range s {
		if !safeRune(r) {
			return false
		}
	}
	return true
}

// quote renders s as a YAML scalar: plain when that is safe, single-quoted
// when only quoting is needed (regular expressions stay readable), and
// double-quoted with escapes otherwise, so that every character a reviewer
// could miss is written as a visible escape.
func quote(s string, inFlow bool) string {
	if plainOK(s, inFlow) {
		return s
	}
	single := true
	for _, r := range s {
		if !safeRune(r) {
			single = false
			break
		}
	}
	if single {
		return "'" + strings.ReplaceAll(s, "'", "''") + "'"
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == 0:
			b.WriteString(`\0`)
		case safeRune(r):
			b.WriteRune(r)
		case r < 0x100:
			fmt.Fprintf(&b, `\x%02X`, r)
		default:
			b.WriteString(escapeRune(r))
		}
	}
	b.WriteByte('"')
	return b.String()
}

// literalLines splits a multi-line value for a literal block scalar (|),
// when that style reads back exactly: every character safe, no line
// starting the block with a space (it would change the detected
// indentation), no trailing spaces (invisible in a block), and at most one
// final line feed. chomp is "" to keep one final line feed, "-" for none.
func literalLines(s string) (lines []string, chomp string, ok bool) {
	if !strings.Contains(s, "\n") || strings.HasPrefix(s, " ") || strings.HasPrefix(s, "\n") || strings.HasSuffix(s, "\n\n") {
		return nil, "", false
	}
	for _, r := range s {
		if r != '\n' && !safeRune(r) {
			return nil, "", false
		}
	}
	body := s
	chomp = "-"
	if strings.HasSuffix(s, "\n") {
		body, chomp = s[:len(s)-1], ""
	}
	lines = strings.Split(body, "\n")
	for _, l := range lines {
		if strings.HasSuffix(l, " ") {
			return nil, "", false
		}
	}
	return lines, chomp, true
}
