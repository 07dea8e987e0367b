package state

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"gitlab.com/writ-ci/writ/internal/etcdkv"
)

// Marks is every mark one place holds (a host's files or the fleet store),
// as `writ state show` and `writ state export` print it.
type Marks struct {
	// Where: "local <dir>" or "etcd <prefix>".
	Where     string      `json:"where"`
	Allowlist *Allowlist  `json:"allowlist,omitempty"`
	Rejection *Rejection  `json:"rejection,omitempty"`
	Entries   []EntryMark `json:"entries"`
	Jobs      []JobClaim  `json:"jobs"`
	Problems  []string    `json:"problems,omitempty"`
}

// Export reads every mark of s: for a Fleet, the store's and this host's
// floor; for Local, the host's.
func Export(ctx context.Context, s Store) ([]*Marks, error) {
	switch s := s.(type) {
	case *Local:
		m, err := s.marks()
		return []*Marks{m}, err
	case *Fleet:
		shared, err := s.marks(ctx)
		if err != nil {
			return nil, err
		}
		local, err := s.local.marks()
		return []*Marks{shared, local}, err
	}
	return nil, fmt.Errorf("state: cannot export a %T", s)
}

func (l *Local) marks() (*Marks, error) {
	m := &Marks{Where: "local " + l.dir, Entries: []EntryMark{}, Jobs: []JobClaim{}}
	st, err := l.Allowlist(context.Background())
	if err != nil {
		m.Problems = append(m.Problems, err.Error())
	}
	m.Allowlist = st
	files, _ := filepath.Glob(filepath.Join(l.dir, "entries", "*.json"))
	for _, f := range files {
		var e EntryMark
		if _, err := readJSON(f, &e); err != nil {
			m.Problems = append(m.Problems, err.Error())
			continue
		}
		if EntryKey(e.Entry)+".json" != filepath.Base(f) || !shaPattern.MatchString(e.Commit) {
			m.Problems = append(m.Problems, fmt.Sprintf("%s: %v: it does not hold a mark for the entry its name says; %s", f, ErrCorrupt, repairHint(f)))
			continue
		}
		m.Entries = append(m.Entries, e)
	}
	claims, _ := filepath.Glob(filepath.Join(l.dir, "claims", "*.json"))
	for _, f := range claims {
		var c JobClaim
		if _, err := readJSON(f, &c); err != nil {
			m.Problems = append(m.Problems, err.Error())
			continue
		}
		m.Jobs = append(m.Jobs, c)
	}
	m.sort()
	return m, nil
}

func (m *Marks) sort() {
	sort.Slice(m.Entries, func(i, j int) bool { return m.Entries[i].Entry < m.Entries[j].Entry })
	sort.Slice(m.Jobs, func(i, j int) bool { return len(m.Jobs[i].ID) < len(m.Jobs[j].ID) || m.Jobs[i].ID < m.Jobs[j].ID })
}

// exportPage is how many keys one read of marks asks for: it bounds the
// memory a response takes (each value up to maxRecordBytes).
const exportPage = 64

// marks reads every key under the prefix, a page at a time.
func (f *Fleet) marks(ctx context.Context) (*Marks, error) {
	m := &Marks{Where: "etcd " + f.cfg.Prefix, Entries: []EntryMark{}, Jobs: []JobClaim{}}
	from, end := f.cfg.Prefix, etcdkv.PrefixEnd(f.cfg.Prefix)
	for more := true; more; {
		var kvs []etcdkv.KeyValue
		err := f.do(ctx, func(ctx context.Context, c *etcdkv.Client) error {
			var err error
			kvs, more, err = c.Range(ctx, from, end, exportPage)
			return tooLarge(err, "under "+f.cfg.Prefix)
		})
		if err != nil {
			m.sort()
			return m, err
		}
		for _, kv := range kvs {
			m.add(f.cfg.Prefix, kv)
		}
		if len(kvs) > 0 {
			from = string(kvs[len(kvs)-1].Key) + "\x00"
		}
	}
	m.sort()
	return m, nil
}

// add records one store key of marks, or the problem with it.
func (m *Marks) add(prefix string, kv etcdkv.KeyValue) {
	key := string(kv.Key)
	rest := strings.TrimPrefix(key, prefix)
	var derr error
	switch {
	case rest == "allowlist/mark":
		var am AllowlistMark
		if derr = decode(key, kv.Value, &am); derr == nil {
			m.Allowlist = &Allowlist{Version: am.Version, Commit: am.Commit, Digest: am.Digest, Statement: am.Statement, AcceptedAt: am.AcceptedAt}
		}
	case rest == "allowlist/rejected":
		m.Rejection = &Rejection{}
		derr = decode(key, kv.Value, m.Rejection)
	case strings.HasPrefix(rest, "entries/"):
		var e EntryMark
		if derr = decode(key, kv.Value, &e); derr == nil {
			m.Entries = append(m.Entries, e)
		}
	case strings.HasPrefix(rest, "jobs/"):
		var c JobClaim
		if derr = decode(key, kv.Value, &c); derr == nil {
			m.Jobs = append(m.Jobs, c)
		}
	default:
		derr = fmt.Errorf("unknown key %s", key)
	}
	if derr != nil {
		m.Problems = append(m.Problems, derr.Error())
	}
}

// Migrate copies this host's local marks into the fleet store, for the
// first host of a fleet: the allowlist mark where the store has a lower one
// or none, each entry's mark where the store has none. It never lowers or
// replaces a mark the store holds; it returns one line per decision.
func Migrate(ctx context.Context, f *Fleet) ([]string, error) {
	local, err := f.local.marks()
	if err != nil {
		return nil, err
	}
	if len(local.Problems) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrCorrupt, strings.Join(local.Problems, "; "))
	}
	var out []string
	if st := local.Allowlist; st != nil && st.Commit != "" {
		cur, err := f.Allowlist(ctx)
		if err != nil {
			return nil, err
		}
		// The host's mark is its own verified one; Advance publishes it.
		if cur.base != nil && cur.base.shared.Version >= st.Version {
			out = append(out, fmt.Sprintf("allowlist: kept the store's version %d (this host: %d)", cur.base.shared.Version, st.Version))
		} else {
			n := cur.Advance(st.Mark(), cur.LastCheck, cur.CacheSHA256)
			if err := f.PutAllowlist(ctx, n); err != nil {
				return out, err
			}
			out = append(out, fmt.Sprintf("allowlist: version %d at %s copied to the store", st.Version, st.Commit))
		}
	}
	for _, m := range local.Entries {
		e, err := f.Entry(ctx, m.Entry)
		if err != nil {
			return out, err
		}
		if !e.unshared {
			out = append(out, fmt.Sprintf("entry %q: kept the store's commit %s (this host: %s)", m.Entry, e.Last.Commit, m.Commit))
			continue
		}
		if err := f.PutEntry(ctx, e, m); err != nil {
			return out, err
		}
		out = append(out, fmt.Sprintf("entry %q: commit %s copied to the store", m.Entry, m.Commit))
	}
	return out, nil
}

// AuditMark is what the audit log says was last in force: the last
// accepted allowlist version and, per entry, the last admitted commit.
type AuditMark struct {
	Allowlist *AllowlistMark
	Entries   map[string]EntryMark
}

// Repair rebuilds this host's corrupt state files from marks (read from
// the audit log by the caller, whose hash chain it verified). A corrupt
// file is kept next to it as <name>.corrupt-<unix time>. It returns one
// line per file; a corrupt file marks cannot rebuild is an error naming it.
func Repair(l *Local, marks AuditMark, now time.Time) ([]string, error) {
	var out []string
	var errs []error
	aside := func(path string) error {
		return os.Rename(path, fmt.Sprintf("%s.corrupt-%d", path, now.Unix()))
	}
	if _, err := l.Allowlist(context.Background()); errors.Is(err, ErrCorrupt) {
		if marks.Allowlist == nil {
			errs = append(errs, fmt.Errorf("%s: the audit log records no accepted allowlist version; remove the file to start from first contact (this forgets the high-water mark)", l.allowlistPath()))
		} else if err := aside(l.allowlistPath()); err != nil {
			errs = append(errs, err)
		} else if err := l.PutAllowlist(context.Background(), &Allowlist{Version: marks.Allowlist.Version, Commit: marks.Allowlist.Commit,
			Digest: marks.Allowlist.Digest, Statement: marks.Allowlist.Statement, AcceptedAt: marks.Allowlist.AcceptedAt}); err != nil {
			errs = append(errs, err)
		} else {
			out = append(out, fmt.Sprintf("%s: rebuilt from the audit log (version %d at %s)", l.allowlistPath(), marks.Allowlist.Version, marks.Allowlist.Commit))
		}
	}
	byKey := map[string]EntryMark{}
	for name, m := range marks.Entries {
		byKey[EntryKey(name)] = m
	}
	files, _ := filepath.Glob(filepath.Join(l.dir, "entries", "*.json"))
	for _, f := range files {
		key := strings.TrimSuffix(filepath.Base(f), ".json")
		var e EntryMark
		if _, err := readJSON(f, &e); err == nil && EntryKey(e.Entry) == key && shaPattern.MatchString(e.Commit) {
			continue
		}
		m, ok := byKey[key]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s: the audit log records no admission for this entry; remove the file to accept any commit of the entry once", f))
		case aside(f) != nil:
			errs = append(errs, fmt.Errorf("%s: cannot move it aside", f))
		default:
			if err := writeJSON(f, m); err != nil {
				errs = append(errs, err)
				continue
			}
			out = append(out, fmt.Sprintf("%s: rebuilt from the audit log (entry %q at %s)", f, m.Entry, m.Commit))
		}
	}
	claims, _ := filepath.Glob(filepath.Join(l.dir, "claims", "*.json"))
	for _, f := range claims {
		var c JobClaim
		if _, err := readJSON(f, &c); err != nil {
			if err := aside(f); err != nil {
				errs = append(errs, err)
				continue
			}
			out = append(out, f+": corrupt job claim moved aside")
		}
	}
	return out, errors.Join(errs...)
}
