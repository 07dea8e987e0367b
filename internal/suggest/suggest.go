// Package suggest finds the known name closest to a mistyped one, for the
// "did you mean" of writ's config and allowlist errors.
package suggest

// Closest returns the candidate within edit distance max-1 of name with
// the smallest distance (the first of equals), or "" if none is that close.
func Closest(name string, candidates []string, max int) string {
	best, bestD := "", max
	for _, c := range candidates {
		if d := EditDistance(name, c, bestD); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// EditDistance is the Levenshtein distance of a and b, or max if it is at
// least max. Names are short: input over 64 bytes is never close.
func EditDistance(a, b string, max int) int {
	if len(a) > 64 || len(b) > 64 {
		return max
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return min(prev[len(b)], max)
}
