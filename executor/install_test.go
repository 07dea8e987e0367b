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
