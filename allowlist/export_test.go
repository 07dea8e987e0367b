package allowlist

import "context"

// GeneratedAllowlist lets the external tests build large allowlists.
var GeneratedAllowlist = generatedAllowlist

// SetCachedSchema rewrites the verified cache as a writ that read schema
// would have left it, keeping the state consistent with it: the cache of a
// host upgraded across a schema change.
func (a *Accepter) SetCachedSchema(schema string) error {
	ctx := context.Background()
	st, err := a.store.Allowlist(ctx)
	if err != nil {
		return err
	}
	vs, err := openVerified(a.cachePath(st.CacheSHA256), st.CacheSHA256)
	if err != nil {
		return err
	}
	al, err := vs.all()
	if err != nil {
		return err
	}
	al.Schema = schema
	c := vs.header.Meta
	c.Parsed = al
	if st.CacheSHA256, err = a.writeCache(&c); err != nil {
		return err
	}
	return a.writeState(ctx, st)
}

// StorePath returns the path of the verified store the state names.
func (a *Accepter) StorePath() (string, error) {
	st, err := a.store.Allowlist(context.Background())
	if err != nil {
		return "", err
	}
	return a.cachePath(st.CacheSHA256), nil
}
