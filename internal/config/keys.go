package config

import (
	"reflect"
	"strings"
)

// Keys lists every configuration key as a dotted path ("allowlist.url"),
// in the order of the Config struct. Map-valued keys (job.env) appear
// once; their own keys are free.
func Keys() []string {
	var out []string
	walkKeys(reflect.TypeOf(Config{}), "", func(key string, _ reflect.StructField) { out = append(out, key) })
	return out
}

// walkKeys calls fn for every leaf key of struct type t under prefix.
func walkKeys(t reflect.Type, prefix string, fn func(key string, f reflect.StructField)) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		key := prefix + name
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(Duration{}) {
			walkKeys(f.Type, key+".", fn)
			continue
		}
		fn(key, f)
	}
}

// nearestKey is the known key closest to an unknown one, for "did you
// mean": the same last part under another table, or a small edit away.
func nearestKey(unknown string) string {
	best, bestDist := "", 3
	last := unknown[strings.LastIndex(unknown, ".")+1:]
	for _, k := range Keys() {
		if k[strings.LastIndex(k, ".")+1:] == last {
			return k
		}
		if d := editDistance(unknown, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
