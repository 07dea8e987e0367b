package executor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"gitlab.com/writ-ci/writ/internal/fsutil"
)

// HostProblem is one way this host's installation lets a job (or another
// local user) reach what writ trusts, with the command that fixes it.
type HostProblem struct {
	Path    string
	Problem string
	Fix     string
}

func (p HostProblem) String() string {
	s := p.Problem
	if p.Path != "" {
		s = p.Path + ": " + s
	}
	if p.Fix != "" {
		s += "\n  fix: " + p.Fix
	}
	return s
}

// probeTimeout bounds the sandbox probe config_exec runs.
const probeTimeout = 20 * time.Second

// CheckHost checks what config_exec checks before every job: that jobs can
// be contained on this host (unless the configuration opts out, which it
// reports as a problem of its own only when asked for everything), and
// that writ's configuration, keys and state are writable by no one but
// writ's own user. An empty result means the installation is sound.
func CheckHost(ctx context.Context, opts Options) []HostProblem {
	o := opts.withDefaults()
	var out []HostProblem
	if o.contained() {
		if err := o.probeSandbox(ctx); err != nil {
			out = append(out, HostProblem{Problem: "writ cannot contain jobs on this host: " + err.Error(),
				Fix: "run GitLab Runner as root on a Linux kernel with mount and PID namespaces (docs/install.md); " +
					"only if the host contains the runner some other way, set sandbox.unsafe_no_sandbox = true (UNSAFE: admitted jobs then reach writ's keys, state and audit log)"})
		}
	}
	c := o.Config
	for _, f := range []string{c.Path, c.Trust.OpenPGPKeyring, c.Trust.SSHAllowedSigners, c.Allowlist.TokenFile,
		c.Allowlist.SSHKeyFile, c.Allowlist.KnownHostsFile} {
		out = append(out, checkTrusted(f, false)...)
	}
	if init := sandboxInit(); init != "" {
		// Run as root for every job.
		out = append(out, checkTrusted(init, false)...)
	}
	for _, f := range c.Trust.SigstorePublicKeys {
		out = append(out, checkTrusted(f, false)...)
	}
	for _, d := range []string{c.Paths.State, c.Paths.Cache, c.Paths.Builds, filepath.Dir(c.Paths.Audit)} {
		out = append(out, checkTrusted(d, true)...)
	}
	return out
}

// probeSandbox builds a sandbox that runs nothing, once per boot, writ
// binary, init binary and sandbox policy: what it proves (root,
// namespaces, mounts, cgroups) does not change in between, and a stage
// whose sandbox fails anyway fails closed.
func (o *Options) probeSandbox(ctx context.Context) error {
	h := o.sandboxHost()
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	exe, _ := os.Executable()
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s\n%s %s\n%s %s\n%+v", boot, exe, fileStamp(exe), h.Init, fileStamp(h.Init), *h)))
	key := hex.EncodeToString(sum[:])
	marker := filepath.Join(h.Work, "probe-ok")
	if data, err := os.ReadFile(marker); err == nil && string(data) == key {
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	if err := h.Probe(pctx); err != nil {
		_ = os.Remove(marker)
		return err
	}
	return fsutil.WriteFileAtomic(marker, []byte(key), 0o600)
}

// fileStamp names the version of the file at p: a replaced or changed
// file (a new release) gets a new stamp.
func fileStamp(p string) string {
	var st unix.Stat_t
	if p == "" || unix.Stat(p, &st) != nil {
		return "-"
	}
	return fmt.Sprint(st.Ino, st.Size, st.Mtim.Nano(), st.Ctim.Nano())
}

// checkTrusted checks that p (if it exists) and every directory above it
// can be changed only by root or writ's own user: owned by one of them and
// not writable by group or others (a sticky directory such as /tmp may be
// world-writable: others cannot replace what they do not own). private
// also requires p itself to be unreadable by group and others.
func checkTrusted(p string, private bool) []HostProblem {
	if p == "" {
		return nil
	}
	var out []HostProblem
	me := uint32(os.Geteuid())
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return []HostProblem{{Path: p, Problem: err.Error()}}
	}
	check := func(path string, fi fs.FileInfo, self bool) {
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return
		}
		if st.Uid != 0 && st.Uid != me {
			out = append(out, HostProblem{Path: path, Problem: fmt.Sprintf("owned by uid %d, which could change what writ trusts", st.Uid),
				Fix: fmt.Sprintf("chown %d %s", me, path)})
		}
		mode := fi.Mode()
		if mode.Perm()&0o022 != 0 && !(fi.IsDir() && mode&fs.ModeSticky != 0 && !self) {
			out = append(out, HostProblem{Path: path, Problem: fmt.Sprintf("mode %04o lets group or others change it", mode.Perm()),
				Fix: "chmod go-w " + path})
		}
		if self && private && mode.Perm()&0o077 != 0 {
			out = append(out, HostProblem{Path: path, Problem: fmt.Sprintf("mode %04o lets group or others read writ's private state", mode.Perm()),
				Fix: "chmod 0700 " + path})
		}
	}
	check(p, fi, true)
	for dir := filepath.Dir(p); ; dir = filepath.Dir(dir) {
		if dfi, err := os.Stat(dir); err == nil {
			check(dir, dfi, false)
		}
		if dir == "/" || dir == "." {
			break
		}
	}
	return out
}
