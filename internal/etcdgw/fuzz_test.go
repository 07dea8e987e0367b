package etcdgw

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzResponse: every answer a member sends is untrusted input. Decoding
// never panics; what a decoder accepts holds only keys inside what was
// read, in order and within the limit, and one response per operation of
// the branch that ran; the field-name rewrite yields JSON and is stable.
func FuzzResponse(f *testing.F) {
	for _, s := range []string{
		`{` + hdr + `,"kvs":[` + kvK + `],"count":"1"}`,
		`{"header":{"cluster_id":"1","member_id":"2","revision":"9","raft_term":"3"},"kvs":[{"key":"L3AvYQ==","create_revision":"4","mod_revision":"5","version":"2","value":"dg=="},{"key":"L3AvYg==","create_revision":"6","mod_revision":"6","version":"1"}],"more":true,"count":"3"}`,
		`{"header":{"clusterId":"1","memberId":"2","revision":"9","raftTerm":"3"},"kvs":[],"more":false,"count":"0"}`,
		`{` + hdr + `,"succeeded":true,"responses":[{"response_range":{"header":{"revision":"9"},"kvs":[{"key":"L3AvYQ==","create_revision":"4","mod_revision":"5","version":"2"}],"count":"1"}},{"response_put":{"header":{"revision":"9"}}}]}`,
		`{"header":{"revision":"9"},"succeeded":false,"responses":[{"responseRange":{"header":null,"kvs":[],"count":"0","more":false}}]}`,
		`{` + hdr + `,"ID":"7587839221445806083","TTL":"60"}`,
		`{"error":"etcdserver: no leader","message":"etcdserver: no leader","code":14}`,
		`{"code":5,"message":"etcdserver: requested lease not found","details":[]}`,
		`{"a":[1,2.5e3,-0,"x\u00e9",true,null,{"bB":{}}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := span{key: []byte("/p/"), end: []byte("/p0"), limit: 3}
		if kvs, more, err := decodeRangeBody(data, s); err == nil {
			if len(kvs) > 3 || more && len(kvs) < 3 {
				t.Fatalf("%d keys for a limit of 3", len(kvs))
			}
			for i, kv := range kvs {
				if !s.holds(kv.Key) || i > 0 && bytes.Compare(kvs[i-1].Key, kv.Key) >= 0 || kv.ModRevision < kv.CreateRevision || kv.CreateRevision < 1 {
					t.Fatalf("accepted key %d: %+v", i, kv)
				}
			}
		}
		if kvs, _, err := decodeRangeBody(data, span{key: []byte("/p/a")}); err == nil && (len(kvs) > 1 || len(kvs) == 1 && string(kvs[0].Key) != "/p/a") {
			t.Fatalf("accepted %+v for a read of /p/a", kvs)
		}
		then, els := []Op{OpGet("/p/a"), OpPut("/p/b", "v", 0)}, []Op{OpGet("/p/a")}
		if r, err := decodeTxn(data, then, els); err == nil {
			branch := els
			if r.Succeeded {
				branch = then
			}
			if len(r.Gets) != len(branch) || r.Gets[0] != nil && string(r.Gets[0].Key) != "/p/a" || len(r.Gets) > 1 && r.Gets[1] != nil {
				t.Fatalf("accepted %+v", r)
			}
		}
		if id, ttl, err := decodeGrant(data); err == nil && (id <= 0 || ttl <= 0) {
			t.Fatalf("accepted lease %d with ttl %d", id, ttl)
		}
		if err := decodeError(503, data); err == nil {
			t.Fatal("an error answer decoded to no error")
		}
		if out, err := protoNames(data); err == nil {
			if !json.Valid(out) {
				t.Fatalf("rewrote %q into invalid JSON %q", data, out)
			}
			again, err := protoNames(out)
			if err != nil || !bytes.Equal(again, out) {
				t.Fatalf("rewrite of %q is not stable: %q then %q, %v", data, out, again, err)
			}
		}
	})
}
