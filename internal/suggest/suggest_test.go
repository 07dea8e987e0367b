package suggest

import "testing"

func TestClosest(t *testing.T) {
	keys := []string{"environment", "allowlist", "signers", "jobs"}
	for _, c := range []struct{ in, want string }{
		{"enviroment", "environment"},
		{"job", "jobs"},
		{"signer", "signers"},
		{"zzzzzz", ""},
		{"", ""},
	} {
		if got := Closest(c.in, keys, 3); got != c.want {
			t.Errorf("Closest(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	if d := EditDistance("kitten", "sitting", 10); d != 3 {
		t.Errorf("EditDistance = %d, want 3", d)
	}
	if d := EditDistance("kitten", "sitting", 2); d != 2 {
		t.Errorf("bounded EditDistance = %d, want 2", d)
	}
}
