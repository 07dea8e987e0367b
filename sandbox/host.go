package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Host is the host-wide sandbox policy, built once from writ's [sandbox]
// configuration. Specs choose only what differs per job.
type Host struct {
	// HostPaths are the host directories a job sees read-only (host
	// mode): the system, never /home, /root, /var or /run.
	HostPaths []string
	// Hide are writ's own files and directories (config, keys, state,
	// cache, audit log, builds root), masked wherever they fall inside
	// HostPaths.
	Hide []string
	// Work is a root-only directory of writ's state; the sandbox's root
	// is built on a mount point under it.
	Work string
	// PidsMax and MemoryMax bound each run (0: no limit); TmpSize bounds
	// its private /tmp.
	PidsMax, MemoryMax, TmpSize int64
	// CgroupRoot is the cgroup file system (default /sys/fs/cgroup).
	CgroupRoot string
	// Init is the init program (cmd/writ-sandbox-init); empty means this
	// program itself, which must call Main first.
	Init string
}

// InitName is the init program's file name, installed beside writ.
const InitName = "writ-sandbox-init"

// DefaultHostPaths is what a job sees of the host by default.
var DefaultHostPaths = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"}

func (h *Host) base() string { return filepath.Join(h.Work, "root") }

// Probe builds a sandbox and runs nothing in it: an error says why jobs
// cannot be contained on this host (not root, no namespaces, no mounts).
func (h *Host) Probe(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return errors.New("writ runs as uid " + fmt.Sprint(os.Geteuid()) + ": the sandbox needs root (run GitLab Runner as root; see docs/install.md)")
	}
	if err := os.MkdirAll(h.Work, 0o700); err != nil {
		return err
	}
	c := &Cmd{h: h, spec: h.fullSpec(Spec{Network: NetworkNone, Name: "probe", Dir: "/"})}
	if err := c.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("sandbox probe: %w", err)
		}
		return nil
	case <-ctx.Done():
		_ = c.cmd.Process.Kill()
		<-done
		return ctx.Err()
	}
}

// Enforced says, for the docs and `writ executor config`, how each limit
// is enforced on this host.
func (h *Host) Enforced() []string {
	var out []string
	v := h.cgroupVersion()
	switch {
	case h.PidsMax <= 0:
		out = append(out, "processes: no limit (sandbox.pids_max = 0)")
	case v.pids != "":
		out = append(out, fmt.Sprintf("processes: at most %d per stage (%s pids controller), and RLIMIT_NPROC on the job's uid", h.PidsMax, v.pids))
	default:
		out = append(out, fmt.Sprintf("processes: at most %d per job by RLIMIT_NPROC on the job's own uid (no pids cgroup controller)", h.PidsMax))
	}
	switch {
	case h.MemoryMax <= 0:
		out = append(out, "memory: no limit (sandbox.memory_max_bytes = 0)")
	case v.memory != "":
		out = append(out, fmt.Sprintf("memory: at most %d bytes per stage, /tmp included (%s memory controller)", h.MemoryMax, v.memory))
	default:
		out = append(out, "memory: NOT enforced (no memory cgroup controller on this host)")
	}
	return out
}
