package gitrepo

import (
	"container/heap"
	"errors"
	"fmt"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// MaxWalk bounds every history walk, in commits visited. A walk that would
// exceed it is an error wrapping ErrWalkBound rather than an unbounded cost
// per job.
const MaxWalk = 1_000_000

// ErrWalkBound is wrapped by the error of a history walk stopped at its
// bound, before it found an answer.
var ErrWalkBound = errors.New("writ does not walk further")

// IsAncestor reports whether ancestor is reachable from descendant by
// parent links; a commit is its own ancestor. descendant must be in the
// mirror; an ancestor that is not is no ancestor (the mirror holds the
// whole history of what it fetched). The walk visits at most MaxWalk
// commits; a commit missing on the way is damage (see IsDamage).
func (m *Mirror) IsAncestor(ancestor, descendant string) (bool, error) {
	a, err := m.Commit(ancestor)
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		if _, derr := m.Commit(descendant); derr != nil {
			return false, derr
		}
		return false, nil
	}
	if err != nil {
		return false, err
	}
	d, err := m.Commit(descendant)
	if err != nil {
		return false, err
	}
	if a.Hash == d.Hash {
		return true, nil
	}
	seen := map[plumbing.Hash]bool{d.Hash: true}
	queue := []plumbing.Hash{d.Hash}
	for len(queue) > 0 {
		h := queue[0]
		queue = queue[1:]
		c, err := m.repo.CommitObject(h)
		if err != nil {
			return false, fmt.Errorf("%w: walk history of %s: commit %s: %v", ErrIncomplete, descendant, h, err)
		}
		for _, p := range c.ParentHashes {
			if p == a.Hash {
				return true, nil
			}
			if !seen[p] {
				if len(seen) >= MaxWalk {
					return false, fmt.Errorf("history of %s has more than %d commits: %w", descendant, MaxWalk, ErrWalkBound)
				}
				seen[p] = true
				queue = append(queue, p)
			}
		}
	}
	return false, nil
}

// CommitsBetween returns the commits reachable from head and not from base
// (base may be "" for all of head's history), newest first by committer
// date. More than max commits is an error. It does not check that base is
// an ancestor of head; use IsAncestor for that.
//
// Like git rev-list base..head it walks both sides in committer-date order
// and stops when only base's side is left. With badly skewed dates it may
// return a commit that base also reaches, never the reverse: callers that
// verify every returned commit only ever check more than needed.
func (m *Mirror) CommitsBetween(base, head string, max int) ([]*object.Commit, error) {
	if max < 0 {
		return nil, fmt.Errorf("negative commit bound %d", max)
	}
	h, err := m.Commit(head)
	if err != nil {
		return nil, err
	}
	w := &walk{flags: map[plumbing.Hash]uint8{}}
	w.push(h, fromHead)
	if base != "" {
		b, err := m.Commit(base)
		if err != nil {
			return nil, err
		}
		w.push(b, fromBase)
	}
	visited := 0
	var order []*object.Commit
	var oldest time.Time // committer date of the oldest commit taken from head's side
	// After head's side is exhausted, base's side still runs through every
	// commit as recent as the oldest taken one: with equal dates (common
	// after a rebase) base may reach it only then.
	for w.interesting > 0 || (len(order) > 0 && w.q.Len() > 0 && !w.q[0].c.Committer.When.Before(oldest)) {
		it := heap.Pop(&w.q).(item)
		if it.flag == fromHead {
			w.interesting--
		}
		c := it.c
		f := w.flags[c.Hash]
		if it.flag == fromHead && f&fromBase != 0 {
			continue // base reached it meanwhile
		}
		visited++
		if visited > MaxWalk {
			return nil, fmt.Errorf("history between %s and %s has more than %d commits: %w", base, head, MaxWalk, ErrWalkBound)
		}
		if it.flag == fromHead {
			order = append(order, c)
			if oldest.IsZero() || c.Committer.When.Before(oldest) {
				oldest = c.Committer.When
			}
			if base == "" && len(order) > max {
				return nil, fmt.Errorf("more than %d commits in the history of %s", max, head)
			}
		}
		for _, p := range c.ParentHashes {
			pf := w.flags[p]
			if pf&it.flag != 0 {
				continue
			}
			pc, err := m.repo.CommitObject(p)
			if err != nil {
				return nil, fmt.Errorf("%w: walk history of %s: commit %s: %v", ErrIncomplete, head, p, err)
			}
			w.push(pc, it.flag)
		}
	}
	var out []*object.Commit
	for _, c := range order {
		if w.flags[c.Hash]&fromBase == 0 {
			if len(out) == max {
				return nil, fmt.Errorf("more than %d commits between %s and %s", max, base, head)
			}
			out = append(out, c)
		}
	}
	return out, nil
}

const (
	fromHead uint8 = 1
	fromBase uint8 = 2
)

type item struct {
	c    *object.Commit
	flag uint8
}

// walk is a committer-date-ordered walk of two commit sets.
type walk struct {
	q           queue
	flags       map[plumbing.Hash]uint8
	interesting int // queued items from head
}

func (w *walk) push(c *object.Commit, flag uint8) {
	w.flags[c.Hash] |= flag
	if flag == fromHead {
		w.interesting++
	}
	heap.Push(&w.q, item{c: c, flag: flag})
}

// queue is a max-heap on committer date; hashes break ties so that the
// order does not depend on map or heap internals.
type queue []item

func (q queue) Len() int { return len(q) }
func (q queue) Less(i, j int) bool {
	ti, tj := q[i].c.Committer.When, q[j].c.Committer.When
	if !ti.Equal(tj) {
		return ti.After(tj)
	}
	if q[i].c.Hash != q[j].c.Hash {
		return q[i].c.Hash.String() < q[j].c.Hash.String()
	}
	return q[i].flag > q[j].flag // base's side first, so it marks before head's side expands
}
func (q queue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)   { *q = append(*q, x.(item)) }
func (q *queue) Pop() any {
	old := *q
	it := old[len(old)-1]
	*q = old[:len(old)-1]
	return it
}
