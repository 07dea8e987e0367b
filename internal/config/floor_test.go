package config

import (
	"strings"
	"testing"
)

func TestFloor(t *testing.T) {
	sha := strings.Repeat("ab", 20)
	c, err := Parse([]byte(strings.Replace(minimal, "[allowlist]", "[allowlist]\nmin_version = 7\nstart_commit = \""+sha+"\"", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Allowlist.MinVersion != 7 || c.Allowlist.StartCommit != sha {
		t.Fatalf("floor not read: %+v", c.Allowlist)
	}
	c, err = Parse([]byte(minimal))
	if err != nil || c.Allowlist.MinVersion != 0 || c.Allowlist.StartCommit != "" {
		t.Fatalf("default floor: %v %+v", err, c)
	}
	for text, want := range map[string]string{
		"min_version = -1":                                "allowlist.min_version -1",
		"min_version = \"7\"":                             "min_version",
		"start_commit = \"abc\"":                          "allowlist.start_commit \"abc\"",
		"start_commit = \"" + strings.ToUpper(sha) + "\"": "lower-case",
		"start_commit = \"main\"":                         "full commit id",
	} {
		_, err := Parse([]byte(strings.Replace(minimal, "[allowlist]", "[allowlist]\n"+text, 1)))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one mentioning %q", text, err, want)
		}
	}
}
