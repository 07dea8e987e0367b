package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSandboxLimits: an admitted job that forks without end or eats
// memory is stopped by the limits of writ's [sandbox] configuration
// (pids_max, memory_max_bytes), on the host's real cgroups; the same job
// runs to its end under the pass-through executor. Both jobs are bounded
// (100 sleeps of 2 s at once, 96 MiB), so the pass-through twin cannot hurt the
// host.
func TestSandboxLimits(t *testing.T) {
	t.Parallel()
	keys := newKeys(t)
	f, e := newWritFixture(t, keys, "limits", false)
	w := f.W
	ctx := testCtx(t)
	pt, err := Passthrough(filepath.Join(w.Dir, "passthrough-twin"))
	if err != nil {
		t.Fatal(err)
	}
	const pidsMax, memoryMax = 32, 32 << 20
	config, err := os.ReadFile(e.Config)
	if err != nil {
		t.Fatal(err)
	}
	limited := strings.Replace(string(config), "[sandbox]\n", "[sandbox]\npids_max = 32\nmemory_max_bytes = 33554432\n", 1)
	if limited == string(config) {
		t.Fatal("the config has no [sandbox] table")
	}
	if err := os.WriteFile(e.Config, []byte(limited), 0o644); err != nil {
		t.Fatal(err)
	}
	jobs := map[string]sandboxJob{
		"fork-bomb": {script: []string{
			// dash gives up when a fork fails (bash would retry for long).
			`/bin/sh -c 'i=0; while [ $i -lt 100 ]; do sleep 2 & i=$((i+1)); done; wait' && echo FORKED-$((50*2))-PROCESSES`}},
		"memory-hog": {script: []string{
			`x=$(head -c 96M /dev/zero | tr '\0' a); echo "HOG-HELD-${#x}-BYTES"`}},
	}
	content := Allowlist(AllowlistParams{Fingerprint: keys.Trusted.Fingerprint, SourceURL: f.Repos.SourceURL(RepoApp), Reviewed: f.Hist.Reviewed, Version: 8})
	for _, name := range []string{"fork-bomb", "memory-hog"} {
		j := jobs[name]
		j.name = name
		jobs[name] = j
		content += sandboxEntry(f, name, j.script)
	}
	if err := publishAllowlist(f, func(string) string { return content }); err != nil {
		t.Fatal(err)
	}
	if err := e.Accept(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		job, marker string
		// blocked is what the job's log shows when the limit holds.
		blocked  string
		exitCode int
	}{
		{"fork-bomb", "FORKED-100-PROCESSES", "Cannot fork", 0},
		// The kernel's OOM killer ends the shell (SIGKILL: 128+9).
		{"memory-hog", "HOG-HELD-100663296-BYTES", "", 137},
	} {
		t.Run(c.job, func(t *testing.T) {
			writ := w.RunJob(ctx, jobs[c.job].payload(f))
			pass := w.RunJobWith(ctx, jobs[c.job].payload(f), RunOptions{Executor: &pt})
			trace := plainTrace(writ.Trace)
			if writ.Succeeded() || strings.Contains(trace, c.marker) || !strings.Contains(trace, c.blocked) ||
				c.exitCode != 0 && writ.ExitCode != c.exitCode {
				t.Errorf("writ (pids_max %d, memory_max_bytes %d): the job was not stopped by its limit (want it failed with %q, exit code %d, and no %q):\n%s",
					pidsMax, memoryMax, c.blocked, c.exitCode, c.marker, writ)
			}
			if !pass.Succeeded() || !strings.Contains(plainTrace(pass.Trace), c.marker) {
				t.Errorf("pass-through: the job did not run to its end (%q absent):\n%s", c.marker, pass)
			}
		})
	}
}
