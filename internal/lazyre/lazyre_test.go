package lazyre

import "testing"

func TestLazy(t *testing.T) {
	r := New(`^a([0-9]+)$`)
	if !r.MatchString("a12") || r.MatchString("b12") {
		t.Error("MatchString")
	}
	if m := r.FindStringSubmatch("a7"); len(m) != 2 || m[1] != "7" {
		t.Errorf("FindStringSubmatch = %q", m)
	}
	if got := New(`[^a-z]+`).ReplaceAllString("a-b_c", "-"); got != "a-b-c" {
		t.Errorf("ReplaceAllString = %q", got)
	}
	bad := New(`(`)
	defer func() {
		if recover() == nil {
			t.Error("a bad expression did not panic at first use")
		}
	}()
	bad.MatchString("x")
}
