package gitrepo

import (
	"compress/zlib"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"

	"gitlab.com/writ-ci/writ/internal/testkeys"
)

var bombOnce struct {
	sync.Once
	data []byte
}

// bombData is the zlib stream of 2 GiB of zeros (about 2.6 MB), made once
// per process.
func bombData(b *testing.B) []byte {
	bombOnce.Do(func() {
		var buf strings.Builder
		w, _ := zlib.NewWriterLevel(&buf, zlib.BestSpeed)
		chunk := make([]byte, 4<<20)
		for range (2 << 30) / len(chunk) {
			_, _ = w.Write(chunk)
		}
		_ = w.Close()
		bombOnce.data = []byte(buf.String())
	})
	return bombOnce.data
}

// peakHeap samples the Go heap while f runs and returns the peak above the
// heap before f.
func peakHeap(f func()) uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse + ms.StackInuse
	peak := base
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var s runtime.MemStats
		for {
			runtime.ReadMemStats(&s)
			peak = max(peak, s.HeapInuse+s.StackInuse)
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	f()
	close(done)
	wg.Wait()
	return peak - base
}

// BenchmarkFetchBombPack fetches a 2.6 MB pack holding a 2 GiB blob of
// zeros (the memory bomb, which took go-git to 3.1 GB RSS), once
// with its true size in the header and once with a header that lies
// (1 KiB). Reported: peak-heap-MiB above the baseline (the bound is 64)
// and the time to the refusal.
func BenchmarkFetchBombPack(b *testing.B) {
	for _, variant := range []struct {
		name string
		size int64
	}{{"declared-2GiB", 2 << 30}, {"header-lies-1KiB", 1 << 10}} {
		b.Run(variant.name, func(b *testing.B) {
			r := testkeys.GitRepo(b)
			head := r.Commit(b, map[string]string{"f": "x"}, "one", nil)
			h := newHostile(b, r)
			h.refs = map[string]string{"refs/heads/main": head}
			h.pack = craftPack(-1, packObject{typ: objBlob, size: variant.size, data: bombData(b)})
			h.set("pack")
			b.ResetTimer()
			var peak uint64
			for i := 0; i < b.N; i++ {
				m, err := OpenMirror(b.TempDir(), h.url, Auth{})
				if err != nil {
					b.Fatal(err)
				}
				var ferr error
				p := peakHeap(func() { ferr = m.Fetch(context.Background(), mainSpec) })
				if ferr == nil {
					b.Fatal("bomb pack accepted")
				}
				peak = max(peak, p)
			}
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
			if peak > 64<<20 {
				b.Fatalf("peak heap %d MiB above the baseline, over the 64 MiB bound", peak>>20)
			}
		})
	}
}

// benchRepo is an honest repository of n commits over 50 files, made with
// git fast-import.
func benchRepo(b *testing.B, n int) *testkeys.Repo {
	r := testkeys.GitRepo(b)
	var s strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&s, "commit refs/heads/main\nmark :%d\ncommitter T <t@example.com> %d +0000\ndata 8\ncommit %d\n", i+1, 1700000000+i, i%10)
		if i > 0 {
			fmt.Fprintf(&s, "from :%d\n", i)
		}
		for f := 0; f < 5; f++ {
			content := strings.Repeat(fmt.Sprintf("line %d of file %d in commit %d\n", f, (i*5+f)%50, i), 20)
			fmt.Fprintf(&s, "M 100644 inline dir%d/file%d.txt\ndata %d\n%s\n", (i*5+f)%5, (i*5+f)%50, len(content), content)
		}
	}
	r.GitInput(b, []byte(s.String()), "fast-import", "--quiet")
	return r
}

// BenchmarkFetchHonest: the honest accept path's fetch into an empty
// mirror over smart HTTP (git http-backend on 127.0.0.1), against `git
// fetch` into an empty bare repository (the anchor) and go-git's own
// Remote.Fetch (what writ did before its bounded fetch). Compare ns/op.
func BenchmarkFetchHonest(b *testing.B) {
	r := benchRepo(b, 500)
	srv := gitHTTPServer(b, filepath.Dir(r.Path), nil)
	url := httpURL(srv, r)
	b.Run("git-fetch", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			dir := b.TempDir()
			for _, args := range [][]string{{"init", "-q", "--bare", dir}, {"-C", dir, "fetch", "-q", "--no-tags", url, mainSpec}} {
				if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
					b.Fatalf("git %v: %v\n%s", args, err, out)
				}
			}
		}
	})
	b.Run("writ", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			m, err := OpenMirror(b.TempDir(), url, Auth{})
			if err != nil {
				b.Fatal(err)
			}
			if err := m.Fetch(context.Background(), mainSpec); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("go-git-remote-fetch", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			repo, err := git.PlainInit(b.TempDir(), true)
			if err != nil {
				b.Fatal(err)
			}
			rem := git.NewRemote(repo.Storer, &config.RemoteConfig{Name: "origin", URLs: []string{url}})
			err = rem.FetchContext(context.Background(), &git.FetchOptions{RefSpecs: []config.RefSpec{mainSpec}, Tags: git.NoTags, Force: true})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	// The fetch every job pays when nothing changed.
	b.Run("writ-up-to-date", func(b *testing.B) {
		m, err := OpenMirror(b.TempDir(), url, Auth{})
		if err != nil {
			b.Fatal(err)
		}
		if err := m.Fetch(context.Background(), mainSpec); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := m.Fetch(context.Background(), mainSpec); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("git-fetch-up-to-date", func(b *testing.B) {
		dir := b.TempDir()
		for _, args := range [][]string{{"init", "-q", "--bare", dir}, {"-C", dir, "fetch", "-q", "--no-tags", url, mainSpec}} {
			if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
				b.Fatalf("git %v: %v\n%s", args, err, out)
			}
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if out, err := exec.Command("git", "-C", dir, "fetch", "-q", "--no-tags", url, mainSpec).CombinedOutput(); err != nil {
				b.Fatalf("git fetch: %v\n%s", err, out)
			}
		}
	})
}

// BenchmarkFetchNewVersion: what acceptance's git side costs when the
// allowlist moves: fetch one new commit of a 4 MB allowlist-like file into
// a read-ahead mirror and read the file, against `git fetch` + `git show`
// of it in a bare clone (the anchor), interleaved, on a local repository.
// Reported: x_writ/git (wall) and x_cpu (this process's CPU for writ, the
// children's for git; both include the server's git-upload-pack).
func BenchmarkFetchNewVersion(b *testing.B) {
	r := testkeys.GitRepo(b)
	var text strings.Builder
	text.WriteString("version: 1\njobs:\n")
	for i := 0; text.Len() < 4<<20; i++ {
		fmt.Fprintf(&text, "  - name: app%d-build\n    match: {project: \"group/app%d\", job: build}\n    definition: {script: [make, \"echo %d\"]}\n", i, i, i)
	}
	base := text.String()
	r.Commit(b, map[string]string{"allowlist.yaml": base}, "v1", nil)
	m, err := OpenMirror(b.TempDir(), r.Path, Auth{}, WithReadAhead())
	if err != nil {
		b.Fatal(err)
	}
	if err := m.Fetch(context.Background(), mainSpec); err != nil {
		b.Fatal(err)
	}
	clone := filepath.Join(b.TempDir(), "clone.git")
	if out, err := exec.Command("git", "clone", "-q", "--bare", r.Path, clone).CombinedOutput(); err != nil {
		b.Fatalf("clone: %v\n%s", err, out)
	}
	var tw, tg, cw, cg time.Duration
	v := 1
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		v++
		head := r.Commit(b, map[string]string{"allowlist.yaml": strings.Replace(base, "version: 1\n", fmt.Sprintf("version: %d\n", v), 1)}, fmt.Sprint("v", v), nil)
		b.StartTimer()
		c0, t0 := selfCPU(), time.Now()
		if err := m.Fetch(context.Background(), mainSpec); err != nil {
			b.Fatal(err)
		}
		if _, err := m.ReadFile(head, "allowlist.yaml", 64<<20); err != nil {
			b.Fatal(err)
		}
		tw += time.Since(t0)
		cw += selfCPU() - c0
		c1, t1 := childCPU(), time.Now()
		for _, args := range [][]string{{"fetch", "-q", "origin", "+refs/heads/main:refs/heads/main"}, {"show", "main:allowlist.yaml"}} {
			cmd := exec.Command("git", append([]string{"-C", clone}, args...)...)
			cmd.Stdout = io.Discard
			if err := cmd.Run(); err != nil {
				b.Fatalf("git %v: %v", args, err)
			}
		}
		tg += time.Since(t1)
		cg += childCPU() - c1
	}
	b.ReportMetric(float64(tw)/float64(tg), "x_writ/git")
	b.ReportMetric(float64(cw)/float64(cg), "x_cpu")
}

// selfCPU is this process's user and system time, its children's
// included (writ's fetch runs git-upload-pack as one).
func selfCPU() time.Duration { return rusage(syscall.RUSAGE_SELF) + rusage(syscall.RUSAGE_CHILDREN) }

// childCPU is the user and system time of this process's waited-for
// children.
func childCPU() time.Duration { return rusage(syscall.RUSAGE_CHILDREN) }

func rusage(who int) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
