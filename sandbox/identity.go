package sandbox

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// jobAccount is the name the job's uid and gid have inside the sandbox.
const jobAccount = "writ-job"

// maxAccountFile bounds the /etc/passwd or /etc/group the init copies.
const maxAccountFile = 1 << 20

// nameIdentity gives the job's uid and gid a name inside the sandbox: the
// root's /etc/passwd and /etc/group, each with one more line, mounted over
// the originals (read-only). The host's files are not changed, and no
// account is needed on the host.
//
// Without a name, every program that asks who it runs as (bash at each
// start, git, ssh, id) misses the files and falls through to the other
// NSS sources: on a systemd host that loads libnss_systemd and probes the
// userdb directories, a millisecond or more per bash, and ssh refuses to
// run at all ("No user exists for uid").
//
// A root without these files (an image without /etc/passwd) is left as it
// is; so is one that names the uid already. Files are opened without
// following any symlink, so an image's link cannot make the init copy a
// host file into the job's view.
func nameIdentity(s *spec, base string) error {
	passwd, group := accountLines(s)
	uid, gid := strconv.FormatUint(uint64(s.UID), 10), strconv.FormatUint(uint64(s.GID), 10)
	for _, f := range []struct{ name, id, line string }{{"passwd", uid, passwd}, {"group", gid, group}} {
		if err := addAccountLine(base, f.name, f.id, f.line); err != nil {
			return fmt.Errorf("name the job's identity in /etc/%s: %w", f.name, err)
		}
	}
	return nil
}

// accountLines are the job's /etc/passwd and /etc/group lines. The home
// directory is the job's HOME when it is an absolute path that cannot end
// the line or add a field; "/" otherwise.
func accountLines(s *spec) (passwd, group string) {
	home := "/"
	for _, kv := range s.Env {
		if v, ok := strings.CutPrefix(kv, "HOME="); ok && filepath.IsAbs(v) && !strings.ContainsAny(v, ":\n\x00") {
			home = v
		}
	}
	uid, gid := strconv.FormatUint(uint64(s.UID), 10), strconv.FormatUint(uint64(s.GID), 10)
	return jobAccount + ":x:" + uid + ":" + gid + ":writ job:" + home + ":/bin/sh\n", jobAccount + ":x:" + gid + ":\n"
}

// addAccountLine mounts a copy of base/etc/<name> with line appended over
// it (see accountFile for when it does not).
func addAccountLine(base, name, id, line string) error {
	f, data, err := accountFile(base, name, id, line)
	if f == nil || err != nil {
		return err
	}
	defer f.Close()
	// The copy lives in the root's own tmpfs only until it is mounted.
	// An image's own top-level entry of that name is bound into base
	// already: the copy is created, never written through it.
	src := filepath.Join(base, ".writ-"+name)
	if err := writeNew(src, data); err != nil {
		return err
	}
	defer os.Remove(src)
	// Mounted on the file that was read (through its descriptor), not on
	// a path looked up again.
	if err := unix.Mount(src, fdPath(f.Fd()), "", unix.MS_BIND, ""); err != nil {
		return err
	}
	// The descriptor names the file under the new mount; the mount itself
	// is what the same walk finds now.
	top, err := openBeneath(base, "etc/"+name, unix.O_PATH)
	if err != nil {
		return err
	}
	defer unix.Close(top)
	return remount(fdPath(uintptr(top)), unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC)
}

// writeNew writes data to a file it creates at path (never an existing file,
// never through a symlink).
func writeNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func fdPath(fd uintptr) string { return "/proc/self/fd/" + strconv.Itoa(int(fd)) }

// openBeneath opens rel under base without following any symlink below
// base.
func openBeneath(base, rel string, flags uint64) (int, error) {
	dir, err := unix.Open(base, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(dir)
	return unix.Openat2(dir, rel, &unix.OpenHow{
		Flags:   flags | unix.O_CLOEXEC | unix.O_NOFOLLOW,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_BENEATH,
	})
}

// accountFile opens base/etc/<name> and returns it with its content plus
// line. It returns no file when there is nothing to do: the file is absent,
// reached through a symlink (no symlink below base is followed), not a
// regular file, larger than maxAccountFile, or already has an entry whose
// third field is id; or the kernel lacks openat2 (Linux 5.6).
func accountFile(base, name, id, line string) (*os.File, []byte, error) {
	if _, err := os.Stat(base); err != nil {
		return nil, nil, err
	}
	fd, err := openBeneath(base, "etc/"+name, unix.O_RDONLY|unix.O_NONBLOCK)
	if err != nil {
		return nil, nil, nil
	}
	f := os.NewFile(uintptr(fd), name)
	data, ok := readAccountFile(f)
	if !ok || hasAccount(data, id) {
		f.Close()
		return nil, nil, nil
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		data = append(data, '\n')
	}
	return f, append(data, line...), nil
}

// readAccountFile reads a regular file of at most maxAccountFile bytes.
func readAccountFile(f *os.File) ([]byte, bool) {
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return nil, false
	}
	data, err := io.ReadAll(io.LimitReader(f, maxAccountFile+1))
	if err != nil || len(data) > maxAccountFile {
		return nil, false
	}
	return data, true
}

// hasAccount reports whether a passwd or group file has a line whose third
// field (the uid or gid) is id.
func hasAccount(data []byte, id string) bool {
	for _, line := range bytes.Split(data, []byte("\n")) {
		fields := bytes.SplitN(line, []byte(":"), 4)
		if len(fields) >= 3 && string(fields[2]) == id {
			return true
		}
	}
	return false
}
