package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// cgroup is one run's control groups: one directory per controller on a
// v1 host, one directory on a unified (v2) host.
type cgroup struct {
	// dirs are the run's leaves, one per hierarchy in use.
	dirs []string
	// v1 are the leaves on cgroup v1 hierarchies, which the thread that
	// forks the init joins first (see start).
	v1 []v1Leaf
	// v2 is the leaf on the unified hierarchy, if a controller in use is
	// there: a process can be created in it (CLONE_INTO_CGROUP).
	v2 string
	// released is closed by remove: a thread that could not leave the
	// run's v1 cgroups after the fork ends then.
	released chan struct{}
}

// v1Leaf is a run's cgroup on a v1 hierarchy, and home the cgroup of writ
// on the same hierarchy ("" when it is not visible here).
type v1Leaf struct{ leaf, home string }

// cgroupVersions says where each controller writ uses lives: "cgroup v1",
// "cgroup v2" or "" (absent).
type cgroupVersions struct {
	pids, memory string
	// v1 directories of the controllers, or the v2 mount.
	pidsDir, memoryDir string
	// On v1, writ's own cgroup of each controller ("" if not visible).
	pidsHome, memoryHome string
}

func (h *Host) cgroupRoot() string {
	if h.CgroupRoot != "" {
		return h.CgroupRoot
	}
	return "/sys/fs/cgroup"
}

// cgroupVersion finds the pids and memory controllers. A v1 hierarchy
// with the controller wins over a v2 one without it (hybrid hosts).
func (h *Host) cgroupVersion() cgroupVersions {
	root := h.cgroupRoot()
	var v cgroupVersions
	own := ownCgroups()
	for _, c := range []struct {
		name           string
		ver, dir, home *string
	}{{"pids", &v.pids, &v.pidsDir, &v.pidsHome}, {"memory", &v.memory, &v.memoryDir, &v.memoryHome}} {
		dir := filepath.Join(root, c.name)
		if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err == nil {
			// Nest under writ's own cgroup, so a limit on the runner's
			// service also bounds its jobs.
			if p, ok := own[c.name]; ok {
				if _, err := os.Stat(filepath.Join(dir, p, "tasks")); err == nil {
					dir = filepath.Join(dir, p)
					*c.home = dir
				}
			}
			*c.ver, *c.dir = "cgroup v1", dir
			continue
		}
		data, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
		if err == nil && containsWord(string(data), c.name) {
			*c.ver, *c.dir = "cgroup v2", filepath.Join(root, "writ")
		}
	}
	return v
}

func containsWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}

// ownCgroups maps each v1 controller to this process's cgroup path.
func ownCgroups() map[string]string {
	out := map[string]string{}
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c != "" {
				out[c] = parts[2]
			}
		}
	}
	return out
}

// newCgroup makes the run's cgroups and writes its limits. Controllers the
// host lacks are skipped (Enforced says so); a controller that exists but
// refuses is an error, so a configured limit never silently vanishes.
func (h *Host) newCgroup(name string) (*cgroup, error) {
	cg := &cgroup{released: make(chan struct{})}
	if h.PidsMax <= 0 && h.MemoryMax <= 0 {
		return cg, nil
	}
	v := h.cgroupVersion()
	leaf := fmt.Sprintf("writ-%s-%d", name, os.Getpid())
	write := func(dir, file string, val int64) error {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(strconv.FormatInt(val, 10)), 0o644); err != nil {
			return fmt.Errorf("sandbox: set %s: %w", file, err)
		}
		return nil
	}
	mk := func(parent, ver, home string) (string, error) {
		dir := filepath.Join(parent, leaf)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", fmt.Errorf("sandbox: make cgroup %s: %w", dir, err)
		}
		cg.dirs = append(cg.dirs, dir)
		if ver == "cgroup v1" {
			cg.v1 = append(cg.v1, v1Leaf{leaf: dir, home: home})
		} else {
			cg.v2 = dir
		}
		return dir, nil
	}
	fail := func(err error) (*cgroup, error) { cg.remove(); return nil, err }
	if v.pids == "cgroup v2" || v.memory == "cgroup v2" {
		// writ's own subtree, with the controllers enabled for its leaves.
		root := h.cgroupRoot()
		_ = os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), []byte("+pids +memory"), 0o644)
		if err := os.MkdirAll(filepath.Join(root, "writ"), 0o755); err != nil {
			return fail(err)
		}
		_ = os.WriteFile(filepath.Join(root, "writ", "cgroup.subtree_control"), []byte("+pids +memory"), 0o644)
	}
	if h.PidsMax > 0 && v.pids != "" {
		dir, err := mk(v.pidsDir, v.pids, v.pidsHome)
		if err != nil {
			return fail(err)
		}
		if err := write(dir, "pids.max", h.PidsMax); err != nil {
			return fail(err)
		}
	}
	if h.MemoryMax > 0 && v.memory != "" {
		dir := filepath.Join(v.memoryDir, leaf)
		if len(cg.dirs) == 0 || cg.dirs[0] != dir {
			var err error
			if dir, err = mk(v.memoryDir, v.memory, v.memoryHome); err != nil {
				return fail(err)
			}
		}
		file := "memory.limit_in_bytes"
		if v.memory == "cgroup v2" {
			file = "memory.max"
		}
		if err := write(dir, file, h.MemoryMax); err != nil {
			return fail(err)
		}
		if v.memory == "cgroup v1" {
			// Swap counts too where the kernel accounts it.
			_ = write(dir, "memory.memsw.limit_in_bytes", h.MemoryMax)
		} else {
			_ = write(dir, "memory.swap.max", 0)
		}
	}
	return cg, nil
}

// start starts the command newCmd makes so that it is born in the run's
// cgroups, where the host allows it, rather than moved there: moving a
// process takes the kernel's global threadgroup lock and waits for an RCU
// grace period (about 10 ms, most of a contained start).
//
//   - cgroup v1: the process is forked by an OS thread of writ that joins
//     the run's cgroups first and leaves them once the process exists.
//     A thread that moves itself alone (pid 0 to tasks) skips the global
//     lock on current kernels (an older one takes it: slower, as
//     correct), and a child starts in its parent thread's cgroups.
//   - cgroup v2: clone3's CLONE_INTO_CGROUP (Linux 5.7).
//
// placed says the process is in every cgroup of the run; otherwise the
// caller moves it (add).
func (cg *cgroup) start(newCmd func() *exec.Cmd) (cmd *exec.Cmd, placed bool, err error) {
	if cg == nil || len(cg.dirs) == 0 {
		cmd = newCmd()
		return cmd, false, cmd.Start()
	}
	type started struct {
		cmd    *exec.Cmd
		placed bool
		err    error
	}
	done := make(chan started, 1)
	go func() {
		// The fork happens on this goroutine's thread, the one whose
		// cgroups the child inherits.
		runtime.LockOSThread()
		joined := cg.join()
		cmd, intoV2, err := cg.fork(newCmd)
		left := cg.leave(joined)
		done <- started{cmd, joined && (cg.v2 == "" || intoV2), err}
		if left {
			runtime.UnlockOSThread()
			return
		}
		// Still in the run's cgroups: the thread must serve no other
		// goroutine (what it started would be counted and limited as the
		// job's), and must not end while the process it forked lives
		// (Pdeathsig follows the thread). It ends, locked, with the run.
		<-cg.released
	}()
	r := <-done
	return r.cmd, r.placed, r.err
}

// join moves the calling thread, alone, into each v1 leaf of the run. It
// reports whether the thread is in all of them (trivially, with none); on
// a failure it leaves those it joined and reports false.
func (cg *cgroup) join() bool {
	for i, l := range cg.v1 {
		if l.home == "" || writeCgroupFile(filepath.Join(l.leaf, "tasks"), "0") != nil {
			cg.leaveFirst(i)
			return false
		}
	}
	return true
}

// leave moves the calling thread back to writ's own cgroups after join;
// false means it is still in one of the run's.
func (cg *cgroup) leave(joined bool) bool {
	if !joined {
		return true
	}
	return cg.leaveFirst(len(cg.v1))
}

func (cg *cgroup) leaveFirst(n int) bool {
	ok := true
	for _, l := range cg.v1[:n] {
		if err := writeCgroupFile(filepath.Join(l.home, "tasks"), "0"); err != nil {
			ok = false
		}
	}
	return ok
}

// fork starts the command, inside the run's v2 cgroup if it has one.
// intoV2 says the process was created there; a kernel without
// CLONE_INTO_CGROUP gets a plain start.
func (cg *cgroup) fork(newCmd func() *exec.Cmd) (cmd *exec.Cmd, intoV2 bool, err error) {
	if cg.v2 == "" {
		cmd = newCmd()
		return cmd, false, cmd.Start()
	}
	fd, err := unix.Open(cg.v2, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, false, fmt.Errorf("sandbox: open cgroup %s: %w", cg.v2, err)
	}
	defer unix.Close(fd)
	cmd = newCmd()
	cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
	err = cmd.Start()
	if err == nil {
		return cmd, true, nil
	}
	if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.E2BIG) {
		return nil, false, err
	}
	// An exec.Cmd that failed to start is not started again: a fresh one.
	cmd = newCmd()
	return cmd, false, cmd.Start()
}

// writeCgroupFile writes an existing control file: a path that is not one
// (no such file) is an error, never a new regular file.
func writeCgroupFile(path, val string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(val)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// add moves pid into every cgroup of the run.
func (cg *cgroup) add(pid int) error {
	for _, d := range cg.dirs {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			return fmt.Errorf("sandbox: join cgroup %s: %w", d, err)
		}
	}
	return nil
}

// addUnless moves pid into the run's cgroups unless it was created there.
func (cg *cgroup) addUnless(placed bool, pid int) error {
	if placed {
		return nil
	}
	return cg.add(pid)
}

// remove deletes the run's cgroups once the kernel has let go of the
// exited processes (it may take a moment after the namespace dies).
func (cg *cgroup) remove() {
	if cg == nil {
		return
	}
	if cg.released != nil {
		select {
		case <-cg.released:
		default:
			close(cg.released)
		}
	}
	for _, d := range cg.dirs {
		for i := 0; i < 50; i++ {
			err := os.Remove(d)
			if err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	cg.dirs = nil
}
