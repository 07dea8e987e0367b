package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Main runs the sandbox init when this process is one, and never returns
// then; otherwise it returns at once. Call it first in main and TestMain.
func Main() {
	if len(os.Args) == 0 || os.Args[0] != initArg0 || os.Getpid() != 1 {
		return
	}
	// no_new_privs and the bounding set belong to a thread, and the job
	// is forked from the thread that set them: keep the init on one.
	runtime.LockOSThread()
	os.Exit(initMain())
}

// Exit statuses of the init itself (the job's own status otherwise).
const exitSetup = 125

func initMain() int {
	specR := os.NewFile(3, "spec")
	status := os.NewFile(4, "status")
	unix.CloseOnExec(3)
	unix.CloseOnExec(4)
	fail := func(err error) int {
		fmt.Fprintf(status, "%v", err)
		status.Close()
		return exitSetup
	}
	var s spec
	dec := json.NewDecoder(io.LimitReader(specR, 16<<20))
	if err := dec.Decode(&s); err != nil {
		return fail(fmt.Errorf("read the spec: %w", err))
	}
	if err := setupRoot(&s); err != nil {
		return fail(err)
	}
	if s.Network == NetworkNone {
		if err := loopbackUp(); err != nil {
			return fail(fmt.Errorf("bring up the private loopback: %w", err))
		}
	}
	if err := dropPrivileges(); err != nil {
		return fail(err)
	}
	if err := awaitGo(io.MultiReader(dec.Buffered(), specR)); err != nil {
		return fail(err)
	}
	specR.Close()
	if len(s.Argv) == 0 {
		// A probe: the sandbox can be built on this host.
		status.Close()
		return 0
	}
	return runJob(&s, status)
}

// awaitGo waits for the parent's go byte after the spec: the init is in
// the job's cgroups. End of input without it means the parent gave up
// (it could not place the init), and nothing of the job may start.
func awaitGo(r io.Reader) error {
	rest, err := io.ReadAll(io.LimitReader(r, 64))
	if err != nil {
		return fmt.Errorf("wait for writ: %w", err)
	}
	if string(bytes.TrimSpace(rest)) != string(rune(goByte)) {
		return errors.New("writ did not place the sandbox in its cgroups (writ and writ-sandbox-init must come from the same release)")
	}
	return nil
}

// dropPrivileges makes execve unable to gain privileges (setuid and file
// capabilities do nothing) and empties the capability bounding set, so no
// process of the job can ever hold a capability again.
func dropPrivileges() error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	for c := 0; c <= unix.CAP_LAST_CAP; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	return nil
}

// runJob starts the job as its uid, then serves as PID 1: it passes
// termination signals to every process of the namespace and reaps
// orphans until the job's main process exits, then exits with its status.
// It returns only when the job could not be started.
func runJob(s *spec, status *os.File) int {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	if s.PidsMax > 0 {
		// The uid is the job's alone, so RLIMIT_NPROC bounds the job's
		// processes even on a host without the pids controller.
		lim := &unix.Rlimit{Cur: uint64(s.PidsMax), Max: uint64(s.PidsMax)}
		if err := unix.Setrlimit(unix.RLIMIT_NPROC, lim); err != nil {
			fmt.Fprintf(status, "set the process limit: %v", err)
			return exitSetup
		}
	}
	// syscall.ForkExec rather than os/exec: the init reaps with Wait4 on
	// its own, and os/exec would first fork a throwaway child to probe
	// pidfd support, in every stage. Stdin is the init's, /dev/null.
	pid, err := syscall.ForkExec(s.Argv[0], s.Argv, &syscall.ProcAttr{
		Dir:   s.Dir,
		Env:   s.Env,
		Files: []uintptr{0, 1, 2},
		Sys: &syscall.SysProcAttr{
			Credential: &syscall.Credential{Uid: s.UID, Gid: s.GID, Groups: []uint32{}},
			Setsid:     true,
		},
	})
	if err != nil {
		fmt.Fprintf(status, "start %s: %v", s.Argv[0], err)
		return exitSetup
	}
	status.Close()
	// Past the fork, so the job keeps the default: when the job hits its
	// memory limit the kernel kills the job's process, not the init, and
	// the job's status says so (137).
	_ = os.WriteFile("/proc/self/oom_score_adj", []byte("-1000"), 0)
	go func() {
		for {
			var ws unix.WaitStatus
			wpid, err := unix.Wait4(-1, &ws, 0, nil)
			if err == unix.EINTR {
				continue
			}
			if err != nil || wpid == pid {
				code := 1
				switch {
				case err != nil:
				case ws.Exited():
					code = ws.ExitStatus()
				case ws.Signaled():
					code = 128 + int(ws.Signal())
				}
				// Straight from here: handing the status to another
				// goroutine first costs a wake-up, under load a time slice.
				os.Exit(code)
			}
		}
	}()
	for sig := range sigs {
		// kill(-1) reaches every process of the namespace but init.
		_ = unix.Kill(-1, sig.(syscall.Signal))
	}
	return exitSetup // not reached: sigs is never closed
}

// setupRoot builds the job's root in a tmpfs at s.Base and pivots into it.
// Mounts made here never propagate back to the host.
func setupRoot(s *spec) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make the mount namespace private: %w", err)
	}
	if err := os.MkdirAll(s.Base, 0o700); err != nil {
		return err
	}
	base := s.Base
	if err := unix.Mount("tmpfs", base, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return fmt.Errorf("mount the root tmpfs: %w", err)
	}
	readOnly, err := bindRoot(s, base)
	if err != nil {
		return err
	}
	if err := mountSystem(s, base); err != nil {
		return err
	}
	if err := hide(s, base); err != nil {
		return err
	}
	for _, b := range s.Binds {
		if err := bindInto(base, b, readOnly); err != nil {
			return err
		}
	}
	if err := nameIdentity(s, base); err != nil {
		return err
	}
	if err := copyFiles(s, base); err != nil {
		return err
	}
	for _, p := range readOnly {
		if err := remount(p, unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV); err != nil {
			return fmt.Errorf("make %s read-only: %w", p, err)
		}
	}
	if err := pivot(base); err != nil {
		return err
	}
	return remount("/", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV)
}

// bindRoot binds the read-only part of the root: each listed host
// directory (host mode), or each top-level entry of an image's root
// filesystem. It returns the mount points to make read-only once
// everything under them is mounted.
func bindRoot(s *spec, base string) ([]string, error) {
	src, entries := "/", s.HostPaths
	if s.Root != "" {
		src = s.Root
		des, err := os.ReadDir(s.Root)
		if err != nil {
			return nil, fmt.Errorf("read the image's root filesystem: %w", err)
		}
		entries = nil
		own := map[string]bool{"proc": true, "dev": true, "sys": true, "tmp": true, "run": true}
		for _, b := range s.Binds {
			// The job's build directory is mounted where the image has
			// nothing of its own.
			first, _, _ := strings.Cut(strings.TrimPrefix(b.Target, "/"), "/")
			own[first] = true
		}
		for _, d := range des {
			switch {
			case own[d.Name()]:
				// The sandbox makes its own.
			default:
				entries = append(entries, "/"+d.Name())
			}
		}
	}
	var ro []string
	for _, e := range entries {
		from := filepath.Join(src, e)
		fi, err := os.Lstat(from)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		to := filepath.Join(base, e)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return nil, err
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			// /bin → usr/bin on merged-/usr hosts: the same link.
			target, err := os.Readlink(from)
			if err != nil {
				return nil, err
			}
			if err := os.Symlink(target, to); err != nil {
				return nil, err
			}
			continue
		case fi.IsDir():
			err = os.Mkdir(to, 0o755)
		case fi.Mode().IsRegular():
			err = writeEmpty(to)
		default:
			continue
		}
		if err != nil {
			return nil, err
		}
		// Not recursive: a host mount below (say /etc/writ on its own
		// device) is not carried into the sandbox.
		if err := unix.Mount(from, to, "", unix.MS_BIND, ""); err != nil {
			return nil, fmt.Errorf("bind %s: %w", from, err)
		}
		ro = append(ro, to)
	}
	return ro, nil
}

// mountSystem makes the job's own /proc (its PID namespace only), a
// minimal /dev, a private /tmp and /dev/shm.
func mountSystem(s *spec, base string) error {
	mk := func(p string, mode os.FileMode) (string, error) {
		to := filepath.Join(base, p)
		return to, os.MkdirAll(to, mode)
	}
	proc, err := mk("/proc", 0o555)
	if err != nil {
		return err
	}
	if err := unix.Mount("proc", proc, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	dev, err := mk("/dev", 0o755)
	if err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=64k"); err != nil {
		return fmt.Errorf("mount /dev: %w", err)
	}
	for _, d := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		to := filepath.Join(dev, d)
		if err := writeEmpty(to); err != nil {
			return err
		}
		if err := unix.Mount("/dev/"+d, to, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind /dev/%s: %w", d, err)
		}
	}
	for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		if err := os.Symlink(target, filepath.Join(dev, name)); err != nil {
			return err
		}
	}
	size := ""
	if s.TmpSize > 0 {
		size = fmt.Sprintf(",size=%d", s.TmpSize)
	}
	for _, p := range []string{"/tmp", "/dev/shm"} {
		to, err := mk(p, 0o1777)
		if err != nil {
			return err
		}
		if err := unix.Mount("tmpfs", to, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"+size); err != nil {
			return fmt.Errorf("mount %s: %w", p, err)
		}
	}
	return nil
}

// hide covers writ's own files and directories wherever they fall inside
// the bound host directories: an empty root-owned tmpfs over a directory,
// /dev/null over a file. Paths outside the bound directories are simply
// absent.
func hide(s *spec, base string) error {
	var paths []string
	for _, p := range s.Hide {
		paths = append(paths, p)
		if r, err := filepath.EvalSymlinks(p); err == nil && r != p {
			paths = append(paths, r)
		}
	}
	sort.Strings(paths)
	for _, p := range paths {
		to := filepath.Join(base, p)
		fi, err := os.Lstat(to)
		if err != nil {
			continue // not in the sandbox's tree
		}
		switch {
		case fi.IsDir():
			err = unix.Mount("tmpfs", to, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0755,size=16k")
		case fi.Mode().IsRegular():
			err = unix.Mount("/dev/null", to, "", unix.MS_BIND, "")
		default:
			continue
		}
		if err != nil {
			return fmt.Errorf("hide %s: %w", p, err)
		}
	}
	return nil
}

// bindInto mounts a host directory at its target, creating the mount point
// in the sandbox's own tmpfs. Targets under a read-only host directory
// are refused: the mount point would have to be made on the host.
func bindInto(base string, b Bind, frozen []string) error {
	if !filepath.IsAbs(b.Target) || filepath.Clean(b.Target) != b.Target || b.Target == "/" {
		return fmt.Errorf("bind target %q is not a clean absolute path", b.Target)
	}
	to := filepath.Join(base, b.Target)
	if err := mkdirNoFollow(base, b.Target, frozen); err != nil {
		return fmt.Errorf("make the mount point %s: %w", b.Target, err)
	}
	if err := unix.Mount(b.Source, to, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", b.Source, err)
	}
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV)
	if !b.Writable {
		flags |= unix.MS_RDONLY
	}
	if err := remount(to, flags); err != nil {
		return fmt.Errorf("restrict %s: %w", b.Target, err)
	}
	return nil
}

// mkdirNoFollow creates rel under base one component at a time, refusing
// symlinks, so a mount point never lands outside the sandbox's tree, and
// refusing to create anything inside a frozen (host or image) directory,
// which would change the host's or the cached image's files.
func mkdirNoFollow(base, rel string, frozen []string) error {
	cur := base
	for _, part := range strings.Split(strings.TrimPrefix(rel, "/"), "/") {
		parent := cur
		cur = filepath.Join(cur, part)
		fi, err := os.Lstat(cur)
		switch {
		case errors.Is(err, os.ErrNotExist):
			for _, f := range frozen {
				if parent == f || strings.HasPrefix(parent, f+"/") {
					return fmt.Errorf("%s lies in a read-only directory of the sandbox's root", rel)
				}
			}
			if err := os.Mkdir(cur, 0o755); err != nil {
				return err
			}
		case err != nil:
			return err
		case !fi.IsDir():
			return fmt.Errorf("%s is not a directory", cur)
		}
	}
	return nil
}

// copyFiles writes s.Files into a private tmpfs at RunDir.
func copyFiles(s *spec, base string) error {
	dir := filepath.Join(base, RunDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0755"); err != nil {
		return fmt.Errorf("mount %s: %w", RunDir, err)
	}
	for _, f := range s.Files {
		data, err := os.ReadFile(f.Source)
		if err != nil {
			return err
		}
		p := filepath.Join(dir, f.Name)
		mode := os.FileMode(0o444)
		if f.Secret {
			mode = 0o400
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			return err
		}
		if f.Secret {
			if err := os.Chown(p, int(s.UID), int(s.GID)); err != nil {
				return err
			}
		}
		if err := os.Chmod(p, mode); err != nil {
			return err
		}
	}
	return remount(dir, unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC)
}

func remount(p string, flags uintptr) error {
	return unix.Mount("", p, "", unix.MS_BIND|unix.MS_REMOUNT|flags, "")
}

// pivot makes base the root and detaches the host's root from the
// namespace, so nothing of it stays reachable.
func pivot(base string) error {
	if err := unix.Chdir(base); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the host root: %w", err)
	}
	return unix.Chdir("/")
}

func writeEmpty(p string) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o444)
	if err != nil {
		return err
	}
	return f.Close()
}

// loopbackUp brings up lo in the job's new network namespace, so a job
// with network "none" still reaches its own local services.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
