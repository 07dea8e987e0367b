package fsutil

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The test binary re-executes itself as a helper process when this variable
// names a helper mode; see TestMain.
const helperEnv = "WRIT_FSUTIL_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "increment":
		// Args: lock path, counter path, iterations.
		n, _ := strconv.Atoi(os.Getenv("HELPER_N"))
		if err := incrementN(os.Getenv("HELPER_LOCK"), os.Getenv("HELPER_COUNTER"), n, nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	case "hold-and-die":
		// Take the lock, say so, then exit without unlocking.
		if _, err := Lock(context.Background(), os.Getenv("HELPER_LOCK")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("locked")
		time.Sleep(100 * time.Millisecond)
		os.Exit(0)
	default:
		fmt.Fprintln(os.Stderr, "unknown helper mode")
		os.Exit(2)
	}
}

// incrementN does n non-atomic read-modify-write cycles of a decimal counter
// file under the lock. Without mutual exclusion, increments get lost. If
// inside is not nil it counts concurrent holders, and a second holder is an
// error.
func incrementN(lockPath, counter string, n int, inside *atomic.Int32) error {
	for range n {
		unlock, err := Lock(context.Background(), lockPath)
		if err != nil {
			return err
		}
		if inside != nil && inside.Add(1) != 1 {
			return errors.New("two holders of an exclusive lock at once")
		}
		b, err := os.ReadFile(counter)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		v := 0
		if len(b) > 0 {
			if v, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
				return fmt.Errorf("counter file holds %q: %w", b, err)
			}
		}
		// Widen the race window so a broken lock shows up.
		time.Sleep(50 * time.Microsecond)
		if err := os.WriteFile(counter, []byte(strconv.Itoa(v+1)), 0o600); err != nil {
			return err
		}
		if inside != nil {
			inside.Add(-1)
		}
		if err := unlock(); err != nil {
			return err
		}
	}
	return nil
}

func readCounter(t *testing.T, p string) int {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	v, err := strconv.Atoi(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestLockGoroutinesAndProcesses has goroutines of this process and several
// child processes contend for one lock; every increment must survive.
func TestLockGoroutinesAndProcesses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	lockPath := filepath.Join(dir, "c.lock")
	counter := filepath.Join(dir, "c")
	const goroutines, procs, perWorker = 8, 4, 25

	var wg sync.WaitGroup
	errs := make(chan error, goroutines+procs)
	var inside atomic.Int32
	for range goroutines {
		wg.Go(func() { errs <- incrementN(lockPath, counter, perWorker, &inside) })
	}
	for range procs {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), helperEnv+"=increment", "HELPER_LOCK="+lockPath,
			"HELPER_COUNTER="+counter, "HELPER_N="+strconv.Itoa(perWorker))
		wg.Go(func() {
			if out, err := cmd.CombinedOutput(); err != nil {
				errs <- fmt.Errorf("helper process: %v: %s", err, out)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got, want := readCounter(t, counter), (goroutines+procs)*perWorker; got != want {
		t.Fatalf("counter = %d, want %d: the lock let increments race", got, want)
	}
}

func TestLockTimeoutNamesTheLock(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "state.lock")
	unlock, err := Lock(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = Lock(ctx, p)
	if err == nil {
		t.Fatal("second exclusive lock succeeded while the first is held")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error does not wrap the context's: %v", err)
	}
	for _, want := range []string{p, "another writ process holds it"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("gave up after %v, long after the context ended", d)
	}

	// Release: a waiter gets the lock promptly.
	go func() {
		time.Sleep(20 * time.Millisecond)
		_ = unlock()
	}()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	unlock2, err := Lock(ctx2, p)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	if err := unlock2(); err != nil {
		t.Fatal(err)
	}
	// Unlock twice is harmless.
	if err := unlock2(); err != nil {
		t.Fatal(err)
	}
}

func TestRLock(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "r.lock")
	r1, err := RLock(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	short := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}
	r2, err := RLock(short(), p)
	if err != nil {
		t.Fatalf("second shared lock refused: %v", err)
	}
	if _, err := Lock(short(), p); err == nil {
		t.Fatal("exclusive lock granted while shared locks are held")
	}
	_ = r1()
	_ = r2()
	// The refused waiter above is still blocked in flock(2), which cannot
	// be called off: once the shared locks go it takes the lock and lets
	// it go at once. That moment can outlast a 30 ms wait on a loaded
	// machine, so this lock, which must be granted, gets a generous wait.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w, err := Lock(ctx, p)
	if err != nil {
		t.Fatalf("exclusive lock after shared locks released: %v", err)
	}
	if _, err := RLock(short(), p); err == nil {
		t.Fatal("shared lock granted while an exclusive lock is held")
	}
	_ = w()
}

// TestLockReleasedWhenHolderDies: a crashed writ process must not wedge
// every later one.
func TestLockReleasedWhenHolderDies(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "d.lock")
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=hold-and-die", "HELPER_LOCK="+p)
	out, err := cmd.Output()
	if err != nil || strings.TrimSpace(string(out)) != "locked" {
		t.Fatalf("helper: %v: %q", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	unlock, err := Lock(ctx, p)
	if err != nil {
		t.Fatalf("lock still held after its holder exited: %v", err)
	}
	_ = unlock()
}

func TestLockMissingDirectory(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "missing", "x.lock")
	if _, err := Lock(context.Background(), p); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("err = %v, want an error naming %s", err, p)
	}
}

// TestLockAbandonedWaitReleases: a waiter whose context ends leaves nothing
// held behind once the holder releases.
func TestLockAbandonedWaitReleases(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "a.lock")
	unlock, err := Lock(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		if _, err := Lock(ctx, p); err == nil {
			t.Fatal("lock granted while held")
		}
		cancel()
	}
	_ = unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u, err := Lock(ctx, p)
	if err != nil {
		t.Fatalf("abandoned waiters kept the lock: %v", err)
	}
	_ = u()
}

// BenchmarkLockHandoff measures how long a waiter takes to get a lock its
// holder releases ("handoff"), against taking a free lock (the anchor) in
// the same run: a waiter blocks in the kernel and wakes on release, so the
// ratio stays small (it was bounded below by a 1–100 ms polling back-off).
func BenchmarkLockHandoff(b *testing.B) {
	p := filepath.Join(b.TempDir(), "h.lock")
	ctx := context.Background()
	var free, handoff time.Duration
	for b.Loop() {
		t0 := time.Now()
		u, err := Lock(ctx, p)
		if err != nil {
			b.Fatal(err)
		}
		free += time.Since(t0)
		got := make(chan time.Time)
		go func() {
			u2, err := Lock(ctx, p)
			if err != nil {
				panic(err)
			}
			got <- time.Now()
			_ = u2()
		}()
		time.Sleep(200 * time.Microsecond) // let the waiter block
		t1 := time.Now()
		_ = u()
		handoff += (<-got).Sub(t1)
	}
	b.ReportMetric(float64(handoff.Microseconds())/float64(b.N), "µs_handoff/op")
	b.ReportMetric(float64(handoff)/float64(free), "x_handoff/free")
}
