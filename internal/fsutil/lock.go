package fsutil

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/gofrs/flock"
)

// Polling bounds for a lock someone else holds. flock(2) has no blocking
// wait that honours a context, so Lock polls with exponential backoff.
const (
	minLockDelay = time.Millisecond
	maxLockDelay = 100 * time.Millisecond
)

// Lock takes an exclusive advisory lock on path (created if absent), waiting
// until ctx is done. The returned func releases it.
//
// The lock is flock(2) on its own open file, so it excludes other processes
// and other Lock calls in this process alike, and the kernel releases it if
// the holder dies. It is advisory: only writers that also lock are excluded.
// One attempt is made even if ctx is already done.
func Lock(ctx context.Context, path string) (unlock func() error, err error) {
	return lock(ctx, path, true)
}

// RLock takes a shared advisory lock on path (created if absent): any number
// of RLock holders exclude every Lock holder. It waits like Lock.
func RLock(ctx context.Context, path string) (unlock func() error, err error) {
	return lock(ctx, path, false)
}

func lock(ctx context.Context, path string, exclusive bool) (func() error, error) {
	fl := flock.New(path, flock.SetPermissions(0o600))
	try := fl.TryLock
	kind := "exclusive"
	if !exclusive {
		try = fl.TryRLock
		kind = "shared"
	}
	delay := minLockDelay
	for {
		ok, err := try()
		if err != nil {
			return nil, fmt.Errorf("take %s lock %s: %w", kind, path, err)
		}
		if ok {
			break
		}
		// Jitter keeps many waiters from retrying in lockstep.
		t := time.NewTimer(delay/2 + rand.N(delay/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("take %s lock %s: another writ process holds it and did not release it in time (%w); if no writ process is running, check what else opens this file", kind, path, context.Cause(ctx))
		case <-t.C:
		}
		delay = min(2*delay, maxLockDelay)
	}
	var once sync.Once
	var uerr error
	return func() error {
		once.Do(func() {
			if err := fl.Unlock(); err != nil {
				uerr = fmt.Errorf("release lock %s: %w", path, err)
			}
		})
		return uerr
	}, nil
}
