package fsutil

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"gitlab.com/writ-ci/writ/internal/testfault"
)

// leftovers lists the directory entries other than want, i.e. temp files a
// failed or finished write left behind.
func leftovers(t *testing.T, dir string, want ...string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var extra []string
	for _, e := range ents {
		keep := false
		for _, w := range want {
			if e.Name() == w {
				keep = true
			}
		}
		if !keep {
			extra = append(extra, e.Name())
		}
	}
	return extra
}

// Not parallel: it changes the process umask.
func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")

	// The umask must not weaken or change the requested mode.
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	if err := WriteFileAtomic(p, []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(p, []byte("two"), 0o640); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "two" {
		t.Fatalf("content = %q, want %q", got, "two")
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode = %v, want 0640", fi.Mode().Perm())
	}
	if extra := leftovers(t, dir, "state.json"); len(extra) > 0 {
		t.Fatalf("temp files left behind: %v", extra)
	}
}

func TestWriteFileAtomicErrorsLeaveNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()

	// Missing directory: nothing can be created.
	if err := WriteFileAtomic(filepath.Join(dir, "nope", "f"), []byte("x"), 0o600); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}

	// The target is a non-empty directory: the rename fails after the temp
	// file was written, and the temp file must be removed.
	target := filepath.Join(dir, "target")
	if err := os.MkdirAll(filepath.Join(target, "child"), 0o700); err != nil {
		t.Fatal(err)
	}
	err := WriteFileAtomic(target, []byte("x"), 0o600)
	if err == nil {
		t.Fatal("rename over a non-empty directory succeeded")
	}
	if !strings.Contains(err.Error(), target) {
		t.Errorf("error %q does not name the file", err)
	}
	if extra := leftovers(t, dir, "target"); len(extra) > 0 {
		t.Fatalf("temp files left behind after a failed write: %v", extra)
	}
}

// TestWriteFileAtomicNoTornReads checks that readers racing a writer only
// ever see one complete version.
func TestWriteFileAtomicNoTornReads(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	a := bytes.Repeat([]byte("a"), 256<<10)
	b := bytes.Repeat([]byte("b"), 128<<10)
	if err := WriteFileAtomic(p, a, 0o600); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var bad atomic.Value
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				got, err := os.ReadFile(p)
				if err != nil {
					bad.Store(err.Error())
					return
				}
				if !bytes.Equal(got, a) && !bytes.Equal(got, b) {
					bad.Store(fmt.Sprintf("torn read of %d bytes", len(got)))
					return
				}
			}
		})
	}
	for i := range 40 {
		data := a
		if i%2 == 0 {
			data = b
		}
		if err := WriteFileAtomic(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if v := bad.Load(); v != nil {
		t.Fatal(v)
	}
	if extra := leftovers(t, dir, "f"); len(extra) > 0 {
		t.Fatalf("temp files left behind: %v", extra)
	}
}

func TestCreateExclusive(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "decision.json")
	if err := CreateExclusive(p, []byte("first"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := CreateExclusive(p, []byte("second"), 0o600)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second create: err = %v, want fs.ErrExist", err)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "first" {
		t.Fatalf("write-once file was replaced: %q", got)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
	}
	if extra := leftovers(t, dir, "decision.json"); len(extra) > 0 {
		t.Fatalf("temp files left behind: %v", extra)
	}
}

// TestCreateExclusiveRace: of many concurrent creators exactly one wins, and
// the file holds the winner's complete content.
func TestCreateExclusiveRace(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "once")
	const n = 16
	var wins atomic.Int32
	var winner atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			data := bytes.Repeat([]byte{byte('A' + i)}, 64<<10)
			err := CreateExclusive(p, data, 0o600)
			switch {
			case err == nil:
				wins.Add(1)
				winner.Store(int32(i))
			case !errors.Is(err, fs.ErrExist):
				t.Errorf("creator %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d creators succeeded, want exactly 1", wins.Load())
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte{byte('A' + winner.Load())}, 64<<10)
	if !bytes.Equal(got, want) {
		t.Fatal("file does not hold the winner's complete content")
	}
	if extra := leftovers(t, dir, "once"); len(extra) > 0 {
		t.Fatalf("temp files left behind: %v", extra)
	}
}

func TestReadFileLimit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFileLimit(p, 10)
	if err != nil || string(got) != "0123456789" {
		t.Fatalf("at the limit: %q, %v", got, err)
	}
	if _, err := ReadFileLimit(p, 9); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over the limit: err = %v, want ErrTooLarge", err)
	}
	if _, err := ReadFileLimit(filepath.Join(dir, "missing"), 10); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: err = %v, want fs.ErrNotExist", err)
	}
	if _, err := ReadFileLimit(p, -1); err == nil {
		t.Fatal("negative limit accepted")
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadFileLimit(empty, 0); err != nil || len(got) != 0 {
		t.Fatalf("empty file at limit 0: %q, %v", got, err)
	}
	// A source without a meaningful size is still bounded by reading.
	if _, err := ReadFileLimit("/dev/zero", 1<<10); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("/dev/zero: err = %v, want ErrTooLarge", err)
	}
}

// A full disk fails the write partway; the temp file must not stay behind
// and fill the disk further.
func TestWriteFileAtomicFullDiskLeavesNothing(t *testing.T) {
	t.Parallel()
	dir := testfault.SmallFS(t, 64<<10)
	p := filepath.Join(dir, "state.json")
	if err := WriteFileAtomic(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := WriteFileAtomic(p, bytes.Repeat([]byte("x"), 128<<10), 0o600)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write larger than the disk: %v, want ENOSPC", err)
	}
	if extra := leftovers(t, dir, "state.json"); len(extra) > 0 {
		t.Fatalf("temp files left behind on a full disk: %v", extra)
	}
	if got, _ := os.ReadFile(p); string(got) != "old" {
		t.Fatalf("the old content is lost: %q", got)
	}
	// CreateExclusive shares the temp-file path.
	err = CreateExclusive(filepath.Join(dir, "once"), bytes.Repeat([]byte("x"), 128<<10), 0o600)
	if err == nil {
		t.Fatal("CreateExclusive larger than the disk succeeded")
	}
	if extra := leftovers(t, dir, "state.json"); len(extra) > 0 {
		t.Fatalf("temp files left behind on a full disk: %v", extra)
	}
}

// ReplaceFile: the new content and mode, a planted symlink replaced (not
// followed), nothing left behind on success or failure.
func TestReplaceFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "stage.sh")
	outside := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(outside, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, p); err != nil {
		t.Fatal(err)
	}
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	if err := ReplaceFile(p, []byte("two"), 0o640); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(p)
	got, _ := os.ReadFile(p)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o640 || string(got) != "two" {
		t.Fatalf("after ReplaceFile: %v %v %q", fi, err, got)
	}
	if v, _ := os.ReadFile(outside); string(v) != "keep" {
		t.Errorf("the symlink's target was written: %q", v)
	}
	target := filepath.Join(dir, "target")
	if err := os.MkdirAll(filepath.Join(target, "child"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := ReplaceFile(target, []byte("x"), 0o600); err == nil || !strings.Contains(err.Error(), target) {
		t.Errorf("replacing a non-empty directory: %v", err)
	}
	if extra := leftovers(t, dir, "stage.sh", "target"); len(extra) > 0 {
		t.Fatalf("temp files left behind: %v", extra)
	}
}
