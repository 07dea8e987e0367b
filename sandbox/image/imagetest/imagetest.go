// Package imagetest serves images for tests: an in-process OCI registry on
// 127.0.0.1 (go-containerregistry's pkg/registry) and small images built
// from tar entries, or from the host's own programs and their libraries.
package imagetest

import (
	"archive/tar"
	"bytes"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Registry starts a registry on 127.0.0.1 for the test and returns its
// host:port.
func Registry(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// Entry is one tar entry of a layer.
type Entry struct {
	Name     string
	Type     byte // tar.TypeReg (default), TypeDir, TypeSymlink, TypeLink, TypeChar…
	Mode     int64
	Body     string
	Linkname string
}

// Layer builds a gzip layer of entries.
func Layer(t testing.TB, entries ...Entry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.Name, Typeflag: e.Type, Mode: e.Mode, Linkname: e.Linkname, Size: int64(len(e.Body))}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := io.WriteString(tw, e.Body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Push pushes an image of layers to host/repo and returns its reference
// pinned by digest.
func Push(t testing.TB, host, repo string, layers ...v1.Layer) string {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{OS: "linux", Architecture: "amd64", RootFS: mustRootFS(t, img)})
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(host + "/" + repo + ":latest")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return host + "/" + repo + "@" + d.String()
}

func mustRootFS(t testing.TB, img v1.Image) v1.RootFS {
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return cf.RootFS
}

// HostPrograms is a layer holding the host's programs at their own paths,
// with the shared libraries ldd names for them and directory links such as
// /bin → usr/bin kept as links: enough of a root filesystem to run them.
func HostPrograms(t testing.TB, programs ...string) []Entry {
	t.Helper()
	files := map[string]bool{}
	for _, p := range programs {
		files[p] = true
		out, err := exec.Command("ldd", p).Output()
		if err != nil {
			continue // static
		}
		for _, line := range strings.Split(string(out), "\n") {
			for _, f := range strings.Fields(line) {
				if strings.HasPrefix(f, "/") {
					files[f] = true
				}
			}
		}
	}
	var entries []Entry
	seen := map[string]bool{}
	var paths []string
	for f := range files {
		paths = append(paths, f)
	}
	sort.Strings(paths)
	for _, f := range paths {
		// Parent directories, as links where the host has links.
		parts := strings.Split(strings.TrimPrefix(filepath.Dir(f), "/"), "/")
		for i := range parts {
			d := strings.Join(parts[:i+1], "/")
			if seen[d] {
				continue
			}
			seen[d] = true
			if target, err := os.Readlink("/" + d); err == nil {
				entries = append(entries, Entry{Name: d, Type: tar.TypeSymlink, Linkname: target})
			} else {
				entries = append(entries, Entry{Name: d + "/", Type: tar.TypeDir, Mode: 0o755})
			}
		}
		real, err := filepath.EvalSymlinks(f)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(real)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, Entry{Name: strings.TrimPrefix(f, "/"), Mode: 0o755, Body: string(data)})
	}
	return entries
}
