package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the generated blocks in docs/ (make docs)")

// generated replaces (or, without -update, checks) the block between
// <!-- BEGIN GENERATED: name --> and <!-- END GENERATED: name --> in a
// docs file.
func generated(t *testing.T, file, name, content string) {
	t.Helper()
	path := filepath.Join("..", "..", "docs", file)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	begin, end := "<!-- BEGIN GENERATED: "+name+" -->\n", "<!-- END GENERATED: "+name+" -->"
	i, j := strings.Index(string(data), begin), strings.Index(string(data), end)
	if i < 0 || j < i {
		t.Fatalf("docs/%s has no generated block %q", file, name)
	}
	cur := string(data[i+len(begin) : j])
	if cur == content {
		return
	}
	if !*update {
		t.Fatalf("docs/%s block %q differs from what the binary says (run `make docs`):\n--- docs\n%s\n--- binary\n%s", file, name, cur, content)
	}
	out := string(data[:i+len(begin)]) + content + string(data[j:])
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
}

func exitCodeTable() string {
	var b strings.Builder
	b.WriteString("| exit | outcome | meaning |\n|---|---|---|\n")
	for _, o := range outcomes {
		fmt.Fprintf(&b, "| %d | `%s` | %s |\n", o.Code, o.Name, o.Meaning)
	}
	return b.String()
}

func reporters() []reporter {
	return []reporter{&versionCmd{}, &checkCmd{}, &lintCmd{}, &verifyCmd{}, &diffCmd{}, &auditVerifyCmd{}, &auditShowCmd{}, &configCheckCmd{}, &reviewCmd{}, &proposeCmd{}, &reconcileCmd{}}
}

// TestDocsExitCodes: docs/operations.md carries the exit-code table the
// code uses, and names every JSON schema.
func TestDocsExitCodes(t *testing.T) {
	generated(t, "operations.md", "exit-codes", exitCodeTable())
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("`(writ/[a-z-]+/v[0-9]+)`").FindAllStringSubmatch(string(data), -1) {
		documented[m[1]] = true
	}
	for _, r := range reporters() {
		if !documented[r.schema()] {
			t.Errorf("docs/operations.md does not document JSON schema %s", r.schema())
		}
		delete(documented, r.schema())
	}
	for s := range documented {
		t.Errorf("docs/operations.md documents %s, which no command writes", s)
	}
}
