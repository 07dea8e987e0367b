package allowlist

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// DiffReport says what changes from one allowlist to the next, per
// environment, for the people who review and approve a new version.
type DiffReport struct {
	// Old and New are the compared allowlists; either may be nil (a first
	// version, or a removal).
	Old, New *Allowlist
	// Environments lists, sorted by name, every environment in which some
	// job becomes allowed, changes or stops being allowed.
	Environments []EnvironmentDiff
	// Signers lists, sorted by name, every signer set that is added,
	// removed, or gains, loses or changes keys.
	Signers []SignerSetDiff
	// People lists, sorted by name, every person added, removed or whose
	// keys change (which changes how source approvals are counted).
	People []FieldChange
}

// EnvironmentDiff is what changes in one environment.
type EnvironmentDiff struct {
	Environment string
	// Added are entries that newly apply to the environment.
	Added []*Entry
	// Changed are entries that apply before and after, with differences
	// (including changes to the signer sets they use).
	Changed []EntryDiff
	// Removed are entries that no longer apply to the environment.
	Removed []*Entry
}

// EntryDiff is one entry (same name) before and after.
type EntryDiff struct {
	Old, New *Entry
	Changes  []FieldChange
}

// FieldChange is one changed field of an entry. Old and New are rendered
// with Visible; Diff, for script and after_script, is a unified diff of
// the items, one item a line, also rendered with Visible.
type FieldChange struct {
	Field    string
	Old, New string
	Diff     string
}

// SignerSetDiff is one signer set before and after. Keys are described as
// "openpgp FINGERPRINT (file)" or "ssh LINE".
type SignerSetDiff struct {
	Name           string
	Added, Removed bool
	AddedKeys      []string
	RemovedKeys    []string
	// ChangedKeys are OpenPGP keys whose fingerprint stays but whose file
	// or file content changes (new user IDs or subkeys, or a revocation
	// added or removed).
	ChangedKeys []string
	// UsedBy names the entries that use the set (after the change, or
	// before it for a removed set).
	UsedBy []string
}

// Diff compares two allowlists. Entries are matched by name: a renamed
// entry shows as one removed and one added.
func Diff(old, new *Allowlist) *DiffReport {
	d := &DiffReport{Old: old, New: new}
	d.Signers = diffSigners(old, new)
	d.People = diffPeople(old, new)
	changedSets := map[string]SignerSetDiff{}
	for _, s := range d.Signers {
		changedSets[s.Name] = s
	}
	oldByEnv, newByEnv := entriesByEnv(old), entriesByEnv(new)
	envs := map[string]bool{}
	for e := range oldByEnv {
		envs[e] = true
	}
	for e := range newByEnv {
		envs[e] = true
	}
	names := sortedKeys(envs)
	for _, env := range names {
		ed := EnvironmentDiff{Environment: env}
		o, n := oldByEnv[env], newByEnv[env]
		if o == nil {
			o = &envEntries{}
		}
		if n == nil {
			n = &envEntries{}
		}
		for _, ne := range n.list {
			oe, ok := o.byName[ne.Name]
			if !ok {
				ed.Added = append(ed.Added, ne)
				continue
			}
			ch := entryChanges(oe, ne)
			for _, s := range ne.Source.Signers {
				if sd, ok := changedSets[s]; ok && contains(oe.Source.Signers, s) {
					ch = append(ch, FieldChange{Field: "signer set " + s, Old: "", New: sd.summary()})
				}
			}
			if ap, oap := ne.Source.Approvals, oe.Source.Approvals; ap != nil && oap != nil {
				for _, s := range ap.Signers {
					if sd, ok := changedSets[s]; ok && contains(oap.Signers, s) && !contains(ne.Source.Signers, s) {
						ch = append(ch, FieldChange{Field: "approver set " + s, Old: "", New: sd.summary()})
					}
				}
			}
			ch = append(ch, extraSignerChanges(oe, ne, changedSets)...)
			if len(ch) > 0 {
				ed.Changed = append(ed.Changed, EntryDiff{Old: oe, New: ne, Changes: ch})
			}
		}
		for _, oe := range o.list {
			if _, ok := n.byName[oe.Name]; !ok {
				ed.Removed = append(ed.Removed, oe)
			}
		}
		if len(ed.Added)+len(ed.Changed)+len(ed.Removed) > 0 {
			d.Environments = append(d.Environments, ed)
		}
	}
	return d
}

// Empty reports whether the two allowlists are the same in everything the
// report covers: repository, version, expiry, entries and signer sets.
func (d *DiffReport) Empty() bool {
	if (d.Old == nil) != (d.New == nil) {
		return false
	}
	if d.Old != nil && (d.Old.Repository != d.New.Repository || d.Old.Version != d.New.Version || !d.Old.Expires.Equal(d.New.Expires)) {
		return false
	}
	return len(d.Environments) == 0 && len(d.Signers) == 0 && len(d.People) == 0
}

// diffPeople compares the people of two allowlists.
func diffPeople(old, new *Allowlist) []FieldChange {
	keys := func(a *Allowlist) map[string]string {
		m := map[string]string{}
		if a != nil {
			for n, p := range a.People {
				m[n] = visibleList(p.Keys)
			}
		}
		return m
	}
	o, n := keys(old), keys(new)
	all := map[string]bool{}
	for k := range o {
		all[k] = true
	}
	for k := range n {
		all[k] = true
	}
	var out []FieldChange
	for _, name := range sortedKeys(all) {
		ov, oh := o[name]
		nv, nh := n[name]
		switch {
		case !oh:
			ov = "none"
		case !nh:
			nv = "none"
		}
		if ov != nv {
			out = append(out, FieldChange{Field: "person " + Visible(name), Old: ov, New: nv})
		}
	}
	return out
}

type envEntries struct {
	list   []*Entry
	byName map[string]*Entry
}

func entriesByEnv(a *Allowlist) map[string]*envEntries {
	out := map[string]*envEntries{}
	if a == nil {
		return out
	}
	for _, e := range a.Jobs {
		if e == nil {
			continue
		}
		for _, env := range e.Match.Environments {
			ee := out[env]
			if ee == nil {
				ee = &envEntries{byName: map[string]*Entry{}}
				out[env] = ee
			}
			if _, dup := ee.byName[e.Name]; !dup {
				ee.byName[e.Name] = e
				ee.list = append(ee.list, e)
			}
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// entryChanges lists the differences between two versions of an entry, in
// schema order.
func entryChanges(o, n *Entry) []FieldChange {
	var ch []FieldChange
	str := func(field, a, b string) {
		if a != b {
			ch = append(ch, FieldChange{Field: field, Old: Visible(a), New: Visible(b)})
		}
	}
	list := func(field string, a, b []string) {
		if !equalStrings(a, b) {
			ch = append(ch, FieldChange{Field: field, Old: visibleList(a), New: visibleList(b)})
		}
	}
	flag := func(field string, a, b bool) {
		if a != b {
			ch = append(ch, FieldChange{Field: field, Old: strconv.FormatBool(a), New: strconv.FormatBool(b)})
		}
	}
	str("match.project", o.Match.Project, n.Match.Project)
	str("match.job", o.Match.Job, n.Match.Job)
	list("match.environments", o.Match.Environments, n.Match.Environments)
	list("match.refs", o.Match.Refs, n.Match.Refs)
	od, nd := o.Definition, n.Definition
	str("definition.image", od.Image, nd.Image)
	list("definition.services", od.Services, nd.Services)
	if !equalStrings(od.Script, nd.Script) {
		ch = append(ch, FieldChange{Field: "definition.script", Diff: unifiedDiff(od.Script, nd.Script)})
	}
	if !equalStrings(od.AfterScript, nd.AfterScript) {
		ch = append(ch, FieldChange{Field: "definition.after_script", Diff: unifiedDiff(od.AfterScript, nd.AfterScript)})
	}
	list("definition.variable_sets", od.VariableSets, nd.VariableSets)
	// What the job gets: a change to an included set shows on every entry
	// that includes it.
	ov, nv := variableMap(od.AllVariables()), variableMap(nd.AllVariables())
	all := map[string]bool{}
	for k := range ov {
		all[k] = true
	}
	for k := range nv {
		all[k] = true
	}
	for _, k := range sortedKeys(all) {
		a, b := describeVariable(ov[k]), describeVariable(nv[k])
		if a != b {
			ch = append(ch, FieldChange{Field: "definition.variables." + Visible(k), Old: a, New: b})
		}
	}
	if od.Timeout != nd.Timeout {
		ch = append(ch, FieldChange{Field: "definition.timeout", Old: describeTimeout(od.Timeout), New: describeTimeout(nd.Timeout)})
	}
	flag("definition.artifacts", od.Artifacts, nd.Artifacts)
	str("definition.uploads", DescribeUploads(od.Uploads), DescribeUploads(nd.Uploads))
	flag("definition.cache", od.Cache, nd.Cache)
	flag("definition.dependencies", od.Dependencies, nd.Dependencies)
	str("definition.network", od.Network, nd.Network)
	osrc, nsrc := o.Source, n.Source
	str("source.repository", osrc.Repository, nsrc.Repository)
	list("source.signers", osrc.Signers, nsrc.Signers)
	str("source.mode", string(osrc.Mode), string(nsrc.Mode))
	str("source.signature", describeSignature(osrc.Signature), describeSignature(nsrc.Signature))
	str("source.pin", osrc.Pin, nsrc.Pin)
	str("source.descends_from", osrc.DescendsFrom, nsrc.DescendsFrom)
	flag("source.allow_rollback", osrc.AllowRollback, nsrc.AllowRollback)
	str("source.approvals", describeApprovals(osrc.Approvals), describeApprovals(nsrc.Approvals))
	ogit, oextra := describeSourceExtensions(osrc)
	ngit, nextra := describeSourceExtensions(nsrc)
	str("source.git", ogit, ngit)
	str("source.extra", oextra, nextra)
	return ch
}

// describeApprovals is a one-line account of an entry's two-person rule.
func describeApprovals(a *SourceApprovals) string {
	if a == nil {
		return "none"
	}
	s := fmt.Sprintf("%d of signers %s", a.Threshold, strings.Join(a.Signers, ", "))
	if a.AuthorCounts {
		s += ", the commit's signer counts"
	}
	return s
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func visibleList(l []string) string {
	v := make([]string, len(l))
	for i, s := range l {
		v[i] = Visible(s)
	}
	return "[" + strings.Join(v, ", ") + "]"
}

func variableMap(vs []Variable) map[string]*Variable {
	m := make(map[string]*Variable, len(vs))
	for i := range vs {
		m[vs[i].Name] = &vs[i]
	}
	return m
}

func describeVariable(v *Variable) string {
	var d string
	switch {
	case v == nil:
		return "(not passed)"
	case v.HasValue && v.Pattern == "":
		d = "value " + strconv.Quote(v.Value)
	case !v.HasValue && v.Pattern != "":
		d = "pattern " + Visible(v.Pattern)
	default:
		d = fmt.Sprintf("invalid (value %q, pattern %q)", v.Value, v.Pattern)
	}
	// The kind and the marker change what the job sees, so a review shows
	// them as part of the rule.
	if v.File {
		d = "file, " + d
	}
	if v.Raw {
		d += " (raw: true)"
	}
	if v.Dangerous {
		d += " (dangerous: true)"
	}
	return d
}

func describeTimeout(d time.Duration) string {
	if d == 0 {
		return "(environment default)"
	}
	return formatDuration(d)
}

// maxDiffCells bounds the LCS table of a script diff; larger changes are
// shown as everything removed and everything added.
const maxDiffCells = 4 << 20

// unifiedDiff renders the difference of two item lists as unified diff
// hunks with three items of context, each item on one line, rendered with
// Visible.
func unifiedDiff(a, b []string) string {
	type op struct {
		kind byte // ' ', '-', '+'
		s    string
	}
	// Trim the common prefix and suffix; diff the middle by LCS.
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		pre++
	}
	suf := 0
	for suf < len(a)-pre && suf < len(b)-pre && a[len(a)-1-suf] == b[len(b)-1-suf] {
		suf++
	}
	am, bm := a[pre:len(a)-suf], b[pre:len(b)-suf]
	var ops []op
	for _, s := range a[:pre] {
		ops = append(ops, op{' ', s})
	}
	if len(am)*len(bm) <= maxDiffCells {
		// lcs[i][j] is the LCS length of am[i:] and bm[j:].
		w := len(bm) + 1
		lcs := make([]int32, (len(am)+1)*w)
		for i := len(am) - 1; i >= 0; i-- {
			for j := len(bm) - 1; j >= 0; j-- {
				if am[i] == bm[j] {
					lcs[i*w+j] = lcs[(i+1)*w+j+1] + 1
				} else {
					lcs[i*w+j] = max(lcs[(i+1)*w+j], lcs[i*w+j+1])
				}
			}
		}
		i, j := 0, 0
		for i < len(am) || j < len(bm) {
			switch {
			case i < len(am) && j < len(bm) && am[i] == bm[j]:
				ops = append(ops, op{' ', am[i]})
				i, j = i+1, j+1
			case j < len(bm) && (i == len(am) || lcs[i*w+j+1] >= lcs[(i+1)*w+j]):
				ops = append(ops, op{'+', bm[j]})
				j++
			default:
				ops = append(ops, op{'-', am[i]})
				i++
			}
		}
	} else {
		for _, s := range am {
			ops = append(ops, op{'-', s})
		}
		for _, s := range bm {
			ops = append(ops, op{'+', s})
		}
	}
	for _, s := range a[len(a)-suf:] {
		ops = append(ops, op{' ', s})
	}
	// Removals before additions within a run read better; the LCS walk
	// above prefers additions, so reorder each changed run.
	for i := 0; i < len(ops); {
		if ops[i].kind == ' ' {
			i++
			continue
		}
		j := i
		for j < len(ops) && ops[j].kind != ' ' {
			j++
		}
		sort.SliceStable(ops[i:j], func(x, y int) bool { return ops[i+x].kind == '-' && ops[i+y].kind == '+' })
		i = j
	}

	const context = 3
	var out strings.Builder
	for i := 0; i < len(ops); {
		if ops[i].kind == ' ' {
			i++
			continue
		}
		// A hunk: from context before the first change to context after
		// the last change that is within 2*context of the next.
		start := max(0, i-context)
		end := i
		for end < len(ops) {
			if ops[end].kind != ' ' {
				end++
				continue
			}
			k := end
			for k < len(ops) && ops[k].kind == ' ' {
				k++
			}
			if k == len(ops) || k-end > 2*context {
				end = min(len(ops), end+context)
				break
			}
			end = k
		}
		// Line numbers of the hunk in a and b.
		aLine, bLine := 1, 1
		for _, o := range ops[:start] {
			if o.kind != '+' {
				aLine++
			}
			if o.kind != '-' {
				bLine++
			}
		}
		aN, bN := 0, 0
		for _, o := range ops[start:end] {
			if o.kind != '+' {
				aN++
			}
			if o.kind != '-' {
				bN++
			}
		}
		if aN == 0 {
			aLine--
		}
		if bN == 0 {
			bLine--
		}
		fmt.Fprintf(&out, "@@ -%d,%d +%d,%d @@\n", aLine, aN, bLine, bN)
		for _, o := range ops[start:end] {
			out.WriteByte(o.kind)
			out.WriteString(Visible(o.s))
			out.WriteByte('\n')
		}
		i = end
	}
	return out.String()
}

func diffSigners(old, new *Allowlist) []SignerSetDiff {
	var oldSets, newSets map[string]*SignerSet
	if old != nil {
		oldSets = old.Signers
	}
	if new != nil {
		newSets = new.Signers
	}
	all := map[string]bool{}
	for k := range oldSets {
		all[k] = true
	}
	for k := range newSets {
		all[k] = true
	}
	var out []SignerSetDiff
	for _, name := range sortedKeys(all) {
		o, n := oldSets[name], newSets[name]
		sd := SignerSetDiff{Name: name, Added: o == nil, Removed: n == nil}
		ok, nk := setKeys(o), setKeys(n)
		for _, id := range sortedKeys(nk) {
			if od, had := ok[id]; !had {
				sd.AddedKeys = append(sd.AddedKeys, nk[id].desc)
			} else if od.content != nk[id].content {
				sd.ChangedKeys = append(sd.ChangedKeys, nk[id].desc)
			}
		}
		for _, id := range sortedKeys(ok) {
			if _, has := nk[id]; !has {
				sd.RemovedKeys = append(sd.RemovedKeys, ok[id].desc)
			}
		}
		if !sd.Added && !sd.Removed && len(sd.AddedKeys)+len(sd.RemovedKeys)+len(sd.ChangedKeys) == 0 {
			continue
		}
		users := new
		if sd.Removed {
			users = old
		}
		for _, e := range users.Jobs {
			if e != nil && (contains(e.Source.Signers, name) || contains(extraSignerSets(e.Source), name)) {
				sd.UsedBy = append(sd.UsedBy, e.Name)
			}
		}
		out = append(out, sd)
	}
	return out
}

type keyInfo struct{ desc, content string }

// setKeys maps each key of s, by fingerprint or allowed_signers line, to
// its description and what identifies its content.
func setKeys(s *SignerSet) map[string]keyInfo {
	m := map[string]keyInfo{}
	if s == nil {
		return m
	}
	for _, k := range s.OpenPGP {
		m["openpgp "+k.Fingerprint] = keyInfo{
			desc:    "openpgp " + Visible(k.Fingerprint) + " (" + Visible(k.File) + ")",
			content: k.File + "\x00" + string(k.Armored),
		}
	}
	for _, l := range s.SSH {
		m["ssh "+l] = keyInfo{desc: "ssh " + Visible(l)}
	}
	for _, k := range s.Sigstore {
		m["sigstore "+k.Fingerprint] = keyInfo{
			desc:    Visible(k.Fingerprint) + " (" + Visible(k.File) + ")",
			content: k.File + "\x00" + string(k.PEM),
		}
	}
	return m
}

// summary is a one-line account of a signer set change.
func (s SignerSetDiff) summary() string {
	var parts []string
	if len(s.AddedKeys) > 0 {
		parts = append(parts, "keys added: "+strings.Join(s.AddedKeys, "; "))
	}
	if len(s.RemovedKeys) > 0 {
		parts = append(parts, "keys removed: "+strings.Join(s.RemovedKeys, "; "))
	}
	if len(s.ChangedKeys) > 0 {
		parts = append(parts, "key files changed: "+strings.Join(s.ChangedKeys, "; "))
	}
	return strings.Join(parts, "; ")
}
