package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/internal/state/etcdtest"
)

// prepare runs `writ executor prepare` on host e for payload p, as the
// runner would, and returns how long it took; cleanup then releases the
// job (untimed by the caller).
func (e *writEnv) prepare(tb testing.TB, dir string, p *Payload) (time.Duration, func()) {
	took, _, cleanup := e.prepareCPU(tb, dir, p)
	return took, cleanup
}

// prepareCPU is prepare, and also returns the CPU time (user and system)
// the prepare process used.
func (e *writEnv) prepareCPU(tb testing.TB, dir string, p *Payload) (time.Duration, time.Duration, func()) {
	tb.Helper()
	body, err := json.Marshal(p)
	if err != nil {
		tb.Fatal(err)
	}
	run := filepath.Join(dir, fmt.Sprintf("job-%d", p.ID))
	if err := os.MkdirAll(run, 0o700); err != nil {
		tb.Fatal(err)
	}
	payload := filepath.Join(run, "response.json")
	if err := os.WriteFile(payload, body, 0o600); err != nil {
		tb.Fatal(err)
	}
	stage := func(name string) (*exec.Cmd, []byte, error) {
		cmd := e.command("executor", name)
		cmd.Env = append(cmd.Env, "JOB_RESPONSE_FILE="+payload, "BUILD_FAILURE_EXIT_CODE=1", "SYSTEM_FAILURE_EXIT_CODE=2",
			"BUILD_EXIT_CODE_FILE="+filepath.Join(run, "code"))
		out, err := cmd.CombinedOutput()
		return cmd, out, err
	}
	start := time.Now()
	cmd, out, err := stage("prepare")
	took := time.Since(start)
	if err != nil {
		tb.Fatalf("prepare of job %d on %s: %v\n%s", p.ID, e.Config, err, out)
	}
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return took, cpu, func() {
		if _, out, err := stage("cleanup"); err != nil {
			tb.Fatalf("cleanup: %v\n%s", err, out)
		}
	}
}

// BenchmarkFleetPrepare measures `writ executor prepare` (a process: the
// allowlist fetched and judged, the source fetched over https and
// verified, the decision recorded) with the fleet store (etcd, 3 members
// on loopback, mutual TLS) against the same prepare with local state,
// interleaved in one run: "etcd/local" is the ratio of the medians (goal
// ≤ 1.2); "cpu-etcd/local" is the ratio of the prepare processes' median
// CPU time (the etcd members' own work is not in it), which a loaded
// machine disturbs less than wall time. "16-hosts" runs 16 prepares at once, one per host, all for the
// same entry, with each backend: "etcd/local-16" is the ratio of the
// wall times, and every prepare must admit.
func BenchmarkFleetPrepare(b *testing.B) {
	cluster := etcdtest.Start(b, 3)
	keys := newKeys(b)
	f, local := newWritFixture(b, keys, "fleetbench", false)
	fleet := newHost(b, local, cluster, "bench-fleet")
	if err := fleet.Accept(); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()

	b.Run("interleaved", func(b *testing.B) {
		var tl, te, cl, ce []time.Duration
		first := false
		sample := func() {
			order := []*writEnv{local, fleet}
			if first = !first; first {
				order = []*writEnv{fleet, local}
			}
			for _, h := range order {
				d, cpu, cleanup := h.prepareCPU(b, dir, f.LegitPayload())
				if h == local {
					tl, cl = append(tl, d), append(cl, cpu)
				} else {
					te, ce = append(te, d), append(ce, cpu)
				}
				cleanup()
			}
		}
		sample() // warm both hosts' mirrors and the store connection path
		tl, te, cl, ce = nil, nil, nil, nil
		b.ResetTimer()
		for range b.N {
			sample()
		}
		b.StopTimer()
		for len(tl) < benchMinSamples {
			sample()
		}
		ml, me := median(tl), median(te)
		b.ReportMetric(float64(ml)/float64(time.Millisecond), "ms-local")
		b.ReportMetric(float64(me)/float64(time.Millisecond), "ms-etcd")
		b.ReportMetric(float64(me)/float64(ml), "etcd/local")
		b.ReportMetric(float64(median(cl))/float64(time.Millisecond), "cpu-ms-local")
		b.ReportMetric(float64(median(ce))/float64(time.Millisecond), "cpu-ms-etcd")
		b.ReportMetric(float64(median(ce))/float64(median(cl)), "cpu-etcd/local")
	})

	b.Run("16-hosts", func(b *testing.B) {
		const n = 16
		hosts := map[string][]*writEnv{}
		// 16 prepare processes and 3 etcd members on this machine's cores:
		// a store request may wait behind them longer than on a fleet.
		fleetTimeout = "20s"
		defer func() { fleetTimeout = "5s" }()
		for _, backend := range []string{"local", "etcd"} {
			for i := range n {
				var c *etcdtest.Cluster
				if backend == "etcd" {
					c = cluster
				}
				h := newHost(b, local, c, fmt.Sprintf("%s-%d", backend, i))
				if err := h.Accept(); err != nil {
					b.Fatal(err)
				}
				hosts[backend] = append(hosts[backend], h)
			}
		}
		round := func(backend string) time.Duration {
			var wg sync.WaitGroup
			cleanups := make([]func(), n)
			start := time.Now()
			for i, h := range hosts[backend] {
				p := f.LegitPayload()
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, cleanups[i] = h.prepare(b, dir, p)
				}()
			}
			wg.Wait()
			took := time.Since(start)
			for _, c := range cleanups {
				if c != nil {
					c()
				}
			}
			return took
		}
		round("local")
		round("etcd")
		var tl, te []time.Duration
		// Alternate which backend goes first, so neither always runs on
		// the other's warm caches.
		pair := func(i int) {
			if i%2 == 0 {
				tl = append(tl, round("local"))
				te = append(te, round("etcd"))
			} else {
				te = append(te, round("etcd"))
				tl = append(tl, round("local"))
			}
		}
		b.ResetTimer()
		for i := range b.N {
			pair(i)
		}
		b.StopTimer()
		for i := len(tl); i < 3; i++ {
			pair(i)
		}
		b.ReportMetric(float64(median(tl))/float64(time.Millisecond), "ms-local-16")
		b.ReportMetric(float64(median(te))/float64(time.Millisecond), "ms-etcd-16")
		b.ReportMetric(float64(median(te))/float64(median(tl)), "etcd/local-16")
	})
}
