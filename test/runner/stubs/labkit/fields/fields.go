// Package fields is writ's stand-in for labkit's standard log field names.
package fields

// Standard field names the runner logs with.
const (
	HTTPStatusCode = "http_status_code"
	DurationS      = "duration_s"
)

// Deprecation describes a legacy field name and its standard replacement.
type Deprecation struct {
	Standard string
}

// Deprecated maps legacy field names to their replacement. The stand-in has
// none, so the runner keeps logging its legacy names.
var Deprecated = map[string]Deprecation{}

// VariantVersion maps standard names to the schema version introducing them.
var VariantVersion = map[string]int{}
