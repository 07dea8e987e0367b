package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const minimal = `
environment = "production"
[allowlist]
url = "https://gitlab.example.com/ops/allowlist.git"
identity = "ops/allowlist"
[trust]
ssh_allowed_signers = "allowed_signers"
`

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.Mode != Enforce || c.Allowlist.Branch != "main" || c.Trust.Threshold != 1 ||
		c.Job.Shell != "/bin/bash" || c.Allowlist.FetchTimeout.Duration != 30*time.Second ||
		c.Paths.Builds != "/var/lib/writ/builds" || c.Job.MaxPayloadBytes != 4<<20 ||
		c.Fetch != (Fetch{MaxBytes: 1 << 30, MaxObjects: 1_000_000, MaxObjectBytes: 100 << 20, MaxMirrorBytes: 4 << 30}) {
		t.Fatalf("defaults not applied: %+v", c)
	}
}

func TestLoadResolvesRelativePaths(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(p, []byte(minimal+"[paths]\nstate = \"state\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Trust.SSHAllowedSigners != filepath.Join(dir, "allowed_signers") || c.Paths.State != filepath.Join(dir, "state") {
		t.Fatalf("relative paths not resolved: %q %q", c.Trust.SSHAllowedSigners, c.Paths.State)
	}
}

func TestRejects(t *testing.T) {
	cases := map[string]struct{ text, want string }{
		"unknown key":        {minimal + "\n[trust.extra]\nx = 1\n", "unknown keys: trust.extra"},
		"typo top level":     {"enviroment = \"x\"\n" + minimal, "unknown keys: enviroment"},
		"bad mode":           {"mode = \"permissive\"\n" + minimal, `mode "permissive"`},
		"no url":             {strings.Replace(minimal, `url = "https://gitlab.example.com/ops/allowlist.git"`, "", 1), "allowlist.url is required"},
		"no identity":        {strings.Replace(minimal, `identity = "ops/allowlist"`, "", 1), "allowlist.identity is required"},
		"no root signers":    {strings.Replace(minimal, `ssh_allowed_signers = "allowed_signers"`, "", 1), "openpgp_keyring or ssh_allowed_signers"},
		"bad threshold":      {strings.Replace(minimal, "[trust]", "[trust]\nthreshold = -1", 1), "threshold must be at least 1"},
		"bad env name":       {strings.Replace(minimal, `"production"`, `"prod uction"`, 1), `environment "prod uction"`},
		"token auth no file": {strings.Replace(minimal, "[allowlist]", "[allowlist]\nauth = \"token-file\"", 1), "needs allowlist.token_file"},
		"bad duration":       {strings.Replace(minimal, "[allowlist]", "[allowlist]\nfetch_timeout = \"soon\"", 1), "soon"},
		"bad job env":        {minimal + "\n[job.env]\n\"A-B\" = \"x\"\n", `job.env key "A-B"`},
		"bad job user":       {minimal + "\n[job]\nuser = \"../root\"\n", `job.user "../root"`},
		"tiny fetch limit":   {minimal + "\n[fetch]\nmax_object_bytes = 10\n", "fetch.max_bytes and fetch.max_object_bytes must be at least"},
		"mirror below fetch": {minimal + "\n[fetch]\nmax_mirror_bytes = 1073741824\n", "fetch.max_mirror_bytes must be at least twice"},
		"fetch typo":         {minimal + "\n[fetch]\nmax_byte = 1\n", "unknown keys: fetch.max_byte"},
		"server url path":    {minimal + "\n[job]\nserver_url = \"https://gitlab.example.com/group\"\n", "must have no path"},
		"server url creds":   {minimal + "\n[job]\nserver_url = \"https://u:p@gitlab.example.com\"\n", "no credentials"},
		"server url scheme":  {minimal + "\n[job]\nserver_url = \"gitlab.example.com\"\n", "must start with https://"},
		"server url slash":   {minimal + "\n[job]\nserver_url = \"https://gitlab.example.com/\"\n", "must not end with /"},
		"gitlab url query":   {minimal + "\n[gitlab]\nurl = \"https://gitlab.example.com?\"\n", "no credentials, query or fragment"},
		"gitlab url no host": {minimal + "\n[gitlab]\nurl = \"https://:443\"\n", "names no host"},
		"gitlab url http":    {minimal + "\n[gitlab]\nurl = \"http://gitlab.example.com\"\n", "http:// is allowed only on a loopback address"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tc.text))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	t.Setenv(EnvVar, "/from/env.toml")
	if got := Resolve("/from/flag.toml"); got != "/from/flag.toml" {
		t.Fatal(got)
	}
	if got := Resolve(""); got != "/from/env.toml" {
		t.Fatal(got)
	}
	t.Setenv(EnvVar, "")
	if got := Resolve(""); got != DefaultPath {
		t.Fatal(got)
	}
}

// TestInstallDocExample keeps the complete example of docs/install.md
// valid, with the [fetch] defaults it shows.
func TestInstallDocExample(t *testing.T) {
	data, err := os.ReadFile("../../docs/install.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "complete example:\n\n```toml\n")
	if !ok {
		t.Fatal("docs/install.md has no complete example")
	}
	example, _, _ := strings.Cut(rest, "```")
	c, err := Parse([]byte(example))
	if err != nil {
		t.Fatalf("docs/install.md's example: %v", err)
	}
	d, _ := Parse([]byte(minimal))
	if c.Fetch != d.Fetch {
		t.Fatalf("the example's [fetch] %+v is not the defaults %+v", c.Fetch, d.Fetch)
	}
}
