package executor

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/internal/config"
	"gitlab.com/writ-ci/writ/internal/testkeys"
)

// BenchmarkAdmissionExtraSource is the admission decision of a job whose
// entry names its settings submodule under source.extra (reading the
// gitlink, fetching and verifying the settings commit, from warm mirrors)
// against the same job without it, measured alternately in one run; ratio
// is with/without.
func BenchmarkAdmissionExtraSource(b *testing.B) {
	ctx := context.Background()
	dev := testkeys.SSHKey(b, "dev@example.com")
	settings := testkeys.GitRepo(b)
	sh := settings.Commit(b, map[string]string{"prod.tfvars": "region = x\n"}, "settings", dev)
	app := testkeys.GitRepo(b)
	app.Commit(b, map[string]string{"README.md": "x"}, "one", dev)
	app.Gitlink(b, "settings", sh)
	head := app.Commit(b, map[string]string{"main.go": "package main"}, "two", dev)
	cfg, err := config.Parse([]byte("environment = \"prod\"\n[allowlist]\nurl = \"file:///x\"\nidentity = \"test/allowlist\"\n[trust]\nssh_allowed_signers = \"/x\"\n"))
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	cfg.Paths.Cache = filepath.Join(dir, "cache")
	opts := map[bool]Options{}
	for _, extra := range []bool{false, true} {
		s := entrySpec{Name: "app-build", Project: "group/app", Job: "build", Envs: []string{"prod"}, Refs: []string{"refs/heads/main"},
			Script: []string{"make"}, Vars: []string{"GREETING: {value: hello}"}, Repo: "file://" + app.Path, Signers: []string{"devs"}, Mode: "commit"}
		if extra {
			s.SourceExtra = []string{"extra:", "  - path: settings", "    ref: refs/heads/main", "    submodule: true",
				"    repository: " + q("file://"+settings.Path), "    signers: [devs]", "    mode: commit"}
		}
		yaml := "schema: writ/v2\nrepository: test/allowlist\nversion: 7\nexpires: 2099-01-01T00:00:00Z\n" +
			fmt.Sprintf("signers:\n  devs:\n    ssh:\n      - %q\njobs:\n", dev.AllowedSignersLine("")) + s.render()
		acc, err := acceptedFrom(dir, []byte(yaml))
		if err != nil {
			b.Fatal(err)
		}
		c := *cfg
		c.Paths.State = filepath.Join(dir, fmt.Sprint("state", extra))
		opts[extra] = Options{Config: &c, Allowlist: staticSource{acc}}.withDefaults()
	}
	payload := makePayload(b, 1, head, []string{"make"})
	decide := func(o Options) time.Duration {
		start := time.Now()
		d, _, err := o.decide(ctx, payload, false)
		if err != nil || !d.Admitted {
			b.Fatalf("not admitted: %v %+v", err, d.Failures)
		}
		return time.Since(start)
	}
	decide(opts[false]) // warm the mirrors
	decide(opts[true])
	var plain, with time.Duration
	b.ResetTimer()
	for b.Loop() {
		plain += decide(opts[false])
		with += decide(opts[true])
	}
	n := float64(b.N)
	b.ReportMetric(float64(plain.Nanoseconds())/n, "ns/plain")
	b.ReportMetric(float64(with.Nanoseconds())/n, "ns/extra")
	b.ReportMetric(float64(with)/float64(plain), "ratio")
}
