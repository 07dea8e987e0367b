// Package scale measures, with whole writ processes, how a job's cost and
// acceptance's cost grow with the allowlist: each figure is a ratio against
// an anchor measured in the same run (a small allowlist, git itself, or the
// same jobs one after another). Run with `make bench`; the benchmarks
// generate their allowlists and commit nothing large.
package scale

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/internal/testkeys"
)

// env is a self-contained environment: root and developer keys, a signed
// source repository, an allowlist repository of n entries, a config and
// the payload of the job matching entry n/2.
type env struct {
	dir, cfg, writ string
	n              int
	head           string
	payload        map[string]any
	al             *testkeys.Repo
	root           *testkeys.SSH
	mu             sync.Mutex // guards payload
}

func writBin(tb testing.TB) string {
	if p := os.Getenv("WRIT_BIN"); p != "" {
		return p
	}
	p, err := filepath.Abs("../../bin/writ")
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		tb.Skipf("no writ binary at %s (run `make build`, or set WRIT_BIN)", p)
	}
	return p
}

// newEnv builds an environment with n entries and accepts its allowlist.
func newEnv(tb testing.TB, n int) *env {
	tb.Helper()
	e := &env{dir: tb.TempDir(), n: n, writ: writBin(tb)}
	e.root = testkeys.SSHKey(tb, "root@example.com")
	dev := testkeys.SSHKey(tb, "dev@example.com")
	src := testkeys.GitRepo(tb)
	src.Commit(tb, map[string]string{"README.md": "app\n"}, "one", dev)
	e.head = src.Commit(tb, map[string]string{"main.go": "package main\n"}, "two", dev)

	e.al = testkeys.GitRepo(tb)
	e.al.Commit(tb, map[string]string{"allowlist.yaml": allowlistYAML(n, 1, src.Path, dev.AllowedSignersLine(""))}, "v1", e.root)

	for _, d := range []string{"state", "cache", "log", "builds"} {
		if err := os.MkdirAll(filepath.Join(e.dir, d), 0o700); err != nil {
			tb.Fatal(err)
		}
	}
	signers := filepath.Join(e.dir, "allowed_signers")
	write(tb, signers, e.root.AllowedSignersLine("")+"\n")
	e.cfg = filepath.Join(e.dir, "config.toml")
	write(tb, e.cfg, fmt.Sprintf(`environment = "prod"
mode = "enforce"
[allowlist]
url = %q
branch = "main"
identity = "test/allowlist"
fetch_timeout = "120s"
[trust]
ssh_allowed_signers = %q
threshold = 1
[paths]
state = %q
cache = %q
audit = %q
builds = %q
[job]
default_timeout = "5m"
`, e.al.Path, signers, filepath.Join(e.dir, "state"), filepath.Join(e.dir, "cache"), filepath.Join(e.dir, "log", "audit.log"), filepath.Join(e.dir, "builds")))

	b, err := os.ReadFile("../../executor/testdata/payload.json")
	if err != nil {
		tb.Fatal(err)
	}
	if err := json.Unmarshal(b, &e.payload); err != nil {
		tb.Fatal(err)
	}
	k := n / 2
	e.payload["git_info"].(map[string]any)["sha"] = e.head
	e.payload["job_info"].(map[string]any)["project_full_path"] = fmt.Sprintf("group/app%d", k)
	e.payload["steps"].([]any)[0].(map[string]any)["script"] = []string{"make", "make test", fmt.Sprintf("echo %d", k)}
	for _, v := range e.payload["variables"].([]any) {
		v := v.(map[string]any)
		switch v["key"] {
		case "CI_PROJECT_PATH":
			v["value"] = fmt.Sprintf("group/app%d", k)
		case "CI_COMMIT_SHA":
			v["value"] = e.head
		}
	}
	if out, err := e.run("allowlist", "verify"); err != nil {
		tb.Fatalf("accept %d entries: %v\n%s", n, err, out)
	}
	return e
}

func write(tb testing.TB, p, s string) {
	tb.Helper()
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		tb.Fatal(err)
	}
}

// allowlistYAML is an allowlist of n entries, one project each, all
// admitting the same source.
func allowlistYAML(n int, version int, srcPath, devLine string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "schema: writ/v2\nrepository: test/allowlist\nversion: %d\nexpires: 2099-01-01T00:00:00Z\n", version)
	fmt.Fprintf(&b, "signers:\n  devs:\n    ssh:\n      - %q\njobs:\n", devLine)
	for i := range n {
		fmt.Fprintf(&b, `  - name: app%d-build
    match:
      project: "group/app%d"
      job: "build"
      environments: ["prod"]
      refs: ["refs/heads/main"]
    definition:
      script:
        - "make"
        - "make test"
        - "echo %d"
      variables:
        GREETING: {value: hello}
    source:
      repository: "file://%s"
      signers: [devs]
      mode: commit
`, i, i, i, srcPath)
	}
	return b.String()
}

// run runs writ with the environment's config.
func (e *env) run(args ...string) ([]byte, error) {
	cmd := exec.Command(e.writ, append([]string{"--config", e.cfg}, args...)...)
	return cmd.CombinedOutput()
}

// result is one whole-process run.
type result struct {
	wall time.Duration
	cpu  time.Duration // user + system
	rss  int64         // KiB
}

// prepare runs `writ executor prepare` for a job with a fresh id.
func (e *env) prepare(tb testing.TB, id int) result {
	tb.Helper()
	p := filepath.Join(e.dir, fmt.Sprintf("payload-%d.json", id))
	e.mu.Lock()
	defer e.mu.Unlock()
	e.payload["id"] = id
	for _, v := range e.payload["variables"].([]any) {
		if v := v.(map[string]any); v["key"] == "CI_JOB_ID" {
			v["value"] = fmt.Sprint(id)
		}
	}
	b, err := json.Marshal(e.payload)
	if err != nil {
		tb.Fatal(err)
	}
	write(tb, p, string(b))
	e.mu.Unlock()
	defer e.mu.Lock()
	r, out, err := measure(e.dir, []string{"JOB_RESPONSE_FILE=" + p, "BUILD_FAILURE_EXIT_CODE=1", "SYSTEM_FAILURE_EXIT_CODE=2"},
		e.writ, "--config", e.cfg, "executor", "prepare")
	if err != nil || !strings.Contains(string(out), "admitted") {
		tb.Fatalf("prepare (%d entries): %v\n%s", e.n, err, out)
	}
	return r
}

// measure runs a command and returns its wall time and peak RSS. The RSS
// comes from /usr/bin/time, a small parent: a child that this (large)
// test process starts inherits the parent's resident size in its
// ru_maxrss through vfork, which would swamp the figure.
func measure(dir string, env []string, name string, args ...string) (result, []byte, error) {
	f, err := os.CreateTemp(dir, "rss-*.txt")
	if err != nil {
		return result{}, nil, err
	}
	f.Close()
	rssFile := f.Name()
	cmd := exec.Command("/usr/bin/time", append([]string{"-f", "%M %U %S", "-o", rssFile, name}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	wall := time.Since(t0)
	if err != nil {
		return result{}, out, err
	}
	b, rerr := os.ReadFile(rssFile)
	if rerr != nil {
		return result{}, out, rerr
	}
	var kib int64
	var user, sys float64
	if _, rerr := fmt.Sscan(string(b), &kib, &user, &sys); rerr != nil {
		return result{}, out, fmt.Errorf("/usr/bin/time wrote %q: %w", b, rerr)
	}
	return result{wall: wall, rss: kib, cpu: time.Duration((user + sys) * float64(time.Second))}, out, nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkPrepareScale: whole-process `writ executor prepare`, warm, one
// matching entry, at 100 and at 100,000 entries, interleaved. Goals: the
// ratio ≤ 1.2 and peak RSS ≤ 64 MiB at 100,000 entries.
func BenchmarkPrepareScale(b *testing.B) {
	small, large := newEnv(b, 100), newEnv(b, 100_000)
	var ts, tl []time.Duration
	var rss int64
	id := 10_000
	small.prepare(b, id) // warm the source mirrors
	large.prepare(b, id+1)
	b.ResetTimer()
	for b.Loop() {
		id += 2
		ts = append(ts, small.prepare(b, id).wall)
		r := large.prepare(b, id+1)
		tl = append(tl, r.wall)
		rss = max(rss, r.rss)
	}
	b.ReportMetric(float64(median(ts).Microseconds())/1000, "ms_100")
	b.ReportMetric(float64(median(tl).Microseconds())/1000, "ms_100k")
	b.ReportMetric(float64(median(tl))/float64(median(ts)), "x_100k/100")
	b.ReportMetric(float64(rss)/1024, "MiB_rss_100k")
}

// BenchmarkPrepareConcurrent: 16 prepares at once ÷ the same 16 one after
// another, on a 10,000-entry allowlist (goal ≤ 0.6 on 2 cores), audit chain
// intact afterwards.
func BenchmarkPrepareConcurrent(b *testing.B) {
	e := newEnv(b, 10_000)
	id := 20_000
	e.prepare(b, id)
	var seq, par time.Duration
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		for range 16 {
			id++
			e.prepare(b, id)
		}
		seq += time.Since(t0)
		t1 := time.Now()
		var wg sync.WaitGroup
		for range 16 {
			id++
			wg.Add(1)
			go func(id int) {
				defer wg.Done()
				e.prepare(b, id)
			}(id)
		}
		wg.Wait()
		par += time.Since(t1)
	}
	b.StopTimer()
	if out, err := e.run("audit", "verify", filepath.Join(e.dir, "log", "audit.log")); err != nil {
		b.Fatalf("audit chain after concurrent prepares: %v\n%s", err, out)
	}
	b.ReportMetric(float64(par)/float64(seq), "x_par/seq")
}

// BenchmarkAcceptScale: accepting a new version, whole process, against
// `git fetch` + `git verify-commit` + `git show` of the file on the same
// repository, at 1,000, 10,000 (goal ≤ 1.5×) and 100,000 entries (goal
// ≤ 2×); peak RSS against the file's size (goal ≤ 4× + 32 MiB, reported as
// rss/goal ≤ 1). Each new version changes the version line, as a release
// that only extends expiry does; the environment accepted the previous
// one with the same writ, so acceptance takes the unchanged entries from
// its verified store (allowlist/memo.go). x_cpu is the same ratio in CPU
// time (user + system, the writ process against git and its children),
// steadier than wall time on a busy machine.
func BenchmarkAcceptScale(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) { benchAccept(b, n, false) })
	}
}

// BenchmarkAcceptScaleContextChange is BenchmarkAcceptScale where every
// new version also changes a signer set's keys (a rotation): a change outside
// the entries that no entry's view of the top level includes (scope.go), so
// acceptance still takes every unchanged entry from its verified store.
// Same ratios and rss/goal as BenchmarkAcceptScale.
func BenchmarkAcceptScaleContextChange(b *testing.B) {
	b.Run("10000", func(b *testing.B) { benchAccept(b, 10_000, true) })
}

// BenchmarkAcceptScaleFirstContact: a host's first acceptance, whole
// process, from nothing (no mirror, no state, no verified store: every
// entry is parsed and decoded, as after an upgrade of writ), against
// `git clone --bare --no-local` (over git's pack protocol, as writ fetches,
// not by hard links) + `git verify-commit` + `git show` of the file into an
// empty directory. Reported beside BenchmarkAcceptScale: first contact
// happens once per host; the goals are for a new version.
func BenchmarkAcceptScaleFirstContact(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) { benchFirstContact(b, n) })
	}
}

func benchFirstContact(b *testing.B, n int) {
	e := newEnv(b, n)
	signers := filepath.Join(e.dir, "allowed_signers")
	var clone string
	acceptVsGit(b, e, func(int) {
		for _, d := range []string{"state", "cache"} {
			p := filepath.Join(e.dir, d)
			if err := os.RemoveAll(p); err != nil {
				b.Fatal(err)
			}
			if err := os.MkdirAll(p, 0o700); err != nil {
				b.Fatal(err)
			}
		}
		clone = filepath.Join(b.TempDir(), "clone.git")
	}, func() {
		for _, args := range [][]string{
			{"clone", "-q", "--bare", "--no-local", e.al.Path, clone},
			{"-C", clone, "-c", "gpg.ssh.allowedSignersFile=" + signers, "verify-commit", "main"},
			{"-C", clone, "show", "main:allowlist.yaml"},
		} {
			gitRun(b, args...)
		}
	})
}

func benchAccept(b *testing.B, n int, context bool) {
	e := newEnv(b, n)
	clone := filepath.Join(b.TempDir(), "clone.git")
	if out, err := exec.Command("git", "clone", "-q", "--bare", e.al.Path, clone).CombinedOutput(); err != nil {
		b.Fatalf("clone: %v %s", err, out)
	}
	signers := filepath.Join(e.dir, "allowed_signers")
	text, err := os.ReadFile(filepath.Join(e.al.Path, "allowlist.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	acceptVsGit(b, e, func(round int) {
		version := round + 1
		next := strings.Replace(string(text), "version: 1\n", fmt.Sprintf("version: %d\n", version), 1)
		if context && version%2 == 0 {
			// A second key in the developers' set, every other version.
			next = strings.Replace(next, "jobs:\n", fmt.Sprintf("      - %q\njobs:\n", e.root.AllowedSignersLine("")), 1)
		}
		e.al.Commit(b, map[string]string{"allowlist.yaml": next}, fmt.Sprintf("v%d", version), e.root)
	}, func() {
		git := []string{"-C", clone, "-c", "gpg.ssh.allowedSignersFile=" + signers}
		gitRun(b, append(git, "fetch", "-q", "origin", "+refs/heads/main:refs/heads/main")...)
		gitRun(b, append(git, "verify-commit", "main")...)
		gitRun(b, append(git, "show", "main:allowlist.yaml")...)
	})
}

// acceptVsGit times, each round, `writ allowlist verify` and the git
// anchor, after setup (untimed), alternating which goes first so that
// neither always finds the other's pages in the cache, and reports the
// median wall-time ratio, the CPU-time ratio and writ's peak RSS, also
// against acceptance's promise (4× the file + 32 MiB).
func acceptVsGit(b *testing.B, e *env, setup func(round int), anchor func()) {
	text, err := os.ReadFile(filepath.Join(e.al.Path, "allowlist.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	var tw, tg []time.Duration
	var cw, cg time.Duration
	var rss int64
	round := 0
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		round++
		setup(round)
		b.StartTimer()
		runWrit := func() {
			r, out, err := measure(e.dir, nil, e.writ, "--config", e.cfg, "allowlist", "verify")
			if err != nil {
				b.Fatalf("verify, round %d: %v\n%s", round, err, out)
			}
			tw = append(tw, r.wall)
			cw += r.cpu
			rss = max(rss, r.rss)
		}
		runGit := func() {
			c0 := childCPU()
			t1 := time.Now()
			anchor()
			tg = append(tg, time.Since(t1))
			cg += childCPU() - c0
		}
		if round%2 == 0 {
			runWrit()
			runGit()
		} else {
			runGit()
			runWrit()
		}
	}
	goal := float64(4*len(text)) + 32<<20
	b.ReportMetric(float64(median(tw))/float64(median(tg)), "x_writ/git")
	b.ReportMetric(float64(cw)/float64(cg), "x_cpu")
	b.ReportMetric(float64(rss)/1024, "MiB_rss")
	b.ReportMetric(float64(rss*1024)/goal, "rss/goal")
}

// gitRun runs git with a configuration of its own only.
func gitRun(b *testing.B, args ...string) {
	cmd := exec.Command("git", args...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

// childCPU is the user and system time of this process's waited-for
// children so far.
func childCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
