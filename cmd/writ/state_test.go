package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gitlab.com/writ-ci/writ/executor"
	"gitlab.com/writ-ci/writ/internal/audit"
	"gitlab.com/writ-ci/writ/internal/state"
)

// TestStateRepair: corrupt state files are reported by `writ state show`,
// and `writ state repair` rebuilds them from the audit log (never a
// silent reset of a high-water mark).
func TestStateRepair(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	writeFile(t, cfg, fmt.Sprintf(`environment = "production"
[allowlist]
url = "https://gitlab.example.com/acme/deploy-allowlist.git"
identity = "acme/deploy-allowlist"
[trust]
ssh_allowed_signers = "allowed_signers"
[paths]
state = %q
cache = %q
audit = %q
`, filepath.Join(dir, "state"), filepath.Join(dir, "cache"), filepath.Join(dir, "audit.log")))
	log := audit.Open(filepath.Join(dir, "audit.log"))
	commit := strings.Repeat("ab", 20)
	src := strings.Repeat("cd", 20)
	for _, r := range []audit.Record{
		{Event: "allowlist-accept", Env: "production", Fields: map[string]any{"in_force_version": 12, "in_force_commit": commit, "in_force_digest": "feed"}},
		{Event: "admit", Job: "77", Env: "production", Fields: map[string]any{"entry": "deploy", "sha": src, "repository": "https://git.example/app.git", "source_mode": "commit"}},
	} {
		if _, err := log.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	entry := filepath.Join(dir, "state", "entries", state.EntryKey("deploy")+".json")
	writeFile(t, filepath.Join(dir, "state", "allowlist-state.json"), `{"version": 12, "comm`)
	writeFile(t, entry, "\x00\x00\x00")

	out, code := writ(t, "--config", cfg, "state", "show")
	if code != 1 || !strings.Contains(out, "PROBLEM") || !strings.Contains(out, "writ state repair") {
		t.Fatalf("show with corrupt state: exit %d\n%s", code, out)
	}
	out, code = writ(t, "--config", cfg, "state", "repair")
	if code != 0 || strings.Count(out, "rebuilt from the audit log") != 2 {
		t.Fatalf("repair: exit %d\n%s", code, out)
	}
	out, code = writ(t, "--config", cfg, "state", "show", "-o", "json")
	var marks []state.Marks
	if code != 0 || json.Unmarshal([]byte(out), &marks) != nil || len(marks) != 1 {
		t.Fatalf("show -o json: exit %d\n%s", code, out)
	}
	m := marks[0]
	if m.Allowlist == nil || m.Allowlist.Version != 12 || m.Allowlist.Commit != commit ||
		len(m.Entries) != 1 || m.Entries[0].Commit != src || m.Entries[0].Repository != "https://git.example/app.git" {
		t.Fatalf("repaired state: %+v %+v", m, m.Allowlist)
	}
	if aside, _ := filepath.Glob(filepath.Join(dir, "state", "allowlist-state.json.corrupt-*")); len(aside) != 1 {
		t.Fatalf("the corrupt file was not kept aside: %v", aside)
	}
}

// TestStateCommandsInDocs: every `writ state …` command and flag the fleet
// profile names exists in the binary.
func TestStateCommandsInDocs(t *testing.T) {
	doc, err := os.ReadFile("../../docs/install.md")
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, m := range regexp.MustCompile("`writ state ([a-z]+)((?: -[-a-z]+(?: [a-z]+)?)*)`").FindAllStringSubmatch(string(doc), -1) {
		seen++
		args := []string{"state", m[1]}
		args = append(args, strings.Fields(m[2])...)
		out, code := writ(t, append(args, "--help")...)
		if code != 0 {
			t.Errorf("docs name `writ state %s%s`, which the binary does not know (exit %d):\n%s", m[1], m[2], code, out)
		}
	}
	if seen < 4 {
		t.Fatalf("found %d `writ state` commands in docs/install.md, want show, export, migrate, repair", seen)
	}
}

// TestStateRepairExtraSources: the mark of an entry's extra source is
// rebuilt from the "sources" of its last admission record.
func TestStateRepairExtraSources(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	writeFile(t, cfg, fmt.Sprintf(`environment = "production"
[allowlist]
url = "https://gitlab.example.com/acme/deploy-allowlist.git"
identity = "acme/deploy-allowlist"
[trust]
ssh_allowed_signers = "allowed_signers"
[paths]
state = %q
cache = %q
audit = %q
`, filepath.Join(dir, "state"), filepath.Join(dir, "cache"), filepath.Join(dir, "audit.log")))
	log := audit.Open(filepath.Join(dir, "audit.log"))
	settings := strings.Repeat("ef", 20)
	if _, err := log.Append(context.Background(), audit.Record{Event: "admit", Job: "78", Env: "production", Fields: map[string]any{
		"entry": "deploy", "sha": strings.Repeat("cd", 20), "repository": "https://git.example/app.git", "source_mode": "commit",
		"sources": []map[string]any{{"path": "settings", "repository": "https://git.example/settings.git", "ref": "refs/heads/main",
			"mode": "commit", "commit": settings, "signer": "ssh SHA256:x", "submodule": true}},
	}}); err != nil {
		t.Fatal(err)
	}
	name := executor.ExtraSourceMark("deploy", "settings")
	writeFile(t, filepath.Join(dir, "state", "entries", state.EntryKey(name)+".json"), "\x00")
	out, code := writ(t, "--config", cfg, "state", "repair")
	if code != 0 || !strings.Contains(out, `rebuilt from the audit log (entry "deploy source.extra settings" at `+settings+")") {
		t.Fatalf("repair: exit %d\n%s", code, out)
	}
	e, err := state.NewLocal(filepath.Join(dir, "state")).Entry(context.Background(), name)
	if err != nil || e.Last == nil || e.Last.Commit != settings || e.Last.Repository != "https://git.example/settings.git" || e.Last.Mode != "commit" {
		t.Fatalf("repaired mark %+v %v", e.Last, err)
	}
}
