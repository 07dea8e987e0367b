package allowlist

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"os"
)

// GeneratedAllowlist lets the external tests build large allowlists.
var GeneratedAllowlist = generatedAllowlist

// SetCachedSchema rewrites the verified cache as a writ that read schema
// would have left it, keeping the state consistent with it: the cache of a
// host upgraded across a schema change.
func (a *Accepter) SetCachedSchema(schema string) error {
	ctx := context.Background()
	st, err := a.local.Allowlist(ctx)
	if err != nil {
		return err
	}
	if st == nil {
		return errors.New("no accepted allowlist")
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
	return a.writeState(ctx, st)
}
