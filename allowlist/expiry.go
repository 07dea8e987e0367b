package allowlist

import (
	"fmt"
	"time"
)

// DescribeExpiry says in words when an allowlist version with this expiry
// stops being trusted, seen at now: "expired 3 days ago
// (2020-01-01T00:00:00Z)" or "expires in 12 days (2030-01-01T00:00:00Z)".
// Lint, verify and review use it so that an operator never reads "ok" or
// "within 30 days" for a date already past.
func DescribeExpiry(expires, now time.Time) string {
	at := expires.UTC().Format(time.RFC3339)
	if !expires.After(now) {
		return fmt.Sprintf("expired %s ago (%s)", HumanDuration(now.Sub(expires)), at)
	}
	return fmt.Sprintf("expires in %s (%s)", HumanDuration(expires.Sub(now)), at)
}

// HumanDuration rounds d to the unit a person plans with: days from two
// days on, then hours, then minutes.
func HumanDuration(d time.Duration) string {
	plural := func(n int64, unit string) string {
		if n == 1 {
			return fmt.Sprintf("1 %s", unit)
		}
		return fmt.Sprintf("%d %ss", n, unit)
	}
	switch {
	case d >= 48*time.Hour:
		return plural(int64(d/(24*time.Hour)), "day")
	case d >= 2*time.Hour:
		return plural(int64(d/time.Hour), "hour")
	case d >= time.Minute:
		return plural(int64(d/time.Minute), "minute")
	default:
		return plural(int64(d/time.Second), "second")
	}
}
