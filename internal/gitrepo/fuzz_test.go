package gitrepo

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/config"
)

// FuzzCheckRefspec: whatever is accepted is a forced refspec go-git
// accepts, with ref names free of the characters git forbids.
func FuzzCheckRefspec(f *testing.F) {
	f.Fuzz(func(t *testing.T, spec string) {
		got, err := checkRefspec(spec)
		if err != nil {
			return
		}
		if !strings.HasPrefix(got, "+") {
			t.Fatalf("%q: result %q not forced", spec, got)
		}
		if err := config.RefSpec(got).Validate(); err != nil {
			t.Fatalf("%q: go-git refuses %q: %v", spec, got, err)
		}
		src, dst, _ := strings.Cut(got[1:], ":")
		for _, name := range []string{src, dst} {
			if CheckHash(name) == nil {
				continue
			}
			if !strings.HasPrefix(name, "refs/") || strings.Contains(name, "..") || strings.Contains(name, "@{") ||
				strings.ContainsAny(name, " ~^:?[\\\x00\x7f") || strings.HasSuffix(name, "/") || strings.HasSuffix(name, ".lock") {
				t.Fatalf("%q: bad ref name %q accepted", spec, name)
			}
			for _, c := range []byte(name) {
				if c < 0x20 {
					t.Fatalf("%q: control character accepted", spec)
				}
			}
		}
		if !strings.HasPrefix(dst, "refs/") {
			t.Fatalf("%q: destination %q outside refs/", spec, dst)
		}
	})
}

// FuzzCheckPath: an accepted path stays inside the directory it is joined
// to and never names .git.
func FuzzCheckPath(f *testing.F) {
	f.Fuzz(func(t *testing.T, p string) {
		if checkPath(p) != nil {
			return
		}
		root := "/checkout/root"
		full := filepath.Join(root, filepath.FromSlash(p))
		if !strings.HasPrefix(full, root+"/") {
			t.Fatalf("%q escapes to %q", p, full)
		}
		for _, comp := range strings.Split(p, "/") {
			if strings.EqualFold(comp, ".git") || comp == ".." || comp == "." || comp == "" {
				t.Fatalf("%q: component %q accepted", p, comp)
			}
		}
	})
}

// FuzzPackGuard: whatever a server sends, the guard never panics, hands on
// only a prefix of what it read, never more than the limits allow, and
// accepts only a whole pack.
func FuzzPackGuard(f *testing.F) {
	blob := packObject{typ: objBlob, size: 5, data: deflate(f, []byte("hello"))}
	f.Add(craftPack(-1, blob))
	f.Add(craftPack(-1, blob, blob))
	f.Add(craftPack(-1, packObject{typ: objBlob, size: 2 << 30, data: deflate(f, make([]byte, 64))}))
	f.Add(craftPack(-1, blob, packObject{typ: objRefDelta, size: 6, base: make([]byte, 20), data: deflate(f, []byte{5, 0x80, 0x80, 0x80, 0x80, 0x08})}))
	f.Add(craftPack(-1, blob, packObject{typ: objOfsDelta, size: 4, base: []byte{0x0e}, data: deflate(f, []byte{5, 5, 0x90, 5})}))
	f.Add(craftPack(3))
	lim := Limits{MaxBytes: 1 << 20, MaxObjects: 64, MaxObjectBytes: 1 << 16}
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		err := guardPack(bytes.NewReader(data), &out, lim)
		if !bytes.HasPrefix(data, out.Bytes()) {
			t.Fatalf("the guard wrote bytes it did not read")
		}
		if err == nil && (out.Len() < 32 || string(out.Bytes()[:4]) != "PACK") {
			t.Fatalf("accepted %d bytes that are no pack", out.Len())
		}
	})
}
