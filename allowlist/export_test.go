package allowlist

import (
	"bytes"
	"context"
	"encoding/gob"
	"os"
)

// GeneratedAllowlist lets the external tests build large allowlists.
var GeneratedAllowlist = generatedAllowlist

// SetCachedSchema rewrites the verified cache as a writ that read schema
// would have left it, keeping the state consistent with it: the cache of a
// host upgraded across a schema change.
func (a *Accepter) SetCachedSchema(schema string) error {
	st, err := a.store.Allowlist(context.Background())
	if err != nil {
		return err
	}
	b, err := os.ReadFile(a.cachePath())
	if err != nil {
		return err
	}
	var c cached
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&c); err != nil {
		return err
	}
	c.Parsed.Schema = schema
	if st.CacheSHA256, err = a.writeCache(&c); err != nil {
		return err
	}
	return a.writeState(context.Background(), st)
}
