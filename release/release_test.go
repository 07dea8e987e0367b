package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestDist builds the release for this machine's platform once, then
// checks what an operator relies on: the checksums' signature verifies
// (and fails on a changed file), the SBOM lists what the binary links, the
// packages are reproducible, and the .deb, unpacked into a scratch root
// without a container, lays out writ's account-owned directories and
// passes writ's own preflight.
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
	for _, want := range []string{"writ_0.1.0-test_linux_" + runtime.GOARCH, ".cdx.json", ".deb", ".rpm", "SHA256SUMS", bundleName, "release-key.pub"} {
		if !strings.Contains(names, want) {
			t.Fatalf("artifacts %s lack %s", names, want)
		}
	}
	pub := filepath.Join(out, "release-key.pub")

	t.Run("signature", func(t *testing.T) {
		if n, err := VerifyDir(out, pub); err != nil || n != 4 {
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
	})

	t.Run("reproducible", func(t *testing.T) {
		again := filepath.Join(t.TempDir(), "again")
		os.MkdirAll(again, 0o755)
		for _, format := range []string{"deb", "rpm"} {
			name, err := writePackage(Options{Src: "..", Out: again}, r, bin, runtime.GOARCH, format)
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

// checkDeb checks the package's ownership and modes from its listing, then
// unpacks it into a scratch root and runs the packaged writ's preflight.
func checkDeb(t *testing.T, deb, version string) {
	listing := run(t, "dpkg-deb", "--contents", deb)
	for _, want := range []string{
		"-rwxr-xr-x root/root", "./usr/bin/writ",
		"drwxr-x--- root/writ", "./etc/writ/\n",
		"-rw-r----- root/writ", "./etc/writ/config.toml.example",
		"drwx--x--x writ/writ", "./var/lib/writ/\n", "./var/lib/writ/builds/\n",
		"drwx------ writ/writ", "./var/cache/writ/\n",
		"drwxr-x--- writ/writ", "./var/log/writ/\n",
		"./usr/lib/systemd/system/gitlab-runner.service.d/writ.conf",
	} {
		if !strings.Contains(listing, want) {
			t.Errorf("package listing lacks %q:\n%s", want, listing)
		}
	}
	for _, line := range strings.Split(listing, "\n") {
		if strings.Contains(line, "writ/") && strings.Contains(line, "./var/") && !strings.Contains(line, "writ/writ") {
			t.Errorf("a directory of writ's state is not writ's: %s", line)
		}
	}
	control := run(t, "dpkg-deb", "--info", deb)
	for _, want := range []string{"preinst", "postinst", "Package: writ", "Version: 0.1.0~test"} {
		if !strings.Contains(control, want) {
			t.Errorf("control lacks %q:\n%s", want, control)
		}
	}

	// The maintainer scripts are valid sh and create both accounts.
	ctrl := t.TempDir()
	run(t, "dpkg-deb", "-e", deb, ctrl)
	for _, script := range []string{"preinst", "postinst"} {
		run(t, "sh", "-n", filepath.Join(ctrl, script))
	}
	if pre, _ := os.ReadFile(filepath.Join(ctrl, "preinst")); !strings.Contains(string(pre), "useradd --system --gid writ ") ||
		!strings.Contains(string(pre), "useradd --system --gid writ-job ") {
		t.Errorf("preinst does not create writ and writ-job:\n%s", pre)
	}
	if conf, _ := os.ReadFile(filepath.Join(ctrl, "conffiles")); !strings.Contains(string(conf), "/etc/writ/config.toml.example") {
		t.Errorf("conffiles: %s", conf)
	}

	root := t.TempDir()
	run(t, "dpkg-deb", "-x", deb, root)
	writ := filepath.Join(root, "usr/bin/writ")
	var v struct{ Version, Commit string }
	if err := json.Unmarshal([]byte(run(t, writ, "version", "-o", "json")), &v); err != nil || v.Version != version || len(v.Commit) != 40 {
		t.Fatalf("packaged writ version: %+v %v", v, err)
	}

	// The packaged example config, moved into the scratch root, with a
	// trust root: the preflight finds writ's directories as the package
	// made them.
	example, err := os.ReadFile(filepath.Join(root, "etc/writ/config.toml.example"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer(`"/etc/`, `"`+root+`/etc/`, `"/var/`, `"`+root+`/var/`).Replace(string(example))
	cfgPath := filepath.Join(root, "etc/writ/config.toml")
	os.WriteFile(cfgPath, []byte(cfg), 0o640)
	os.WriteFile(filepath.Join(root, "etc/writ/allowed_signers"),
		[]byte("alice@example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAII7/ukhcDAZ7RN+3fk8hPuQX7Os85OvecKZrC2nyG/dX\n"), 0o644)
	report, code := runCode(t, writ, "--config", cfgPath, "config", "check", "-o", "json")
	var rep struct {
		Checks []struct{ Check, Level, Detail string }
	}
	if err := json.Unmarshal([]byte(report), &rep); err != nil {
		t.Fatalf("config check: %v\n%s", err, report)
	}
	for _, c := range rep.Checks {
		switch {
		case c.Check == "job.user":
			// The scratch root has no writ-job account; a real install does.
			if _, err := exec.Command("id", "writ-job").Output(); err != nil && c.Level != "error" {
				t.Errorf("missing writ-job account not reported: %+v", c)
			}
		case c.Level != "ok":
			t.Errorf("preflight of the packaged layout: %+v", c)
		}
	}
	if code != 0 && code != 78 {
		t.Errorf("config check exit %d\n%s", code, report)
	}
	// The runner's driver line names the version.
	var drv struct {
		Driver struct{ Name, Version string } `json:"driver"`
	}
	if err := json.Unmarshal([]byte(run(t, writ, "--config", cfgPath, "executor", "config")), &drv); err != nil ||
		drv.Driver.Name != "writ" || !strings.HasPrefix(drv.Driver.Version, version+" (commit ") {
		t.Errorf("executor config driver: %+v %v", drv, err)
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
