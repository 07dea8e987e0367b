package e2e

import (
	"archive/tar"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/sandbox/image/imagetest"
)

// The scenario catalog's attacks are jobs writ refuses. The attacks here
// come from inside a job writ *admits* (a poisoned dependency of a signed
// deploy script): each runs twice with the identical payload, aimed at
// the same files of this writ installation, once through writ, where the
// sandbox must stop it, and once through the pass-through executor, where
// it must work.

// sandboxEntry renders an allowlist entry for the application's job named
// job, admitting script, with extra YAML lines under definition:.
func sandboxEntry(f *Fixture, job string, script []string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n  - name: sandbox-%s\n    match:\n      project: %s\n      job: %s\n      environments: [%s]\n      refs: [refs/heads/%s]\n    definition:\n      script:\n",
		job, LegitProject, job, LegitEnvironment, LegitRef)
	for _, l := range script {
		b.WriteString("        - " + yamlQuote(l) + "\n")
	}
	for _, x := range extra {
		b.WriteString("      " + x + "\n")
	}
	fmt.Fprintf(&b, "    source:\n      repository: %s\n      signers: [app-team]\n      mode: commit\n", f.Repos.SourceURL(RepoApp))
	return b.String()
}

// sandboxPayload is the application's job named job at head, running script.
func sandboxPayload(f *Fixture, job string, script []string) *Payload {
	p := f.LegitPayload()
	p.JobInfo.Name = job
	p.SetVar("CI_JOB_NAME", job)
	p.Step("script").Script = script
	p.Steps = p.Steps[:1]
	p.Image = nil
	p.Variables = deleteVar(p.Variables, "DEPLOY_TARGET")
	return p
}

// sandboxJob is one job of TestSandboxAttacks: its allowlist entry and
// payload script.
type sandboxJob struct {
	name   string
	script []string
	extra  []string
	// fileVar, if set, is a file variable NAME=value the entry pins.
	fileVar [2]string
}

func (j sandboxJob) payload(f *Fixture) *Payload {
	p := sandboxPayload(f, j.name, j.script)
	if j.fileVar[0] != "" {
		p.Variables = append(p.Variables, Variable{Key: j.fileVar[0], Value: j.fileVar[1], File: true})
	}
	return p
}

// TestSandboxAttacks: an admitted job attacks writ and other jobs from
// inside. Each attack fails under writ and works under the pass-through
// executor; the happy paths show what the sandbox leaves intact.
func TestSandboxAttacks(t *testing.T) {
	t.Parallel()
	keys := newKeys(t)
	f, e := newWritFixture(t, keys, "sandbox", false)
	w := f.W
	ctx := testCtx(t)
	pt, err := Passthrough(filepath.Join(w.Dir, "passthrough-twin"))
	if err != nil {
		t.Fatal(err)
	}
	etc := filepath.Dir(e.Config)
	keyring := filepath.Join(etc, "root-keys.asc")
	coord, err := url.Parse(w.Coord.URL())
	if err != nil {
		t.Fatal(err)
	}
	setuidID := setuidCopy(t, "/usr/bin/id")
	const secret = "victim-secret-value-7c1f"

	jobs := map[string]sandboxJob{
		"read-trust-root": {script: []string{
			"cat " + keyring + " " + e.Config + " 2>/dev/null | grep -q -e 'BEGIN PGP' && echo TRUST-ROOT-$((6*7))-READ || echo trust-root-unreadable"}},
		"write-writ-state": {script: []string{
			"touch " + e.State + "/planted-$CI_JOB_ID " + e.Cache + "/planted-$CI_JOB_ID 2>/dev/null || echo state-unwritable",
			"test -w " + e.Audit + " && echo AUDIT-LOG-$((6*7))-WRITABLE || echo audit-log-unwritable"}},
		"victim": {script: []string{
			`test -s "$VICTIM_TOKEN_FILE" && echo victim-has-its-token`, "sleep 10", "echo victim-$((6*7))-survived"},
			fileVar: [2]string{"VICTIM_TOKEN_FILE", secret}, extra: []string{"variables:", "  VICTIM_TOKEN_FILE: {value: " + secret + ", file: true}"}},
		"neighbour": {script: []string{"sleep 2",
			// Another job's file variable: through its environment…
			`vals=$(grep -h -s -a -z -e '^\(CUSTOM_ENV_\)\{0,1\}VICTIM_TOKEN_FILE=' /proc/[0-9]*/environ | tr '\0' '\n' | sed 's/^[^=]*=//' | sort -u || true)`,
			`for v in $vals; do echo "found: $v"; cat "$v" 2>/dev/null || true; echo; done`,
			// …or where writ keeps it.
			"cat " + e.State + "/jobs/*/files/* /run/writ/var-* 2>/dev/null || true",
			// Signal the other job's processes.
			`pids=$(grep -l -s -a -z -x -e CI_JOB_NAME=victim -e CUSTOM_ENV_CI_JOB_NAME=victim /proc/[0-9]*/environ | sed 's|^/proc/\([0-9]*\)/environ$|\1|' || true)`,
			`for p in $pids; do kill -9 $p 2>/dev/null && echo KILLED-$((6*7)) $p || true; done`}},
		"daemon": {script: []string{
			// A leftover process racing the next job's hand-over: it swaps
			// directories of build trees for links to writ's config
			// directory and tries to take the config file.
			`setsid bash -c 'for i in $(seq 400); do for d in ` + e.Builds + `/*/; do ln -sfn ` + etc + ` "${d}sub" 2>/dev/null; done; chmod 0666 ` + e.Config + ` 2>/dev/null; sleep 0.05; done; exec sleep 3011' </dev/null >/dev/null 2>&1 &`,
			"echo daemon-started"}},
		"next":   {script: []string{"echo next-job-ran"}},
		"setuid": {script: []string{"echo euid-$(" + setuidID + " -u)"}},
		"offline": {script: []string{
			"(exec 3<>/dev/tcp/127.0.0.1/" + coord.Port() + ") 2>/dev/null && echo NETWORK-$((6*7))-REACHED || echo network-unreachable"},
			extra: []string{"network: none"}},
		"whoami": {script: []string{"echo job-uid=$(id -u)", "sleep 2"}},
	}
	content := Allowlist(AllowlistParams{Fingerprint: keys.Trusted.Fingerprint, SourceURL: f.Repos.SourceURL(RepoApp), Reviewed: f.Hist.Reviewed, Version: 8})
	for _, name := range []string{"read-trust-root", "write-writ-state", "victim", "neighbour", "daemon", "next", "setuid", "offline", "whoami"} {
		j := jobs[name]
		j.name = name
		jobs[name] = j
		content += sandboxEntry(f, name, j.script, j.extra...)
	}
	if err := publishAllowlist(f, func(string) string { return content }); err != nil {
		t.Fatal(err)
	}
	if err := e.Accept(); err != nil {
		t.Fatal(err)
	}

	// run runs job once through writ and once through the pass-through
	// executor, and returns both outcomes.
	run := func(t *testing.T, name string) (writ, pass Outcome) {
		writ = w.RunJob(ctx, jobs[name].payload(f))
		pass = w.RunJobWith(ctx, jobs[name].payload(f), RunOptions{Executor: &pt})
		if !writ.Succeeded() {
			t.Errorf("writ: the admitted job %s failed:\n%s", name, writ)
		}
		return writ, pass
	}
	has := func(o Outcome, s string) bool { return strings.Contains(plainTrace(o.Trace), s) }
	expect := func(t *testing.T, writ, pass Outcome, marker, blocked string) {
		t.Helper()
		if has(writ, marker) || !has(writ, blocked) {
			t.Errorf("writ: want %q and not %q:\n%s", blocked, marker, writ)
		}
		if !has(pass, marker) {
			t.Errorf("pass-through: the attack did not work (%q absent):\n%s", marker, pass)
		}
	}

	t.Run("read-trust-root", func(t *testing.T) {
		writ, pass := run(t, "read-trust-root")
		expect(t, writ, pass, "TRUST-ROOT-42-READ", "trust-root-unreadable")
	})
	t.Run("write-state-cache-audit-log", func(t *testing.T) {
		writ, pass := run(t, "write-writ-state")
		expect(t, writ, pass, "AUDIT-LOG-42-WRITABLE", "audit-log-unwritable")
		for _, dir := range []string{e.State, e.Cache} {
			if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("planted-%d", writ.JobID))); err == nil {
				t.Errorf("writ: the job planted a file in %s", dir)
			}
			planted := filepath.Join(dir, fmt.Sprintf("planted-%d", pass.JobID))
			if _, err := os.Stat(planted); err != nil {
				t.Errorf("pass-through: the job did not plant %s", planted)
			}
			_ = os.Remove(planted)
		}
	})
	t.Run("another-job-file-variable-and-signal", func(t *testing.T) {
		both := func() (victim, neighbour Outcome) {
			outs := w.RunJobs(ctx, jobs["victim"].payload(f), jobs["neighbour"].payload(f))
			return outs[0], outs[1]
		}
		victim, neighbour := both()
		if !victim.Succeeded() || !has(victim, "victim-has-its-token") || !has(victim, "victim-42-survived") {
			t.Errorf("writ: the victim job did not run undisturbed:\n%s", victim)
		}
		if has(neighbour, secret) || has(neighbour, "KILLED-42") {
			t.Errorf("writ: the neighbour read the victim's file variable or signalled it:\n%s", neighbour)
		}
		saved := w.Executor
		w.Executor = pt
		pVictim, pNeighbour := both()
		w.Executor = saved
		if !has(pNeighbour, secret) {
			t.Errorf("pass-through: the neighbour did not read the victim's file variable:\n%s", pNeighbour)
		}
		if pVictim.Succeeded() || has(pVictim, "victim-42-survived") {
			t.Errorf("pass-through: the neighbour did not kill the victim:\n%s\n%s", pVictim, pNeighbour)
		}
	})
	t.Run("setsid-daemon-and-hand-over-race", func(t *testing.T) {
		check := func(executor string, opts RunOptions) (alive bool, configTaken bool) {
			before, err := os.Stat(e.Config)
			if err != nil {
				t.Fatal(err)
			}
			o := w.RunJobWith(ctx, jobs["daemon"].payload(f), opts)
			if !has(o, "daemon-started") {
				t.Fatalf("%s: the daemon job did not run:\n%s", executor, o)
			}
			time.Sleep(500 * time.Millisecond)
			alive = len(processesWithArgs("bash", "-c", "for i in")) > 0
			next := w.RunJobWith(ctx, jobs["next"].payload(f), opts)
			if !has(next, "next-job-ran") {
				t.Errorf("%s: the next job did not run:\n%s", executor, next)
			}
			after, err := os.Stat(e.Config)
			if err != nil {
				t.Fatal(err)
			}
			configTaken = after.Mode() != before.Mode() || after.Sys().(*syscall.Stat_t).Uid != before.Sys().(*syscall.Stat_t).Uid
			for _, pid := range append(processesWithArgs("bash", "-c", "for i in"), processesWithArgs("sleep", "3011")...) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			_ = os.Chmod(e.Config, before.Mode())
			return alive, configTaken
		}
		if alive, taken := check("writ", RunOptions{}); alive || taken {
			t.Errorf("writ: daemon alive when the next job started: %v; writ's config changed: %v", alive, taken)
		}
		if alive, taken := check("pass-through", RunOptions{Executor: &pt}); !alive || !taken {
			t.Errorf("pass-through: daemon alive: %v, config changed: %v (want both)", alive, taken)
		}
	})
	t.Run("setuid-binary", func(t *testing.T) {
		writ, pass := run(t, "setuid")
		expect(t, writ, pass, "euid-0", "euid-2")
	})
	t.Run("network-none", func(t *testing.T) {
		writ, pass := run(t, "offline")
		expect(t, writ, pass, "NETWORK-42-REACHED", "network-unreachable")
	})
	t.Run("concurrent-jobs-get-different-uids", func(t *testing.T) {
		outs := w.RunJobs(ctx, jobs["whoami"].payload(f), jobs["whoami"].payload(f))
		var uids []uint32
		for _, o := range outs {
			uid, ok := traceUID(o.Trace, "job-uid=")
			if !o.Succeeded() || !ok {
				t.Fatalf("job failed or printed no uid:\n%s", o)
			}
			if uid < e.UIDFirst || uid >= e.UIDFirst+e.UIDCount {
				t.Errorf("uid %d is outside the configured range %d+%d", uid, e.UIDFirst, e.UIDCount)
			}
			uids = append(uids, uid)
		}
		if uids[0] == uids[1] {
			t.Errorf("two concurrent jobs shared uid %d", uids[0])
		}
	})
	// Last: it turns the environment to audit mode.
	t.Run("audit-mode-pass-through", func(t *testing.T) {
		cfg, err := os.ReadFile(e.Config)
		if err != nil {
			t.Fatal(err)
		}
		audited := strings.Replace(string(cfg), `mode = "enforce"`, `mode = "audit"`, 1)
		if audited == string(cfg) {
			t.Fatal("the config names no enforce mode to turn to audit")
		}
		if err := os.WriteFile(e.Config, []byte(audited), 0o644); err != nil {
			t.Fatal(err)
		}
		// A job no entry admits: audit mode passes GitLab's script through.
		attack := []string{"cat " + keyring + " 2>/dev/null | grep -q 'BEGIN PGP' && echo TRUST-ROOT-$((6*7))-READ || echo trust-root-unreadable",
			"touch " + e.State + "/planted-audit-$CI_JOB_ID 2>/dev/null && echo STATE-$((6*7))-WRITTEN || echo state-unwritable"}
		writ := w.RunJob(ctx, sandboxPayload(f, "unlisted", attack))
		pass := w.RunJobWith(ctx, sandboxPayload(f, "unlisted", attack), RunOptions{Executor: &pt})
		if !has(writ, "WRIT AUDIT MODE") {
			t.Errorf("writ: not an audit-mode pass-through:\n%s", writ)
		}
		expect(t, writ, pass, "TRUST-ROOT-42-READ", "trust-root-unreadable")
		expect(t, writ, pass, "STATE-42-WRITTEN", "state-unwritable")
		_ = os.Remove(filepath.Join(e.State, fmt.Sprintf("planted-audit-%d", pass.JobID)))
	})
}

// setuidCopy installs a setuid-root copy of bin where jobs see the host
// (under /usr), removed when the test ends.
func setuidCopy(t *testing.T, bin string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/usr/local/lib", "writ-e2e-setuid-")
	if err != nil {
		t.Skipf("cannot install a setuid binary for the test: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, filepath.Base(bin))
	if err := os.WriteFile(p, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o4755); err != nil {
		t.Fatal(err)
	}
	return p
}

// traceUID finds the uid a job printed on a line starting with prefix and
// holding "uid=N" (the runner's echo of the command, which holds "$(",
// does not count).
func traceUID(trace, prefix string) (uint32, bool) {
	for _, line := range strings.Split(plainTrace(trace), "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, prefix) || strings.Contains(line, "$(") {
			continue
		}
		i := strings.Index(line, "uid=")
		if i < 0 {
			continue
		}
		rest := line[i+len("uid="):]
		if j := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' }); j >= 0 {
			rest = rest[:j]
		}
		if n, err := strconv.ParseUint(rest, 10, 32); err == nil {
			return uint32(n), true
		}
	}
	return 0, false
}

// waitNoProcessOf waits until no process on the host has uid as its real
// or effective uid, and returns those still running at the deadline.
func waitNoProcessOf(uid uint32, within time.Duration) []int {
	deadline := time.Now().Add(within)
	for {
		var pids []int
		forEachProcess(func(pid int, status, _ string) {
			for _, line := range strings.Split(status, "\n") {
				if f := strings.Fields(line); len(f) > 2 && f[0] == "Uid:" && (f[1] == fmt.Sprint(uid) || f[2] == fmt.Sprint(uid)) {
					pids = append(pids, pid)
				}
			}
		})
		if len(pids) == 0 || time.Now().After(deadline) {
			return pids
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// processesWithArgs lists the live processes whose command line begins
// with the given arguments (the last one as a prefix).
func processesWithArgs(args ...string) []int {
	var pids []int
	forEachProcess(func(pid int, status, cmdline string) {
		got := strings.Split(cmdline, "\x00")
		if len(got) < len(args) || strings.Contains(status, "State:\tZ") {
			return
		}
		for i, a := range args {
			if i == 0 && filepath.Base(got[0]) != a || i > 0 && i < len(args)-1 && got[i] != a || i == len(args)-1 && i > 0 && !strings.HasPrefix(got[i], a) {
				return
			}
		}
		pids = append(pids, pid)
	})
	return pids
}

func forEachProcess(fn func(pid int, status, cmdline string)) {
	des, _ := os.ReadDir("/proc")
	for _, d := range des {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		status, err1 := os.ReadFile(filepath.Join("/proc", d.Name(), "status"))
		cmdline, err2 := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err1 != nil || err2 != nil {
			continue
		}
		fn(pid, string(status), string(cmdline))
	}
}

// TestImageRootFS: a deploy whose entry names an image pinned by digest
// runs in that image (fetched from a registry on 127.0.0.1, every blob
// verified): it sees the image's files, not the host's, and its checkout
// at /builds/<job id>.
func TestImageRootFS(t *testing.T) {
	t.Parallel()
	keys := newKeys(t)
	f, e := newWritFixture(t, keys, "image", false)
	w := f.W
	host := imagetest.Registry(t)
	files := imagetest.HostPrograms(t, "/bin/bash", "/bin/cat")
	files = append(files, imagetest.Entry{Name: "etc/", Type: tar.TypeDir, Mode: 0o755},
		imagetest.Entry{Name: "etc/image-release", Body: "writ e2e image\n"})
	ref := imagetest.Push(t, host, "acme/deploy-image", imagetest.Layer(t, files...))
	script := []string{"cat /etc/image-release", "test -e /usr/bin/git && echo HOST-GIT-$((6*7)) || echo no-host-git",
		`echo "dir=$PWD project=$CI_PROJECT_DIR"`, "cat README.md"}
	content := Allowlist(AllowlistParams{Fingerprint: keys.Trusted.Fingerprint, SourceURL: f.Repos.SourceURL(RepoApp), Reviewed: f.Hist.Reviewed, Version: 8})
	content += sandboxEntry(f, "imaged", script, "image: "+ref)
	if err := publishAllowlist(f, func(string) string { return content }); err != nil {
		t.Fatal(err)
	}
	if err := e.Accept(); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(e.Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.Config, []byte(strings.Replace(string(cfg), `images = "ignore"`, `images = "run"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	p := sandboxPayload(f, "imaged", script)
	p.Image = &Image{Name: ref}
	o := w.RunJob(testCtx(t), p)
	trace := plainTrace(o.Trace)
	if !o.Succeeded() {
		t.Fatalf("the job in the image failed:\n%s", o)
	}
	for _, want := range []string{"writ: image " + ref + " fetched and verified", "\nwrit e2e image\n", "\nno-host-git\n",
		fmt.Sprintf("dir=/builds/%d project=/builds/%d", p.ID, p.ID), "Deployed by writ."} {
		if !strings.Contains(trace, want) {
			t.Errorf("trace lacks %q:\n%s", want, o)
		}
	}
	if strings.Contains(trace, "HOST-GIT-42") {
		t.Errorf("the job saw the host's /usr/bin/git:\n%s", o)
	}
}
