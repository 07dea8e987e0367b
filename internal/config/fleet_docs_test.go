package config

import (
	"os"
	"strings"
	"testing"
)

// TestFleetProfileDoc parses the fleet profile's example in
// docs/install.md, so the documented keys cannot drift from the schema.
func TestFleetProfileDoc(t *testing.T) {
	doc, err := os.ReadFile("../../docs/install.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(doc), "## Fleet profile")
	if !ok {
		t.Fatal("docs/install.md has no fleet profile section")
	}
	_, block, ok := strings.Cut(after, "```toml\n")
	block, _, ok2 := strings.Cut(block, "```")
	if !ok || !ok2 {
		t.Fatal("the fleet profile section has no toml example")
	}
	c, err := Parse([]byte(`environment = "prod"
[allowlist]
url = "https://gitlab.example.com/platform/allowlist.git"
identity = "gitlab.example.com/platform/allowlist"
[trust]
ssh_allowed_signers = "/etc/writ/allowed_signers"
` + block))
	if err != nil {
		t.Fatalf("the documented fleet profile does not parse: %v\n%s", err, block)
	}
	if c.State.Backend != "etcd" || len(c.State.Etcd.Endpoints) != 3 || c.State.Etcd.Prefix != "/writ/prod/" {
		t.Fatalf("parsed %+v", c.State)
	}
}

func TestStateConfig(t *testing.T) {
	base := `environment = "prod"
[allowlist]
url = "https://x/a.git"
identity = "x/a"
[trust]
ssh_allowed_signers = "/s"
`
	c, err := Parse([]byte(base))
	if err != nil || c.State.Backend != "local" || c.State.Fallback != "none" || c.State.Etcd.Prefix != "/writ/prod/" {
		t.Fatalf("defaults: %+v %v", c.State, err)
	}
	for _, bad := range []string{
		"[state]\nbackend = \"consul\"\n",
		"[state]\nbackend = \"etcd\"\n",
		"[state]\nbackend = \"etcd\"\n[state.etcd]\nendpoints = [\"http://127.0.0.1:2379\"]\nca_file = \"a\"\ncert_file = \"b\"\nkey_file = \"c\"\n",
		"[state]\nbackend = \"etcd\"\n[state.etcd]\nendpoints = [\"https://127.0.0.1:2379\"]\nca_file = \"a\"\n",
		"[state]\nfallback = \"yes\"\n",
		"[state]\nbackend = \"etcd\"\n[state.etcd]\nendpoints = [\"https://127.0.0.1:2379\"]\nca_file = \"a\"\ncert_file = \"b\"\nkey_file = \"c\"\nprefix = \"writ\"\n",
	} {
		if _, err := Parse([]byte(base + bad)); err == nil {
			t.Errorf("accepted:\n%s", bad)
		}
	}
}
