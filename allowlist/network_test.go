package allowlist

import (
	"strings"
	"testing"
)

// The sandbox's network choice is signed in the entry: it parses, survives
// a marshal round trip, and a change to it shows in the diff reviewers see.
func TestDefinitionNetwork(t *testing.T) {
	t.Parallel()
	doc := strings.Join(addAfter(18, "      network: none")(append([]string{}, baseLines...)), "\n") + "\n"
	a, err := Parse(FileName, []byte(doc), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Jobs[0].Definition.Network; got != "none" {
		t.Fatalf("network %q, want none", got)
	}
	out, err := MarshalEntry(a.Jobs[0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "      network: none\n") {
		t.Fatalf("marshalled entry lacks the network:\n%s", out)
	}
	b, err := Parse(FileName, []byte(strings.Join(baseLines, "\n")+"\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if b.Jobs[0].Definition.Network != "" {
		t.Fatal("an entry without network has one")
	}
	var found bool
	for _, c := range entryChanges(b.Jobs[0], a.Jobs[0]) {
		if c.Field == "definition.network" && c.New == "none" {
			found = true
		}
	}
	if !found {
		t.Error("the diff does not show the network change")
	}
}
