// Package gcstart postpones a writ process's first garbage collection until
// its heap has grown by [Headroom].
//
// writ runs as one short process per executor stage, eight or more per job.
// The runtime starts its first collection at a 4 MiB heap, and package
// initialisation alone allocates about 3 MiB, so every stage paid for a
// collection, started around the end of initialisation, of memory it was
// about to give back by exiting: about 15 % of a short stage's CPU time.
//
// Importing the package turns the collector off under a memory limit of
// Headroom, as early in initialisation as its import path and dependencies
// place it (only the runtime's packages). The first collection, which that
// limit starts, or an earlier call to [Restore] puts back the settings the
// process started with (GOGC and GOMEMLIMIT from its environment). A
// process's heap therefore grows by at most Headroom beyond what it would
// have, and only until its first collection.
package gcstart

import (
	"runtime"
	"runtime/debug"
	"sync"
)

// Headroom is how much a process may allocate before its first collection.
const Headroom = 32 << 20

// deferral is one postponement and the settings it restores.
type deferral struct {
	once      sync.Once
	gcPercent int
	limit     int64
}

// started is the postponement import starts.
var started = start(Headroom)

// start turns the collector off with a memory limit of headroom (or the
// lower limit already set) until the first collection or restore.
func start(headroom int64) *deferral {
	d := &deferral{gcPercent: debug.SetGCPercent(-1), limit: debug.SetMemoryLimit(-1)}
	if d.limit > headroom {
		debug.SetMemoryLimit(headroom)
	}
	// The sentinel is garbage at once, so the first collection frees it and
	// the cleanup runs. It is a pointer-free object larger than the tiny
	// allocator's 16 bytes, so it is freed on its own.
	sentinel := new([64]byte)
	runtime.AddCleanup(sentinel, func(d *deferral) { d.restore() }, d)
	return d
}

// restore puts back the settings d replaced, once. GOGC goes first: the
// collector is never off without the memory limit.
func (d *deferral) restore() {
	d.once.Do(func() {
		debug.SetGCPercent(d.gcPercent)
		debug.SetMemoryLimit(d.limit)
	})
}

// Restore ends the postponement now, if the first collection has not
// already ended it. Code that sets the collector itself (acceptance bounds
// its heap), and commands that are not short executor stages, call it
// first, so that they start from the process's own settings and the
// postponement's restore cannot undo theirs.
func Restore() { started.restore() }
