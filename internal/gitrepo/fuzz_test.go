package gitrepo

import (
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
