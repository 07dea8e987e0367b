package allowlist

import (
	"testing"
	"time"
)

func TestDescribeExpiry(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		expires time.Time
		want    string
	}{
		{time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), "expired 2525 days ago (2020-01-01T00:00:00Z)"},
		{now.AddDate(0, -1, 0), "expired 31 days ago (2026-10-30T12:00:00Z)"},
		{now, "expired 0 seconds ago (2026-11-30T12:00:00Z)"},
		{now.Add(5 * time.Hour), "expires in 5 hours (2026-11-30T17:00:00Z)"},
		{now.AddDate(0, 0, 12), "expires in 12 days (2026-12-12T12:00:00Z)"},
	} {
		if got := DescribeExpiry(c.expires, now); got != c.want {
			t.Errorf("DescribeExpiry(%s) = %q, want %q", c.expires, got, c.want)
		}
	}
}
