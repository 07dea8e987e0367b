// Package fsutil holds the file primitives writ's state depends on: writes
// that are either complete or absent, write-once files, bounded reads and
// advisory locks shared between the processes of one machine.
//
// Every writ process (one per job stage) may touch the same state and audit
// files at once, so nothing here assumes it is alone.
package fsutil

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
)

// WriteFileAtomic writes data to a temp file in the same directory, fsyncs it,
// renames it over path and fsyncs the directory. perm applies to the new file.
//
// A reader sees either the old content or the new one, never a partial write,
// and after a crash path holds one of the two. On any error the temp file is
// removed.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return WriteFileAtomicParts(path, perm, data)
}

// WriteFileAtomicParts is WriteFileAtomic of the parts written one after
// the other, so a large file built in pieces is never copied into one
// buffer first.
func WriteFileAtomicParts(path string, perm os.FileMode, parts ...[]byte) error {
	tmp, err := writeTemp(path, perm, parts...)
	if err != nil {
		return err
	}
	return renameIntoPlace(tmp, path)
}

// ReplaceFile writes data to a temp file in the same directory and renames
// it over path: a reader sees the old content or the new one, never a
// partial write, and a file planted at path is replaced, never followed.
// Unlike WriteFileAtomic nothing is fsynced, so after a crash of the host
// path may be missing, old or empty: only for files nothing needs after a
// crash (a stage's script, rewritten when the stage runs again).
func ReplaceFile(path string, data []byte, perm os.FileMode) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	name := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm.Perm())
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(name, path)
	}
	if err != nil {
		_ = os.Remove(name)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// WriteFileAtomicFrom is WriteFileAtomic of head followed by everything
// read from rest: a large file whose tail is built on disk (another temp
// file) reaches its place without passing through memory.
func WriteFileAtomicFrom(path string, perm os.FileMode, head []byte, rest io.Reader) error {
	tmp, err := writeTempWith(path, perm, func(f *os.File) error {
		if _, err := f.Write(head); err != nil {
			return err
		}
		_, err := io.Copy(f, rest)
		return err
	})
	if err != nil {
		return err
	}
	return renameIntoPlace(tmp, path)
}

// renameIntoPlace moves the written temp file tmp to path and syncs the
// directory, so the rename survives a crash; on failure tmp is removed.
func renameIntoPlace(tmp, path string) error {
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// CreateExclusive writes a file that must not exist yet and never changes
// afterwards (a write-once record such as a per-job decision snapshot).
//
// The content is written and fsynced under a temp name and then hard-linked to
// path, so path appears complete or not at all, and the link fails with an
// error wrapping fs.ErrExist if path already exists: a second writer never
// replaces the first one's record.
func CreateExclusive(path string, data []byte, perm os.FileMode) error {
	tmp, err := writeTemp(path, perm, data)
	if err != nil {
		return err
	}
	// The temp name is removed whatever happens: on success path holds the
	// only remaining link.
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create %s: %w (it is write-once; a record with this name was already written)", path, fs.ErrExist)
		}
		return fmt.Errorf("create %s: %w", path, err)
	}
	if err := os.Remove(tmp); err != nil {
		return fmt.Errorf("create %s: remove temp file: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// writeTemp writes the parts with mode perm to a new, randomly named file next to
// path and fsyncs it. It returns the temp file's name; on error nothing is
// left behind.
func writeTemp(path string, perm os.FileMode, parts ...[]byte) (string, error) {
	return writeTempWith(path, perm, func(f *os.File) error {
		for _, data := range parts {
			if _, err := f.Write(data); err != nil {
				return err
			}
		}
		return nil
	})
}

// writeTempWith is writeTemp of what write writes to the temp file.
func writeTempWith(path string, perm os.FileMode, write func(*os.File) error) (string, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	// os.CreateTemp opens with O_CREATE|O_EXCL and a random suffix, so it
	// never follows or reuses a file someone else planted.
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	// The name is kept in its own variable: a named result would already
	// be "" when a deferred cleanup ran, and the temp file would leak (a
	// full disk then filled up with them).
	name := f.Name()
	fail := func(err error) (string, error) {
		_ = f.Close()
		_ = os.Remove(name)
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	if err := write(f); err != nil {
		return fail(err)
	}
	// Chmod on the descriptor is exact: the umask does not apply.
	if err := f.Chmod(perm.Perm()); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("fsync: %w", err))
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(name)
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return name, nil
}

// syncDir makes a rename or link in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// ErrTooLarge is wrapped by ReadFileLimit's error for a file over the limit.
var ErrTooLarge = errors.New("file too large")

// ReadFileLimit reads at most limit bytes; a larger file is an error.
//
// It reads through the limit rather than trusting a stat, so a file that
// grows while it is read, or a device that reports no size, is still bounded.
func ReadFileLimit(path string, limit int64) ([]byte, error) {
	if limit < 0 {
		return nil, fmt.Errorf("read %s: negative limit %d", path, limit)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	n := limit
	if n < math.MaxInt64 {
		n++ // one more byte than allowed tells "exactly limit" from "more"
	}
	data, err := io.ReadAll(io.LimitReader(f, n))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("read %s: %w: more than %d bytes", path, ErrTooLarge, limit)
	}
	return data, nil
}
