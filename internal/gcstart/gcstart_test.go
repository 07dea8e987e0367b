package gcstart

import (
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// settings reads the collector's settings without changing them.
func settings() (gcPercent int, limit int64) {
	gcPercent = debug.SetGCPercent(-1)
	debug.SetGCPercent(gcPercent)
	return gcPercent, debug.SetMemoryLimit(-1)
}

// TestImportPostpones checks the postponement import starts (this test
// binary imports the package), then that Restore ends it with the
// process's own settings.
func TestImportPostpones(t *testing.T) {
	gcPercent, limit := settings()
	postponed := gcPercent == -1 && limit == Headroom
	// A test process may have collected already, which ends it.
	restored := gcPercent != -1 && limit > Headroom
	if !postponed && !restored {
		t.Fatalf("at start: GOGC %d, limit %d; want -1 and %d, or the process's own settings", gcPercent, limit, Headroom)
	}
	Restore()
	if gcPercent, limit := settings(); gcPercent == -1 || limit != math.MaxInt64 {
		t.Fatalf("after Restore: GOGC %d, limit %d; want the test process's own (on, no limit)", gcPercent, limit)
	}
}

// TestFirstCollectionRestores checks that a postponement ends by itself at
// the first collection, so a process whose live heap outgrows the headroom
// does not keep collecting at the limit.
func TestFirstCollectionRestores(t *testing.T) {
	Restore()
	ownGC, ownLimit := settings()
	d := start(64 << 20)
	if gcPercent, limit := settings(); gcPercent != -1 || limit != 64<<20 {
		t.Fatalf("during the postponement: GOGC %d, limit %d; want -1 and %d", gcPercent, limit, 64<<20)
	}
	waitRestored(t, ownLimit)
	if gcPercent, _ := settings(); gcPercent != ownGC {
		t.Fatalf("GOGC after the first collection = %d, want %d", gcPercent, ownGC)
	}
	d.restore() // after the cleanup: changes nothing
	if gcPercent, limit := settings(); gcPercent != ownGC || limit != ownLimit {
		t.Fatalf("a second restore changed the settings: GOGC %d, limit %d", gcPercent, limit)
	}
}

// TestLowerLimitKept checks that an operator's GOMEMLIMIT below the
// headroom stays in force, during and after the postponement.
func TestLowerLimitKept(t *testing.T) {
	Restore()
	debug.SetMemoryLimit(512 << 20)
	t.Cleanup(func() { debug.SetMemoryLimit(math.MaxInt64) })
	start(1 << 30)
	if _, limit := settings(); limit != 512<<20 {
		t.Fatalf("limit during the postponement = %d, want the operator's %d", limit, 512<<20)
	}
	waitRestored(t, 512<<20)
}

// waitRestored collects until the postponement's cleanup has run (GOGC is
// on again and the limit is limit), so it cannot run later, in another
// test.
func waitRestored(t *testing.T, limit int64) {
	t.Helper()
	restored := func() bool { g, l := settings(); return g != -1 && l == limit }
	for deadline := time.Now().Add(10 * time.Second); !restored() && time.Now().Before(deadline); {
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	if g, l := settings(); !restored() {
		t.Fatalf("after the first collection: GOGC %d, limit %d; want GOGC on and limit %d", g, l, limit)
	}
}
