package state

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"gitlab.com/writ-ci/writ/internal/fsutil"
	"gitlab.com/writ-ci/writ/internal/lazyre"
)

// maxRecordBytes bounds reading one state file or store value.
const maxRecordBytes = 1 << 16

var (
	shaPattern   = lazyre.New(`^[0-9a-f]{40}$`)
	jobIDPattern = lazyre.New(`^[1-9][0-9]{0,18}$`)
)

// Local keeps the trust state in files under one host's state directory:
//
//	allowlist-state.json                 the allowlist's state
//	entries/<sha256 of entry name>.json  an entry's last admitted commit
//	claims/<job id>.json                 a job id claimed by a run
//
// Every write is atomic (temp file, fsync, rename). Local does not lock:
// its callers serialise a read-decide-write under the host's lock for the
// allowlist or the entry (fsutil.Lock), which also covers its
// compare-and-swap.
type Local struct {
	dir string
}

// NewLocal returns the local state kept in dir.
func NewLocal(dir string) *Local { return &Local{dir: dir} }

// Dir is the state directory.
func (l *Local) Dir() string { return l.dir }

func (l *Local) allowlistPath() string { return filepath.Join(l.dir, "allowlist-state.json") }

// EntryKey is the file and key name of an entry: the hex SHA-256 of its
// name, so any name is a safe path segment.
func EntryKey(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:])
}

func (l *Local) entryPath(name string) string {
	return filepath.Join(l.dir, "entries", EntryKey(name)+".json")
}

func (l *Local) claimPath(id string) string { return filepath.Join(l.dir, "claims", id+".json") }

// repairHint says how to get past a corrupt local file without losing a
// mark silently.
func repairHint(path string) string {
	return fmt.Sprintf("writ never resets a high-water mark on its own: run `writ state repair` to rebuild it from the audit log (and the fleet store, if configured), or restore %s from a backup", path)
}

// readJSON decodes path into v; a missing file returns false.
func readJSON(path string, v any) (bool, error) {
	b, err := fsutil.ReadFileLimit(path, maxRecordBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("%w: state file %s: %v; %s", ErrCorrupt, path, err, repairHint(path))
	}
	return true, nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if err := fsutil.WriteFileAtomic(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// Allowlist implements Store.
func (l *Local) Allowlist(context.Context) (*Allowlist, error) {
	var st Allowlist
	ok, err := readJSON(l.allowlistPath(), &st)
	if err != nil || !ok {
		return nil, err
	}
	if st.Commit != "" && !shaPattern.MatchString(st.Commit) {
		return nil, fmt.Errorf("%w: state file %s names commit %q; %s", ErrCorrupt, l.allowlistPath(), st.Commit, repairHint(l.allowlistPath()))
	}
	return &st, nil
}

// PutAllowlist implements Store. The caller holds the allowlist lock.
func (l *Local) PutAllowlist(_ context.Context, st *Allowlist) error {
	return writeJSON(l.allowlistPath(), st)
}

// Entry implements Store.
func (l *Local) Entry(_ context.Context, name string) (*Entry, error) {
	m, err := l.entryMark(name)
	if err != nil {
		return nil, err
	}
	return &Entry{Name: name, Last: m, synced: m != nil}, nil
}

func (l *Local) entryMark(name string) (*EntryMark, error) {
	var m EntryMark
	path := l.entryPath(name)
	ok, err := readJSON(path, &m)
	if err != nil || !ok {
		return nil, err
	}
	if !validEntryMark(&m, name) {
		return nil, fmt.Errorf("%w: %s does not hold a record for entry %q; %s", ErrCorrupt, path, name, repairHint(path))
	}
	return &m, nil
}

// PutEntry implements Store. The caller holds the entry's lock.
func (l *Local) PutEntry(_ context.Context, e *Entry, next EntryMark) error {
	if next.Entry != e.Name {
		return fmt.Errorf("state: mark for entry %q stored under %q", next.Entry, e.Name)
	}
	return writeJSON(l.entryPath(e.Name), next)
}

// ClaimJob implements Store.
func (l *Local) ClaimJob(_ context.Context, c JobClaim) error {
	if !jobIDPattern.MatchString(c.ID) {
		return fmt.Errorf("state: job id %q is not a GitLab job id", c.ID)
	}
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	path := l.claimPath(c.ID)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	err = fsutil.CreateExclusive(path, append(b, '\n'), 0o600)
	if err == nil {
		return nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	held, err := l.Claim(context.Background(), c.ID)
	if err != nil {
		return err
	}
	if held == nil || held.Token != c.Token {
		h := JobClaim{ID: c.ID}
		if held != nil {
			h = *held
		}
		return &ClaimedError{Holder: h}
	}
	return nil
}

// Claim implements Store.
func (l *Local) Claim(_ context.Context, id string) (*JobClaim, error) {
	if !jobIDPattern.MatchString(id) {
		return nil, fmt.Errorf("state: job id %q is not a GitLab job id", id)
	}
	var c JobClaim
	ok, err := readJSON(l.claimPath(id), &c)
	if err != nil || !ok {
		return nil, err
	}
	return &c, nil
}

// ReleaseJob implements Store.
func (l *Local) ReleaseJob(ctx context.Context, c JobClaim) error {
	held, err := l.Claim(ctx, c.ID)
	if err != nil || held == nil || held.Token != c.Token {
		return err
	}
	if err := os.Remove(l.claimPath(c.ID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// DropClaim implements Store.
func (l *Local) DropClaim(ctx context.Context, c JobClaim) error { return l.ReleaseJob(ctx, c) }

// Close implements Store.
func (l *Local) Close() error { return nil }
