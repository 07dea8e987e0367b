package executor

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var uidRangeSeq atomic.Int64

// containedEnv is newEnv with jobs in the sandbox, on a uid range of its
// own (tests in parallel, and other test processes, must not share uids).
func containedEnv(t *testing.T) (*env, uint32) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the sandbox needs root (CI runs as root)")
	}
	e := newEnv(t)
	e.contained = true
	first := uint32(2001000000 + (os.Getpid()%4096)*64 + int(uidRangeSeq.Add(1)%8)*8)
	e.sandboxExtra = []string{fmt.Sprintf("uid_first = %d", first), "uid_count = 8"}
	return e, first
}

// An admitted job in the sandbox runs as a leased uid, reads its file
// variable from its private /run/writ, writes its build directory, and
// sees nothing of writ's state; after_script shares the build directory;
// cleanup removes the tree and ends the lease, and no process of the job
// outlives its stages.
func TestContainedJob(t *testing.T) {
	e, first := containedEnv(t)
	t.Parallel()
	script := []string{
		"echo uid=$(id -u) gid=$(id -g)",
		`cat "$TOKEN_FILE"; echo`,
		"test -e " + e.state + " && echo STATE$((0))VISIBLE || echo state-$((1))-hidden",
		"test -e " + e.cfgPath + " && echo CONFIG$((0))VISIBLE || echo config-$((1))-hidden",
		"echo built > output.txt",
		"setsid sleep 300 </dev/null >/dev/null 2>&1 &",
	}
	e.entry.Script = script
	e.entry.After = []string{"cat output.txt", "echo after >> output.txt && echo after-$((1))-wrote"}
	e.entry.Vars = append(e.entry.Vars, "TOKEN_FILE: {value: s3cret, file: true}")
	e.write()
	j := e.newJob(e.payload(930, e.head, withScript(script...), withAfter(e.entry.After...), withVar("TOKEN_FILE", "s3cret", "file")))
	r := j.runAll()
	log := j.log.String()
	if r.prepare != 0 || r.build != 0 {
		t.Fatalf("prepare %d, build %d\n%s", r.prepare, r.build, log)
	}
	var uid int
	if i := strings.Index(log, "\nuid="); i >= 0 {
		_, _ = fmt.Sscanf(log[i+1:], "uid=%d", &uid)
	}
	if uid < int(first) || uid >= int(first)+8 {
		t.Fatalf("the job ran as uid %d, not one of %d..%d\n%s", uid, first, first+7, log)
	}
	mustContain(t, log, fmt.Sprintf("gid=%d", uid), "s3cret", "state-1-hidden", "config-1-hidden", "\nbuilt\n", "after-1-wrote")
	mustNotContain(t, log, "STATE0VISIBLE", "CONFIG0VISIBLE")
	if _, err := os.Stat(filepath.Join(e.builds, "930")); err == nil {
		t.Error("cleanup left the build directory")
	}
	if leases, _ := os.ReadDir(filepath.Join(e.state, "sandbox", "uids")); len(leases) > 1 { // .lock
		t.Errorf("cleanup left uid leases: %v", leases)
	}
	if pids := processesOf(uint32(uid)); len(pids) > 0 {
		t.Errorf("processes of the job's uid outlived it: %v", pids)
	}
}

// A job whose entry says network: none has only its own loopback.
func TestContainedNetworkNone(t *testing.T) {
	e, _ := containedEnv(t)
	t.Parallel()
	script := []string{"cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' | tr '\\n' ,; echo"}
	e.entry.Script = script
	e.entry.Extra = []string{"network: none"}
	e.write()
	j := e.newJob(e.payload(931, e.head, withScript(script...)))
	if r := j.runAll(); r.prepare != 0 || r.build != 0 {
		t.Fatalf("prepare %d, build %d\n%s", r.prepare, r.build, j.log.String())
	}
	mustContain(t, j.log.String(), "\nlo,\n")
}

// Audit mode's pass-through of a job enforce mode refuses runs GitLab's
// own script in the sandbox too: it cannot read writ's config or write
// writ's state.
func TestContainedPassThrough(t *testing.T) {
	e, _ := containedEnv(t)
	t.Parallel()
	e.mode = "audit"
	e.write()
	j := e.newJob(e.payload(932, e.head, withScript("echo not the entry's script")))
	if _, code := j.stage("config"); code != 0 {
		t.Fatal("config failed")
	}
	if out, code := j.stage("prepare"); code != 0 {
		t.Fatalf("prepare %d\n%s", code, out)
	}
	tamper := filepath.Join(e.state, "tamper")
	script := filepath.Join(j.tmp, "runner-script")
	body := "#!/bin/bash\necho uid=$(id -u)\npwd\n" +
		"cat " + e.cfgPath + " 2>/dev/null && echo CONFIG$((0))READ || echo config-$((1))-unreadable\n" +
		"touch " + tamper + " 2>/dev/null && echo STATE$((0))WRITTEN || echo state-$((1))-protected\n" +
		"touch probe && echo builds-$((1))-writable\n"
	if err := os.WriteFile(script, []byte(body), 0o700); err != nil {
		t.Fatal(err)
	}
	out, code := j.stage("run", script, "build_script")
	if code != 0 {
		t.Fatalf("pass-through build_script exit %d\n%s", code, out)
	}
	mustContain(t, out, "config-1-unreadable", "state-1-protected", "builds-1-writable", filepath.Join(e.builds, passThroughDir)+"\n")
	mustNotContain(t, out, "uid=0\n", "CONFIG0READ", "STATE0WRITTEN")
	if _, err := os.Stat(tamper); err == nil {
		t.Fatal("the pass-through wrote writ's state")
	}
	j.stage("cleanup")
	if _, err := os.Stat(filepath.Join(e.builds, "932")); err == nil {
		t.Error("cleanup left the pass-through's directory")
	}
}

// processesOf lists the pids whose real or effective uid is uid, waiting a
// moment for the kernel to finish tearing a namespace down.
func processesOf(uid uint32) []int {
	deadline := time.Now().Add(2 * time.Second)
	for {
		var pids []int
		des, _ := os.ReadDir("/proc")
		for _, d := range des {
			pid, err := strconv.Atoi(d.Name())
			if err != nil {
				continue
			}
			data, err := os.ReadFile(filepath.Join("/proc", d.Name(), "status"))
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(data), "\n") {
				if f := strings.Fields(line); len(f) > 2 && f[0] == "Uid:" && (f[1] == fmt.Sprint(uid) || f[2] == fmt.Sprint(uid)) {
					pids = append(pids, pid)
				}
			}
		}
		if len(pids) == 0 || time.Now().After(deadline) {
			return pids
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// config_exec refuses a host where someone else can change writ's config,
// naming the fix; the sandbox probe passes on this host.
func TestConfigChecksTheInstall(t *testing.T) {
	e, _ := containedEnv(t)
	t.Parallel()
	e.write()
	j := e.newJob(e.payload(933, e.head))
	if out, code := j.stage("config"); code != 0 {
		t.Fatalf("config on a sound install: exit %d\n%s", code, out)
	}
	if err := os.Chmod(e.cfgPath, 0o666); err != nil {
		t.Fatal(err)
	}
	out, code := j.stage("config")
	if code != 2 {
		t.Fatalf("config with a world-writable config file: exit %d, want 2\n%s", code, out)
	}
	mustContain(t, out, "writ refuses to run jobs on this host", e.cfgPath+": mode 0666 lets group or others change it", "fix: chmod go-w "+e.cfgPath)
}
