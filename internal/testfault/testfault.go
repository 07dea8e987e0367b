// Package testfault injects the faults of a bad day into tests: a small
// file system that fills up, and kill -9 of a child process at a random
// moment. It is used by tests only.
package testfault

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// SmallFS mounts a tmpfs of size bytes at a new directory and unmounts it
// when the test ends. Mounting needs root: without it the test is skipped
// with a message saying so, never silently passed.
func SmallFS(t testing.TB, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("full-disk case skipped: mounting a small tmpfs needs root (run the suite as root to include it)")
	}
	dir := filepath.Join(t.TempDir(), "full")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.FormatInt(size, 10)+",mode=0700"); err != nil {
		t.Skipf("full-disk case skipped: cannot mount a tmpfs (%v)", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// Fill writes a file in dir until the file system is full, and returns its
// path: removing it frees the space again.
func Fill(t testing.TB, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	// tmpfs may still take a few bytes in a partly used page; fill those.
	for {
		if _, err := f.Write(buf[:1]); err != nil {
			return p
		}
	}
}

// Kill9 sends SIGKILL to cmd's process group, as a crash or the OOM killer
// would: nothing of it runs a deferred function or a signal handler.
func Kill9(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Process.Kill()
}
