package executor

import (
	"fmt"
	"time"
)

// phase reports a finished phase of a job: one line in the job log with
// its elapsed time, when o.progress is set (prepare and get_sources, not
// writ check, whose report is its own), and a debug log with the duration,
// so a slow fetch or checkout is never silent.
func (o *Options) phase(name string, start time.Time, format string, a ...any) {
	d := time.Since(start)
	o.Log.Debug("phase done", "phase", name, "duration", d)
	if o.progress != nil {
		fmt.Fprintf(o.progress, "writ: %s (%s)\n", fmt.Sprintf(format, a...), roundDuration(d))
	}
}

// roundDuration keeps a job log line short: milliseconds under a second,
// then tenths of seconds.
func roundDuration(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Millisecond)
}
