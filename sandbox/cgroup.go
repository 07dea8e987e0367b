package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// cgroup is one run's control groups: one directory per controller on a
// v1 host, one directory on a unified (v2) host.
type cgroup struct {
	dirs []string
	// unified: the run has one cgroup, on cgroup v2, which a process can
	// be created in (CLONE_INTO_CGROUP) rather than moved to.
	unified bool
}

// cgroupVersions says where each controller writ uses lives: "cgroup v1",
// "cgroup v2" or "" (absent).
type cgroupVersions struct {
	pids, memory string
	// v1 directories of the controllers, or the v2 mount.
	pidsDir, memoryDir string
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
		name      string
		ver, dir  *string
		probeFile string
	}{{"pids", &v.pids, &v.pidsDir, "pids.max"}, {"memory", &v.memory, &v.memoryDir, "memory.limit_in_bytes"}} {
		dir := filepath.Join(root, c.name)
		if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err == nil {
			// Nest under writ's own cgroup, so a limit on the runner's
			// service also bounds its jobs.
			if p, ok := own[c.name]; ok {
				if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
					dir = filepath.Join(dir, p)
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
	cg := &cgroup{}
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
	mk := func(parent string) (string, error) {
		dir := filepath.Join(parent, leaf)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", fmt.Errorf("sandbox: make cgroup %s: %w", dir, err)
		}
		cg.dirs = append(cg.dirs, dir)
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
		dir, err := mk(v.pidsDir)
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
			if dir, err = mk(v.memoryDir); err != nil {
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
	// Only when no controller in use is on a v1 hierarchy (hybrid hosts).
	cg.unified = len(cg.dirs) == 1 &&
		(h.PidsMax <= 0 || v.pids != "cgroup v1") && (h.MemoryMax <= 0 || v.memory != "cgroup v1")
	return cg, nil
}

// start starts the command newCmd makes, created inside the run's cgroup
// where the host allows it: cgroup v2 with clone3's CLONE_INTO_CGROUP
// (Linux 5.7), which needs no move and so no wait for an RCU grace
// period. placed says the process is already in the cgroup; otherwise the
// caller moves it (add). A kernel without CLONE_INTO_CGROUP gets a plain
// start.
func (cg *cgroup) start(newCmd func() *exec.Cmd) (cmd *exec.Cmd, placed bool, err error) {
	if cg == nil || !cg.unified {
		cmd = newCmd()
		return cmd, false, cmd.Start()
	}
	fd, err := unix.Open(cg.dirs[0], unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, false, fmt.Errorf("sandbox: open cgroup %s: %w", cg.dirs[0], err)
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
