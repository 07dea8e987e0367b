package allowlist

import (
	"runtime/debug"
	"testing"

	"gitlab.com/writ-ci/writ/internal/gcstart"
)

// TestHeapBound: while a large file is parsed, the process is bounded by
// acceptance's promise (4× the file + 32 MiB, less what lies outside the
// runtime's memory) with the collector pacing as usual; a small file keeps
// the tight pacing; an operator's lower limit and lower GOGC are kept;
// restore puts back the process's settings.
func TestHeapBound(t *testing.T) {
	gcstart.Restore() // as boundHeap does, so that it cannot undo what this test sets
	gc, limit := debug.SetGCPercent(100), debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetGCPercent(gc); debug.SetMemoryLimit(limit) })

	debug.SetMemoryLimit(1 << 40)
	h := boundHeap()
	if got := debug.SetGCPercent(-1); got != 10 {
		t.Fatalf("GOGC while fetching = %d, want 10", got)
	}
	// A file large enough that what lies outside the runtime's memory
	// (the test binary's pages, chiefly) is small beside the promise.
	const file = 256 << 20
	h.forFile(file)
	promise := int64(4*file + 32<<20)
	if got := debug.SetMemoryLimit(-1); got > promise || got < promise/2 {
		t.Fatalf("memory limit %d MiB for a 256 MiB file (promise %d MiB, outside the runtime %d MiB)", got>>20, promise>>20, outsideHeap()>>20)
	}
	if got := debug.SetGCPercent(-1); got != 100 {
		t.Fatalf("GOGC while parsing = %d, want 100", got)
	}
	h.restore()
	if got := debug.SetMemoryLimit(-1); got != 1<<40 {
		t.Fatalf("memory limit after restore = %d", got)
	}
	if got := debug.SetGCPercent(-1); got != 100 {
		t.Fatalf("GOGC after restore = %d", got)
	}

	// A small file, whose promise is mostly the binary's own pages,
	// keeps the tight pacing and no limit of its own.
	h = boundHeap()
	h.forFile(1 << 10)
	if got := debug.SetGCPercent(-1); got != 10 {
		t.Fatalf("GOGC while parsing a 1 KiB file = %d, want 10", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 1<<40 {
		t.Fatalf("memory limit while parsing a 1 KiB file = %d MiB", got>>20)
	}
	h.restore()

	// An operator's tighter settings win.
	debug.SetMemoryLimit(20 << 20)
	debug.SetGCPercent(5)
	h = boundHeap()
	h.forFile(file)
	if got := debug.SetMemoryLimit(-1); got != 20<<20 {
		t.Fatalf("the operator's 20 MiB limit became %d MiB", got>>20)
	}
	if got := debug.SetGCPercent(-1); got != 5 {
		t.Fatalf("the operator's GOGC=5 became %d", got)
	}
	h.restore()
}
