package companion

import (
	"fmt"
	"strings"
	"time"
)

// ExitChangeNeeded is the exit code of "writ propose --check" when the
// allowlist does not yet admit the jobs as they are: the application
// template's merge request job lets exactly this code pass as a warning.
const ExitChangeNeeded = 3

// ParseSince reads a --since or --until value: an RFC 3339 time, or a
// duration (such as 24h) counted back from now.
func ParseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2030-01-02T15:04:05Z) nor a duration (24h)", s)
	}
	return now.Add(-d), nil
}

// SplitList splits a comma-separated flag value, trimming spaces and
// dropping empty items, so an unset CI variable ("") means an empty list.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
