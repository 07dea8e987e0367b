package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/sandbox/image/imagetest"
)

func TestRootFS(t *testing.T) {
	host := imagetest.Registry(t)
	outside := t.TempDir()
	base := imagetest.Layer(t,
		imagetest.Entry{Name: "etc/", Type: tar.TypeDir, Mode: 0o755},
		imagetest.Entry{Name: "etc/os-release", Body: "ID=writ-test\n"},
		imagetest.Entry{Name: "etc/gone", Body: "removed by a whiteout\n"},
		imagetest.Entry{Name: "opaque/", Type: tar.TypeDir, Mode: 0o755},
		imagetest.Entry{Name: "opaque/old", Body: "hidden by an opaque whiteout\n"},
		imagetest.Entry{Name: "bin/suid", Mode: 0o4755, Body: "#!/bin/sh\n"},
		imagetest.Entry{Name: "dev/evil", Type: tar.TypeChar},
		imagetest.Entry{Name: "../../escape-dotdot", Body: "x"},
		imagetest.Entry{Name: "link-out", Type: tar.TypeSymlink, Linkname: outside},
		imagetest.Entry{Name: "link-out/pwned", Body: "written through a link"},
		imagetest.Entry{Name: "hard", Type: tar.TypeLink, Linkname: "etc/os-release"},
	)
	top := imagetest.Layer(t,
		imagetest.Entry{Name: "etc/.wh.gone"},
		imagetest.Entry{Name: "opaque/.wh..wh..opq"},
		imagetest.Entry{Name: "opaque/new", Body: "this layer's\n"},
	)
	ref := imagetest.Push(t, host, "writ/test", base, top)
	s := &Store{Dir: t.TempDir()}
	root, err := s.RootFS(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			return "<" + err.Error() + ">"
		}
		return string(b)
	}
	if got := read("etc/os-release"); got != "ID=writ-test\n" {
		t.Errorf("etc/os-release: %q", got)
	}
	if got := read("hard"); got != "ID=writ-test\n" {
		t.Errorf("hard link: %q", got)
	}
	for _, p := range []string{"etc/gone", "opaque/old", "dev/evil"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			t.Errorf("%s exists", p)
		}
	}
	if got := read("opaque/new"); got != "this layer's\n" {
		t.Errorf("opaque/new: %q", got)
	}
	if fi, err := os.Stat(filepath.Join(root, "bin/suid")); err != nil || fi.Mode()&os.ModeSetuid != 0 {
		t.Errorf("bin/suid: %v %v", fi.Mode(), err)
	}
	if _, err := os.Stat(filepath.Join(outside, "pwned")); err == nil {
		t.Error("a file was written through a symlink out of the root")
	}
	if got := read(filepath.Join(outside, "pwned")); got != "written through a link" {
		t.Errorf("the link's file should land inside the root: %q", got)
	}
	if got := read("escape-dotdot"); got != "x" {
		t.Errorf("../ names are cleaned into the root: %q", got)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(filepath.Dir(root)), "escape-dotdot")); err == nil {
		t.Error("../ escaped the root")
	}

	// Warm: the same root, no registry needed.
	again, err := (&Store{Dir: s.Dir, Transport: failingTransport{}}).RootFS(context.Background(), ref)
	if err != nil || again != root {
		t.Fatalf("warm cache: %q, %v", again, err)
	}
}

// A cached blob that changed is caught when unpacked, removed, and fetched
// again by the next attempt.
func TestRootFSDamagedBlob(t *testing.T) {
	host := imagetest.Registry(t)
	ref := imagetest.Push(t, host, "writ/damaged", imagetest.Layer(t, imagetest.Entry{Name: "f", Body: "ok\n"}))
	s := &Store{Dir: t.TempDir()}
	root, err := s.RootFS(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	blobs, _ := filepath.Glob(filepath.Join(s.Dir, "blobs", "*"))
	if len(blobs) != 1 {
		t.Fatalf("blobs: %v", blobs)
	}
	data, _ := os.ReadFile(blobs[0])
	data[len(data)-1] ^= 1
	if err := os.WriteFile(blobs[0], data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RootFS(context.Background(), ref); err == nil || !strings.Contains(err.Error(), "digest") {
		t.Fatalf("a damaged blob was unpacked: %v", err)
	}
	if _, err := s.RootFS(context.Background(), ref); err != nil {
		t.Fatalf("the damaged blob was not fetched again: %v", err)
	}
}

func TestRootFSNeedsADigest(t *testing.T) {
	s := &Store{Dir: t.TempDir()}
	for _, ref := range []string{"registry.example.com/deploy:1.0", "registry.example.com/deploy", "deploy@sha256:abc"} {
		if _, err := s.RootFS(context.Background(), ref); err == nil {
			t.Errorf("%s: fetched without a digest", ref)
		}
	}
}

func TestRootFSSizeLimit(t *testing.T) {
	host := imagetest.Registry(t)
	ref := imagetest.Push(t, host, "writ/big", imagetest.Layer(t, imagetest.Entry{Name: "big", Body: strings.Repeat("x", 1<<20)}))
	s := &Store{Dir: t.TempDir(), MaxBytes: 64 << 10}
	if _, err := s.RootFS(context.Background(), ref); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("an image over the limit was unpacked: %v", err)
	}
}

type failingTransport struct{}

func (failingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("no network")
}

// FuzzExtract: a layer is hostile input; whatever its tar stream holds,
// unpacking writes nothing outside the root and stays within its budget.
func FuzzExtract(f *testing.F) {
	f.Add(tarOf(f, imagetest.Entry{Name: "a/b", Body: "x"}))
	f.Add(tarOf(f, imagetest.Entry{Name: "l", Type: tar.TypeSymlink, Linkname: "/"}, imagetest.Entry{Name: "l/x", Body: "y"}))
	f.Add(tarOf(f, imagetest.Entry{Name: "../x", Body: "y"}, imagetest.Entry{Name: "h", Type: tar.TypeLink, Linkname: "../../etc/passwd"}))
	f.Add(tarOf(f, imagetest.Entry{Name: "d/.wh..wh..opq"}, imagetest.Entry{Name: ".wh.d"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		root := filepath.Join(parent, "root")
		if err := os.Mkdir(root, 0o755); err != nil {
			t.Fatal(err)
		}
		budget := int64(1 << 20)
		_ = extract(root, bytes.NewReader(data), &budget)
		des, err := os.ReadDir(parent)
		if err != nil || len(des) != 1 {
			t.Fatalf("unpacking wrote beside the root: %v %v", des, err)
		}
	})
}

func tarOf(f *testing.F, entries ...imagetest.Entry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.Name, Typeflag: e.Type, Mode: 0o644, Linkname: e.Linkname, Size: int64(len(e.Body))}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			f.Fatal(err)
		}
		_, _ = tw.Write([]byte(e.Body))
	}
	_ = tw.Close()
	return buf.Bytes()
}

// BenchmarkRootFS: an image of the host's bash, coreutils' cat and their
// libraries (a few MiB) from a registry on 127.0.0.1, fetched and unpacked
// into an empty cache (cold) and found in a warm one; reports warm/cold.
func BenchmarkRootFS(b *testing.B) {
	host := imagetest.Registry(b)
	ref := imagetest.Push(b, host, "writ/bench", imagetest.Layer(b, imagetest.HostPrograms(b, "/bin/bash", "/bin/cat")...))
	var cold, warm time.Duration
	for range b.N {
		s := &Store{Dir: b.TempDir()}
		start := time.Now()
		if _, err := s.RootFS(context.Background(), ref); err != nil {
			b.Fatal(err)
		}
		cold += time.Since(start)
		start = time.Now()
		if _, err := s.RootFS(context.Background(), ref); err != nil {
			b.Fatal(err)
		}
		warm += time.Since(start)
	}
	b.ReportMetric(float64(cold.Microseconds())/float64(b.N)/1000, "ms/cold")
	b.ReportMetric(float64(warm.Microseconds())/float64(b.N)/1000, "ms/warm")
	b.ReportMetric(float64(warm)/float64(cold), "warm/cold")
}
