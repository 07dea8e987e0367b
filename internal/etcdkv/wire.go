package etcdkv

import (
	"bytes"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// The messages are etcd's v3 protobuf messages (etcdserverpb in
// api/etcdserverpb/rpc.proto, mvccpb in api/mvccpb/kv.proto), encoded and
// decoded here field by field with protowire instead of etcd's generated
// packages, whose registration is what made etcd's client slow to start.
// Only the fields writ uses are written; of a response, only the fields
// it checks are read, and unknown fields are skipped, as protobuf does, so
// that a newer member may add some.

// Field numbers, from rpc.proto and kv.proto.
const (
	// ResponseHeader
	hdrRevision = 3
	// RangeRequest
	rangeKey, rangeEnd, rangeLimit = 1, 2, 3
	// RangeResponse
	rangeRespHeader, rangeRespKvs, rangeRespMore, rangeRespCount = 1, 2, 3, 4
	// mvccpb.KeyValue
	kvKey, kvCreate, kvMod, kvVersion, kvValue, kvLease = 1, 2, 3, 4, 5, 6
	// PutRequest
	putKey, putValue, putLease = 1, 2, 3
	// DeleteRangeRequest
	deleteKey = 1
	// RequestOp and ResponseOp: the oneof's members.
	oneofRange, oneofPut, oneofDeleteRange, oneofTxn = 1, 2, 3, 4
	// Compare
	cmpResult, cmpTarget, cmpKey, cmpCreateRevision, cmpModRevision = 1, 2, 3, 5, 6
	// TxnRequest
	txnCompare, txnSuccess, txnFailure = 1, 2, 3
	// TxnResponse
	txnRespHeader, txnRespSucceeded, txnRespResponses = 1, 2, 3
	// LeaseGrantRequest
	grantTTL = 1
	// LeaseGrantResponse
	grantRespHeader, grantRespID, grantRespTTL, grantRespError = 1, 2, 3, 4
)

// Compare's enums.
const (
	resultEqual  = 0
	targetCreate = 1
	targetMod    = 2
)

// Requests. proto3 leaves fields at their zero value out; a request
// decodes the same either way, except the compare's target union, which
// is always written (0 included): an unset union is not a comparison
// with 0.

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendInt(b []byte, num protowire.Number, v int64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(v))
}

func appendMessage(b []byte, num protowire.Number, m []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, m)
}

func rangeRequest(s span) []byte {
	b := appendBytes(nil, rangeKey, s.key)
	if s.end != nil {
		b = appendBytes(b, rangeEnd, s.end)
		b = appendInt(b, rangeLimit, int64(s.limit))
	}
	return b
}

func (op Op) request() []byte {
	var inner []byte
	num := protowire.Number(oneofRange)
	switch op.kind {
	case opPut:
		num = oneofPut
		inner = appendBytes(inner, putKey, []byte(op.key))
		inner = appendBytes(inner, putValue, []byte(op.value))
		inner = appendInt(inner, putLease, op.lease)
	case opDelete:
		num = oneofDeleteRange
		inner = appendBytes(inner, deleteKey, []byte(op.key))
	default:
		inner = rangeRequest(span{key: []byte(op.key)})
	}
	return appendMessage(nil, num, inner)
}

func (cmp Compare) request() []byte {
	b := appendInt(nil, cmpResult, resultEqual)
	b = appendInt(b, cmpTarget, int64(cmp.target))
	b = appendBytes(b, cmpKey, []byte(cmp.key))
	num := protowire.Number(cmpModRevision)
	if cmp.target == targetCreate {
		num = cmpCreateRevision
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(cmp.rev))
}

func txnRequest(cmps []Compare, then, els []Op) []byte {
	var b []byte
	for _, cmp := range cmps {
		b = appendMessage(b, txnCompare, cmp.request())
	}
	for _, op := range then {
		b = appendMessage(b, txnSuccess, op.request())
	}
	for _, op := range els {
		b = appendMessage(b, txnFailure, op.request())
	}
	return b
}

func grantRequest(ttl int64) []byte { return appendInt(nil, grantTTL, ttl) }

// Responses.

// field is one field of a message as read from the wire: a varint or a
// length-delimited payload (bytes, a string or a message).
type field struct {
	typ   protowire.Type
	num   protowire.Number
	n     uint64
	bytes []byte
}

// fields splits a message into its fields, refusing anything cut short,
// any group, and a field of a number in want read with another wire type
// or, unless repeated[num], twice: one message has one reading. Fields not
// in want are skipped.
func fields(b []byte, want map[protowire.Number]protowire.Type, repeated map[protowire.Number]bool) ([]field, error) {
	var out []field
	seen := map[protowire.Number]bool{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		f := field{typ: typ, num: num}
		switch typ {
		case protowire.VarintType:
			f.n, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			f.bytes, n = protowire.ConsumeBytes(b)
		case protowire.Fixed32Type, protowire.Fixed64Type:
			n = protowire.ConsumeFieldValue(num, typ, b)
		default:
			return nil, fmt.Errorf("field %d has wire type %d (a group)", num, typ)
		}
		if n < 0 {
			return nil, fmt.Errorf("field %d: %v", num, protowire.ParseError(n))
		}
		b = b[n:]
		wt, ok := want[num]
		if !ok {
			continue
		}
		if typ != wt {
			return nil, fmt.Errorf("field %d has wire type %d, want %d", num, typ, wt)
		}
		if seen[num] && !repeated[num] {
			return nil, fmt.Errorf("field %d appears twice", num)
		}
		seen[num] = true
		out = append(out, f)
	}
	return out, nil
}

const (
	varint = protowire.VarintType
	bytesT = protowire.BytesType
)

func protoErr(what string, err error) error {
	return fmt.Errorf("%w: %s: %v", ErrProtocol, what, err)
}

// int64 fields are varints of the two's complement; a bool is 0 or 1.
func asBool(f field) (bool, error) {
	if f.n > 1 {
		return false, fmt.Errorf("bool field %d is %d", f.num, f.n)
	}
	return f.n == 1, nil
}

// header reads a ResponseHeader's revision (0 if absent). Every answer
// carries one with a revision; the responses nested in a transaction's
// need not.
func header(b []byte) (int64, error) {
	fs, err := fields(b, map[protowire.Number]protowire.Type{hdrRevision: varint}, nil)
	if err != nil {
		return 0, protoErr("response header", err)
	}
	var rev int64
	for _, f := range fs {
		rev = int64(f.n)
	}
	return rev, nil
}

func noHeader() error {
	return fmt.Errorf("%w: no response header with a revision", ErrProtocol)
}

type rangeResponse struct {
	rev   int64 // 0 when the response has no header
	kvs   []KeyValue
	more  bool
	count int64
}

func decodeKeyValue(b []byte) (KeyValue, error) {
	fs, err := fields(b, map[protowire.Number]protowire.Type{
		kvKey: bytesT, kvCreate: varint, kvMod: varint, kvVersion: varint, kvValue: bytesT, kvLease: varint,
	}, nil)
	if err != nil {
		return KeyValue{}, protoErr("key-value", err)
	}
	var kv KeyValue
	for _, f := range fs {
		switch f.num {
		case kvKey:
			kv.Key = bytes.Clone(f.bytes)
		case kvValue:
			kv.Value = bytes.Clone(f.bytes)
		case kvCreate:
			kv.CreateRevision = int64(f.n)
		case kvMod:
			kv.ModRevision = int64(f.n)
		case kvVersion:
			kv.Version = int64(f.n)
		case kvLease:
			kv.Lease = int64(f.n)
		}
	}
	return kv, nil
}

func decodeRangeResponse(b []byte) (*rangeResponse, error) {
	fs, err := fields(b, map[protowire.Number]protowire.Type{
		rangeRespHeader: bytesT, rangeRespKvs: bytesT, rangeRespMore: varint, rangeRespCount: varint,
	}, map[protowire.Number]bool{rangeRespKvs: true})
	if err != nil {
		return nil, protoErr("range response", err)
	}
	r := &rangeResponse{}
	for _, f := range fs {
		switch f.num {
		case rangeRespHeader:
			if r.rev, err = header(f.bytes); err != nil {
				return nil, err
			}
		case rangeRespKvs:
			kv, err := decodeKeyValue(f.bytes)
			if err != nil {
				return nil, err
			}
			r.kvs = append(r.kvs, kv)
		case rangeRespMore:
			if r.more, err = asBool(f); err != nil {
				return nil, protoErr("range response", err)
			}
		case rangeRespCount:
			r.count = int64(f.n)
		}
	}
	return r, nil
}

// span is the key range a read asked for: key alone when end is nil.
type span struct {
	key, end []byte
	limit    int
}

func (s span) holds(k []byte) bool {
	if s.end == nil {
		return bytes.Equal(k, s.key)
	}
	if bytes.Compare(k, s.key) < 0 {
		return false
	}
	// "\x00" as range_end means every key from key on.
	return bytes.Equal(s.end, []byte{0}) || bytes.Compare(k, s.end) < 0
}

// checkRange checks a range response against what was asked: keys in the
// range, ascending, at most limit of them, revisions that fit together
// and the count etcd reports.
func checkRange(r *rangeResponse, s span, rev int64) ([]KeyValue, bool, error) {
	max := s.limit
	if s.end == nil {
		max = 1
	}
	n := len(r.kvs)
	switch {
	case max > 0 && n > max:
		return nil, false, fmt.Errorf("%w: %d keys for a read of at most %d", ErrProtocol, n, max)
	case r.count < int64(n) || r.more != (r.count > int64(n)) || r.more && n != max:
		// etcd says "more" only when it cut the keys at the limit.
		return nil, false, fmt.Errorf("%w: count %d and more=%v do not fit %d keys", ErrProtocol, r.count, r.more, n)
	}
	for i, kv := range r.kvs {
		switch {
		case !s.holds(kv.Key):
			return nil, false, fmt.Errorf("%w: key %q is outside the range read", ErrProtocol, kv.Key)
		case i > 0 && bytes.Compare(r.kvs[i-1].Key, kv.Key) >= 0:
			return nil, false, fmt.Errorf("%w: keys are not in ascending order", ErrProtocol)
		case kv.CreateRevision < 1 || kv.ModRevision < kv.CreateRevision || kv.ModRevision > rev || kv.Version < 1 || kv.Lease < 0:
			return nil, false, fmt.Errorf("%w: key %q has revisions that do not fit (create %d, mod %d, version %d, store %d)",
				ErrProtocol, kv.Key, kv.CreateRevision, kv.ModRevision, kv.Version, rev)
		}
	}
	return r.kvs, r.more, nil
}

// decodeRangeBody decodes the answer to a read of s.
func decodeRangeBody(data []byte, s span) ([]KeyValue, bool, error) {
	r, err := decodeRangeResponse(data)
	if err != nil {
		return nil, false, err
	}
	if r.rev < 1 {
		return nil, false, noHeader()
	}
	return checkRange(r, s, r.rev)
}

// responseOp is one ResponseOp: which member of the oneof is set, and its
// payload. A oneof set twice is refused (fields sees the same number
// only; two members of one oneof are counted here).
type responseOp struct {
	kind    protowire.Number
	payload []byte
}

func decodeResponseOp(b []byte) (responseOp, error) {
	fs, err := fields(b, map[protowire.Number]protowire.Type{
		oneofRange: bytesT, oneofPut: bytesT, oneofDeleteRange: bytesT, oneofTxn: bytesT,
	}, nil)
	if err != nil {
		return responseOp{}, protoErr("response op", err)
	}
	if len(fs) != 1 {
		return responseOp{}, fmt.Errorf("%w: a response op with %d responses", ErrProtocol, len(fs))
	}
	return responseOp{kind: fs[0].num, payload: fs[0].bytes}, nil
}

// decodeTxn checks a transaction's response: one response per operation
// of the branch taken, each of the operation's kind.
func decodeTxn(data []byte, then, els []Op) (*TxnResult, error) {
	fs, err := fields(data, map[protowire.Number]protowire.Type{
		txnRespHeader: bytesT, txnRespSucceeded: varint, txnRespResponses: bytesT,
	}, map[protowire.Number]bool{txnRespResponses: true})
	if err != nil {
		return nil, protoErr("transaction response", err)
	}
	var rev int64
	var succeeded bool
	var resps []responseOp
	for _, f := range fs {
		switch f.num {
		case txnRespHeader:
			if rev, err = header(f.bytes); err != nil {
				return nil, err
			}
		case txnRespSucceeded:
			if succeeded, err = asBool(f); err != nil {
				return nil, protoErr("transaction response", err)
			}
		case txnRespResponses:
			r, err := decodeResponseOp(f.bytes)
			if err != nil {
				return nil, err
			}
			resps = append(resps, r)
		}
	}
	if rev < 1 {
		return nil, noHeader()
	}
	ops := els
	if succeeded {
		ops = then
	}
	if len(resps) != len(ops) {
		return nil, fmt.Errorf("%w: %d responses to %d operations", ErrProtocol, len(resps), len(ops))
	}
	res := &TxnResult{Succeeded: succeeded, Gets: make([]*KeyValue, len(ops))}
	for i, op := range ops {
		want := map[opKind]protowire.Number{opGet: oneofRange, opPut: oneofPut, opDelete: oneofDeleteRange}[op.kind]
		if resps[i].kind != want {
			return nil, fmt.Errorf("%w: response %d does not answer a %s", ErrProtocol, i, op.kind)
		}
		if op.kind != opGet {
			continue
		}
		r, err := decodeRangeResponse(resps[i].payload)
		if err != nil {
			return nil, err
		}
		kvs, _, err := checkRange(r, span{key: []byte(op.key)}, rev)
		if err != nil {
			return nil, err
		}
		if len(kvs) == 1 {
			res.Gets[i] = &kvs[0]
		}
	}
	return res, nil
}

func decodeGrant(data []byte) (int64, int64, error) {
	fs, err := fields(data, map[protowire.Number]protowire.Type{
		grantRespHeader: bytesT, grantRespID: varint, grantRespTTL: varint, grantRespError: bytesT,
	}, nil)
	if err != nil {
		return 0, 0, protoErr("lease grant response", err)
	}
	var rev, id, ttl int64
	var msg string
	for _, f := range fs {
		switch f.num {
		case grantRespHeader:
			if rev, err = header(f.bytes); err != nil {
				return 0, 0, err
			}
		case grantRespID:
			id = int64(f.n)
		case grantRespTTL:
			ttl = int64(f.n)
		case grantRespError:
			msg = truncate(f.bytes, 500)
		}
	}
	switch {
	case rev < 1:
		return 0, 0, noHeader()
	case msg != "":
		return 0, 0, fmt.Errorf("lease grant: %s", msg)
	case id <= 0 || ttl <= 0:
		return 0, 0, fmt.Errorf("%w: lease id %d with ttl %d", ErrProtocol, id, ttl)
	}
	return id, ttl, nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
