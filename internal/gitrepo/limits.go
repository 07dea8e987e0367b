package gitrepo

import (
	"errors"
	"fmt"
)

// Limits bound what one fetch may bring into a mirror and how large a
// mirror may grow. They are enforced while the pack is read, before any
// object is inflated into memory, so a hostile server cannot make writ
// allocate more than MaxObjectBytes for any one object. The names of the
// fields follow writ's [fetch] configuration keys.
type Limits struct {
	// MaxBytes bounds the pack bytes received by one fetch.
	MaxBytes int64
	// MaxObjects bounds the objects in one pack.
	MaxObjects int64
	// MaxObjectBytes bounds the inflated size of any one object (for a
	// delta, of the object it builds).
	MaxObjectBytes int64
	// MaxMirrorBytes bounds a mirror on disk: beyond it, the mirror is
	// rebuilt from scratch with only the refs being fetched.
	MaxMirrorBytes int64
}

// DefaultLimits are the limits of a mirror opened without WithLimits. They
// fit any repository GitHub or GitLab.com accepts for a deploy source (no
// object larger than GitHub's 100 MiB file limit) and keep a hostile
// server's pack far from a runner's memory.
func DefaultLimits() Limits {
	return Limits{
		MaxBytes:       1 << 30,
		MaxObjects:     1_000_000,
		MaxObjectBytes: 100 << 20,
		MaxMirrorBytes: 4 << 30,
	}
}

// Option configures a Mirror.
type Option func(*Mirror)

// WithLimits sets the mirror's fetch limits; a zero field keeps its
// default.
func WithLimits(l Limits) Option {
	return func(m *Mirror) {
		d := &m.limits
		if l.MaxBytes > 0 {
			d.MaxBytes = l.MaxBytes
		}
		if l.MaxObjects > 0 {
			d.MaxObjects = l.MaxObjects
		}
		if l.MaxObjectBytes > 0 {
			d.MaxObjectBytes = l.MaxObjectBytes
		}
		if l.MaxMirrorBytes > 0 {
			d.MaxMirrorBytes = l.MaxMirrorBytes
		}
	}
}

// WithReadAhead makes each fetch keep in memory, named and checked, the
// largest blob (of 1 MiB or more) its pack brings, until ReadFile reads
// it: that read then costs neither inflating nor hashing it again. For a
// caller that reads one large file at the head it fetches, such as the
// allowlist; a mirror without it holds nothing after a fetch.
func WithReadAhead() Option {
	return func(m *Mirror) { m.readAhead = true }
}

// LimitError is a fetch refused because the remote sent more than a limit
// allows. Nothing of the refused pack is kept.
type LimitError struct {
	// Limit is the configuration key: "max_bytes", "max_objects" or
	// "max_object_bytes".
	Limit string
	// Max is the limit's value; Got what the remote sent or announced.
	Max, Got int64
	// What says where, for example "object 3 (blob)".
	What string
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%s: %d exceeds the limit fetch.%s = %d", e.What, e.Got, e.Limit, e.Max)
}

// ErrDamaged is wrapped by errors about a mirror whose content is broken: an
// object missing or unreadable, a pack that does not decode, a ref file
// that is empty or garbage. A mirror is only a cache: the next Fetch
// rebuilds a damaged one from scratch. The caller should treat the
// decision at hand as undecidable (retry), never as a refusal.
var ErrDamaged = errors.New("writ's mirror is damaged")

// ErrIncomplete is wrapped by a fetch whose result lacks objects the
// decision reads (a commit without its tree, a missing parent): the remote
// is broken or hostile. Nothing it sent is referenced.
var ErrIncomplete = errors.New("the remote sent an incomplete history")

// ErrNoRef is wrapped by a fetch of a branch or tag the remote does not
// have.
var ErrNoRef = errors.New("the branch or tag does not exist on the remote")
