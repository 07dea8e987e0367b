package ociimage

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// hostBase is a base image made of this machine's sh and git and the
// shared libraries they load: what a real base (Debian, Alpine) provides to
// the components' scripts, without pulling one.
func hostBase(t *testing.T) v1.Image {
	t.Helper()
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Skip("no /bin/sh")
	}
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("no git")
	}
	git, _ = filepath.EvalSymlinks(git)
	paths := map[string]bool{}
	add := func(host, in string) {
		paths[host+"\x00"+in] = true
	}
	add(sh, "/bin/sh")
	add(git, "/usr/bin/git")
	libRE := regexp.MustCompile(`(?m)(/\S+\.so[.\d]*)`)
	for _, bin := range []string{sh, git} {
		out, err := exec.Command("ldd", bin).Output()
		if err != nil {
			t.Skipf("ldd %s: %v", bin, err)
		}
		for _, m := range libRE.FindAllString(string(out), -1) {
			add(m, m)
		}
	}
	var files []File
	for k := range paths {
		host, in, _ := strings.Cut(k, "\x00")
		data, err := os.ReadFile(host)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, File{Path: in, Mode: 0o755, Data: data})
	}
	layer, err := Layer(files)
	if err != nil {
		t.Fatal(err)
	}
	base, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		t.Fatal(err)
	}
	return base
}

func buildWrit(t *testing.T) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "writ")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./cmd/writ")
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// untar unpacks the image's flattened filesystem into dir.
func untar(t *testing.T, img v1.Image, dir string) {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(p, dir+string(filepath.Separator)) {
			t.Fatalf("image path %q escapes", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			os.MkdirAll(p, 0o755)
		case tar.TypeReg:
			os.MkdirAll(filepath.Dir(p), 0o755)
			b, _ := io.ReadAll(tr)
			if err := os.WriteFile(p, b, os.FileMode(h.Mode)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestImageRunsTemplateScripts builds the image from a base with sh and
// git, writes it as an OCI layout twice (same digest: reproducible), reads
// it back, and runs the allowlist component's lint script and git inside
// its filesystem (chroot: the image's own sh, git and writ, nothing of the
// host's).
func TestImageRunsTemplateScripts(t *testing.T) {
	base := hostBase(t)
	writ := buildWrit(t)
	labels := map[string]string{"org.opencontainers.image.revision": "0123abcd"}
	img, err := Build(base, writ, labels)
	if err != nil {
		t.Fatal(err)
	}
	d1, err := WriteLayout(t.TempDir(), img)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := Build(base, writ, labels)
	dir := t.TempDir()
	d2, err := WriteLayout(dir, again)
	if err != nil {
		t.Fatal(err)
	}
	if d1 != d2 {
		t.Fatalf("two builds of the same image differ: %s, %s", d1, d2)
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	read, err := p.Image(d2)
	if err != nil {
		t.Fatal(err)
	}
	if mt, _ := read.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s", mt)
	}
	cf, err := read.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(cf.Config.Env, " "), "PATH=/usr/local/bin:") || cf.Config.Labels["org.opencontainers.image.revision"] != "0123abcd" || len(cf.Config.Entrypoint) != 0 {
		t.Errorf("image config %+v", cf.Config)
	}

	if os.Geteuid() != 0 {
		t.Skip("running the scripts inside the image's filesystem needs chroot (root)")
	}
	rootfs := t.TempDir()
	untar(t, read, rootfs)
	// A container runtime gives the job a /dev; so does the test.
	os.MkdirAll(filepath.Join(rootfs, "dev"), 0o755)
	if err := syscall.Mknod(filepath.Join(rootfs, "dev", "null"), syscall.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Skipf("mknod /dev/null: %v", err)
	}
	example := filepath.Join(repoRoot(t), "allowlist", "testdata", "example")
	os.MkdirAll(filepath.Join(rootfs, "work", "keys"), 0o755)
	for _, f := range []string{"allowlist.yaml", "keys/alice.asc"} {
		b, err := os.ReadFile(filepath.Join(example, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(rootfs, "work", f), b, 0o644)
	}
	// The lint job's script, as the component writes it, run by the
	// image's sh with the image's PATH.
	script := `cd /work && git --version && git init -q . && writ allowlist lint --codequality writ-lint-codequality.json --junit writ-lint-junit.xml allowlist.yaml`
	cmd := exec.Command("chroot", rootfs, "/bin/sh", "-c", script)
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/work"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("the lint script fails inside the image: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "git version") || !strings.Contains(out.String(), "allowlist.yaml: ok") {
		t.Fatalf("unexpected output:\n%s", out.String())
	}
	if b, err := os.ReadFile(filepath.Join(rootfs, "work", "writ-lint-codequality.json")); err != nil || strings.TrimSpace(string(b)) != "[]" {
		t.Errorf("code quality report in the image: %q %v", b, err)
	}
}

func TestLayerRefusesBadPaths(t *testing.T) {
	for _, p := range []string{"usr/bin/x", "/usr/../etc/x", "/usr//x"} {
		if _, err := Layer([]File{{Path: p, Data: []byte("x")}}); err == nil {
			t.Errorf("%q accepted", p)
		}
	}
}
