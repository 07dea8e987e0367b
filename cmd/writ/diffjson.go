package main

import "gitlab.com/writ-ci/writ/allowlist"

// diffReport is the JSON body of writ allowlist diff: what changes, per
// environment, by entry name; the entries themselves are in the files.
type diffReport struct {
	OldVersion   int64           `json:"old_version,omitempty"`
	NewVersion   int64           `json:"new_version,omitempty"`
	Environments []diffEnv       `json:"environments"`
	Signers      []diffSignerSet `json:"signers"`
}

type diffEnv struct {
	Environment string      `json:"environment"`
	Added       []string    `json:"added,omitempty"`
	Changed     []diffEntry `json:"changed,omitempty"`
	Removed     []string    `json:"removed,omitempty"`
}

type diffEntry struct {
	Entry   string       `json:"entry"`
	Changes []diffChange `json:"changes"`
}

type diffChange struct {
	Field string `json:"field"`
	Old   string `json:"old,omitempty"`
	New   string `json:"new,omitempty"`
	Diff  string `json:"diff,omitempty"`
}

type diffSignerSet struct {
	Name        string   `json:"name"`
	Added       bool     `json:"added,omitempty"`
	Removed     bool     `json:"removed,omitempty"`
	AddedKeys   []string `json:"added_keys,omitempty"`
	RemovedKeys []string `json:"removed_keys,omitempty"`
	ChangedKeys []string `json:"changed_keys,omitempty"`
	UsedBy      []string `json:"used_by,omitempty"`
}

func newDiffReport(d *allowlist.DiffReport) diffReport {
	r := diffReport{Environments: []diffEnv{}, Signers: []diffSignerSet{}}
	if d.Old != nil {
		r.OldVersion = d.Old.Version
	}
	if d.New != nil {
		r.NewVersion = d.New.Version
	}
	names := func(es []*allowlist.Entry) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.Name)
		}
		return out
	}
	for _, e := range d.Environments {
		de := diffEnv{Environment: e.Environment, Added: names(e.Added), Removed: names(e.Removed)}
		for _, c := range e.Changed {
			entry := diffEntry{Entry: c.New.Name}
			for _, f := range c.Changes {
				entry.Changes = append(entry.Changes, diffChange{Field: f.Field, Old: f.Old, New: f.New, Diff: f.Diff})
			}
			de.Changed = append(de.Changed, entry)
		}
		r.Environments = append(r.Environments, de)
	}
	for _, s := range d.Signers {
		r.Signers = append(r.Signers, diffSignerSet{Name: s.Name, Added: s.Added, Removed: s.Removed,
			AddedKeys: s.AddedKeys, RemovedKeys: s.RemovedKeys, ChangedKeys: s.ChangedKeys, UsedBy: s.UsedBy})
	}
	return r
}
