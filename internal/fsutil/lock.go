package fsutil

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Lock takes an exclusive advisory lock on path (created if absent), waiting
// until ctx is done. The returned func releases it.
//
// The lock is flock(2) on its own open file, so it excludes other processes
// and other Lock calls in this process alike, and the kernel releases it if
// the holder dies. It is advisory: only writers that also lock are excluded.
// A waiter blocks in the kernel and wakes as soon as the holder releases
// (no polling). One attempt is made even if ctx is already done.
func Lock(ctx context.Context, path string) (unlock func() error, err error) {
	return lock(ctx, path, unix.LOCK_EX)
}

// RLock takes a shared advisory lock on path (created if absent): any number
// of RLock holders exclude every Lock holder. It waits like Lock.
func RLock(ctx context.Context, path string) (unlock func() error, err error) {
	return lock(ctx, path, unix.LOCK_SH)
}

func lock(ctx context.Context, path string, how int) (func() error, error) {
	kind := "exclusive"
	if how == unix.LOCK_SH {
		kind = "shared"
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("take %s lock %s: %w", kind, path, err)
	}
	fd := int(f.Fd())
	err = flock(fd, how|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		err = wait(ctx, f, how)
		if errors.Is(err, errAbandoned) {
			return nil, fmt.Errorf("take %s lock %s: another writ process holds it and did not release it in time (%w); if no writ process is running, check what else opens this file", kind, path, context.Cause(ctx))
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("take %s lock %s: %w", kind, path, err)
	}
	var once sync.Once
	var uerr error
	return func() error {
		once.Do(func() {
			// Closing the file releases the lock; an explicit unlock first
			// makes a failure visible.
			if err := flock(fd, unix.LOCK_UN); err != nil {
				uerr = fmt.Errorf("release lock %s: %w", path, err)
			}
			f.Close()
		})
		return uerr
	}, nil
}

// wait blocks in flock(2) until the lock is granted or ctx is done. flock
// cannot be interrupted from another goroutine, so on ctx's end the waiting
// goroutine is left to finish: it releases the lock the moment it gets it
// and closes the file, and the caller returns at once.
func wait(ctx context.Context, f *os.File, how int) error {
	done := make(chan error, 1)
	go func() { done <- flock(int(f.Fd()), how) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		go func() {
			if <-done == nil {
				_ = flock(int(f.Fd()), unix.LOCK_UN)
			}
			f.Close()
		}()
		return errAbandoned
	}
}

// errAbandoned says wait gave up on ctx; its goroutine owns the file.
var errAbandoned = errors.New("lock wait abandoned")

// flock is flock(2), retried when a signal interrupts it.
func flock(fd, how int) error {
	for {
		err := unix.Flock(fd, how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
