package gitrepo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/sideband"
	"github.com/go-git/go-git/v5/plumbing/transport"

	"gitlab.com/writ-ci/writ/internal/fsutil"
)

// maxHaves bounds the local ref tips offered to the server as common
// ground.
const maxHaves = 256

// Fetch fetches refspecs (forced: the verifier decides, not git) within
// ctx. Each refspec is <src>:<dst> with full ref names, for example
// "+refs/heads/main:refs/writ/heads/main"; a missing '+' is added. A
// source may be a full commit hash, which only servers that allow
// fetching reachable or tip commits by hash accept. A fetch that changes
// nothing is not an error. Only the named refs are asked for: the server's
// HEAD and other refs play no part.
//
// The pack is checked against the mirror's Limits while it is read (an
// error is then a *LimitError and nothing of the pack is kept). A ref is
// updated only once everything a decision reads through it is in the
// mirror (the commit, its tree, its history down to what the mirror
// already had), and atomically, so a crash leaves the old value or the
// new one. A damaged mirror is rebuilt from scratch and fetched again; a
// remote that sends an incomplete history fails with ErrIncomplete.
func (m *Mirror) Fetch(ctx context.Context, refspecs ...string) error {
	if len(refspecs) == 0 {
		return errors.New("fetch: no refspec")
	}
	specs := make([]config.RefSpec, 0, len(refspecs))
	for _, s := range refspecs {
		forced, err := checkRefspec(s)
		if err != nil {
			return err
		}
		specs = append(specs, config.RefSpec(forced))
	}
	unlock, err := fsutil.Lock(ctx, m.dir+".lock")
	if err != nil {
		return err
	}
	defer unlock()
	if why := m.damaged(); why != "" {
		if err := m.rebuild(); err != nil {
			return fmt.Errorf("rebuild the mirror of %s (%s): %w", m.url, why, err)
		}
	}
	err = m.fetch(ctx, specs)
	if errors.Is(err, ErrDamaged) || errors.Is(err, ErrIncomplete) {
		// Start again from an empty mirror: with nothing in it, no stale or
		// broken object can stand in for one the remote must send.
		if rerr := m.rebuild(); rerr != nil {
			return fmt.Errorf("%w; rebuild the mirror: %v", err, rerr)
		}
		err = m.fetch(ctx, specs)
		if errors.Is(err, ErrIncomplete) || errors.Is(err, ErrDamaged) {
			m.MarkDamaged(err.Error()) // the next fetch starts from scratch again
		}
	}
	if err == nil {
		m.tidy()
	}
	if err == nil && m.overBudget() {
		// The mirror outgrew its bound (old packs, objects no ref needs any
		// more): a fresh mirror holds only what these refs need.
		if err = m.rebuild(); err == nil {
			err = m.fetch(ctx, specs)
		}
	}
	if err != nil {
		return fmt.Errorf("fetch from %s: %w", m.url, err)
	}
	return nil
}

// refUpdate is one local ref a fetch sets.
type refUpdate struct {
	name plumbing.ReferenceName
	hash plumbing.Hash
}

// fetch is one attempt: ask for the named refs, store the checked pack,
// check completeness, then move the refs.
func (m *Mirror) fetch(ctx context.Context, specs []config.RefSpec) (err error) {
	auth, err := m.authMethod(ctx)
	if err != nil {
		return err
	}
	ep, err := transport.NewEndpoint(m.url)
	if err != nil {
		return err
	}
	cli, err := transportClient(ep)
	if err != nil {
		return err
	}
	sess, err := openSession(ctx, cli, ep, auth)
	if err != nil {
		return remoteErr(ctx, err)
	}
	defer func() {
		if cerr := sess.Close(); err == nil && cerr != nil && ctx.Err() == nil {
			err = cerr
		}
	}()
	ar, err := sess.AdvertisedReferencesContext(ctx)
	if errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return fmt.Errorf("the repository is empty: %w", ErrNoRef)
	}
	if err != nil {
		return remoteErr(ctx, err)
	}
	updates, err := matchRefs(specs, ar)
	if err != nil {
		return err
	}
	local, err := m.localRefs()
	if err != nil {
		return err
	}
	var wants []plumbing.Hash
	seen := map[plumbing.Hash]bool{}
	for _, u := range updates {
		if local[u.name] != u.hash && !seen[u.hash] {
			seen[u.hash] = true
			wants = append(wants, u.hash)
		}
	}
	haves := m.haves(local)
	if len(wants) > 0 {
		if err := m.fetchPack(ctx, sess, ar, wants, haves); err != nil {
			return err
		}
	}
	// Only haves the mirror holds stop the history check: the server was
	// told of every local tip, unchecked (checking before the fetch would
	// load every pack index twice, since storing a pack reopens the store).
	known := map[plumbing.Hash]bool{}
	for _, h := range haves {
		if m.repo.Storer.HasEncodedObject(h) == nil {
			known[h] = true
		}
	}
	for _, u := range updates {
		if err := m.checkFetched(u.hash, known); err != nil {
			return err
		}
	}
	for _, u := range updates {
		if local[u.name] == u.hash {
			continue
		}
		if err := m.writeRef(u); err != nil {
			return err
		}
	}
	return m.prune(specs, updates, local)
}

// prune removes the local refs a wildcard refspec maps to that the server
// no longer advertises, as git fetch --prune does: what the mirror holds
// under a wildcard is what the server publishes now (a withdrawn ref stops
// counting), and an unchanged ref costs no transfer.
func (m *Mirror) prune(specs []config.RefSpec, updates []refUpdate, local map[plumbing.ReferenceName]plumbing.Hash) error {
	kept := make(map[plumbing.ReferenceName]bool, len(updates))
	for _, u := range updates {
		kept[u.name] = true
	}
	for _, s := range specs {
		if !s.IsWildcard() {
			continue
		}
		_, dst, _ := strings.Cut(string(s), ":")
		prefix, suffix, _ := strings.Cut(dst, "*")
		for name := range local {
			n := name.String()
			if kept[name] || !strings.HasPrefix(n, prefix) || !strings.HasSuffix(n[len(prefix):], suffix) {
				continue
			}
			if err := m.repo.Storer.RemoveReference(name); err != nil {
				return fmt.Errorf("%w: prune ref %s: %v", ErrDamaged, name, err)
			}
		}
	}
	return nil
}

// matchRefs maps the refspecs to the refs the server advertises. Names
// the server makes up for a wildcard are checked like any ref name.
func matchRefs(specs []config.RefSpec, ar *packp.AdvRefs) ([]refUpdate, error) {
	var out []refUpdate
	names := make([]string, 0, len(ar.References))
	for n := range ar.References {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, s := range specs {
		if s.IsExactSHA1() {
			if !ar.Capabilities.Supports(capability.AllowReachableSHA1InWant) && !ar.Capabilities.Supports(capability.AllowTipSHA1InWant) {
				return nil, errors.New("the server does not allow fetching a commit by hash; fetch a branch or tag that contains it")
			}
			out = append(out, refUpdate{name: s.Dst(""), hash: plumbing.NewHash(s.Src())})
			continue
		}
		if !s.IsWildcard() {
			h, ok := ar.References[s.Src()]
			if !ok {
				return nil, fmt.Errorf("%s: %w", s.Src(), ErrNoRef)
			}
			out = append(out, refUpdate{name: s.Dst(plumbing.ReferenceName(s.Src())), hash: h})
			continue
		}
		for _, n := range names {
			rn := plumbing.ReferenceName(n)
			if !s.Match(rn) {
				continue
			}
			dst := s.Dst(rn)
			if err := CheckRefName(dst.String()); err != nil {
				return nil, fmt.Errorf("the server advertises a ref writ refuses: %w", err)
			}
			out = append(out, refUpdate{name: dst, hash: ar.References[n]})
		}
	}
	return out, nil
}

// localRefs reads the mirror's refs. A ref that does not parse is damage.
func (m *Mirror) localRefs() (map[plumbing.ReferenceName]plumbing.Hash, error) {
	iter, err := m.repo.Storer.IterReferences()
	if err != nil {
		return nil, fmt.Errorf("%w: read refs: %v", ErrDamaged, err)
	}
	out := map[plumbing.ReferenceName]plumbing.Hash{}
	err = iter.ForEach(func(r *plumbing.Reference) error {
		if r.Type() == plumbing.HashReference {
			out[r.Name()] = r.Hash()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: read refs: %v", ErrDamaged, err)
	}
	return out, nil
}

// haves are the local ref tips: every ref was written only once its
// history was complete. A tip a damaged mirror lost makes the server leave
// out objects the mirror needs; the check after the fetch finds them
// missing (ErrIncomplete), and Fetch starts again from an empty mirror.
func (m *Mirror) haves(local map[plumbing.ReferenceName]plumbing.Hash) []plumbing.Hash {
	var out []plumbing.Hash
	seen := map[plumbing.Hash]bool{}
	names := make([]string, 0, len(local))
	for n := range local {
		names = append(names, string(n))
	}
	sort.Strings(names)
	for _, n := range names {
		h := local[plumbing.ReferenceName(n)]
		if seen[h] || len(out) == maxHaves {
			continue
		}
		seen[h] = true
		out = append(out, h)
	}
	return out
}

// fetchPack asks for wants and stores the pack the server sends, checked
// by packGuard on the way.
func (m *Mirror) fetchPack(ctx context.Context, sess transport.UploadPackSession, ar *packp.AdvRefs, wants, haves []plumbing.Hash) error {
	req := packp.NewUploadPackRequestFromCapabilities(ar.Capabilities)
	// A thin pack may refer to objects outside it; writ stores only
	// self-contained packs. Thin would not be cheaper here either: for a
	// new allowlist version the server's delta search costs it more than
	// compressing the blob (git pack-objects, 4 MB file: 26 ms thin, 21 ms
	// not; 40 MB: 300 ms, 178 ms), and completing a thin pack costs the
	// client a deflate of the base.
	req.Capabilities.Delete(capability.ThinPack)
	if ar.Capabilities.Supports(capability.NoProgress) {
		_ = req.Capabilities.Set(capability.NoProgress)
	}
	req.Wants, req.Haves = wants, haves
	resp, err := sess.UploadPack(ctx, req)
	if errors.Is(err, transport.ErrEmptyUploadPackRequest) {
		return nil
	}
	if err != nil {
		return remoteErr(ctx, err)
	}
	defer resp.Close()
	var r io.Reader = resp
	switch {
	case req.Capabilities.Supports(capability.Sideband64k):
		r = sideband.NewDemuxer(sideband.Sideband64k, resp)
	case req.Capabilities.Supports(capability.Sideband):
		r = sideband.NewDemuxer(sideband.Sideband, resp)
	}
	return m.storePack(ctx, r)
}

// storePack writes the guarded pack into the mirror with its index (see
// packstore.go). On any error the partial pack is removed.
func (m *Mirror) storePack(ctx context.Context, r io.Reader) error {
	dir := filepath.Join(m.dir, "objects", "pack")
	f, err := os.CreateTemp(dir, "tmp_pack_")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrDamaged, err)
	}
	defer func() {
		_ = f.Close()
		m.removeTempPacks()
	}()
	ix := newPackIndexer(m.readAhead)
	bw := bufio.NewWriterSize(f, 64<<10)
	if gerr := guardIndexed(r, bw, m.limits, ix); gerr != nil {
		var le *LimitError
		if errors.As(gerr, &le) {
			return le
		}
		return remoteErr(ctx, gerr)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("store the pack: %w", err)
	}
	if err := ix.store(ctx, f, dir, m.limits); err != nil {
		var le *LimitError
		if errors.As(err, &le) {
			return le
		}
		return fmt.Errorf("store the pack: %w", err)
	}
	// go-git's storage lists packs once: open it again to see the new one.
	repo, err := openRepo(m.dir)
	if err != nil {
		return fmt.Errorf("%w: reopen after storing a pack: %v", ErrDamaged, err)
	}
	m.repo = repo
	if ix.kept.data != nil {
		m.fresh = ix.kept
	}
	return nil
}

// removeTempPacks removes what an interrupted pack write left behind
// (the caller holds the mirror's lock, so no other fetch is writing).
func (m *Mirror) removeTempPacks() {
	// tmp_pack_* and tmp_idx_*: a pack and its index being written.
	tmps, _ := filepath.Glob(filepath.Join(m.dir, "objects", "pack", "tmp_*"))
	for _, t := range tmps {
		_ = os.Remove(t)
	}
}

// writeRef sets a ref atomically (go-git rewrites ref files in place, so a
// crash could leave one empty).
func (m *Mirror) writeRef(u refUpdate) error {
	if err := CheckRefName(u.name.String()); err != nil {
		return err
	}
	p := filepath.Join(m.dir, filepath.FromSlash(u.name.String()))
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("write ref %s: %w", u.name, err)
	}
	return fsutil.WriteFileAtomic(p, []byte(u.hash.String()+"\n"), 0o600)
}

// remoteErr words an error talking to the remote.
func remoteErr(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("%w (the remote did not answer in time: %v)", context.Cause(ctx), err)
	case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed):
		return fmt.Errorf("%w (check the token or key and its access to the repository)", err)
	}
	return err
}
