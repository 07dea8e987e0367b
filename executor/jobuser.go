package executor

import (
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// jobUser is the account job scripts run as when job.user is set, which
// applies only without the sandbox (sandbox.unsafe_no_sandbox): the
// sandbox's per-job uids replace it. Its hand-over walks the checkout as
// root, safe only because no other process of the account may run then;
// the sandbox's staged checkout does not rely on that.
type jobUser struct {
	uid, gid uint32
}

// lookupJobUser returns the configured job user, or nil when jobs run as writ.
func (o *Options) lookupJobUser() (*jobUser, error) {
	name := o.Config.Job.User
	if name == "" {
		return nil, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("job.user %q: %w (create the account, or remove job.user)", name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("job.user %q has a non-numeric uid or gid", name)
	}
	if uid == 0 {
		return nil, fmt.Errorf("job.user %q is root: name an unprivileged account", name)
	}
	return &jobUser{uid: uint32(uid), gid: uint32(gid)}, nil
}

// credential makes the process run as the job user with no supplementary groups.
func (u *jobUser) credential() *syscall.Credential {
	return &syscall.Credential{Uid: u.uid, Gid: u.gid, Groups: []uint32{}}
}

// runDir holds what the job user must read but not change: the stage
// scripts and file variables. It sits beside the build directory, owned by
// writ, so the job can neither rewrite its next stage nor reach writ's state.
func (o *Options) runDir(id string) string { return o.buildDir(id) + ".writ" }

// handOver gives the checked-out tree to the job user and makes the builds
// root traversable (not listable) so the job can reach its own directory.
func (u *jobUser) handOver(buildsRoot, buildDir string) error {
	if err := os.Chmod(buildsRoot, 0o711); err != nil {
		return err
	}
	return filepath.WalkDir(buildDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(u.uid), int(u.gid))
	})
}

// writeReadable writes a file in the run directory that the job user may
// read but not change; secret says the file holds a variable's value, which
// only the job user may read.
func (o *Options) writeReadable(id, name string, data []byte, u *jobUser, secret bool) (string, error) {
	dir := o.runDir(id)
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return "", err
	}
	p := filepath.Join(dir, name)
	mode := os.FileMode(0o644)
	if secret {
		mode = 0o400
	}
	tmp := p + ".tmp"
	_ = os.Remove(tmp)
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return "", err
	}
	if secret {
		if err := os.Chown(tmp, int(u.uid), int(u.gid)); err != nil {
			_ = os.Remove(tmp)
			return "", err
		}
	}
	if err := os.Chmod(tmp, mode); err != nil {
		_ = os.Remove(tmp)
		return "", err
	}
	return p, os.Rename(tmp, p)
}
