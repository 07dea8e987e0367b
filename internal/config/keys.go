package config

import (
	"gitlab.com/writ-ci/writ/internal/suggest"
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
		if d := suggest.EditDistance(unknown, k, bestDist); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}
