package etcdgw

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// The gateway speaks the protobuf JSON mapping of etcd's v3 messages
// (etcdserverpb in rpc.proto): bytes are standard base64, 64-bit integers
// are decimal strings, enums are names. etcd 3.4 and 3.5 marshal with
// grpc-gateway v1 (the .proto field names, "create_revision"; fields at
// their zero value left out, so a failed transaction has no "succeeded"),
// etcd 3.6 with v2's defaults (lowerCamelCase names, "createRevision";
// zero values written). Requests use the .proto names, which both read.
// Responses are brought to the .proto names by protoNames before they are
// decoded. Unknown fields are ignored, as newer members may add some.

// Requests. 64-bit integers are written as strings, which both accept.

type rangeRequest struct {
	Key      []byte `json:"key"`
	RangeEnd []byte `json:"range_end,omitempty"`
	Limit    string `json:"limit,omitempty"`
}

type putRequest struct {
	Key   []byte `json:"key"`
	Value []byte `json:"value"`
	Lease string `json:"lease,omitempty"`
}

type deleteRangeRequest struct {
	Key []byte `json:"key"`
}

type requestOp struct {
	RequestRange       *rangeRequest       `json:"request_range,omitempty"`
	RequestPut         *putRequest         `json:"request_put,omitempty"`
	RequestDeleteRange *deleteRangeRequest `json:"request_delete_range,omitempty"`
}

type compare struct {
	Result string `json:"result"`
	Target string `json:"target"`
	Key    []byte `json:"key"`
	// One of the target union, always written, 0 included: a compare
	// whose union is unset would compare against an unnamed default.
	ModRevision    string `json:"mod_revision,omitempty"`
	CreateRevision string `json:"create_revision,omitempty"`
}

type txnRequest struct {
	Compare []compare   `json:"compare"`
	Success []requestOp `json:"success"`
	Failure []requestOp `json:"failure"`
}

type leaseGrantRequest struct {
	TTL string `json:"TTL"`
}

// Responses.

// i64 is a protobuf JSON int64: a decimal string with no sign but '-',
// no leading zero, no spaces. A number where a string belongs is refused,
// so that one value has one spelling.
type i64 int64

func (v *i64) UnmarshalJSON(b []byte) error {
	if len(b) < 3 || b[0] != '"' || b[len(b)-1] != '"' {
		return fmt.Errorf("64-bit integer %.40s is not a quoted decimal", b)
	}
	s := string(b[1 : len(b)-1])
	digits := s
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if digits == "" || (digits[0] == '0' && len(digits) > 1) || digits != s && digits == "0" {
		return fmt.Errorf("64-bit integer %q is not canonical", s)
	}
	for _, c := range []byte(digits) {
		if c < '0' || c > '9' {
			return fmt.Errorf("64-bit integer %q is not decimal", s)
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("64-bit integer %q: %v", s, err)
	}
	*v = i64(n)
	return nil
}

// b64 is protobuf JSON bytes: padded standard base64, canonical (zero
// padding bits, no line breaks), so that one byte string has one spelling.
type b64 []byte

var strictBase64 = base64.StdEncoding.Strict()

func (v *b64) UnmarshalJSON(b []byte) error {
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return fmt.Errorf("bytes field %.40s is not a string", b)
	}
	// Base64 has no character JSON escapes: an escape is not canonical.
	s := b[1 : len(b)-1]
	if bytes.ContainsAny(s, "\\\r\n") {
		return errors.New("bytes field holds an escape or a line break")
	}
	out := make([]byte, strictBase64.DecodedLen(len(s)))
	n, err := strictBase64.Decode(out, s)
	if err != nil {
		return fmt.Errorf("bytes field: %v", err)
	}
	*v = out[:n]
	return nil
}

type responseHeader struct {
	Revision i64 `json:"revision"`
}

type keyValue struct {
	Key            b64 `json:"key"`
	CreateRevision i64 `json:"create_revision"`
	ModRevision    i64 `json:"mod_revision"`
	Version        i64 `json:"version"`
	Value          b64 `json:"value"`
	Lease          i64 `json:"lease"`
}

type rangeResponse struct {
	Header *responseHeader `json:"header"`
	Kvs    []keyValue      `json:"kvs"`
	More   bool            `json:"more"`
	Count  i64             `json:"count"`
}

type responseOp struct {
	ResponseRange       *rangeResponse   `json:"response_range"`
	ResponsePut         *struct{}        `json:"response_put"`
	ResponseDeleteRange *struct{}        `json:"response_delete_range"`
	ResponseTxn         *json.RawMessage `json:"response_txn"`
}

type txnResponse struct {
	Header    *responseHeader `json:"header"`
	Succeeded bool            `json:"succeeded"`
	Responses []responseOp    `json:"responses"`
}

type leaseGrantResponse struct {
	Header *responseHeader `json:"header"`
	ID     i64             `json:"ID"`
	TTL    i64             `json:"TTL"`
	Error  string          `json:"error"`
}

// errorBody is a gateway error: a gRPC status. grpc-gateway v1 (etcd 3.4)
// writes "error" and "message", v2 only "message".
type errorBody struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Error   string `json:"error"`
}

// unmarshal decodes one whole response body: a JSON object and nothing
// after it, in either spelling of the field names.
func unmarshal(data []byte, v any) error {
	data, err := protoNames(data)
	if err == nil {
		err = json.Unmarshal(data, v)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	return nil
}

// maxDepth bounds the nesting of a response (etcd's are at most 5 deep).
const maxDepth = 16

// protoNames rewrites the object keys of a JSON document from protobuf's
// JSON names to the .proto names (createRevision to create_revision; ID
// and TTL are both), and refuses a document that is not one JSON value,
// nests deeper than maxDepth, or names a field twice in one object, in
// either spelling: one response has one reading.
func protoNames(data []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	out := bytes.NewBuffer(make([]byte, 0, len(data)+len(data)/8))
	type frame struct {
		object bool
		n      int // values written
		keys   map[string]bool
	}
	var stack []*frame
	expectKey := func() bool { return len(stack) > 0 && stack[len(stack)-1].object && stack[len(stack)-1].n%2 == 0 }
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if len(stack) == 0 && out.Len() > 0 {
			return nil, errors.New("data after the JSON value")
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			out.WriteByte(byte(d))
			stack = stack[:len(stack)-1]
			if len(stack) > 0 {
				stack[len(stack)-1].n++
			}
			continue
		}
		top := (*frame)(nil)
		if len(stack) > 0 {
			top = stack[len(stack)-1]
			if top.n > 0 {
				if top.object && top.n%2 == 1 {
					out.WriteByte(':')
				} else {
					out.WriteByte(',')
				}
			}
		}
		if key, ok := tok.(string); ok && expectKey() {
			key = snake(key)
			if top.keys[key] {
				return nil, fmt.Errorf("field %q appears twice", key)
			}
			top.keys[key] = true
			tok = key
		}
		switch v := tok.(type) {
		case json.Delim:
			if len(stack) == maxDepth {
				return nil, fmt.Errorf("nested deeper than %d", maxDepth)
			}
			out.WriteByte(byte(v))
			f := &frame{object: v == '{'}
			if f.object {
				f.keys = map[string]bool{}
			}
			stack = append(stack, f)
			continue
		case json.Number:
			out.WriteString(v.String())
		default:
			b, err := json.Marshal(v)
			if err != nil {
				return nil, err
			}
			out.Write(b)
		}
		if top != nil {
			top.n++
		}
	}
	if out.Len() == 0 || len(stack) > 0 {
		return nil, errors.New("empty or cut short")
	}
	return out.Bytes(), nil
}

// snake turns a lowerCamelCase name into snake_case; other names (ID,
// TTL, kvs) stay as they are.
func snake(name string) string {
	if name == "" || name[0] < 'a' || name[0] > 'z' {
		return name
	}
	var b []byte
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'A' && c <= 'Z':
			if b == nil {
				b = append(make([]byte, 0, len(name)+4), name[:i]...)
			}
			b = append(b, '_', c+('a'-'A'))
		case c == '_' && b == nil:
			// Already a .proto name.
			return name
		case b != nil:
			b = append(b, c)
		}
	}
	if b == nil {
		return name
	}
	return string(b)
}

func checkHeader(h *responseHeader) (int64, error) {
	if h == nil || h.Revision < 1 {
		return 0, fmt.Errorf("%w: no response header with a revision", ErrProtocol)
	}
	return int64(h.Revision), nil
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

// decodeRange checks a range response against what was asked: keys in the
// range, ascending, at most limit of them, revisions that fit together
// and the count etcd reports.
func decodeRange(r *rangeResponse, s span, rev int64) ([]KeyValue, bool, error) {
	if r == nil {
		return nil, false, fmt.Errorf("%w: no range response", ErrProtocol)
	}
	max := s.limit
	if s.end == nil {
		max = 1
	}
	n := len(r.Kvs)
	switch {
	case max > 0 && n > max:
		return nil, false, fmt.Errorf("%w: %d keys for a read of at most %d", ErrProtocol, n, max)
	case int64(r.Count) < int64(n) || r.More != (int64(r.Count) > int64(n)) || r.More && n != max:
		// etcd says "more" only when it cut the keys at the limit.
		return nil, false, fmt.Errorf("%w: count %d and more=%v do not fit %d keys", ErrProtocol, r.Count, r.More, n)
	}
	out := make([]KeyValue, n)
	for i, kv := range r.Kvs {
		switch {
		case !s.holds(kv.Key):
			return nil, false, fmt.Errorf("%w: key %q is outside the range read", ErrProtocol, kv.Key)
		case i > 0 && bytes.Compare(r.Kvs[i-1].Key, kv.Key) >= 0:
			return nil, false, fmt.Errorf("%w: keys are not in ascending order", ErrProtocol)
		case kv.CreateRevision < 1 || kv.ModRevision < kv.CreateRevision || int64(kv.ModRevision) > rev || kv.Version < 1 || kv.Lease < 0:
			return nil, false, fmt.Errorf("%w: key %q has revisions that do not fit (create %d, mod %d, version %d, store %d)",
				ErrProtocol, kv.Key, kv.CreateRevision, kv.ModRevision, kv.Version, rev)
		}
		out[i] = KeyValue{Key: kv.Key, Value: kv.Value, CreateRevision: int64(kv.CreateRevision),
			ModRevision: int64(kv.ModRevision), Version: int64(kv.Version), Lease: int64(kv.Lease)}
	}
	return out, r.More, nil
}

// decodeRangeBody decodes the answer to a read of s.
func decodeRangeBody(data []byte, s span) ([]KeyValue, bool, error) {
	var r rangeResponse
	if err := unmarshal(data, &r); err != nil {
		return nil, false, err
	}
	rev, err := checkHeader(r.Header)
	if err != nil {
		return nil, false, err
	}
	return decodeRange(&r, s, rev)
}

// decodeTxn checks a transaction's response: one response per operation
// of the branch taken, each of the operation's kind.
func decodeTxn(data []byte, then, els []Op) (*TxnResult, error) {
	var r txnResponse
	if err := unmarshal(data, &r); err != nil {
		return nil, err
	}
	rev, err := checkHeader(r.Header)
	if err != nil {
		return nil, err
	}
	ops := els
	if r.Succeeded {
		ops = then
	}
	if len(r.Responses) != len(ops) {
		return nil, fmt.Errorf("%w: %d responses to %d operations", ErrProtocol, len(r.Responses), len(ops))
	}
	res := &TxnResult{Succeeded: r.Succeeded, Gets: make([]*KeyValue, len(ops))}
	for i, op := range ops {
		resp := r.Responses[i]
		kinds := 0
		for _, set := range []bool{resp.ResponseRange != nil, resp.ResponsePut != nil, resp.ResponseDeleteRange != nil, resp.ResponseTxn != nil} {
			if set {
				kinds++
			}
		}
		ok := kinds == 1
		switch op.kind {
		case opGet:
			ok = ok && resp.ResponseRange != nil
		case opPut:
			ok = ok && resp.ResponsePut != nil
		case opDelete:
			ok = ok && resp.ResponseDeleteRange != nil
		}
		if !ok {
			return nil, fmt.Errorf("%w: response %d does not answer a %s", ErrProtocol, i, op.kind)
		}
		if op.kind == opGet {
			kvs, _, err := decodeRange(resp.ResponseRange, span{key: []byte(op.key)}, rev)
			if err != nil {
				return nil, err
			}
			if len(kvs) == 1 {
				res.Gets[i] = &kvs[0]
			}
		}
	}
	return res, nil
}

func decodeGrant(data []byte) (int64, int64, error) {
	var r leaseGrantResponse
	if err := unmarshal(data, &r); err != nil {
		return 0, 0, err
	}
	if _, err := checkHeader(r.Header); err != nil {
		return 0, 0, err
	}
	if r.Error != "" {
		return 0, 0, fmt.Errorf("lease grant: %s", r.Error)
	}
	if r.ID <= 0 || r.TTL <= 0 {
		return 0, 0, fmt.Errorf("%w: lease id %d with ttl %d", ErrProtocol, r.ID, r.TTL)
	}
	return int64(r.ID), int64(r.TTL), nil
}

// decodeError reads a gateway's error body; what is not one is reported
// with the HTTP status and the start of the body.
func decodeError(status int, data []byte) error {
	// etcd's own refusal, before the gateway, in plain text (serve.go).
	if status == 400 && bytes.HasPrefix(data, []byte("CommonName of client sending a request against gateway")) {
		return ErrCommonNameAuth
	}
	var e errorBody
	if err := json.Unmarshal(data, &e); err != nil || e.Code <= 0 || e.Code > 16 || (e.Message == "" && e.Error == "") {
		if status == 404 {
			return fmt.Errorf("%w: HTTP status 404: the member serves no JSON gateway at /v3/ (etcd 3.4 or later, with --enable-grpc-gateway, its default)", ErrProtocol)
		}
		return fmt.Errorf("%w: HTTP status %d with body %q", ErrProtocol, status, truncate(data, 200))
	}
	msg := e.Message
	if msg == "" {
		msg = e.Error
	}
	return &Error{Code: e.Code, Message: truncate([]byte(msg), 500)}
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
