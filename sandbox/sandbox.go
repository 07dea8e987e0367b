// Package sandbox runs one job process contained by the kernel: its own
// mount, PID, IPC and UTS namespaces (and network namespace when the entry
// says "none"), a job-only uid and gid, no_new_privs, an empty capability
// bounding set, and cgroup limits where the host has the controllers.
//
// The contained process is started by a small init: writ re-executes
// itself (/proc/self/exe) as the namespaces' first process. The init
// builds the job's root (read-only host directories, or an image's root
// filesystem; the job's build directory and a private /tmp writable;
// writ's own files masked), becomes PID 1, starts the job as its uid and
// reaps every process until the job's main process exits. When the init
// exits the kernel kills whatever is left in the PID namespace, setsid
// daemons included: nothing a stage starts outlives it.
//
// Programs that use the sandbox call Main first thing in main (and in
// TestMain), so the re-executed binary becomes the init.
package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// Network is a job's network: the host's, or none (a private loopback).
type Network string

// The networks an allowlist entry may choose.
const (
	NetworkHost Network = "host"
	NetworkNone Network = "none"
)

// Bind makes a host directory visible in the sandbox at Target.
type Bind struct {
	Source, Target string
	// Writable: the job may write it (its build directory); otherwise it
	// is mounted read-only.
	Writable bool
}

// File is a host file the init copies into the sandbox's private /run/writ
// before the job starts: the stage script and file variables. The job
// reads a copy that exists only in its own mount namespace; the source
// stays in writ's root-only state.
type File struct {
	Source string
	// Name is the file's name in /run/writ (no slashes).
	Name string
	// Secret files are readable by the job's uid only (0400); others are
	// world-readable (0444). Neither is writable by the job.
	Secret bool
}

// RunDir is where Files appear inside the sandbox.
const RunDir = "/run/writ"

// Spec is one contained process.
type Spec struct {
	// Argv runs in Dir with exactly Env. Argv[0] is an absolute path.
	Argv []string
	Env  []string
	Dir  string
	// UID and GID the job runs as: the job's leased identity.
	UID, GID uint32
	Network  Network
	// Root is an unpacked root filesystem to run in (an image); empty
	// means the host's directories the Host lists, read-only.
	Root  string
	Binds []Bind
	Files []File
	// Name identifies the run in cgroup names ("123-build_script").
	Name string
}

// spec is what the parent hands the init over a pipe.
type spec struct {
	Spec
	HostPaths []string
	Hide      []string
	Base      string
	TmpSize   int64
	PidsMax   int64
}

// initArg0 marks the re-executed binary as a sandbox init.
const initArg0 = "writ-sandbox-init"

// Cmd is a contained process, started by Start and waited for by Wait.
// Signals sent to its process group (Pid) reach the init, which passes
// SIGTERM, SIGINT and SIGHUP on to every process of the job.
type Cmd struct {
	// Stdout and Stderr receive the job's output; they must be files
	// (pipes included), which the job inherits.
	Stdout, Stderr *os.File

	h    *Host
	spec spec
	cmd  *exec.Cmd
	cg   *cgroup
}

// Command prepares s to run under h's policy.
func (h *Host) Command(s Spec) (*Cmd, error) {
	if len(s.Argv) == 0 || !filepath.IsAbs(s.Argv[0]) {
		return nil, errors.New("sandbox: the command must be an absolute path")
	}
	if !filepath.IsAbs(s.Dir) {
		return nil, fmt.Errorf("sandbox: working directory %q is not absolute", s.Dir)
	}
	if s.UID == 0 || s.GID == 0 {
		return nil, errors.New("sandbox: a job never runs as root")
	}
	if s.Network != NetworkHost && s.Network != NetworkNone {
		return nil, fmt.Errorf("sandbox: network %q: use %q or %q", s.Network, NetworkHost, NetworkNone)
	}
	for _, f := range s.Files {
		if f.Name == "" || strings.ContainsAny(f.Name, "/\x00") || f.Name == "." || f.Name == ".." {
			return nil, fmt.Errorf("sandbox: file name %q", f.Name)
		}
	}
	return &Cmd{h: h, spec: h.fullSpec(s)}, nil
}

func (h *Host) fullSpec(s Spec) spec {
	return spec{Spec: s, HostPaths: h.HostPaths, Hide: h.Hide, Base: h.base(), TmpSize: h.TmpSize, PidsMax: h.PidsMax}
}

// Start starts the init, places it in the job's cgroups before any job
// code exists, hands it the spec and waits until the job's process runs.
// A setup failure is an error (and nothing of the job ran).
func (c *Cmd) Start() error {
	specR, specW, err := os.Pipe()
	if err != nil {
		return err
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		specR.Close()
		specW.Close()
		return err
	}
	defer statusR.Close()
	flags := uintptr(syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS)
	if c.spec.Network == NetworkNone {
		flags |= syscall.CLONE_NEWNET
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer devnull.Close()
	init := c.h.Init
	if init == "" {
		init = "/proc/self/exe"
	}
	// The init does one thing at a time: one P spares it the threads and
	// scheduling of a parallel runtime.
	newCmd := func() *exec.Cmd {
		cmd := &exec.Cmd{
			Path:       init,
			Args:       []string{initArg0},
			Env:        []string{"GOMAXPROCS=1"},
			Stdin:      devnull,
			Stdout:     c.Stdout,
			Stderr:     c.Stderr,
			ExtraFiles: []*os.File{specR, statusW},
			SysProcAttr: &syscall.SysProcAttr{
				Cloneflags: flags,
				Setpgid:    true,
				// If writ dies, so does the init, and with it the namespace.
				Pdeathsig: syscall.SIGKILL,
			},
		}
		if c.Stdout == nil {
			cmd.Stdout = devnull
		}
		if c.Stderr == nil {
			cmd.Stderr = devnull
		}
		return cmd
	}
	c.cg, err = c.h.newCgroup(c.spec.Name)
	if err != nil {
		specR.Close()
		specW.Close()
		statusW.Close()
		return err
	}
	// Pdeathsig follows the thread that forked; Go never ends a thread no
	// goroutine locked, so it fires only when writ itself dies.
	cmd, placed, err := c.cg.start(newCmd)
	specR.Close()
	statusW.Close()
	if err != nil {
		specW.Close()
		c.cg.remove()
		return fmt.Errorf("sandbox: start the init: %w (writ must run as root on a kernel with namespaces; see docs/install.md)", err)
	}
	c.cmd = cmd
	fail := func(err error) error {
		_ = cmd.Process.Kill()
		specW.Close()
		_ = cmd.Wait()
		c.cg.remove()
		return err
	}
	// The init reads its spec and builds the job's root while the kernel
	// moves it into the job's cgroups, unless it was created there (on
	// cgroup v1 the move waits for an RCU grace period, the slowest step
	// of a start). It starts nothing of the job before the go byte,
	// written once it is placed, so every process of the job is counted
	// and limited.
	if err := json.NewEncoder(specW).Encode(c.spec); err != nil {
		return fail(fmt.Errorf("sandbox: hand the spec to the init: %w", err))
	}
	status := func() string {
		msg, _ := io.ReadAll(io.LimitReader(statusR, 64<<10))
		return strings.TrimSpace(string(msg))
	}
	if err := c.cg.addUnless(placed, cmd.Process.Pid); err != nil {
		err = fail(err)
		if msg := status(); msg != "" {
			// The init failed first (and its end failed the move).
			return &SetupError{Msg: msg}
		}
		return err
	}
	// A failed write means the init has already ended; its status says why.
	_, goErr := specW.Write([]byte{goByte})
	specW.Close()
	if msg := status(); msg != "" {
		_ = cmd.Wait()
		c.cg.remove()
		return &SetupError{Msg: msg}
	}
	if goErr != nil {
		return fail(fmt.Errorf("sandbox: the init ended before the job started: %w (writ and writ-sandbox-init must come from the same release)", goErr))
	}
	return nil
}

// goByte, after the spec, tells the init that it is in the job's cgroups
// and may start the job.
const goByte = 'G'

// SetupError is the init's report that it could not contain the job; the
// job did not start.
type SetupError struct{ Msg string }

func (e *SetupError) Error() string { return "sandbox setup failed: " + e.Msg }

// Pid is the init's pid, which is also its process group id.
func (c *Cmd) Pid() int { return c.cmd.Process.Pid }

// Wait waits for the job's main process and returns an *exec.ExitError
// for a non-zero exit (128+n for a process killed by signal n). Every
// process the job started is gone when Wait returns.
func (c *Cmd) Wait() error {
	err := c.cmd.Wait()
	c.cg.remove()
	return err
}
