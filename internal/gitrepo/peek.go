package gitrepo

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
)

// RemoteRef asks the remote which commit or tag the full ref name points at,
// reading only its ref advertisement: no pack, no lock, nothing written. It
// tells a caller whether a fetch would bring anything new, so the common
// case (nothing changed) costs one round trip and never waits on a lock.
// What it returns is the remote's word, to be compared with what writ has
// already verified, never trusted on its own.
func (m *Mirror) RemoteRef(ctx context.Context, name string) (_ plumbing.Hash, err error) {
	if err := CheckRefName(name); err != nil {
		return plumbing.ZeroHash, err
	}
	auth, err := m.authMethod(ctx)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	ep, err := transport.NewEndpoint(m.url)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	cli, err := transportClient(ep)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	sess, err := openSession(ctx, cli, ep, auth)
	if err != nil {
		return plumbing.ZeroHash, remoteErr(ctx, err)
	}
	defer func() {
		if cerr := sess.Close(); err == nil && cerr != nil && ctx.Err() == nil {
			err = cerr
		}
	}()
	ar, err := sess.AdvertisedReferencesContext(ctx)
	if errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return plumbing.ZeroHash, fmt.Errorf("the repository is empty: %w", ErrNoRef)
	}
	if err != nil {
		return plumbing.ZeroHash, remoteErr(ctx, err)
	}
	h, ok := ar.References[name]
	if !ok {
		return plumbing.ZeroHash, fmt.Errorf("%s: %w", name, ErrNoRef)
	}
	return h, nil
}
