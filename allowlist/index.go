package allowlist

import "slices"

// matchKey is what selects an entry. A struct key compares every field
// exactly and cannot be confused by separators inside the strings.
type matchKey struct {
	project, job, environment, ref string
}

type jobKey struct {
	project, job string
}

// Index answers which entry, if any, matches a job. It is built once per
// accepted allowlist and is safe for concurrent use.
type Index struct {
	exact  map[matchKey]*Entry
	near   map[jobKey][]*Entry
	byName map[string]*Entry
	// ambiguous holds keys and names two entries share. Parse refuses such
	// allowlists; an Allowlist built some other way fails closed on them.
	ambiguous     map[matchKey]bool
	ambiguousName map[string]bool
}

// NewIndex indexes a's entries. a may be nil (an index that matches nothing).
func NewIndex(a *Allowlist) *Index {
	ix := &Index{
		exact:         map[matchKey]*Entry{},
		near:          map[jobKey][]*Entry{},
		byName:        map[string]*Entry{},
		ambiguous:     map[matchKey]bool{},
		ambiguousName: map[string]bool{},
	}
	if a == nil {
		return ix
	}
	for _, e := range a.Jobs {
		if e == nil {
			continue
		}
		jk := jobKey{e.Match.Project, e.Match.Job}
		ix.near[jk] = append(ix.near[jk], e)
		if _, dup := ix.byName[e.Name]; dup {
			ix.ambiguousName[e.Name] = true
		} else {
			ix.byName[e.Name] = e
		}
		for _, env := range e.Match.Environments {
			for _, ref := range e.Match.Refs {
				k := matchKey{e.Match.Project, e.Match.Job, env, ref}
				if other, dup := ix.exact[k]; dup && other != e {
					ix.ambiguous[k] = true
				} else {
					ix.exact[k] = e
				}
			}
		}
	}
	return ix
}

// Lookup returns the entry whose project, job, one of its environments and
// one of its refs equal the arguments exactly, byte for byte. ref is a full
// ref (refs/heads/main, refs/tags/v1.0; see JobRef): a short name matches
// nothing.
func (ix *Index) Lookup(project, job, environment, ref string) (*Entry, bool) {
	k := matchKey{project, job, environment, ref}
	if ix.ambiguous[k] {
		return nil, false
	}
	e, ok := ix.exact[k]
	return e, ok
}

// Near returns the entries for the same project and job, whatever their
// environments and refs, in file order: the candidates a refusal message
// compares the job with.
func (ix *Index) Near(project, job string) []*Entry {
	return slices.Clone(ix.near[jobKey{project, job}])
}

// Entry returns the entry with the given name.
func (ix *Index) Entry(name string) (*Entry, bool) {
	if ix.ambiguousName[name] {
		return nil, false
	}
	e, ok := ix.byName[name]
	return e, ok
}
