package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// accountFile appends the job's line to a plain /etc/passwd, and leaves
// alone what it must not read or need not change: a symlinked file or
// /etc (an image's link must not make the init copy a host file into the
// job's view), a FIFO, a file too large, an account already there.
func TestAccountFile(t *testing.T) {
	const line = "writ-job:x:2000000123:2000000123:writ job:/:/bin/sh\n"
	secret := filepath.Join(t.TempDir(), "host-secret")
	if err := os.WriteFile(secret, []byte("host-only\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		setup func(etc string) error
		want  string // "" means nothing to do
	}{
		"plain":          {func(etc string) error { return write(etc, "root:x:0:0::/root:/bin/bash\n") }, "root:x:0:0::/root:/bin/bash\n" + line},
		"no final eol":   {func(etc string) error { return write(etc, "root:x:0:0::/root:/bin/bash") }, "root:x:0:0::/root:/bin/bash\n" + line},
		"empty":          {func(etc string) error { return write(etc, "") }, line},
		"absent":         {func(etc string) error { return nil }, ""},
		"already named":  {func(etc string) error { return write(etc, "ci:x:2000000123:1::/:/bin/sh\n") }, ""},
		"symlinked file": {func(etc string) error { return os.Symlink(secret, filepath.Join(etc, "passwd")) }, ""},
		"fifo":           {func(etc string) error { return syscall.Mkfifo(filepath.Join(etc, "passwd"), 0o644) }, ""},
		"directory":      {func(etc string) error { return os.Mkdir(filepath.Join(etc, "passwd"), 0o755) }, ""},
		"too large":      {func(etc string) error { return write(etc, strings.Repeat("x", maxAccountFile+1)) }, ""},
		"symlinked /etc": {nil, ""},
		"relative escape": {func(etc string) error {
			return os.Symlink("../../"+filepath.Base(secret), filepath.Join(etc, "passwd"))
		}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			base := t.TempDir()
			etc := filepath.Join(base, "etc")
			if c.setup == nil {
				if err := os.Symlink(filepath.Dir(secret), etc); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(secret, secret+".tmp"); err != nil {
					t.Fatal(err)
				}
				defer os.Rename(secret+".tmp", secret)
				if err := os.WriteFile(filepath.Join(filepath.Dir(secret), "passwd"), []byte("host-only\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			} else {
				if err := os.Mkdir(etc, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := c.setup(etc); err != nil {
					t.Fatal(err)
				}
			}
			f, data, err := accountFile(base, "passwd", "2000000123", line)
			if err != nil {
				t.Fatal(err)
			}
			if f != nil {
				f.Close()
			}
			if (f == nil) != (c.want == "") || string(data) != c.want {
				t.Errorf("accountFile: file %v, content %q; want %q", f != nil, data, c.want)
			}
		})
	}
}

func write(etc, content string) error {
	return os.WriteFile(filepath.Join(etc, "passwd"), []byte(content), 0o644)
}

// The account's home is the job's HOME only when it is a plain absolute
// path: a value that could end the line or add a field gives "/".
func TestAccountLines(t *testing.T) {
	for home, want := range map[string]string{
		"/builds/7": "/builds/7", "": "/", "relative": "/", "/a:b": "/", "/a\nroot::0:0::/:/bin/sh": "/",
	} {
		s := &spec{Spec: Spec{UID: 2000000123, GID: 2000000124, Env: []string{"PATH=/bin", "HOME=" + home}}}
		passwd, group := accountLines(s)
		if passwd != "writ-job:x:2000000123:2000000124:writ job:"+want+":/bin/sh\n" || group != "writ-job:x:2000000124:\n" {
			t.Errorf("HOME=%q: %q %q", home, passwd, group)
		}
	}
}

// TestWriteNewNeverWritesThrough: the account file's copy is created in the
// root; a file or a symlink an image already put at that name (bound into
// the root before the copy is made) is refused and left as it was.
func TestWriteNewNeverWritesThrough(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "image-file")
	if err := os.WriteFile(target, []byte("image\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, ".writ-passwd")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := writeNew(link, []byte("job\n")); err == nil {
		t.Fatal("writeNew wrote through a symlink")
	}
	if err := writeNew(target, []byte("job\n")); err == nil {
		t.Fatal("writeNew overwrote an existing file")
	}
	if b, _ := os.ReadFile(target); string(b) != "image\n" {
		t.Fatalf("the existing file changed: %q", b)
	}
	fresh := filepath.Join(dir, ".writ-group")
	if err := writeNew(fresh, []byte("job\n")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(fresh); string(b) != "job\n" {
		t.Fatalf("new file: %q", b)
	}
}
