package etcdkv

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrProtocol is wrapped when a member's answer is not what etcd sends:
// garbled, cut short, or inconsistent with the request.
var ErrProtocol = errors.New("etcdkv: not a valid etcd response")

// ErrTooLarge is wrapped when an answer is larger than the client reads
// (Config.MaxValueBytes per key it may hold).
var ErrTooLarge = errors.New("etcdkv: response too large")

// ErrNoLeader matches the error of a member that has no leader: the
// cluster lost quorum, or this member is cut off from it.
var ErrNoLeader = errors.New("etcdserver: no leader")

// ErrLeaseNotFound matches the error of a write that names a lease the
// cluster does not have (it expired, was revoked, or the store was
// restored).
var ErrLeaseNotFound = errors.New("etcdserver: requested lease not found")

// ErrPermissionDenied matches a refusal by etcd's authentication: the
// etcd user this client acts as (its certificate's common name) has no
// role that grants the request on its keys. It is a configuration error,
// never retried.
var ErrPermissionDenied = errors.New("etcdserver: permission denied")

// Error is an error status a member answered with: a gRPC status code and
// etcd's message.
type Error struct {
	Code    int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%s (gRPC code %d)", e.Message, e.Code) }

// gRPC status codes etcd answers with.
const (
	codeNotFound         = 5
	codePermissionDenied = 7
	codeUnavailable      = 14
)

// Is matches ErrNoLeader and ErrLeaseNotFound by etcd's code and message
// (rpctypes.ErrGRPCNoLeader, ErrGRPCLeaseNotFound), and
// ErrPermissionDenied by the code alone (etcd words it in several ways).
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNoLeader:
		return e.Code == codeUnavailable && e.Message == ErrNoLeader.Error()
	case ErrLeaseNotFound:
		return e.Code == codeNotFound && e.Message == ErrLeaseNotFound.Error()
	case ErrPermissionDenied:
		return e.Code == codePermissionDenied
	}
	return false
}

// KeyValue is a key as the store holds it.
type KeyValue struct {
	Key, Value []byte
	// CreateRevision and ModRevision are the store revisions of the key's
	// creation and last change; Version counts its changes since created.
	CreateRevision, ModRevision, Version int64
	// Lease is the lease the key is attached to, or 0.
	Lease int64
}

// budget is how many bytes a response holding up to n keys may take:
// each key and value, and its fields.
func (c *Client) budget(n int) int {
	return n*(c.maxValue+256) + 1024
}

// Get reads key (linearizable). It returns nil when the key is absent.
func (c *Client) Get(ctx context.Context, key string) (*KeyValue, error) {
	kvs, _, err := c.read(ctx, span{key: []byte(key)})
	if err != nil || len(kvs) == 0 {
		return nil, err
	}
	return &kvs[0], nil
}

// Range reads at most limit keys from key up to end, excluded (end ""
// with key "" and "\x00" reads everything; PrefixEnd gives the end of a
// prefix), in key order. more reports keys left after the last one.
func (c *Client) Range(ctx context.Context, key, end string, limit int) (kvs []KeyValue, more bool, err error) {
	if end == "" || limit < 1 {
		return nil, false, errors.New("etcdkv: Range needs an end and a limit (use Get for one key)")
	}
	return c.read(ctx, span{key: []byte(key), end: []byte(end), limit: limit})
}

// PrefixEnd is the range end that covers every key starting with prefix.
func PrefixEnd(prefix string) string {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return "\x00"
}

func (c *Client) read(ctx context.Context, s span) ([]KeyValue, bool, error) {
	n := 1
	if s.end != nil {
		n = s.limit
	}
	data, err := c.call(ctx, methodRange, rangeRequest(s), c.budget(n), true)
	if err != nil {
		return nil, false, err
	}
	return decodeRangeBody(data, s)
}

// Compare is a condition of a transaction on one key's revision.
type Compare struct {
	key    string
	target int // targetMod or targetCreate
	rev    int64
}

// ModRevisionIs holds when key was last changed at revision rev; rev 0:
// the key is absent.
func ModRevisionIs(key string, rev int64) Compare { return Compare{key, targetMod, rev} }

// CreateRevisionIs holds when key was created at revision rev; rev 0: the
// key is absent.
func CreateRevisionIs(key string, rev int64) Compare { return Compare{key, targetCreate, rev} }

type opKind int

const (
	opGet opKind = iota
	opPut
	opDelete
)

func (k opKind) String() string { return [...]string{"get", "put", "delete"}[k] }

// Op is an operation of a transaction.
type Op struct {
	kind       opKind
	key, value string
	lease      int64
}

// OpGet reads key.
func OpGet(key string) Op { return Op{kind: opGet, key: key} }

// OpPut writes value at key, attached to lease unless it is 0.
func OpPut(key, value string, lease int64) Op {
	return Op{kind: opPut, key: key, value: value, lease: lease}
}

// OpDelete deletes key.
func OpDelete(key string) Op { return Op{kind: opDelete, key: key} }

// TxnResult is a transaction's outcome.
type TxnResult struct {
	// Succeeded: every compare held, and the then branch ran.
	Succeeded bool
	// Gets holds, for each operation of the branch that ran, the key an
	// OpGet read (nil when absent, and for other operations).
	Gets []*KeyValue
}

// Txn runs then if every compare holds, else els, atomically. A
// transaction of gets only is a linearizable read, retried on the next
// member like Get; one that writes is sent once.
func (c *Client) Txn(ctx context.Context, cmps []Compare, then, els []Op) (*TxnResult, error) {
	gets, readOnly := 0, true
	for _, ops := range [][]Op{then, els} {
		for _, op := range ops {
			if op.kind == opGet {
				gets++
			} else {
				readOnly = false
			}
		}
	}
	data, err := c.call(ctx, methodTxn, txnRequest(cmps, then, els), c.budget(gets)+(len(then)+len(els))*128, readOnly)
	if err != nil {
		return nil, err
	}
	return decodeTxn(data, then, els)
}

// Grant creates a lease of ttl (whole seconds, at least one) and returns
// its id and the ttl the cluster granted.
func (c *Client) Grant(ctx context.Context, ttl time.Duration) (int64, time.Duration, error) {
	secs := max(int64(ttl/time.Second), 1)
	data, err := c.call(ctx, methodLeaseGrant, grantRequest(secs), c.budget(0), false)
	if err != nil {
		return 0, 0, err
	}
	id, granted, err := decodeGrant(data)
	return id, time.Duration(granted) * time.Second, err
}
