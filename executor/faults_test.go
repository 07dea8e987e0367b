package executor

import (
	"bytes"
	"compress/zlib"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/internal/audit"
	"gitlab.com/writ-ci/writ/internal/gitrepo"
	"gitlab.com/writ-ci/writ/internal/testfault"
)

// The fault cases of admission. Each asserts fail-closed (nothing ran, and a
// broken cache or remote is a system failure the runner retries, never a
// build failure blaming the job's author), nothing lost (the audit log
// verifies) and recovery on the next run without a hand. WRIT_FAULTS=long
// (make faults) runs the loops longer.

func faultLoops(short, long int) int {
	if os.Getenv("WRIT_FAULTS") == "long" {
		return long
	}
	return short
}

func (e *env) sourceMirror() *gitrepo.Mirror {
	e.t.Helper()
	m, err := gitrepo.OpenMirror(e.cache, "file://"+e.src.Path, gitrepo.Auth{})
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

// admitted runs job id at sha and fails the test unless it was admitted
// and ran.
func (e *env) admitted(id int, sha string) *job {
	e.t.Helper()
	_ = os.Remove(e.canary)
	j := e.newJob(e.payload(id, sha))
	if r := j.runAll(); r.prepare != 0 || r.build != 0 {
		e.t.Fatalf("job %d not admitted: %+v\n%s", id, r, j.log.String())
	}
	if _, err := os.Stat(e.canary); err != nil {
		e.t.Fatalf("job %d admitted but its script did not run", id)
	}
	return j
}

func (e *env) auditVerifies() {
	e.t.Helper()
	if n, err := audit.VerifyFile(e.auditPath); err != nil {
		e.t.Fatalf("audit log after %d records: %v", n, err)
	}
}

// Damage to the entry's mirror is repaired by the next job's fetch; before,
// a corrupt pack failed every job of the entry as a build failure.
func TestFaultDamagedSourceMirror(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.write()
	e.admitted(1100, e.head)
	dir := e.sourceMirror().Dir()
	ref := filepath.Join(dir, "refs", "writ", "heads", "main")
	packs := func() []string {
		p, _ := filepath.Glob(filepath.Join(dir, "objects", "pack", "*.pack"))
		return p
	}
	damage := []struct {
		name string
		do   func()
	}{
		{"empty ref", func() { must(t, os.WriteFile(ref, nil, 0o600)) }},
		{"garbage ref", func() { must(t, os.WriteFile(ref, []byte("0123\n"), 0o600)) }},
		{"corrupt pack", func() {
			for _, p := range packs() {
				data, err := os.ReadFile(p)
				must(t, err)
				for i := 12; i < len(data)-20; i += 5 {
					data[i] ^= 0xa5
				}
				must(t, os.WriteFile(p, data, 0o600))
			}
		}},
		{"missing pack", func() {
			for _, p := range packs() {
				must(t, os.Remove(p))
			}
		}},
		{"marked damaged", func() { e.sourceMirror().MarkDamaged("test") }},
	}
	for i, d := range damage {
		d.do()
		e.admitted(1101+i, e.head)
	}
	e.auditVerifies()
}

// A pack with a commit but not its tree, stored before: the commit object
// exists, so go-git's fetch never wanted it again and every job failed. Now
// the job's commit is wanted until a ref points at it, and checked.
func TestFaultCommitWithoutTreeInSourceMirror(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.write()
	e.admitted(1200, e.head)
	next := e.src.Commit(t, map[string]string{"next.sh": "echo next\n"}, "next", e.signer)
	raw := e.src.Git(t, "cat-file", "commit", next)
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	fmt.Fprintf(zw, "commit %d\x00%s", len(raw), raw)
	must(t, zw.Close())
	obj := filepath.Join(e.sourceMirror().Dir(), "objects", next[:2], next[2:])
	must(t, os.MkdirAll(filepath.Dir(obj), 0o700))
	must(t, os.WriteFile(obj, z.Bytes(), 0o400))
	e.admitted(1201, next)
	e.auditVerifies()
}

// The source server's HEAD points at a commit no ref points at.
func TestFaultDetachedHEADOnSourceServer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.write()
	e.src.Git(t, "checkout", "-q", "--detach")
	e.src.Commit(t, map[string]string{"loose": "x"}, "detached", e.signer)
	e.admitted(1300, e.head)
}

// The source repository is unreachable: a system failure (retried), not a
// refusal and not a decision on what an earlier fetch left; when it is
// back, the job is admitted.
func TestFaultSourceUnreachable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.write()
	e.admitted(1400, e.head)
	must(t, os.Rename(e.src.Path, e.src.Path+".gone"))
	j := e.newJob(e.payload(1401, e.head))
	if r := j.runAll(); r.prepare != 2 {
		t.Fatalf("unreachable source: prepare %d, want 2 (system failure)\n%s", r.prepare, j.log.String())
	}
	mustContain(t, j.log.String(), "writ cannot decide whether to admit this job")
	mustNotContain(t, j.log.String(), "Failed check")
	must(t, os.Rename(e.src.Path+".gone", e.src.Path))
	e.admitted(1402, e.head)
	e.auditVerifies()
}

// kill -9 at random moments of prepare: the mirror's refs are never empty,
// the audit log verifies (or its torn last record is repaired by the next
// append), and the next job is admitted.
func TestFaultKill9DuringPrepare(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.write()
	kills := faultLoops(10, 100)
	rng := rand.New(rand.NewPCG(3, 4))
	head := e.head
	for i := range kills {
		if i%3 == 0 {
			head = e.src.Commit(t, map[string]string{"n": fmt.Sprint(i)}, fmt.Sprint("change ", i), e.signer)
		}
		j := e.newJob(e.payload(1500+i, head))
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		c := j.cmd(ctx, "prepare")
		must(t, c.Start())
		time.Sleep(time.Duration(rng.IntN(250)) * time.Millisecond)
		testfault.Kill9(c)
		_ = c.Wait()
		cancel()
		refs, _ := filepath.Glob(filepath.Join(e.sourceMirror().Dir(), "refs", "writ", "heads", "*"))
		for _, r := range refs {
			if strings.HasPrefix(filepath.Base(r), ".") {
				// A temp file a kill left before its rename: git reads
				// no ref whose name starts with ".", so it is not a ref.
				continue
			}
			if b, err := os.ReadFile(r); err != nil || len(b) != 41 {
				t.Fatalf("kill %d: mirror ref %s is %q (%v)", i, r, b, err)
			}
		}
		j.stage("cleanup")
	}
	e.admitted(1500+kills, head)
	e.auditVerifies()
}

// A full disk under writ's state, cache and audit log: prepare is a system
// failure and nothing runs; once space is freed, the next job is admitted
// and the audit log verifies (a record torn by the full disk repaired).
func TestFaultFullDiskDuringPrepare(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	fs := testfault.SmallFS(t, 16<<20)
	e.state, e.cache, e.auditPath = filepath.Join(fs, "state"), filepath.Join(fs, "cache"), filepath.Join(fs, "audit.log")
	e.write()
	e.admitted(1600, e.head)
	filler := testfault.Fill(t, fs)
	next := e.src.Commit(t, map[string]string{"big": strings.Repeat("data\n", 1000)}, "next", e.signer)
	for i := range 2 {
		_ = os.Remove(e.canary)
		j := e.newJob(e.payload(1601+i, next))
		r := j.runAll()
		if r.prepare != 2 {
			t.Fatalf("full disk: prepare %d, want 2 (system failure)\n%s", r.prepare, j.log.String())
		}
		if _, err := os.Stat(e.canary); err == nil {
			t.Fatal("a job ran on a full disk")
		}
	}
	must(t, os.Remove(filler))
	e.admitted(1603, next)
	e.auditVerifies()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
