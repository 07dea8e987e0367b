package executor

import (
	"archive/zip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkUploadCollect archives a tree of 2,000 files of 4 KiB (40
// directories) the way writ's upload stage does (openat walk without
// following links, owner and type checked on each opened file, digests,
// zip) against the anchor a naive uploader would use (filepath.WalkDir,
// os.Open, zip), measured alternately in one run; ratio is writ/anchor,
// the cost of collecting safely.
func BenchmarkUploadCollect(b *testing.B) {
	dir := b.TempDir()
	content := make([]byte, 4096)
	for d := 0; d < 40; d++ {
		sub := filepath.Join(dir, "out", fmt.Sprintf("d%02d", d))
		if err := os.MkdirAll(sub, 0o700); err != nil {
			b.Fatal(err)
		}
		for f := 0; f < 50; f++ {
			if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%02d.json", f)), content, 0o600); err != nil {
				b.Fatal(err)
			}
		}
	}
	writ := func() time.Duration {
		start := time.Now()
		tree, err := openBuildTree(dir, int64(os.Geteuid()))
		if err != nil {
			b.Fatal(err)
		}
		defer tree.Close()
		if _, err := tree.match("out/**/*.json"); err != nil {
			b.Fatal(err)
		}
		budget := int64(1 << 30)
		if err := writeZip(io.Discard, tree, tree.files, &budget, &uploadedArtifact{}); err != nil || len(tree.files) != 2000 {
			b.Fatalf("%v (%d files)", err, len(tree.files))
		}
		return time.Since(start)
	}
	anchor := func() time.Duration {
		start := time.Now()
		zw := zip.NewWriter(io.Discard)
		n := 0
		err := filepath.WalkDir(filepath.Join(dir, "out"), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			w, err := zw.Create(rel)
			if err != nil {
				return err
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			n++
			_, err = io.Copy(w, f)
			return err
		})
		if err != nil || zw.Close() != nil || n != 2000 {
			b.Fatalf("%v (%d files)", err, n)
		}
		return time.Since(start)
	}
	writ()
	anchor()
	var tw, ta time.Duration
	b.ResetTimer()
	for b.Loop() {
		tw += writ()
		ta += anchor()
	}
	n := float64(b.N)
	b.ReportMetric(float64(tw.Nanoseconds())/n, "ns/writ")
	b.ReportMetric(float64(ta.Nanoseconds())/n, "ns/anchor")
	b.ReportMetric(float64(tw)/float64(ta), "ratio")
}
