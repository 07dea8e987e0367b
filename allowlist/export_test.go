package allowlist

// GeneratedAllowlist lets the external tests build large allowlists.
var GeneratedAllowlist = generatedAllowlist
