package executor

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gitlab.com/writ-ci/writ/internal/config"
)

// installLayout is the shell block docs/install.md marks as the install
// layout.
func installLayout(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile("../docs/install.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "<!-- install-layout -->\n```sh\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("docs/install.md has no install-layout block")
	}
	return block
}

// TestInstallLayout runs docs/install.md's layout under a scratch root
// (each absolute path prefixed) and checks it the way config_exec does: it
// must pass, and each way of weakening it must be named with its fix.
func TestInstallLayout(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the documented layout is made by root")
	}
	t.Parallel()
	root := t.TempDir()
	src := t.TempDir()
	for _, f := range []string{"writ", "writ-sandbox-init", "config.toml", "root-keys.asc"} {
		if err := os.WriteFile(filepath.Join(src, f), []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	script := installLayout(t)
	for _, dir := range []string{"/usr/local/bin/", "/etc/writ", "/var/lib/writ", "/var/cache/writ", "/var/log/writ"} {
		script = strings.ReplaceAll(script, " "+dir, " "+root+dir)
	}
	if err := os.MkdirAll(filepath.Join(root, "usr/local/bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-euc", script)
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the documented layout does not install: %v\n%s\n%s", err, out, script)
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(`environment = "prod"
[allowlist]
url = "file:///nonexistent"
identity = "x"
[trust]
openpgp_keyring = %q
[paths]
state = %q
cache = %q
audit = %q
builds = %q
[sandbox]
uid_first = 2003000000
uid_count = 8
`, root+"/etc/writ/root-keys.asc", root+"/var/lib/writ", root+"/var/cache/writ", root+"/var/log/writ/audit.log", root+"/var/lib/writ/builds")))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Path = root + "/etc/writ/config.toml"
	if problems := CheckHost(context.Background(), Options{Config: cfg}); len(problems) > 0 {
		t.Fatalf("the documented layout fails the check: %v", problems)
	}
	for _, c := range []struct {
		path string
		mode os.FileMode
		fix  string
	}{
		{root + "/etc/writ/config.toml", 0o620, "chmod go-w " + root + "/etc/writ/config.toml"},
		{root + "/etc/writ", 0o777, "chmod go-w " + root + "/etc/writ"},
		{root + "/var/lib/writ", 0o755, "chmod 0700 " + root + "/var/lib/writ"},
		{root + "/var/log/writ", 0o750, "chmod 0700 " + root + "/var/log/writ"},
	} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(c.path, c.mode); err != nil {
			t.Fatal(err)
		}
		problems := CheckHost(context.Background(), Options{Config: cfg})
		found := false
		for _, p := range problems {
			found = found || p.Path == c.path && p.Fix == c.fix
		}
		if !found {
			t.Errorf("mode %04o on %s: want the fix %q, got %v", c.mode, c.path, c.fix, problems)
		}
		if err := os.Chmod(c.path, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	// The example in docs/install.md is what config_exec prints.
	if err := os.Chmod(cfg.Path, 0o664); err != nil {
		t.Fatal(err)
	}
	doc, _ := os.ReadFile("../docs/install.md")
	for _, p := range CheckHost(context.Background(), Options{Config: cfg}) {
		line := strings.ReplaceAll("- "+p.String(), root, "")
		if !strings.Contains(string(doc), "writ refuses to run jobs on this host:\n"+line+"\n") {
			t.Errorf("docs/install.md's example is not what writ prints:\n%s", line)
		}
	}
	if err := os.Chmod(cfg.Path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(root+"/etc/writ/root-keys.asc", 1234, 1234); err != nil {
		t.Fatal(err)
	}
	problems := CheckHost(context.Background(), Options{Config: cfg})
	if len(problems) != 1 || problems[0].Fix != "chown 0 "+root+"/etc/writ/root-keys.asc" {
		t.Errorf("a key file owned by another user: %v", problems)
	}
}

// The probe's result is reused only under the key it was made for: a
// marker with another key (another boot, writ, init or policy) makes
// config_exec probe again; and a replaced binary gets a new stamp.
func TestProbeMarkerKeyed(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the sandbox needs root")
	}
	dir := t.TempDir()
	cfg := &config.Config{}
	cfg.Paths.State = filepath.Join(dir, "state")
	cfg.Sandbox.UIDFirst, cfg.Sandbox.UIDCount = 2003000000, 8
	o := Options{Config: cfg}
	o = o.withDefaults()
	if err := o.probeSandbox(context.Background()); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(cfg.Paths.State, "sandbox", "probe-ok")
	key, err := os.ReadFile(marker)
	if err != nil {
		t.Fatalf("no probe marker after a probe: %v", err)
	}
	if err := os.WriteFile(marker, []byte("stale"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := o.probeSandbox(context.Background()); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(marker); string(again) != string(key) {
		t.Errorf("a stale marker was trusted or not replaced: %q, want %q", again, key)
	}
	bin := filepath.Join(dir, "writ-sandbox-init")
	if err := os.WriteFile(bin, []byte("v1"), 0o755); err != nil {
		t.Fatal(err)
	}
	before := fileStamp(bin)
	if err := os.WriteFile(bin+".new", []byte("v2"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(bin+".new", bin); err != nil {
		t.Fatal(err)
	}
	if after := fileStamp(bin); after == before || fileStamp(filepath.Join(dir, "absent")) != "-" {
		t.Errorf("fileStamp: %q before and %q after a replacement", before, after)
	}
}
