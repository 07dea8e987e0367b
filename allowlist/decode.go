package allowlist

// The schema of allowlist.yaml, decoded field by field from the YAML tree
// that parse.go has checked for structure.

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"gitlab.com/writ-ci/writ/internal/lazyre"
)

var topKeys = []string{"schema", "repository", "version", "expires", "signers", "people", "variable_sets", "jobs"}

// decodeRoot decodes the file. An entry's decoding may read the top level
// (it is the context acceptance keys reuse on, memo.go) but not version or
// expires, nor another entry except through checks that run after every
// entry is decoded.
func (p *parser) decodeRoot(root *yaml.Node) *Allowlist {
	m, _ := p.keyed(root, "the top level", topKeys...)
	p.require(root, m, "the top level", "schema", "repository", "version", "expires")
	if n := m.get("schema"); n != nil {
		if s, ok := p.str(n, "schema"); ok && s != SchemaV2 {
			if s != SchemaV1 {
				p.errorf(n, "schema %q is not understood by this writ: write %q (or upgrade writ)", s, SchemaV2)
				// The rest of the file follows another schema; reporting
				// its keys as unknown would only bury this error.
				return nil
			}
			// A writ/v1 file is read on with writ/v2's rules, so that
			// each ref to rewrite gets its own positioned error.
			p.errorf(n, "%s", migrationMessage)
		}
	}
	a := &Allowlist{Schema: SchemaV2, Signers: map[string]*SignerSet{}}
	if n := m.get("repository"); n != nil {
		if s, ok := p.reqStr(n, "repository"); ok {
			if msg := checkIdentity(s); msg != "" {
				p.errorf(n, "repository %q %s", s, msg)
			}
			a.Repository = s
		}
	}
	if n := m.get("version"); n != nil {
		a.Version = p.version(n)
	}
	if n := m.get("expires"); n != nil {
		a.Expires = p.expires(n)
	}
	if n := m.get("signers"); n != nil {
		p.signers(n, a)
	}
	if n := m.get("people"); n != nil {
		p.people(n, a)
	}
	if n := m.get("variable_sets"); n != nil {
		p.variableSets(n, a)
	}
	used := map[string]bool{}
	p.usedVarSets = map[string]bool{}
	if n := m.get("jobs"); n != nil {
		p.jobs(n, a, used)
	}
	for _, name := range sortedKeys(a.VariableSets) {
		if !p.usedVarSets[name] {
			s := a.VariableSets[name]
			p.add(&p.warns, s.Pos.Line, s.Pos.Column, "variable set %q is not used by any entry: remove it or name it in an entry's definition.variable_sets", name)
		}
	}
	for _, name := range sortedKeys(a.Signers) {
		if !used[name] {
			s := a.Signers[name]
			p.add(&p.warns, s.Pos.Line, s.Pos.Column, "signer set %q is not used by any entry: remove it or name it in an entry's source.signers", name)
		}
	}
	return a
}

var decimal = lazyre.New(`^[1-9][0-9]*$`)

func (p *parser) version(n *yaml.Node) int64 {
	switch {
	case n.Kind == yaml.AliasNode || n.Style&yaml.TaggedStyle != 0:
		return 0
	case n.Kind != yaml.ScalarNode || n.Tag != "!!int":
		switch {
		case n.Kind == yaml.ScalarNode && n.Tag == "!!float":
			p.errorf(n, "version %s is not a whole number: write one without a fraction or exponent, such as 7", n.Value)
		case n.Kind == yaml.ScalarNode && n.Tag == "!!str":
			p.errorf(n, "version must be a whole number, not text: remove the quotes")
		default:
			p.errorf(n, "version must be a whole number, not %s", describe(n))
		}
		return 0
	case !decimal.MatchString(n.Value):
		p.errorf(n, "version %s: write a plain decimal number of at least 1 (no sign, leading zeros, underscores or 0x)", n.Value)
		return 0
	}
	v, err := strconv.ParseInt(n.Value, 10, 64)
	if err != nil {
		p.errorf(n, "version %s is too large: the limit is %d", n.Value, int64(1<<63-1))
		return 0
	}
	return v
}

func (p *parser) expires(n *yaml.Node) time.Time {
	switch {
	case n.Kind == yaml.AliasNode || n.Style&yaml.TaggedStyle != 0:
		return time.Time{}
	case n.Kind != yaml.ScalarNode || (n.Tag != "!!timestamp" && n.Tag != "!!str"):
		p.errorf(n, "expires must be an RFC 3339 time such as 2027-03-01T00:00:00Z, not %s", describe(n))
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, n.Value)
	if err != nil {
		p.errorf(n, "expires %q is not an RFC 3339 time: write a date, time and zone such as 2027-03-01T00:00:00Z", n.Value)
		return time.Time{}
	}
	return t.UTC()
}

var setName = lazyre.New(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func (p *parser) signers(n *yaml.Node, a *Allowlist) {
	if !p.mapping(n, "signers", "a mapping of signer set names to keys") {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !plainKey(k) || a.Signers[k.Value] != nil {
			continue
		}
		name := k.Value
		if !setName.MatchString(name) {
			p.errorf(k, "signer set name %q: use 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
		}
		set := &SignerSet{Name: name, Pos: Pos{Line: k.Line, Column: k.Column}}
		a.Signers[name] = set
		if isNull(v) {
			p.errorf(k, "signer set %q has no keys: add openpgp or ssh keys", name)
			continue
		}
		m, ok := p.keyed(v, "signer set "+strconv.Quote(name), "openpgp", "ssh", "sigstore")
		if !ok {
			continue
		}
		if o := m.get("openpgp"); o != nil {
			p.openpgpKeys(o, set)
		}
		if s := m.get("ssh"); s != nil {
			p.sshKeys(s, set)
		}
		if s := m.get("sigstore"); s != nil {
			p.sigstoreKeys(s, set)
		}
		if len(m) == 0 {
			p.errorf(k, "signer set %q has no keys: add openpgp or ssh keys", name)
		}
	}
}

var fingerprintRE = lazyre.New(`^([0-9A-Fa-f]{40}|[0-9A-Fa-f]{64})$`)

func (p *parser) openpgpKeys(n *yaml.Node, set *SignerSet) {
	items, ok := p.list(n, "openpgp")
	if !ok {
		return
	}
	if len(items) == 0 {
		p.errorf(n, "openpgp is empty: list keys or remove the key")
	}
	seen := map[string]int{}
	for _, it := range items {
		m, ok := p.keyed(it, "an openpgp key", "fingerprint", "key")
		if !ok {
			continue
		}
		p.require(it, m, "openpgp key", "fingerprint", "key")
		var k OpenPGPKey
		fn, pn := m.get("fingerprint"), m.get("key")
		if fn != nil {
			if s, ok := p.reqStr(fn, "fingerprint"); ok {
				if !fingerprintRE.MatchString(s) {
					p.errorf(fn, "fingerprint %q: write the full primary key fingerprint, 40 (v4) or 64 (v6) hex digits without spaces (gpg --with-colons --fingerprint shows it)", s)
				} else {
					k.Fingerprint = strings.ToUpper(s)
					if line, dup := seen[k.Fingerprint]; dup {
						p.errorf(fn, "key %s is listed twice in this set (first at line %d): remove one", k.Fingerprint, line)
					}
					seen[k.Fingerprint] = fn.Line
				}
			}
		}
		if pn != nil {
			if s, ok := p.reqStr(pn, "key"); ok {
				k.File = s
				if msg := checkRepoPath(s); msg != "" {
					p.errorf(pn, "key file %q %s", s, msg)
				} else if data, msg := p.loadKey(s); msg != "" {
					p.errorf(pn, "key file %q %s", s, msg)
				} else {
					k.Armored = data
					if k.Fingerprint != "" {
						if msg := p.checkKey(s, data, k.Fingerprint); msg != "" {
							p.errorf(pn, "key file %q %s", s, msg)
						}
					}
				}
			}
		}
		set.OpenPGP = append(set.OpenPGP, k)
	}
}

// loadKey loads a key file once per Parse, however many sets use it.
func (p *parser) loadKey(path string) ([]byte, string) {
	if p.keys == nil {
		p.keys = map[string]keyFile{}
	}
	kf, ok := p.keys[path]
	if !ok {
		switch {
		case p.load == nil:
			kf.err = errors.New("no file loader was given")
		case p.keyBytes > MaxFileBytes:
			kf.err = fmt.Errorf("key files together exceed %d bytes", MaxFileBytes)
		default:
			kf.data, kf.err = p.load(path)
			p.keyBytes += int64(len(kf.data))
		}
		p.keys[path] = kf
	}
	if kf.err != nil {
		return nil, fmt.Sprintf("cannot be read (%v): commit the armored public key at that path, relative to the repository root", kf.err)
	}
	if len(kf.data) > MaxKeyFileBytes {
		return nil, fmt.Sprintf("is %d bytes; the limit is %d: export only the public key, with gpg --armor --export-options export-minimal --export FINGERPRINT", len(kf.data), MaxKeyFileBytes)
	}
	return kf.data, ""
}

func (p *parser) sshKeys(n *yaml.Node, set *SignerSet) {
	lines, nodes, ok := p.strList(n, "ssh", "allowed_signers line", false)
	if !ok && lines == nil {
		return
	}
	if len(nodes) == 0 && ok {
		p.errorf(n, "ssh is empty: list keys or remove the key")
	}
	seen := map[string]int{}
	for i, line := range lines {
		fp, msg := checkSSHLine(line)
		if msg != "" {
			p.errorf(nodes[i], "ssh key %s", msg)
			continue
		}
		if first, dup := seen[fp]; dup {
			p.errorf(nodes[i], "ssh key %s is listed twice in this set (first at line %d): remove one", fp, first)
			continue
		}
		seen[fp] = nodes[i].Line
		set.SSH = append(set.SSH, line)
	}
}

// jobs decodes the entries and records in used the signer sets they name.
func (p *parser) jobs(n *yaml.Node, a *Allowlist, used map[string]bool) {
	items, ok := p.list(n, "jobs")
	if !ok {
		return
	}
	p.inJobs = true
	defer func() { p.inJobs = false }()
	seq, count := slices.All(items), len(items)
	if s := p.split; s != nil {
		// The head holds "jobs: []" on the key's own line; anything else
		// means the split misread the file.
		if s.consumed || len(items) != 0 || n.Line != s.jobsLine {
			s.failed = true
			return
		}
		s.consumed = true
		seq, count = s.itemNodes(p.data, p.reuse.has), len(s.items)
		p.memo = make([]entryMemo, count)
	}
	if count > MaxEntries {
		p.errorf(n, "jobs has %d entries; the limit is %d: split the allowlist", count, MaxEntries)
		return
	}
	names := make(map[string]int, count)
	keys := make([]entryKey, 0, count)
	if p.usedVarSets == nil {
		p.usedVarSets = map[string]bool{}
	}
	sc := newEntryScope(a)
	for i, it := range seq {
		var e *Entry
		var k entryKey
		var uses []string
		if it == nil {
			// An item the previous acceptance decoded from the same
			// bytes, in the same context (see memo.go). The checks
			// below read its name, match and position from the memo;
			// the entry stays nil in a.Jobs until materialize decodes
			// it, which acceptance does only for a section of the new
			// store that cannot be copied from the store in force.
			om := p.reuse.memoOf(i)
			k = entryKey{name: om.Name, match: om.Match, pos: Pos{Line: p.split.items[i].line + om.LineOff, Column: om.Column}}
			uses = om.Uses
		} else {
			if p.split != nil {
				p.structure(it, 2)
			}
			// What the entry read of the top level (its scope) is its
			// uses: a reused entry marks the same as a decoded one, and
			// is reused only while what it read is unchanged.
			e = p.entry(it, sc)
			uses = sc.take()
			if e == nil {
				continue
			}
			k = entryKey{name: e.Name, match: &e.Match, pos: e.Pos}
		}
		for _, u := range uses {
			if name, ok := strings.CutPrefix(u, varSetUse); ok {
				p.usedVarSets[name] = true
			} else {
				used[u] = true
			}
		}
		if p.memo != nil {
			p.memo[i] = entryMemo{Line: k.pos.Line, LineOff: k.pos.Line - p.split.items[i].line, Column: k.pos.Column, Uses: uses, Name: k.name, Match: k.match, set: true}
		}
		if k.name != "" {
			if first, dup := names[k.name]; dup {
				p.add(&p.errs, k.pos.Line, k.pos.Column, "entry name %q is already used at line %d: entry names must be unique", k.name, keys[first].pos.Line)
			} else {
				names[k.name] = len(keys)
			}
		}
		keys = append(keys, k)
		a.Jobs = append(a.Jobs, e)
	}
	p.overlaps(n, keys)
}

// entryKey is what the checks that span entries (unique names, overlaps)
// read of an entry, decoded or taken from the memo.
type entryKey struct {
	name  string
	match *Match
	pos   Pos
}

// varSetUse marks a variable set among an entry's uses (see jobs); no
// signer set's name contains a colon.
const varSetUse = "variable_sets:"

// entry decodes one job entry in its scope.
func (p *parser) entry(n *yaml.Node, sc *entryScope) *Entry {
	m, ok := p.keyed(n, "a job entry", "name", "match", "definition", "source")
	if !ok {
		return nil
	}
	p.require(n, m, "job entry", "name", "match", "definition", "source")
	e := &Entry{Pos: Pos{Line: n.Line, Column: n.Column}}
	if v := m.get("name"); v != nil {
		if s, ok := p.reqStr(v, "name"); ok {
			if !setName.MatchString(s) {
				p.errorf(v, "entry name %q: use 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit", s)
			} else {
				e.Name = s
			}
		}
	}
	var refNodes []*yaml.Node
	if v := m.get("match"); v != nil {
		refNodes = p.match(v, &e.Match)
	}
	if v := m.get("definition"); v != nil {
		p.definition(v, &e.Definition, sc)
	}
	if v := m.get("source"); v != nil {
		p.source(v, &e.Source, sc)
	}
	if e.Source.Mode == ModeTag {
		for i, r := range e.Match.Refs {
			if kind, _, ok := SplitRef(r); ok && kind != RefTag && i < len(refNodes) {
				p.errorf(refNodes[i], "ref %q is a branch, and source mode tag admits only signed tags: list tags (refs/tags/…), or use mode commit or strict for branches", r)
			}
		}
	}
	return e
}

// migrationMessage is the error at "schema: writ/v1". The errors after it
// name each ref to rewrite.
const migrationMessage = `schema "writ/v1" is retired: in writ/v1, match.refs did not say ` +
	`whether a name was a branch or a tag, so GitLab's ref_type chose. To migrate: ` +
	`(1) write "schema: writ/v2"; ` +
	`(2) write every match.refs item as a full ref, refs/heads/NAME for a branch or refs/tags/NAME for a tag ` +
	`(refs: [main] becomes refs: [refs/heads/main]; entries with mode: tag list refs/tags/… only); ` +
	`(3) add file: true to every variable GitLab delivers as a file (the default is a value variable); ` +
	`(4) add dangerous: true to variables lint names as dangerous, if you mean to let GitLab set them. ` +
	`Then bump version and get the new version approved (see "Migrating from writ/v1" in docs/allowlist.md)`

var (
	projectRE = lazyre.New(`^[A-Za-z0-9_.][A-Za-z0-9_.-]*(/[A-Za-z0-9_.][A-Za-z0-9_.-]*)+$`)
	envRE     = lazyre.New(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
)

// match decodes an entry's match and returns the nodes of its refs, for
// the check against the entry's source mode.
func (p *parser) match(n *yaml.Node, mt *Match) (refNodes []*yaml.Node) {
	m, ok := p.keyed(n, "match", "project", "job", "environments", "refs")
	if !ok {
		return nil
	}
	p.require(n, m, "match", "project", "job", "environments", "refs")
	if v := m.get("project"); v != nil {
		if s, ok := p.reqStr(v, "project"); ok {
			if !projectRE.MatchString(s) || len(s) > 1024 {
				p.errorf(v, "project %q is not a GitLab project path: write the full path, such as group/app", s)
			}
			mt.Project = s
		}
	}
	if v := m.get("job"); v != nil {
		if s, ok := p.reqStr(v, "job"); ok {
			if len(s) > 255 {
				p.errorf(v, "job name is %d bytes; GitLab allows at most 255", len(s))
			}
			mt.Job = s
		}
	}
	if v := m.get("environments"); v != nil {
		envs, nodes, _ := p.strList(v, "environments", "environment", true)
		for i, s := range envs {
			if !envRE.MatchString(s) {
				p.errorf(nodes[i], "environment %q: write a writ environment name (1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit)", s)
			}
		}
		mt.Environments = envs
	}
	if v := m.get("refs"); v != nil {
		refs, nodes, _ := p.strList(v, "refs", "ref", true)
		refNodes = nodes
		for i, s := range refs {
			if msg := CheckRef(s); msg != "" {
				p.errorf(nodes[i], "ref %q: %s", s, msg)
			}
		}
		mt.Refs = refs
	}
	return refNodes
}

func (p *parser) definition(n *yaml.Node, d *Definition, sc *entryScope) {
	m, ok := p.keyed(n, "definition", "image", "services", "script", "after_script", "variable_sets", "variables", "timeout", "artifacts", "uploads", "cache", "dependencies", "network")
	if !ok {
		return
	}
	p.require(n, m, "definition", "script")
	// A reference with "$" is checked once the variables are known
	// (checkExpandedImages): what must be pinned by digest is what runs.
	imageNode := m.get("image")
	if v := imageNode; v != nil {
		if s, ok := p.reqStr(v, "image"); ok {
			if msg := checkImage(s); msg != "" && !strings.Contains(s, "$") {
				p.errorf(v, "image %q %s", s, msg)
			}
			d.Image = s
		}
	}
	var serviceNodes []*yaml.Node
	if v := m.get("services"); v != nil {
		svcs, nodes, _ := p.strList(v, "services", "service", false)
		for i, s := range svcs {
			if msg := checkImage(s); msg != "" && !strings.Contains(s, "$") {
				p.errorf(nodes[i], "service %q %s", s, msg)
			}
		}
		d.Services, serviceNodes = svcs, nodes
	}
	if v := m.get("script"); v != nil {
		d.Script = p.script(v, "script", true)
	}
	if v := m.get("after_script"); v != nil {
		d.AfterScript = p.script(v, "after_script", false)
	}
	var keys []*yaml.Node
	if v := m.get("variables"); v != nil {
		d.Variables, keys = p.variables(v)
	}
	if v := m.get("variable_sets"); v != nil {
		p.includeSets(v, d, keys, sc)
	}
	all := d.AllVariables()
	p.checkValueRefs("definition", d.Variables, keys, scopeOf(all))
	p.checkExpandedImages(d, imageNode, serviceNodes)
	if v := m.get("timeout"); v != nil {
		d.Timeout = p.timeout(v)
	}
	if v := m.get("network"); v != nil {
		if s, ok := p.reqStr(v, "network"); ok {
			if s != "host" && s != "none" {
				p.errorf(v, "network %q: use \"host\" (the host's network) or \"none\" (a private loopback only)", s)
			}
			d.Network = s
		}
	}
	for key, dst := range map[string]*bool{"artifacts": &d.Artifacts, "cache": &d.Cache, "dependencies": &d.Dependencies} {
		if v := m.get(key); v != nil {
			*dst, _ = p.boolean(v, key)
		}
	}
	if v := m.get("uploads"); v != nil {
		d.Uploads = p.uploads(v)
		if d.Artifacts {
			p.errorf(m.get("artifacts"), "artifacts: true lets GitLab's artifacts through without uploading them; with uploads, GitLab's artifacts must equal uploads.artifacts: remove artifacts: true")
		}
	}
}

// script decodes script or after_script. Items may repeat (a script can run
// the same command twice), unlike other lists.
func (p *parser) script(n *yaml.Node, what string, nonEmpty bool) []string {
	items, ok := p.list(n, what)
	if !ok {
		return nil
	}
	if nonEmpty && len(items) == 0 {
		p.errorf(n, "%s is empty: list at least one command", what)
		return nil
	}
	var out []string
	lines := 0
	for _, it := range items {
		s, ok := p.str(it, what+" item")
		if !ok {
			continue
		}
		lines += 1 + strings.Count(s, "\n")
		out = append(out, s)
	}
	if lines > MaxScriptLines {
		p.errorf(n, "%s has %d lines; the limit is %d: move the commands into a script file in the repository", what, lines, MaxScriptLines)
	}
	return out
}

var varNameRE = lazyre.New(`^[A-Za-z_][A-Za-z0-9_]*$`)

// TODOPattern is the pattern `writ allowlist entry` writes for a variable
// whose value it cannot show (masked, protected or a file). Parse refuses
// it with a message that says what to write, so a generated entry never
// admits any value silently.
const TODOPattern = "TODO"

// variables decodes a mapping of variables; keys are the name nodes of
// the variables returned, for positioned errors about them.
func (p *parser) variables(n *yaml.Node) (out []Variable, keys []*yaml.Node) {
	if !p.mapping(n, "variables", "a mapping of variable names to {value: ...} or {pattern: ...}") {
		return nil, nil
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !plainKey(k) || seen[k.Value] {
			continue
		}
		seen[k.Value] = true
		if vr, ok := p.variable(k, v); ok {
			out = append(out, vr)
			keys = append(keys, k)
		}
	}
	return out, keys
}

// variable decodes one NAME: {value|pattern, file, dangerous} and checks
// the name against the reserved and dangerous lists.
func (p *parser) variable(k, v *yaml.Node) (Variable, bool) {
	vr := Variable{Name: k.Value}
	if !varNameRE.MatchString(k.Value) {
		p.errorf(k, "variable name %q: use letters, digits and '_', not starting with a digit", k.Value)
	}
	if isNull(v) {
		p.errorf(k, "variable %s has no value: write {value: ...} or {pattern: '^...$'}", k.Value)
		return vr, false
	}
	if v.Kind == yaml.ScalarNode && v.Style&yaml.TaggedStyle == 0 {
		p.errorf(v, "variable %s must be {value: %s} or {pattern: '^...$'}, not bare %s", k.Value, strconv.Quote(v.Value), describe(v))
		return vr, false
	}
	m, ok := p.keyed(v, "variable "+k.Value, "value", "pattern", "file", "raw", "dangerous")
	if !ok {
		return vr, false
	}
	val, hasVal := m.lookup("value")
	pat, hasPat := m.lookup("pattern")
	switch {
	case hasVal && hasPat:
		p.errorf(v, "variable %s has both value and pattern: keep exactly one", k.Value)
	case !hasVal && !hasPat:
		p.errorf(v, "variable %s needs value or pattern", k.Value)
	case hasVal && val != nil:
		if s, ok := p.str(val, "value of "+k.Value); ok {
			vr.Value, vr.HasValue = s, true
		}
	case hasPat && pat != nil:
		if s, ok := p.reqStr(pat, "pattern of "+k.Value); ok {
			switch {
			case s == TODOPattern:
				p.errorf(pat, "variable %s still has the TODO that writ allowlist entry writes when it cannot show a value (masked, protected or file variables): replace it with {value: ...} or a pattern '^...$' that admits only the values you mean to allow", k.Value)
			default:
				if msg := p.checkPattern(s); msg != "" {
					p.errorf(pat, "pattern %q %s", s, msg)
				}
			}
			vr.Pattern = s
		}
	}
	if f := m.get("file"); f != nil {
		vr.File, _ = p.boolean(f, "file")
	}
	if r := m.get("raw"); r != nil {
		vr.Raw, _ = p.boolean(r, "raw")
	}
	if d := m.get("dangerous"); d != nil {
		vr.Dangerous, _ = p.boolean(d, "dangerous")
	}
	switch why := ReservedName(k.Value); {
	case why != "":
		p.errorf(k, "variable %s cannot be admitted: %s; remove it from the entry (a job always sees writ's value)", k.Value, why)
	default:
		why := DangerousName(k.Value)
		switch {
		case why != "" && !vr.Dangerous:
			p.errorf(k, "variable %s is dangerous: %s; remove it, or if GitLab must set it, add dangerous: true (and pin its value if you can)", k.Value, why)
		case why == "" && vr.Dangerous:
			p.add(&p.warns, k.Line, k.Column, "variable %s is marked dangerous: true but is not on writ's list of dangerous names: remove the marker", k.Value)
		}
	}
	return vr, true
}

func (p *parser) timeout(n *yaml.Node) time.Duration {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!int" {
		p.errorf(n, "timeout %s has no unit: write a duration such as 15m or 1h30m", n.Value)
		return 0
	}
	s, ok := p.reqStr(n, "timeout")
	if !ok {
		return 0
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		p.errorf(n, "timeout %q is not a duration: write one such as 15m or 1h30m", s)
	case d <= 0:
		p.errorf(n, "timeout %q must be more than zero (remove the key for the environment's default)", s)
	case d > 24*time.Hour:
		p.errorf(n, "timeout %q is more than 24h: the limit is 24h", s)
	default:
		return d
	}
	return 0
}

var commitRE = lazyre.New(`^([0-9a-f]{40}|[0-9a-f]{64})$`)

func (p *parser) source(n *yaml.Node, src *Source, sc *entryScope) {
	m, ok := p.keyed(n, "source", "repository", "signers", "mode", "signature", "pin", "descends_from", "allow_rollback", "approvals", "git", "extra")
	if !ok {
		return
	}
	p.require(n, m, "source", "repository", "mode")
	p.sourceSignature(m.get("signature"), src)
	if v := m.get("repository"); v != nil {
		if s, ok := p.reqStr(v, "repository"); ok {
			if msg := checkRepoURL(s); msg != "" {
				p.errorf(v, "repository %q %s", s, msg)
			}
			src.Repository = s
		}
	}
	if v := m.get("signers"); v != nil {
		names, nodes, _ := p.strList(v, "signers", "signer set", true)
		for i, s := range names {
			if set, ok := sc.signer(s); !ok {
				p.errorf(nodes[i], "signer set %q is not defined: define it under signers at the top level%s", s, definedSets(sc))
			} else if !set.commitKeys && set.sigstoreKeys {
				p.errorf(nodes[i], "signer set %q holds only Sigstore keys, which sign no commit or tag: name it under source.approvals.signers, or add openpgp or ssh keys", s)
			}
		}
		src.Signers = names
	}
	if v := m.get("mode"); v != nil {
		if s, ok := p.reqStr(v, "mode"); ok {
			switch SourceMode(s) {
			case ModeCommit, ModeTag, ModeStrict:
				src.Mode = SourceMode(s)
			default:
				p.errorf(v, "mode %q: use commit, tag or strict", s)
			}
		}
	}
	for key, dst := range map[string]*string{"pin": &src.Pin, "descends_from": &src.DescendsFrom} {
		if v := m.get(key); v != nil {
			if s, ok := p.reqStr(v, key); ok {
				if !commitRE.MatchString(s) {
					p.errorf(v, "%s %q: write a full commit id, 40 (SHA-1) or 64 (SHA-256) lower-case hex digits", key, s)
				}
				*dst = s
			}
		}
	}
	if v := m.get("allow_rollback"); v != nil {
		src.AllowRollback, _ = p.boolean(v, "allow_rollback")
	}
	if v := m.get("approvals"); v != nil {
		p.sourceApprovals(v, src, sc)
	}
	p.sourceExtensions(m, src, sc)
	p.checkSourceSignature(n, m, src)
}

func definedSets(sc *entryScope) string {
	names := sc.signerNames()
	if len(names) == 0 {
		return ""
	}
	if len(names) > 10 {
		names = append(names[:10], "…")
	}
	return " (defined: " + strings.Join(names, ", ") + ")"
}

// overlaps refuses two entries that could both match one job, so that
// selecting an entry is never ambiguous.
//
// Only entries that share their project and job can overlap, and most
// share them with no other: the (environment, ref) pairs of those alone
// are looked at, entry by entry in file order, so the errors are the same
// as if every pair were.
func (p *parser) overlaps(jobsNode *yaml.Node, keys []entryKey) {
	total := 0
	for _, k := range keys {
		total += len(k.match.Environments) * len(k.match.Refs)
		if total > MaxMatchPairs {
			p.errorf(jobsNode, "the entries together match more than %d (environment, ref) combinations: the limit is %d; split the allowlist", MaxMatchPairs, MaxMatchPairs)
			return
		}
	}
	type projectJob struct{ project, job string }
	shared := make(map[projectJob]bool, len(keys))
	for _, k := range keys {
		pj := projectJob{k.match.Project, k.match.Job}
		_, seen := shared[pj]
		shared[pj] = seen
	}
	owner := map[matchKey]int{}
	reported := map[[2]int]bool{}
	for i, k := range keys {
		m := k.match
		if !shared[projectJob{m.Project, m.Job}] {
			continue
		}
		for _, env := range m.Environments {
			for _, ref := range m.Refs {
				first, dup := owner[matchKey{m.Project, m.Job, env, ref}]
				if !dup {
					owner[matchKey{m.Project, m.Job, env, ref}] = i
					continue
				}
				if first == i || reported[[2]int{first, i}] {
					continue
				}
				reported[[2]int{first, i}] = true
				f := keys[first]
				p.add(&p.errs, k.pos.Line, k.pos.Column,
					"entry %q overlaps entry %q (line %d): both match job %q of %s in environment %q on ref %q; make their environments or refs disjoint",
					k.name, f.name, f.pos.Line, m.Job, m.Project, env, ref)
			}
		}
	}
}
