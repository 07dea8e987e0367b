package allowlist

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	suggestpkg "gitlab.com/writ-ci/writ/internal/suggest"
	"go.yaml.in/yaml/v3"
)

// VariableSet is a named set of variables that entries include by name
// (definition.variable_sets), so that the variables a project, group or
// instance defines for every job are written once per environment or
// project rather than in every entry. An included variable is admitted
// exactly as if the entry named it.
type VariableSet struct {
	Name      string
	Variables []Variable
	Pos       Pos
}

// AllVariables returns the variables the entry admits: those of its
// variable sets, in the order the entry lists them, then its own. Parse
// refuses a name that would appear twice.
func (d *Definition) AllVariables() []Variable {
	if len(d.Included) == 0 {
		return d.Variables
	}
	return append(slices.Clip(d.Included), d.Variables...)
}

// variableSets decodes the top-level variable_sets.
func (p *parser) variableSets(n *yaml.Node, a *Allowlist) {
	if !p.mapping(n, "variable_sets", "a mapping of set names to variables") {
		return
	}
	a.VariableSets = map[string]*VariableSet{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !plainKey(k) {
			continue
		}
		if !setName.MatchString(k.Value) {
			p.errorf(k, "variable set name %q: use 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit", k.Value)
			continue
		}
		if _, dup := a.VariableSets[k.Value]; dup {
			continue // the structure check reported the duplicate key
		}
		set := &VariableSet{Name: k.Value, Pos: Pos{Line: k.Line, Column: k.Column}}
		if isNull(v) || (v.Kind == yaml.MappingNode && len(v.Content) == 0) {
			p.errorf(k, "variable set %s is empty: list its variables or remove it", k.Value)
			continue
		}
		var keys []*yaml.Node
		set.Variables, keys = p.variables(v)
		// A set's values may refer to the set's own variables and to the
		// ones writ sets: whatever entry includes the set, those resolve
		// the same way.
		p.checkValueRefs("variable set "+k.Value, set.Variables, keys, scopeOf(set.Variables))
		a.VariableSets[k.Value] = set
	}
}

// includeSets decodes definition.variable_sets and resolves it into
// d.Included, refusing an unknown set and a variable the entry would get
// twice.
func (p *parser) includeSets(n *yaml.Node, d *Definition, own []*yaml.Node, sc *entryScope) {
	names, nodes, _ := p.strList(n, "variable_sets", "variable set", true)
	from := map[string]string{}
	for i, v := range d.Variables {
		if i < len(own) {
			from[v.Name] = "the entry's own variables (line " + strconv.Itoa(own[i].Line) + ")"
		}
	}
	for i, name := range names {
		set := sc.varSet(name)
		if set == nil {
			p.errorf(nodes[i], "variable set %q is not defined: define it under variable_sets at the top level%s", name, definedVarSets(sc, name))
			continue
		}
		d.VariableSets = append(d.VariableSets, name)
		for _, v := range set.Variables {
			if where, dup := from[v.Name]; dup {
				p.errorf(nodes[i], "variable set %q defines %s, which %s also define: an entry admits each variable once; remove one of them", name, v.Name, where)
				continue
			}
			from[v.Name] = "variable set " + strconv.Quote(name)
			if len(names) > 1 {
				d.Included = append(d.Included, v)
			}
		}
		if len(names) == 1 {
			// The common case shares the set's slice: a large allowlist
			// of entries that include one set holds its variables once.
			d.Included = set.Variables
		}
	}
}

func definedVarSets(sc *entryScope, near string) string {
	names := sc.varSetNames()
	if len(names) == 0 {
		return ""
	}
	if s := suggestpkg.Closest(near, names, 3); s != "" {
		return fmt.Sprintf(" (did you mean %q?)", s)
	}
	if len(names) > 10 {
		names = append(names[:10], "…")
	}
	return " (defined: " + strings.Join(names, ", ") + ")"
}

// scopeOf is the lookup of names a value may refer to: vars and the
// variables writ sets.
func scopeOf(vars []Variable) map[string]bool {
	m := make(map[string]bool, len(vars))
	for _, v := range vars {
		m[v.Name] = true
	}
	return m
}

// checkValueRefs refuses a pinned value that GitLab Runner would expand
// with a reference writ cannot resolve from signed data: a name outside
// scope and not set by writ. At admission such a name would take GitLab's
// value in the runner and nothing under writ; the entry must say which.
func (p *parser) checkValueRefs(where string, vars []Variable, keys []*yaml.Node, scope map[string]bool) {
	for i, v := range vars {
		if !v.HasValue || v.Raw || i >= len(keys) {
			continue
		}
		for _, ref := range References(v.Value) {
			if scope[ref] || ProvidedSource(ref) != "" {
				continue
			}
			p.errorf(keys[i], "%s: variable %s %s", where, v.Name, unresolvedRef(ref))
		}
	}
}

// unresolvedRef says why a reference to name cannot be expanded from
// signed data, and what to write instead.
func unresolvedRef(name string) string {
	const fix = "write $$ for a literal $, or add raw: true to keep the whole value unexpanded"
	switch {
	case !varNameRE.MatchString(name):
		return fmt.Sprintf("refers to ${%s}: GitLab Runner has no shell defaults or substitutions, it looks up a variable named %q; %s", name, name, fix)
	case Predefined(name):
		return fmt.Sprintf("refers to $%s, a GitLab variable that writ never passes to a job (GitLab Runner would put GitLab's value there): %s", name, fix)
	}
	return fmt.Sprintf("refers to $%s, which the entry does not admit (GitLab Runner would put GitLab's value there): admit %s, or %s", name, name, fix)
}

// ExpandImage returns an image or service reference as GitLab Runner
// expands it, computed from d's variables alone: every variable it refers
// to, directly or through a variable's value, must be pinned by value and
// not a file variable, so the image that runs is fixed by the signed entry.
// A reference without "$" is returned as it is.
func ExpandImage(d *Definition, ref string) (string, error) {
	if !strings.Contains(ref, "$") {
		return ref, nil
	}
	byName := map[string]*Variable{}
	for _, v := range d.AllVariables() {
		byName[v.Name] = &v
	}
	var bad error
	pinned := func(name string) *Variable {
		v := byName[name]
		switch {
		case bad != nil:
		case v == nil:
			bad = fmt.Errorf("refers to $%s, which is not a variable of the entry: an image is expanded only from the entry's pinned values", name)
		case !v.HasValue:
			bad = fmt.Errorf("refers to $%s, which the entry admits by pattern: pin it with value: so the entry fixes the image", name)
		case v.File:
			bad = fmt.Errorf("refers to $%s, a file variable (the runner would insert a path): use a value variable", name)
		default:
			return v
		}
		return nil
	}
	// One level, as the runner: the image sees the variables' expanded
	// values, and those were expanded against the unexpanded ones. Every
	// step is bounded: a valid reference is short, and the text may not
	// be signed yet.
	const max = 4096
	out, ok := ExpandMax(ref, func(name string) string {
		v := pinned(name)
		if v == nil {
			return ""
		}
		if v.Raw {
			return v.Value
		}
		val, ok := ExpandMax(v.Value, func(inner string) string {
			if w := pinned(inner); w != nil {
				return w.Value
			}
			return ""
		}, max)
		if !ok && bad == nil {
			bad = fmt.Errorf("expands to more than %d bytes", max)
		}
		return val
	}, max)
	if bad == nil && !ok {
		bad = fmt.Errorf("expands to more than %d bytes", max)
	}
	if bad != nil {
		return "", bad
	}
	return out, nil
}

// checkExpandedImages checks the entry's image and services after
// expansion: pinned by digest, computed from pinned values only.
func (p *parser) checkExpandedImages(d *Definition, image *yaml.Node, services []*yaml.Node) {
	check := func(n *yaml.Node, what, ref string) {
		if n == nil || !strings.Contains(ref, "$") {
			return
		}
		got, err := ExpandImage(d, ref)
		switch {
		case err != nil:
			p.errorf(n, "%s %q %v", what, ref, err)
		case checkImage(got) != "":
			p.errorf(n, "%s %q expands to %q, which %s", what, ref, got, checkImage(got))
		}
	}
	check(image, "image", d.Image)
	for i, s := range d.Services {
		if i < len(services) {
			check(services[i], "service", s)
		}
	}
}

// resolveIncluded sets e's Included from a's variable sets, as Parse did:
// the verified store keeps each set once, not once per entry.
func (a *Allowlist) resolveIncluded(e *Entry) {
	d := &e.Definition
	d.Included = nil
	for _, name := range d.VariableSets {
		if set := a.VariableSets[name]; set != nil {
			if len(d.VariableSets) == 1 {
				d.Included = set.Variables
				break
			}
			d.Included = append(d.Included, set.Variables...)
		}
	}
}

// variableSet writes one set of the top-level variable_sets.
func (w *writer) variableSet(name string, s *VariableSet) {
	if s == nil || len(s.Variables) == 0 {
		w.line(2, w.key(name)+": {}")
		return
	}
	w.line(2, w.key(name)+":")
	for _, v := range s.Variables {
		w.variable(4, v)
	}
}
