package gitrepo

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/internal/testkeys"
)

// BenchmarkWriteGitDir measures what source.git: read-only adds to
// get_sources: WriteGitDir of a commit with 100 commits of history over 50
// files, against the anchor of checking the same commit out (Checkout), in
// the same run. Reported: gitdir/checkout (the ratio of their times) and
// the pack's size against the mirror's.
func BenchmarkWriteGitDir(b *testing.B) {
	r := testkeys.GitRepo(b)
	var head string
	for i := range 100 {
		files := map[string]string{}
		for j := range 5 {
			n := (i*5 + j) % 50
			files[fmt.Sprintf("dir%d/file%d.txt", n%5, n)] = strings.Repeat(fmt.Sprintf("line %d of commit %d\n", n, i), 200)
		}
		head = r.Commit(b, files, fmt.Sprintf("commit %d", i), nil)
	}
	r.Git(b, "gc", "-q")
	m := localMirror(&testing.T{}, r.Path)
	var checkout, gitdir time.Duration
	var packBytes int64
	for i := 0; b.Loop(); i++ {
		dir := filepath.Join(b.TempDir(), "w")
		start := time.Now()
		if err := m.Checkout(head, dir); err != nil {
			b.Fatal(err)
		}
		checkout += time.Since(start)
		start = time.Now()
		if err := m.WriteGitDir(filepath.Join(dir, ".git"), dir, head, []string{"refs/heads/main"}); err != nil {
			b.Fatal(err)
		}
		gitdir += time.Since(start)
		packBytes = dirSize(filepath.Join(dir, ".git", "objects", "pack"))
	}
	b.ReportMetric(float64(gitdir)/float64(checkout), "gitdir/checkout")
	b.ReportMetric(float64(packBytes)/float64(dirSize(filepath.Join(r.Path, ".git", "objects", "pack"))), "pack/mirror-pack")
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}
