package companion

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocsFlagsExist keeps docs/companion.md honest: every flag a
// command's section names is one the binary's help for that command lists.
func TestDocsFlagsExist(t *testing.T) {
	t.Parallel()
	writ := writBinary(t)
	doc, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "companion.md"))
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]string{}
	cur := ""
	for _, l := range strings.Split(string(doc), "\n") {
		if strings.HasPrefix(l, "## ") {
			cur = l
		}
		sections[cur] += l + "\n"
	}
	flagRE := regexp.MustCompile("`(--[a-z][a-z-]*)")
	for heading, cmd := range map[string]string{
		"## `writ propose`":       "propose",
		"## `writ review`":        "review",
		"## `writ reconcile`":     "reconcile",
		"## Connecting to GitLab": "propose",
	} {
		text, ok := sections[heading]
		if !ok {
			t.Fatalf("docs/companion.md has no section %q", heading)
		}
		out, err := exec.Command(writ, cmd, "--help").CombinedOutput()
		if err != nil {
			t.Fatalf("writ %s --help: %v\n%s", cmd, err, out)
		}
		for _, m := range flagRE.FindAllStringSubmatch(text, -1) {
			if !strings.Contains(string(out), m[1]+"=") && !regexp.MustCompile(regexp.QuoteMeta(m[1])+`\b`).Match(out) {
				t.Errorf("%s names %s, which writ %s --help does not list", heading, m[1], cmd)
			}
		}
	}
}
