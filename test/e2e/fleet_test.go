package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"gitlab.com/writ-ci/writ/internal/state"
	"gitlab.com/writ-ci/writ/internal/state/etcdtest"
)

// Issue #15: one trust state for a fleet of runner hosts. Every host is a
// writ installation of its own (state, cache, audit log, builds, client
// certificate) behind the real runner; the hosts share one 3-member etcd
// cluster on 127.0.0.1 with mutual TLS. GitLab chooses the host: each job
// here is routed to the host the attack needs.

// fleetPrefix keeps the fleet's keys apart, as one environment's would be.
const fleetPrefix = "/writ/production/"

// fleetTimeout bounds each request to the store in these tests (the
// default, 5s: 16 prepare processes and 3 members share 2 cores here).
var fleetTimeout = "5s"

// joinFleet points e's config at the cluster with a client certificate of
// its own.
func joinFleet(t testing.TB, e *writEnv, c *etcdtest.Cluster, host string) {
	t.Helper()
	cfg := readConfig(t, e.Config)
	cert, key, err := c.ClientCert(host)
	if err != nil {
		t.Fatal(err)
	}
	cfg["state"] = map[string]any{
		"backend": "etcd", "host": host,
		"etcd": map[string]any{"endpoints": c.Endpoints, "ca_file": c.CAFile, "cert_file": cert, "key_file": key,
			"prefix": fleetPrefix, "timeout": fleetTimeout},
	}
	writeConfig(t, e.Config, cfg)
}

// newHost installs writ as another runner host of base's environment: the
// same trust root and allowlist, its own directories. With c, it joins the
// fleet; without, it keeps local state only (today's default).
func newHost(t testing.TB, base *writEnv, c *etcdtest.Cluster, host string) *writEnv {
	t.Helper()
	dir := filepath.Join(filepath.Dir(filepath.Dir(base.State)), "hosts", host)
	e := &writEnv{
		Bin: base.Bin, Config: filepath.Join(dir, "etc", "config.toml"), Audit: filepath.Join(dir, "log", "audit.log"),
		State: filepath.Join(dir, "state"), Cache: filepath.Join(dir, "cache"), Builds: filepath.Join(dir, "builds"),
		Env: base.Env,
	}
	for _, d := range []string{filepath.Dir(e.Config), filepath.Dir(e.Audit)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	cfg := readConfig(t, base.Config)
	cfg["paths"] = map[string]any{"state": e.State, "cache": e.Cache, "audit": e.Audit, "builds": e.Builds}
	delete(cfg, "state")
	writeConfig(t, e.Config, cfg)
	if c != nil {
		joinFleet(t, e, c, host)
	}
	return e
}

func readConfig(t testing.TB, path string) map[string]any {
	t.Helper()
	cfg := map[string]any{}
	if _, err := toml.DecodeFile(path, &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func writeConfig(t testing.TB, path string, cfg map[string]any) {
	t.Helper()
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// executor is e as the runner's custom executor.
func (e *writEnv) executor() *Executor {
	x := WritExecutor(e.Bin, e.Config)
	x.Env = e.Env
	return &x
}

// on runs p on host e.
func on(ctx context.Context, w *World, e *writEnv, p *Payload) Outcome {
	return w.RunJobWith(ctx, p, RunOptions{Executor: e.executor()})
}

// marks is `writ state show -o json` on e: the fleet store's marks, then
// the host's own.
func (e *writEnv) marks(t testing.TB) []state.Marks {
	t.Helper()
	out, err := e.command("state", "show", "-o", "json").Output()
	var m []state.Marks
	if err != nil || json.Unmarshal(out, &m) != nil {
		t.Fatalf("writ state show: %v\n%s", err, out)
	}
	return m
}

func entryCommit(m state.Marks, entry string) string {
	for _, e := range m.Entries {
		if e.Entry == entry {
			return e.Commit
		}
	}
	return ""
}

// expect fails t with every problem judgeWrit finds in o.
func expect(t *testing.T, exp Expectation, f *Fixture, e *writEnv, o Outcome) {
	t.Helper()
	_, problems := judgeWrit(exp, f.Canary, e, o)
	for _, p := range problems {
		t.Error(p)
	}
	if len(problems) > 0 {
		t.Logf("%s\n--- audit log ---\n%s", o, auditSummary(e))
	}
}

// newerCommit pushes a signed commit on main after the current head (the
// deploy script unchanged) and returns it.
func newerCommit(t *testing.T, f *Fixture, parent, msg string) string {
	t.Helper()
	sha, err := f.Repos.Commit(RepoApp, parent, map[string]string{"CHANGELOG": msg + "\n"}, msg, Trusted)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Repos.SetBranch(RepoApp, LegitRef, sha); err != nil {
		t.Fatal(err)
	}
	return sha
}

func TestFleet(t *testing.T) {
	t.Parallel()
	cluster := etcdtest.Start(t, 3)
	keys := newKeys(t)
	f, a := newWritFixture(t, keys, "fleet", true)
	w := f.W
	joinFleet(t, a, cluster, "host-a")
	if err := a.Accept(); err != nil {
		t.Fatalf("host A does not accept allowlist version 7 through the fleet store: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	const entry = "app-deploy-production"
	head := f.Hist.Head

	// The figure: host A admits the newest signed commit, and the
	// older one, routed to a fresh host, is a rollback there too. Without
	// the fleet store (the pass-through of this attack) the fresh host
	// admits it and the canary fires.
	t.Run("source rollback routed to a fresh host is refused", func(t *testing.T) {
		vulnerable, err := f.Repos.Commit(RepoApp, head, map[string]string{"deploy.sh": backdoored(f.Canary)}, "debug: more logging", Trusted)
		if err != nil {
			t.Fatal(err)
		}
		fixed, err := f.Repos.Commit(RepoApp, vulnerable, map[string]string{"deploy.sh": DeployScript}, "remove the debug hook again", Trusted)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Repos.SetBranch(RepoApp, LegitRef, fixed); err != nil {
			t.Fatal(err)
		}
		head = fixed
		deploy := f.LegitPayload()
		setSha(deploy, fixed)
		expect(t, admit, f, a, on(ctx, w, a, deploy))
		// Cleanup removed the run's state and released its claim on
		// the host.
		for _, d := range []string{"jobs", "claims"} {
			if left, _ := os.ReadDir(filepath.Join(a.State, d)); len(left) > 0 {
				t.Errorf("host A's %s after the job ended: %v", d, left)
			}
		}

		rollback := f.LegitPayload()
		setSha(rollback, vulnerable)
		b := newHost(t, a, cluster, "host-b")
		expect(t, refuse("rollback", "this looks like a rollback"), f, b, on(ctx, w, b, rollback))

		alone := newHost(t, a, nil, "host-alone")
		again := f.LegitPayload()
		setSha(again, vulnerable)
		o := on(ctx, w, alone, again)
		// In writ's sandbox the canary's file cannot reach the host; its
		// marker in the trace shows the script ran.
		if !f.Canary.Fired() && !f.Canary.Printed(o) {
			t.Errorf("control: a fresh host with local state only did not admit the rollback (the test proves nothing):\n%s", o)
		}
		_ = os.Remove(f.Canary.File)
	})

	t.Run("allowlist rollback to a fresh host is refused", func(t *testing.T) {
		if err := f.Repos.SetBranch(RepoAllowlist, "main", f.AllowlistCommits[6]); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = f.Repos.SetBranch(RepoAllowlist, "main", f.AllowlistCommits[7]) }()
		p := f.LegitPayload()
		setSha(p, head)
		p.Step("script").Script = []string{f.Canary.Code()}
		c := newHost(t, a, cluster, "host-c")
		expect(t, undecided("version 6 is lower than 7", "version"), f, c, on(ctx, w, c, p))

		alone := newHost(t, a, nil, "host-alone-2")
		q := f.LegitPayload()
		setSha(q, head)
		q.Step("script").Script = []string{f.Canary.Code()}
		o := on(ctx, w, alone, q)
		if !f.Canary.Fired() && !f.Canary.Printed(o) {
			t.Errorf("control: a fresh host with local state only did not accept version 6 and run its script:\n%s", o)
		}
		_ = os.Remove(f.Canary.File)
	})

	t.Run("the same job id on two hosts: the second is refused and audited", func(t *testing.T) {
		b := newHost(t, a, cluster, "host-d")
		p := f.LegitPayload()
		setSha(p, head)
		expect(t, admit, f, a, on(ctx, w, a, p))
		twin := p.Clone()
		expect(t, refuse("job_id", "already claimed by a run on host \"host-a\""), f, b, on(ctx, w, b, twin))
	})

	t.Run("two hosts admitting concurrently stay consistent", func(t *testing.T) {
		b := newHost(t, a, cluster, "host-e")
		older := head
		head = newerCommit(t, f, older, "concurrent")
		pOld, pNew := f.LegitPayload(), f.LegitPayload()
		setSha(pOld, older)
		setSha(pNew, head)
		var wg sync.WaitGroup
		var oOld, oNew Outcome
		wg.Add(2)
		go func() { defer wg.Done(); oOld = on(ctx, w, a, pOld) }()
		go func() { defer wg.Done(); oNew = on(ctx, w, b, pNew) }()
		wg.Wait()
		// Whatever the order, the fleet's mark ends at the newer commit:
		// the older one is admitted only before it, else refused as a
		// rollback. Both runs are final, neither a system failure.
		oOld, oNew = w.outcome(oOld.JobID, oOld.Runner), w.outcome(oNew.JobID, oNew.Runner)
		if !oNew.Succeeded() {
			t.Errorf("the newer commit was not admitted:\n%s", oNew)
		}
		if !oOld.Succeeded() && !strings.Contains(plainTrace(oOld.Trace), "Failed check: rollback") {
			t.Errorf("the older commit neither ran nor was refused as a rollback:\n%s", oOld)
		}
		for _, h := range []*writEnv{a, b} {
			if got := entryCommit(h.marks(t)[0], entry); got != head {
				t.Errorf("fleet mark for %s read on %s: %s, want %s", entry, h.Config, got, head)
			}
		}
	})

	t.Run("one member killed: jobs go on", func(t *testing.T) {
		cluster.Kill(2)
		defer func() { _ = cluster.Restart(2) }()
		// If member 2 led, the two others first elect a leader (a
		// randomized 1-2 s election timeout, again after a split vote),
		// which a loaded host can stretch past a request's timeout; the
		// claim here is that jobs go on with a member down.
		if err := cluster.WaitHealthy(time.Minute); err != nil {
			t.Fatal(err)
		}
		p := f.LegitPayload()
		setSha(p, head)
		expect(t, admit, f, a, on(ctx, w, a, p))
	})

	t.Run("quorum lost: fail closed, then recover", func(t *testing.T) {
		if err := cluster.WaitHealthy(time.Minute); err != nil {
			t.Fatal(err)
		}
		// A host configured with fallback = "local" (documented as weaker)
		// has run a job before the outage.
		fb := newHost(t, a, cluster, "host-fallback")
		cfg := readConfig(t, fb.Config)
		cfg["state"].(map[string]any)["fallback"] = "local"
		writeConfig(t, fb.Config, cfg)
		before := f.LegitPayload()
		setSha(before, head)
		expect(t, admit, f, fb, on(ctx, w, fb, before))

		cluster.Kill(0)
		cluster.Kill(1)
		p := f.LegitPayload()
		setSha(p, head)
		expect(t, undecided("fleet state store", ""), f, a, on(ctx, w, a, p))
		// The fallback host decides on its own state, and says so.
		during := f.LegitPayload()
		setSha(during, head)
		o := on(ctx, w, fb, during)
		expect(t, admit, f, fb, o)
		if !strings.Contains(plainTrace(o.Trace), "deciding on this host's local state alone") {
			t.Errorf("the fallback host's job log does not say it decided without the store:\n%s", o)
		}
		for i := range 2 {
			if err := cluster.Restart(i); err != nil {
				t.Fatal(err)
			}
		}
		if err := cluster.WaitHealthy(time.Minute); err != nil {
			t.Fatalf("%v\n%s", err, cluster.Logs())
		}
		q := f.LegitPayload()
		setSha(q, head)
		expect(t, admit, f, a, on(ctx, w, a, q))
	})

	t.Run("a host that joins late starts from the fleet's marks", func(t *testing.T) {
		late := newHost(t, a, cluster, "host-late")
		m := late.marks(t)
		if len(m) != 2 || m[0].Allowlist == nil || m[0].Allowlist.Version != 7 || entryCommit(m[0], entry) != head {
			t.Fatalf("the late host does not see the fleet's marks: %+v", m)
		}
		if entryCommit(m[1], entry) != "" {
			t.Fatalf("the late host has marks of its own before any job: %+v", m[1])
		}
		p := f.LegitPayload()
		setSha(p, f.Hist.Head)
		expect(t, refuse("rollback", "this looks like a rollback"), f, late, on(ctx, w, late, p))
		q := f.LegitPayload()
		setSha(q, head)
		expect(t, admit, f, late, on(ctx, w, late, q))
		if got := entryCommit(late.marks(t)[1], entry); got != head {
			t.Fatalf("the late host's own floor after its first job: %q, want %s", got, head)
		}
	})
	t.Logf("fleet store after the run: %s", fmt.Sprint(a.marks(t)[0].Entries))
}
