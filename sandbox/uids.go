package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"gitlab.com/writ-ci/writ/internal/fsutil"
)

// UIDs leases job identities from a range of uids no account uses (no
// passwd entry is needed: the kernel only compares numbers). A uid serves
// one job from its first stage to its cleanup, and is leased again only
// when no process of it is alive. The gid is the uid.
type UIDs struct {
	// First and Count delimit the range.
	First, Count uint32
	// Dir holds one lease file per uid in use (root-only state).
	Dir string
	// Stale reports whether a lease's owner is gone (its job state was
	// removed without a cleanup, after a crash), so the uid may be reused.
	Stale func(owner string) bool
}

// Acquire returns owner's uid, leasing a free one if owner has none.
func (u *UIDs) Acquire(ctx context.Context, owner string) (uint32, error) {
	if err := validOwner(owner); err != nil {
		return 0, err
	}
	if err := os.MkdirAll(u.Dir, 0o700); err != nil {
		return 0, err
	}
	unlock, err := fsutil.Lock(ctx, filepath.Join(u.Dir, ".lock"))
	if err != nil {
		return 0, err
	}
	defer unlock()
	leases, err := u.leases()
	if err != nil {
		return 0, err
	}
	for uid, o := range leases {
		if o == owner {
			return uid, nil
		}
	}
	live, err := liveUIDs()
	if err != nil {
		return 0, err
	}
	for i := uint32(0); i < u.Count; i++ {
		uid := u.First + i
		if live[uid] {
			continue
		}
		if o, taken := leases[uid]; taken && validOwner(o) == nil {
			if u.Stale == nil || !u.Stale(o) {
				continue
			}
		}
		if err := writeLease(u.leasePath(uid), owner); err != nil {
			return 0, err
		}
		return uid, nil
	}
	return 0, fmt.Errorf("all %d job uids (%d-%d) are in use: raise sandbox.uid_count or lower the runner's concurrency", u.Count, u.First, u.First+u.Count-1)
}

// Lookup returns owner's leased uid, if any.
func (u *UIDs) Lookup(owner string) (uint32, bool, error) {
	leases, err := u.leases()
	if err != nil {
		return 0, false, err
	}
	for uid, o := range leases {
		if o == owner {
			return uid, true, nil
		}
	}
	return 0, false, nil
}

// Release ends owner's lease. The caller has removed every file the uid
// owned and no process of it runs (the stages' namespaces are gone).
func (u *UIDs) Release(ctx context.Context, owner string) error {
	unlock, err := fsutil.Lock(ctx, filepath.Join(u.Dir, ".lock"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	defer unlock()
	leases, err := u.leases()
	if err != nil {
		return err
	}
	for uid, o := range leases {
		if o == owner {
			if err := os.Remove(u.leasePath(uid)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// writeLease replaces path with owner's lease, atomically but without
// fsync (two of them were most of a lease's time on a busy disk): a lease
// need not outlive a crash of the host, since none of its uid's processes
// does (every one lives in a stage's PID namespace). A lease lost, emptied
// or cut short by a crash names no valid owner and is taken again once no
// process of its uid lives (Acquire checks that for every uid it leases).
func writeLease(path, owner string) error {
	if err := fsutil.ReplaceFile(path, []byte(owner+"\n"), 0o600); err != nil {
		return fmt.Errorf("sandbox: uid lease: %w", err)
	}
	return nil
}

func (u *UIDs) leasePath(uid uint32) string {
	return filepath.Join(u.Dir, strconv.FormatUint(uint64(uid), 10))
}

func (u *UIDs) leases() (map[uint32]string, error) {
	des, err := os.ReadDir(u.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return map[uint32]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[uint32]string{}
	for _, d := range des {
		n, err := strconv.ParseUint(d.Name(), 10, 32)
		if err != nil || uint32(n) < u.First || uint32(n)-u.First >= u.Count {
			continue
		}
		data, err := fsutil.ReadFileLimit(filepath.Join(u.Dir, d.Name()), 256)
		if err != nil {
			return nil, err
		}
		out[uint32(n)] = strings.TrimSpace(string(data))
	}
	return out, nil
}

func validOwner(o string) error {
	if o == "" || len(o) > 128 || strings.ContainsAny(o, "\n/\x00") {
		return fmt.Errorf("sandbox: lease owner %q", o)
	}
	return nil
}

// liveUIDs are the real, effective, saved and filesystem uids of every
// process on the host. It runs at every lease, so it reads each
// /proc/PID/status with raw system calls into one buffer: os.ReadFile's
// stat, poller registration and allocations tripled its cost.
func liveUIDs() (map[uint32]bool, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, err
	}
	out := map[uint32]bool{}
	buf := make([]byte, 8192)
	for _, name := range names {
		if name[0] < '0' || name[0] > '9' {
			continue
		}
		n, err := readProc("/proc/"+name+"/status", buf)
		if err != nil || n == 0 {
			continue // exited meanwhile
		}
		uids, ok := statusUIDs(buf[:n])
		if !ok {
			return nil, fmt.Errorf("sandbox: no uids in /proc/%s/status", name)
		}
		for _, uid := range uids {
			out[uid] = true
		}
	}
	return out, nil
}

// readProc reads a small /proc file into buf (a status file is under
// 2 KiB; a longer one is cut, which statusUIDs notices).
func readProc(path string, buf []byte) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	n := 0
	for n < len(buf) {
		m, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	return n, nil
}

// statusUIDs are the four uids on a status file's Uid: line (which comes
// before any long line, such as Groups:).
func statusUIDs(status []byte) ([]uint32, bool) {
	i := bytes.Index(status, []byte("\nUid:"))
	if i < 0 {
		return nil, false
	}
	line := status[i+len("\nUid:"):]
	if j := bytes.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	var out []uint32
	for _, f := range strings.Fields(string(line)) {
		n, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			return nil, false
		}
		out = append(out, uint32(n))
	}
	return out, len(out) == 4
}
