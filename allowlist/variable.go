package allowlist

import (
	"regexp"
	"sync"
)

// Allows reports whether value may reach the job as this variable: it
// equals the pinned Value byte for byte, or Pattern matches all of it. A
// Variable that is not exactly one of the two, or whose pattern Parse would
// refuse, allows nothing.
func (v Variable) Allows(value string) bool {
	switch {
	case v.HasValue && v.Pattern == "":
		return value == v.Value
	case !v.HasValue && v.Pattern != "":
		re := compiledPattern(v.Pattern)
		return re != nil && re.MatchString(value)
	}
	return false
}

// patterns caches compiled variable patterns; failed compilations are
// cached as nil. The cache is bounded: past maxCachedPatterns, patterns are
// compiled on each use.
var (
	patternsMu sync.Mutex
	patterns   = map[string]*regexp.Regexp{}
)

const maxCachedPatterns = 4096

func compiledPattern(p string) *regexp.Regexp {
	patternsMu.Lock()
	re, ok := patterns[p]
	patternsMu.Unlock()
	if ok {
		return re
	}
	if checkPattern(p) == "" {
		// checkPattern guarantees the anchors cover the whole value;
		// \A(?:…)\z states the same again, so a full match never
		// depends on that analysis alone.
		re, _ = regexp.Compile(`\A(?:` + p + `)\z`)
	}
	patternsMu.Lock()
	if len(patterns) < maxCachedPatterns {
		patterns[p] = re
	}
	patternsMu.Unlock()
	return re
}
