package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDist builds the release for this machine's platform once, then
// checks what an operator relies on: the checksums' signature verifies
// (and fails on a changed file), the SBOM lists what the binary links, the
// packages are reproducible, and the .deb, unpacked into a scratch root
// without a container, lays out the sandbox profile's root-owned
// directories of docs/install.md and passes writ's own preflight.
func TestDist(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb is not installed (scripts/deps.sh installs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	out := filepath.Join(t.TempDir(), "dist")
	const version = "v0.1.0-test"
	platform := "linux/" + runtime.GOARCH
	r, err := Build(ctx, Options{Src: "..", Out: out, Version: version, Platforms: []string{platform}})
	if err != nil {
		t.Fatal(err)
	}
	names := strings.Join(r.Artifacts, " ")
	for _, want := range []string{"writ_0.1.0-test_linux_" + runtime.GOARCH, "writ-sandbox-init_0.1.0-test_linux_" + runtime.GOARCH + ".cdx.json",
		".deb", ".rpm", "SHA256SUMS", bundleName, "release-key.pub"} {
		if !strings.Contains(names, want) {
			t.Fatalf("artifacts %s lack %s", names, want)
		}
	}
	pub := filepath.Join(out, "release-key.pub")

	t.Run("signature", func(t *testing.T) {
		// Two binaries, their SBOMs, the deb and the rpm.
		if n, err := VerifyDir(out, pub); err != nil || n != 6 {
			t.Fatalf("VerifyDir: %d, %v", n, err)
		}
		// Another key does not verify it.
		other := t.TempDir()
		if _, _, err := signChecksums(other, []byte("x"), "", new(bytes.Buffer)); err != nil {
			t.Fatal(err)
		}
		if _, err := VerifyDir(out, filepath.Join(other, "release-key.pub")); err == nil {
			t.Fatal("the release verifies with another key")
		}
		// A changed SHA256SUMS does not verify; a changed artifact does not match.
		sums, _ := os.ReadFile(filepath.Join(out, "SHA256SUMS"))
		bundle, _ := os.ReadFile(filepath.Join(out, bundleName))
		pubPEM, _ := os.ReadFile(pub)
		if err := VerifyBundle(append(sums, '\n'), bundle, pubPEM); err == nil {
			t.Fatal("a changed SHA256SUMS verifies")
		}
		cp := t.TempDir()
		copyDir(t, out, cp)
		deb := findOne(t, cp, ".deb")
		data, _ := os.ReadFile(deb)
		data[len(data)-1] ^= 1
		os.WriteFile(deb, data, 0o644)
		if _, err := VerifyDir(cp, pub); err == nil || !strings.Contains(err.Error(), "SHA256SUMS says") {
			t.Fatalf("a changed package passes: %v", err)
		}
	})

	bin := filepath.Join(out, "writ_0.1.0-test_linux_"+runtime.GOARCH)
	bins := binaries{Writ: bin, Init: filepath.Join(out, "writ-sandbox-init_0.1.0-test_linux_"+runtime.GOARCH)}
	t.Run("sbom", func(t *testing.T) {
		var bom struct {
			BOMFormat string `json:"bomFormat"`
			Metadata  struct {
				Timestamp string `json:"timestamp"`
				Component struct {
					Name, Version string
				} `json:"component"`
			} `json:"metadata"`
			Components []struct {
				Name, Version, Purl string
			} `json:"components"`
		}
		data, err := os.ReadFile(bin + ".cdx.json")
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &bom); err != nil {
			t.Fatal(err)
		}
		if bom.BOMFormat != "CycloneDX" || bom.Metadata.Component.Version != version || bom.Metadata.Timestamp != r.Epoch.Format(time.RFC3339) {
			t.Fatalf("SBOM metadata: %+v", bom.Metadata)
		}
		found := false
		for _, c := range bom.Components {
			found = found || (c.Name == "github.com/sigstore/sigstore-go" && c.Version == "v1.3.0" && c.Purl == "pkg:golang/github.com/sigstore/sigstore-go@v1.3.0")
			if strings.Contains(c.Name, "nfpm") || strings.Contains(c.Name, "cyclonedx") {
				t.Errorf("writ's SBOM lists the release tool's dependency %s", c.Name)
			}
		}
		if !found {
			t.Errorf("SBOM lacks sigstore-go v1.3.0 (%d components)", len(bom.Components))
		}
		if bom.Metadata.Component.Name != "writ" {
			t.Errorf("writ's SBOM names %q", bom.Metadata.Component.Name)
		}
		data, err = os.ReadFile(bins.Init + ".cdx.json")
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &bom); err != nil || bom.Metadata.Component.Name != "writ-sandbox-init" || bom.Metadata.Component.Version != version {
			t.Errorf("writ-sandbox-init's SBOM: %+v %v", bom.Metadata, err)
		}
	})

	t.Run("reproducible", func(t *testing.T) {
		again := filepath.Join(t.TempDir(), "again")
		os.MkdirAll(again, 0o755)
		for _, format := range []string{"deb", "rpm"} {
			name, err := writePackage(Options{Src: "..", Out: again}, r, bins, runtime.GOARCH, format)
			if err != nil {
				t.Fatal(err)
			}
			a, _ := os.ReadFile(filepath.Join(out, name))
			b, _ := os.ReadFile(filepath.Join(again, name))
			if !bytes.Equal(a, b) {
				t.Errorf("%s differs between two builds of the same input", name)
			}
		}
		if err := writeSBOM(bin, filepath.Join(again, "sbom.json"), r); err != nil {
			t.Fatal(err)
		}
		a, _ := os.ReadFile(bin + ".cdx.json")
		b, _ := os.ReadFile(filepath.Join(again, "sbom.json"))
		if !bytes.Equal(a, b) {
			t.Error("the SBOM differs between two runs")
		}
	})

	t.Run("deb", func(t *testing.T) { checkDeb(t, findOne(t, out, ".deb"), version) })
}

// checkDeb checks the package against docs/install.md's layout, its
// maintainer scripts and drop-in, then unpacks it into a scratch root and
// runs the packaged writ's own preflight against it.
func checkDeb(t *testing.T, deb, version string) {
	checkDebListing(t, deb)
	checkDebControl(t, deb, version)
	root := t.TempDir()
	run(t, "dpkg-deb", "-x", deb, root)
	checkPackagedWrit(t, root, version)
}

// docLayout reads the install layout block of docs/install.md (the lines
// under <!-- install-layout -->) as the package's paths and ls-style
// modes: the binaries go to /usr/bin instead of /usr/local/bin, and the
// package ships config.toml as config.toml.example. Paths the package
// does not ship (the operator's root keys) are left out.
func docLayout(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile("../docs/install.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(data), "<!-- install-layout -->\n```sh\n")
	block, _, _ = strings.Cut(block, "```")
	if !ok {
		t.Fatal("docs/install.md has no install-layout block")
	}
	want := map[string]string{}
	for _, line := range strings.Split(block, "\n") {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "install" {
			continue
		}
		var mode fs.FileMode
		dir := false
		for i := range f[:len(f)-1] {
			if f[i] == "-m" {
				m, err := strconv.ParseUint(f[i+1], 8, 32)
				if err != nil {
					t.Fatalf("install-layout: %q", line)
				}
				mode = fs.FileMode(m)
			}
			dir = dir || f[i] == "-d"
			if f[i] == "-o" && f[i+1] != "root" || f[i] == "-g" && f[i+1] != "root" {
				t.Fatalf("install-layout is not root's: %q", line)
			}
		}
		dst := strings.Replace(f[len(f)-1], "/usr/local/bin/", "/usr/bin/", 1)
		switch {
		case dst == "/etc/writ/config.toml":
			dst += ".example"
		case strings.HasSuffix(dst, ".asc"):
			continue
		}
		if dir {
			mode |= fs.ModeDir
			dst += "/"
		}
		want["."+dst] = mode.String()
	}
	if len(want) != 8 {
		t.Fatalf("install-layout block: %d paths the package ships, want 8: %v", len(want), want)
	}
	return want
}

// checkDebListing checks that every path of the package is root's and
// that writ's binaries, directories and example config have exactly the
// modes of docs/install.md.
func checkDebListing(t *testing.T, deb string) {
	listing := run(t, "dpkg-deb", "--contents", deb)
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(listing), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("listing line %q", line)
		}
		if f[1] != "root/root" {
			t.Errorf("not root's: %s", line)
		}
		got[f[len(f)-1]] = f[0]
	}
	want := docLayout(t)
	want["./usr/lib/systemd/system/gitlab-runner.service.d/writ.conf"] = "-rw-r--r--"
	for p, mode := range want {
		if got[p] != mode {
			t.Errorf("%s: %q in the package, docs/install.md says %q", p, got[p], mode)
		}
	}
	for p := range got {
		if strings.Contains(p, "shared-user") {
			t.Errorf("the package still ships the shared-user profile: %s", p)
		}
	}
}

// checkDebControl checks the control data: no pre-install script (the
// sandbox needs no accounts), a post-install script that is valid sh and
// creates none, the example config as a conffile, and a drop-in that
// runs the runner as root with the job cgroups delegated.
func checkDebControl(t *testing.T, deb, version string) {
	control := run(t, "dpkg-deb", "--info", deb)
	for _, want := range []string{"postinst", "Package: writ", "Version: " + strings.Replace(strings.TrimPrefix(version, "v"), "-", "~", 1)} {
		if !strings.Contains(control, want) {
			t.Errorf("control lacks %q:\n%s", want, control)
		}
	}
	ctrl := t.TempDir()
	run(t, "dpkg-deb", "-e", deb, ctrl)
	if _, err := os.Stat(filepath.Join(ctrl, "preinst")); err == nil {
		t.Error("the package has a preinst: the sandbox profile needs no accounts")
	}
	run(t, "sh", "-n", filepath.Join(ctrl, "postinst"))
	post, _ := os.ReadFile(filepath.Join(ctrl, "postinst"))
	if strings.Contains(string(post), "useradd") || strings.Contains(string(post), "groupadd") {
		t.Errorf("postinst creates accounts:\n%s", post)
	}
	if conf, _ := os.ReadFile(filepath.Join(ctrl, "conffiles")); !strings.Contains(string(conf), "/etc/writ/config.toml.example") {
		t.Errorf("conffiles: %s", conf)
	}
}

// checkPackagedWrit runs the packaged writ from the scratch root: its
// version, config check on the packaged example config, and executor
// config, the preflight the runner runs before every job.
func checkPackagedWrit(t *testing.T, root, version string) {
	dropIn, err := os.ReadFile(filepath.Join(root, "usr/lib/systemd/system/gitlab-runner.service.d/writ.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\nUser=root\n", "\nDelegate=yes\n", "\nKillMode=control-group\n", "\nUMask=0077\n"} {
		if !strings.Contains(string(dropIn), want) {
			t.Errorf("drop-in lacks %q:\n%s", want, dropIn)
		}
	}
	writ := filepath.Join(root, "usr/bin/writ")
	var v struct{ Version, Commit string }
	if err := json.Unmarshal([]byte(run(t, writ, "version", "-o", "json")), &v); err != nil || v.Version != version || len(v.Commit) != 40 {
		t.Fatalf("packaged writ version: %+v %v", v, err)
	}
	cfgPath := scratchConfig(t, root, "")
	checkConfig(t, writ, cfgPath, filepath.Join(root, "etc/writ/config.toml.example"))

	// The sandbox replaces job.user: the example must not set it, and a
	// config that does is refused with the migration message.
	refused := scratchConfig(t, root, "\n[job]\nuser = \"writ-job\"\n")
	if out, code := runCode(t, writ, "--config", refused, "config", "check"); code == 0 || !strings.Contains(out, "which replaces job.user; remove job.user") {
		t.Errorf("config check with job.user: exit %d\n%s", code, out)
	}
	checkExecutorConfig(t, writ, root, cfgPath, version)
}

// scratchConfig writes the packaged example config, its paths moved into
// the scratch root, plus extra, and a trust root for it.
func scratchConfig(t *testing.T, root, extra string) string {
	t.Helper()
	example, err := os.ReadFile(filepath.Join(root, "etc/writ/config.toml.example"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer(`"/etc/`, `"`+root+`/etc/`, `"/var/`, `"`+root+`/var/`).Replace(string(example)) + extra
	name := "config.toml"
	if extra != "" {
		name = "extra.toml"
	}
	cfgPath := filepath.Join(root, "etc/writ", name)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/writ/allowed_signers"),
		[]byte("alice@example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAII7/ukhcDAZ7RN+3fk8hPuQX7Os85OvecKZrC2nyG/dX\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfgPath
}

// checkConfig runs config check: every check passes on the packaged
// layout, and the example's commented [sandbox] lines are writ's defaults,
// exactly as writ prints its effective config.
func checkConfig(t *testing.T, writ, cfgPath, examplePath string) {
	report, code := runCode(t, writ, "--config", cfgPath, "config", "check", "-o", "json")
	var rep struct {
		Effective string `json:"effective_toml"`
		Checks    []struct{ Check, Level, Detail string }
	}
	if err := json.Unmarshal([]byte(report), &rep); err != nil {
		t.Fatalf("config check: %v\n%s", err, report)
	}
	for _, c := range rep.Checks {
		if c.Level != "ok" || c.Check == "job.user" {
			t.Errorf("preflight of the packaged layout: %+v", c)
		}
	}
	if code != 0 || len(rep.Checks) < 5 {
		t.Errorf("config check exit %d, %d checks\n%s", code, len(rep.Checks), report)
	}
	example, _ := os.ReadFile(examplePath)
	_, sandbox, ok := strings.Cut(string(example), "\n[sandbox]\n")
	if !ok || strings.Contains(string(example), "\n[job]") {
		t.Fatalf("example config: want a [sandbox] section and no [job]:\n%s", example)
	}
	defaults := 0
	for _, line := range strings.Split(sandbox, "\n") {
		if kv, ok := strings.CutPrefix(line, "# "); ok && strings.Contains(kv, " = ") {
			defaults++
			if !strings.Contains(rep.Effective, "\n"+kv+"\n") {
				t.Errorf("example's %q is not writ's default:\n%s", kv, rep.Effective)
			}
		}
	}
	if defaults < 9 {
		t.Errorf("example's [sandbox] shows %d defaults", defaults)
	}
}

// checkExecutorConfig runs executor config, which checks the host before
// every job (executor.CheckHost). As root the packaged layout passes it,
// sandbox probe included. Not as root, the scratch root is the test user's
// (which the preflight accepts as writ's own user) but no sandbox can be
// built: the one finding is exactly that. Either way, loosening one
// directory of the layout is caught, with its fix.
func checkExecutorConfig(t *testing.T, writ, root, cfgPath, version string) {
	out, code := runCode(t, writ, "--config", cfgPath, "executor", "config")
	if os.Geteuid() == 0 {
		var drv struct {
			Driver struct{ Name, Version string } `json:"driver"`
		}
		if err := json.Unmarshal([]byte(out), &drv); err != nil || code != 0 ||
			drv.Driver.Name != "writ" || !strings.HasPrefix(drv.Driver.Version, version+" (commit ") {
			t.Errorf("executor config as root on the packaged layout: exit %d, %+v %v\n%s", code, drv, err, out)
		}
	} else {
		want := fmt.Sprintf("writ refuses to run jobs on this host:\n- writ cannot contain jobs on this host: writ runs as uid %d: the sandbox needs root", os.Geteuid())
		if code == 0 || !strings.Contains(out, want) || strings.Count(out, "\n- ") != 1 {
			t.Errorf("executor config not as root: exit %d, want the one finding %q:\n%s", code, want, out)
		}
	}
	state := filepath.Join(root, "var/lib/writ")
	if err := os.Chmod(state, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(state, 0o700)
	out, code = runCode(t, writ, "--config", cfgPath, "executor", "config")
	if code == 0 || !strings.Contains(out, "- "+state+": mode 0755 lets group or others read writ's private state\n  fix: chmod 0700 "+state+"\n") {
		t.Errorf("executor config with %s 0755: exit %d\n%s", state, code, out)
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, code := runCode(t, name, args...)
	if code != 0 {
		t.Fatalf("%s %s: exit %d\n%s", name, strings.Join(args, " "), code, out)
	}
	return out
}

func runCode(t *testing.T, name string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return stdout.String() + stderr.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return stdout.String(), 0
}

func findOne(t *testing.T, dir, suffix string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "*"+suffix))
	if len(m) != 1 {
		t.Fatalf("%d files *%s in %s", len(m), suffix, dir)
	}
	return m[0]
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
