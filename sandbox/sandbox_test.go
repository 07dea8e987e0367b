package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	Main()
	os.Exit(m.Run())
}

const testUID = 2000000123

// testHost is a sandbox whose writ state lives in t's temporary directory,
// with secret standing for writ's config under /etc (masked).
func testHost(t *testing.T) (*Host, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the sandbox needs root")
	}
	dir := t.TempDir()
	work := filepath.Join(dir, "state", "sandbox")
	h := &Host{HostPaths: DefaultHostPaths, Work: work, PidsMax: 256, MemoryMax: 512 << 20, TmpSize: 64 << 20,
		Hide: []string{"/etc/shadow", "/etc/apt", filepath.Join(dir, "state")}}
	build := filepath.Join(dir, "builds", "1")
	if err := os.MkdirAll(build, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(build, testUID, testUID); err != nil {
		t.Fatal(err)
	}
	return h, build
}

// run runs script with bash in the sandbox and returns its output and exit code.
func run(t *testing.T, h *Host, build string, net Network, script string, files ...File) (string, int) {
	t.Helper()
	c, err := h.Command(Spec{Argv: []string{"/bin/bash", "-c", script}, Env: []string{"PATH=/usr/bin:/bin"},
		Dir: build, UID: testUID, GID: testUID, Network: net, Name: "t",
		Binds: []Bind{{Source: build, Target: build, Writable: true}}, Files: files})
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	c.Stdout, c.Stderr = out, out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	code := 0
	var ee *exec.ExitError
	if err := c.Wait(); errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(out.Name())
	return string(data), code
}

func TestProbe(t *testing.T) {
	h, _ := testHost(t)
	if err := h.Probe(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestContainment(t *testing.T) {
	h, build := testHost(t)
	secret := filepath.Join(filepath.Dir(h.Work), "jobs", "9", "var")
	if err := os.MkdirAll(filepath.Dir(secret), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secret, []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code := run(t, h, build, NetworkNone, `
set -u
echo "id=$(id -u):$(id -g) groups=$(id -G) name=$(id -un):$(id -gn)"
ls -A / | grep -q '^\.writ' && echo root-has-copies
grep -E '^(NoNewPrivs|CapBnd|CapEff):' /proc/self/status | tr -s '\t' ' '
touch ok-build && echo build-writable
touch /tmp/x && echo tmp-writable
touch /etc/x 2>/dev/null || echo etc-readonly
test -s /etc/shadow && echo shadow-visible || echo shadow-hidden
test -z "$(ls -A /etc/apt)" && echo etc-apt-masked || echo etc-apt-visible
ls /var 2>/dev/null || echo no-var
test -e `+filepath.Dir(h.Work)+` && echo state-visible || echo state-hidden
cat `+RunDir+`/v; echo
cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '
`, File{Source: secret, Name: "v", Secret: true})
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for _, want := range []string{
		"id=2000000123:2000000123 groups=2000000123 name=writ-job:writ-job",
		"NoNewPrivs: 1", "CapBnd: 0000000000000000", "CapEff: 0000000000000000",
		"build-writable", "tmp-writable", "etc-readonly", "shadow-hidden", "etc-apt-masked", "no-var", "state-hidden", "s3cret",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "root-has-copies") {
		t.Errorf("the copies of /etc/passwd or /etc/group are left in the sandbox's root:\n%s", out)
	}
	if !strings.HasSuffix(strings.TrimSpace(out), "\nlo") {
		t.Errorf("network none: interfaces other than lo:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(build, "ok-build")); err != nil {
		t.Errorf("the build directory write did not reach the host: %v", err)
	}
}

// TestDaemonDiesWithTheStage: a setsid daemon is gone when the stage ends.
func TestDaemonDiesWithTheStage(t *testing.T) {
	h, build := testHost(t)
	out, code := run(t, h, build, NetworkHost, `setsid sleep 300 </dev/null >/dev/null 2>&1 & echo started`)
	if code != 0 || !strings.Contains(out, "started") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		live, err := liveUIDs()
		if err != nil {
			t.Fatal(err)
		}
		if !live[testUID] {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("a process of the job's uid survived the stage")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestExitCodeAndSignal(t *testing.T) {
	h, build := testHost(t)
	if _, code := run(t, h, build, NetworkHost, "exit 7"); code != 7 {
		t.Errorf("exit code %d, want 7", code)
	}
	if _, code := run(t, h, build, NetworkHost, "kill -KILL $$"); code != 137 {
		t.Errorf("exit code %d, want 137", code)
	}
}

func TestTerminateReachesEveryProcess(t *testing.T) {
	h, build := testHost(t)
	c, err := h.Command(Spec{Argv: []string{"/bin/bash", "-c", "trap 'echo got-term; exit 3' TERM; setsid sleep 300 & echo ready; while :; do sleep 0.05; done"},
		Dir: build, UID: testUID, GID: testUID, Network: NetworkHost, Name: "term",
		Binds: []Bind{{Source: build, Target: build, Writable: true}}})
	if err != nil {
		t.Fatal(err)
	}
	r, w, _ := os.Pipe()
	c.Stdout = w
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	// Signal once the trap is set and the daemon started, not after a
	// guess at how long that takes.
	out := bufio.NewReader(r)
	if line, err := out.ReadString('\n'); line != "ready\n" {
		_ = syscall.Kill(-c.Pid(), syscall.SIGKILL)
		_ = c.Wait()
		t.Fatalf("the script did not start: %q %v", line, err)
	}
	_ = syscall.Kill(-c.Pid(), syscall.SIGTERM)
	err = c.Wait()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(out)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 || !strings.Contains(buf.String(), "got-term") {
		t.Fatalf("want the script's TERM trap (exit 3): %v %q", err, buf.String())
	}
}

func TestSetupErrorIsReported(t *testing.T) {
	h, build := testHost(t)
	c, err := h.Command(Spec{Argv: []string{"/nonexistent"}, Dir: build, UID: testUID, GID: testUID, Network: NetworkHost, Name: "bad"})
	if err != nil {
		t.Fatal(err)
	}
	var se *SetupError
	if err := c.Start(); !errors.As(err, &se) {
		t.Fatalf("want a SetupError, got %v", err)
	}
}

func TestUIDLeases(t *testing.T) {
	u := &UIDs{First: 2000000500, Count: 2, Dir: t.TempDir()}
	ctx := context.Background()
	a, err := u.Acquire(ctx, "1")
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := u.Acquire(ctx, "1"); again != a {
		t.Errorf("the same owner got %d then %d", a, again)
	}
	b, err := u.Acquire(ctx, "2")
	if err != nil || b == a {
		t.Fatalf("second owner: %d, %v (first %d)", b, err, a)
	}
	if _, err := u.Acquire(ctx, "3"); err == nil {
		t.Fatal("a third owner got a uid from a range of two")
	}
	if err := u.Release(ctx, "1"); err != nil {
		t.Fatal(err)
	}
	if c, err := u.Acquire(ctx, "3"); err != nil || c != a {
		t.Fatalf("after release: %d, %v; want %d", c, err, a)
	}
	u.Stale = func(o string) bool { return o == "2" }
	if d, err := u.Acquire(ctx, "4"); err != nil || d != b {
		t.Fatalf("stale lease not reclaimed: %d, %v", d, err)
	}
	// A lease a host crash left empty names nobody: its uid is leased
	// again (no process of it lives); a valid lease is not.
	if err := os.WriteFile(u.leasePath(a), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	u.Stale = nil
	if e, err := u.Acquire(ctx, "5"); err != nil || e != a {
		t.Fatalf("a lease emptied by a crash was not taken again: %d, %v; want %d", e, err, a)
	}
	if _, err := u.Acquire(ctx, "6"); err == nil {
		t.Fatal("a third owner got a uid from a range of two")
	}
}

// The pids and memory limits hold inside the sandbox where the host has the
// controllers (this test host: cgroup v1 pids and memory).
func TestLimits(t *testing.T) {
	h, build := testHost(t)
	v := h.cgroupVersion()
	if v.pids == "" || v.memory == "" {
		t.Skipf("no pids or memory controller here: %+v", v)
	}
	checkLimits(t, h, build)
}

// The same limits on a cgroup v2 hierarchy whose root offers the pids and
// memory controllers (a unified host, or a delegated subtree). A hybrid
// host whose controllers are bound to v1, as this test host's, cannot
// enable them on v2: the test says so and skips.
func TestLimitsCgroupV2(t *testing.T) {
	h, build := testHost(t)
	mnt := cgroup2Mount(t)
	if mnt == "" {
		t.Skip("no cgroup v2 hierarchy on this host: the v2 limits cannot be tested here (TestLimits covers v1)")
	}
	data, err := os.ReadFile(filepath.Join(mnt, "cgroup.controllers"))
	if err != nil {
		t.Fatal(err)
	}
	if !containsWord(string(data), "pids") || !containsWord(string(data), "memory") {
		t.Skipf("the cgroup v2 hierarchy at %s offers the controllers %q, not pids and memory (they are bound to cgroup v1 here): the v2 limits cannot be tested on this host (TestLimits covers v1)",
			mnt, strings.TrimSpace(string(data)))
	}
	h.CgroupRoot = mnt
	if v := h.cgroupVersion(); v.pids != "cgroup v2" || v.memory != "cgroup v2" {
		t.Fatalf("the sandbox does not find the v2 controllers at %s: %+v", mnt, v)
	}
	checkLimits(t, h, build)
}

func checkLimits(t *testing.T, h *Host, build string) {
	t.Helper()
	h.PidsMax, h.MemoryMax, h.TmpSize = 16, 64<<20, 512<<20
	out, code := run(t, h, build, NetworkHost, `for i in $(seq 40); do sleep 5 & done; echo all-$((40))-started`)
	if code == 0 || strings.Contains(out, "all-40-started") || !strings.Contains(out, "Resource temporarily unavailable") {
		t.Errorf("pids_max 16: 40 processes started (exit %d):\n%s", code, out)
	}
	out, code = run(t, h, build, NetworkHost, `x=$(head -c 200M /dev/zero | tr '\0' a); echo len=${#x}`)
	if code != 137 || strings.Contains(out, "len=") {
		t.Errorf("memory_max 64 MiB: a 200 MiB string was built (exit %d, want 137: the kernel killed the shell):\n%s", code, out)
	}
}

// BenchmarkRun: one contained /bin/true (namespaces, root, cgroups, init)
// against the same process started directly. Runs are 50 ms apart, as
// stages are: back to back, a cgroup v1 move finds the kernel's
// threadgroup lock still in its slow mode and skips the RCU grace period a
// real stage waits for, which made this benchmark report half the cost.
// cpu-ms/* count the CPU time of this process and of every process it
// waited for (the init and, through it, the job), which load from
// elsewhere on the host moves far less than wall time.
func BenchmarkRun(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("the sandbox needs root")
	}
	dir := b.TempDir()
	build := filepath.Join(dir, "builds", "1")
	if err := os.MkdirAll(build, 0o700); err != nil {
		b.Fatal(err)
	}
	if err := os.Chown(build, testUID, testUID); err != nil {
		b.Fatal(err)
	}
	h := &Host{HostPaths: DefaultHostPaths, Work: filepath.Join(dir, "state", "sandbox"), PidsMax: 256, MemoryMax: 512 << 20, TmpSize: 64 << 20,
		Init: os.Getenv("WRIT_SANDBOX_INIT")}
	var direct, contained, directCPU, containedCPU time.Duration
	for range b.N {
		b.StopTimer()
		time.Sleep(50 * time.Millisecond)
		b.StartTimer()
		start, cpu := time.Now(), cpuTime()
		if err := exec.Command("/bin/true").Run(); err != nil {
			b.Fatal(err)
		}
		direct += time.Since(start)
		directCPU += cpuTime() - cpu
		start, cpu = time.Now(), cpuTime()
		c, err := h.Command(Spec{Argv: []string{"/bin/true"}, Dir: build, UID: testUID, GID: testUID, Network: NetworkHost, Name: "bench",
			Binds: []Bind{{Source: build, Target: build, Writable: true}}})
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Start(); err != nil {
			b.Fatal(err)
		}
		if err := c.Wait(); err != nil {
			b.Fatal(err)
		}
		contained += time.Since(start)
		containedCPU += cpuTime() - cpu
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(b.N) / 1000 }
	b.ReportMetric(ms(contained), "ms/contained")
	b.ReportMetric(ms(direct), "ms/direct")
	b.ReportMetric(ms(containedCPU), "cpu-ms/contained")
	b.ReportMetric(ms(directCPU), "cpu-ms/direct")
}

// cpuTime is the user and system time of this process and of the children
// it has waited for.
func cpuTime() time.Duration {
	var total time.Duration
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if err := syscall.Getrusage(who, &ru); err != nil {
			panic(err)
		}
		total += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return total
}

// A host where the sandbox cannot start says why, and a spec never runs a
// job as root.
func TestRefusals(t *testing.T) {
	h, build := testHost(t)
	h.Init = filepath.Join(t.TempDir(), "missing-init")
	if err := h.Probe(context.Background()); err == nil || !strings.Contains(err.Error(), "start the init") {
		t.Errorf("probe with no init: %v", err)
	}
	if _, err := h.Command(Spec{Argv: []string{"/bin/true"}, Dir: build, Network: NetworkHost}); err == nil {
		t.Error("a spec with uid 0 was accepted")
	}
	if _, err := h.Command(Spec{Argv: []string{"/bin/true"}, Dir: build, UID: testUID, GID: testUID, Network: "bridge"}); err == nil {
		t.Error("an unknown network was accepted")
	}
}

// An init writ could not place in the job's cgroups starts nothing of the
// job: Start fails and the job's first command never ran.
func TestUnplacedInitRunsNothing(t *testing.T) {
	h, build := testHost(t)
	root := t.TempDir()
	h.CgroupRoot, h.MemoryMax = root, 0
	// A v1 pids hierarchy whose leaf for this run refuses the move.
	leaf := filepath.Join(root, "pids", "writ-t-"+strconv.Itoa(os.Getpid()))
	for _, d := range []string{filepath.Join(root, "pids", "cgroup.procs"), filepath.Join(leaf, "cgroup.procs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	canary := filepath.Join(build, "ran")
	c, err := h.Command(Spec{Argv: []string{"/bin/bash", "-c", "touch " + canary}, Env: []string{"PATH=/usr/bin:/bin"},
		Dir: build, UID: testUID, GID: testUID, Network: NetworkHost, Name: "t",
		Binds: []Bind{{Source: build, Target: build, Writable: true}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err == nil || !strings.Contains(err.Error(), "join cgroup") {
		if err == nil {
			_ = c.Wait()
		}
		t.Fatalf("Start with a cgroup that refuses the init: %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := os.Stat(canary); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the job ran although its init was never placed in its cgroup (%v)", err)
	}
}

func TestAwaitGo(t *testing.T) {
	for in, ok := range map[string]bool{"": false, "\n": false, "\nG": true, "G": true, "GG": false, "\nX": false} {
		if err := awaitGo(strings.NewReader(in)); (err == nil) != ok {
			t.Errorf("awaitGo(%q) = %v, want ok %v", in, err, ok)
		}
	}
}

// The job's first process already runs in the stage's cgroups: the init
// is moved there before it starts anything (a process forked before the
// move would stay outside every limit).
func TestJobBornInItsCgroups(t *testing.T) {
	h, build := testHost(t)
	v := h.cgroupVersion()
	if v.pids == "" && v.memory == "" {
		t.Skip("no pids or memory cgroup controller on this host")
	}
	out, code := run(t, h, build, NetworkHost, `cat /proc/self/cgroup`)
	leaf := "/writ-t-" + strconv.Itoa(os.Getpid())
	for _, c := range []struct{ name, ver string }{{"pids", v.pids}, {"memory", v.memory}} {
		if c.ver == "" {
			continue
		}
		found := false
		for _, line := range strings.Split(out, "\n") {
			parts := strings.SplitN(line, ":", 3)
			if len(parts) == 3 && (c.ver == "cgroup v2" && parts[0] == "0" || containsWord(strings.ReplaceAll(parts[1], ",", " "), c.name)) {
				found = found || strings.HasSuffix(parts[2], leaf)
			}
		}
		if !found {
			t.Errorf("the job's process is not in the run's %s cgroup (%s) (exit %d):\n%s", c.name, c.ver, code, out)
		}
	}
}

func TestStatusUIDs(t *testing.T) {
	status := "Name:\tbash\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t7\nPid:\t7\nPPid:\t1\nTracerPid:\t0\nUid:\t1000\t2000000123\t1000\t3\nGid:\t1\t1\t1\t1\n"
	uids, ok := statusUIDs([]byte(status))
	if !ok || len(uids) != 4 || uids[1] != testUID || uids[3] != 3 {
		t.Errorf("statusUIDs = %v, %v", uids, ok)
	}
	for _, bad := range []string{"Name:\tx\nGid:\t1\t1\t1\t1\n", "Name:\tx\nUid:\t1\t2\n", "Name:\tx\nUid:\t1\t2\tx\t4\n"} {
		if _, ok := statusUIDs([]byte(bad)); ok {
			t.Errorf("statusUIDs(%q) accepted", bad)
		}
	}
	live, err := liveUIDs()
	if err != nil || !live[uint32(os.Getuid())] {
		t.Errorf("liveUIDs does not list this process's uid %d: %v", os.Getuid(), err)
	}
}

// cgroup2Mount is where a cgroup v2 hierarchy is mounted, if one is.
func cgroup2Mount(t *testing.T) string {
	data, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[2] == "cgroup2" {
			return f[1]
		}
	}
	return ""
}

// On cgroup v2 a run's process is created inside its cgroup
// (CLONE_INTO_CGROUP): it is there from its first instruction, and start
// says so. Tested on any cgroup2 mount, controllers or not.
func TestStartIntoCgroupV2(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	mnt := cgroup2Mount(t)
	if mnt == "" {
		t.Skip("no cgroup v2 hierarchy on this host")
	}
	leaf := filepath.Join(mnt, "writ-test-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(leaf, 0o755); err != nil {
		t.Skipf("cannot make a cgroup v2 leaf here: %v", err)
	}
	cg := &cgroup{dirs: []string{leaf}, v2: leaf}
	defer cg.remove()
	var out bytes.Buffer
	cmd, placed, err := cg.start(func() *exec.Cmd {
		c := exec.Command("/bin/cat", "/proc/self/cgroup")
		// The init's own start: new namespaces, its own group, Pdeathsig.
		c.Stdout, c.SysProcAttr = &out, &syscall.SysProcAttr{
			Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS,
			Setpgid:    true, Pdeathsig: syscall.SIGKILL,
		}
		return c
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	want := "0::/" + filepath.Base(leaf)
	if !placed || !strings.Contains(out.String()+"\n", want+"\n") {
		t.Errorf("placed %v; the process's cgroups:\n%s\nwant the line %s", placed, out.String(), want)
	}
}

// On cgroup v1 a run's process is born in the run's cgroups (the thread
// that forks it joins them first), and no thread of writ stays there.
func TestStartIntoCgroupV1(t *testing.T) {
	h, _ := testHost(t)
	v := h.cgroupVersion()
	if v.pids != "cgroup v1" || v.pidsHome == "" {
		t.Skipf("no cgroup v1 pids hierarchy holding this process here: %+v", v)
	}
	cg, err := h.newCgroup("v1test")
	if err != nil {
		t.Fatal(err)
	}
	defer cg.remove()
	var out bytes.Buffer
	cmd, placed, err := cg.start(func() *exec.Cmd {
		c := exec.Command("/bin/cat", "/proc/self/cgroup")
		c.Stdout, c.SysProcAttr = &out, &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		return c
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	leaf := "/writ-v1test-" + strconv.Itoa(os.Getpid())
	if !placed || !strings.Contains(out.String(), leaf+"\n") {
		t.Errorf("placed %v; the process's cgroups:\n%s\nwant each run leaf ending in %s", placed, out.String(), leaf)
	}
	// Where writ's own cgroup is not visible (the thread would have no
	// way back), the process is started plainly and moved: not placed.
	fallback := &cgroup{dirs: cg.dirs, v1: []v1Leaf{{leaf: cg.v1[0].leaf}}, released: make(chan struct{})}
	cmd, placed, err = fallback.start(func() *exec.Cmd { return exec.Command("/bin/true") })
	if err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if placed {
		t.Error("a run whose thread could not return home was reported born in its cgroups")
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		data, _ := os.ReadFile(filepath.Join("/proc/self/task", task.Name(), "cgroup"))
		if strings.Contains(string(data), leaf) {
			t.Errorf("thread %s of writ stayed in the run's cgroups:\n%s", task.Name(), data)
		}
	}
}
