package etcdkv

import (
	"bytes"
	"testing"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// FuzzResponse: every answer a member sends is untrusted input. Decoding
// never panics; what a decoder accepts holds only keys inside what was
// read, in order and within the limit, revisions that fit, and one
// response per operation of the branch that ran.
func FuzzResponse(f *testing.F) {
	for _, s := range [][]byte{
		pb(hdr, kvK, vint(rangeRespCount, 1)),
		pb(hdr,
			kvWith(lenf(kvKey, "/p/a"), vint(kvCreate, 4), vint(kvMod, 5), vint(kvVersion, 2), lenf(kvValue, "v")),
			kvWith(lenf(kvKey, "/p/b"), vint(kvCreate, 6), vint(kvMod, 6), vint(kvVersion, 1)),
			vint(rangeRespMore, 1), vint(rangeRespCount, 3)),
		txnPut,
		pb(hdr, vint(txnRespSucceeded, 1),
			lenf(txnRespResponses, string(lenf(oneofRange, string(pb(hdr, kvWith(lenf(kvKey, "/p/a"), vint(kvCreate, 4), vint(kvMod, 5), vint(kvVersion, 2)), vint(rangeRespCount, 1)))))),
			lenf(txnRespResponses, string(lenf(oneofPut, string(hdr))))),
		pb(hdr, lenf(txnRespResponses, string(lenf(oneofRange, "")))),
		pb(hdr, vint(grantRespID, 7587839221445806083), vint(grantRespTTL, 60)),
	} {
		f.Add(s)
	}
	// And as etcd's own code writes them.
	hdr := &etcdserverpb.ResponseHeader{ClusterId: 1, MemberId: 2, Revision: 9, RaftTerm: 3}
	kv := &mvccpb.KeyValue{Key: []byte("/p/a"), CreateRevision: 4, ModRevision: 5, Version: 2, Value: []byte("v"), Lease: 7}
	for _, m := range []interface{ Marshal() ([]byte, error) }{
		&etcdserverpb.RangeResponse{Header: hdr, Kvs: []*mvccpb.KeyValue{kv}, Count: 1},
		&etcdserverpb.TxnResponse{Header: hdr, Succeeded: true, Responses: []*etcdserverpb.ResponseOp{
			{Response: &etcdserverpb.ResponseOp_ResponseRange{ResponseRange: &etcdserverpb.RangeResponse{Header: hdr, Kvs: []*mvccpb.KeyValue{kv}, Count: 1}}},
			{Response: &etcdserverpb.ResponseOp_ResponsePut{ResponsePut: &etcdserverpb.PutResponse{Header: hdr}}},
		}},
		&etcdserverpb.LeaseGrantResponse{Header: hdr, ID: 7, TTL: 60},
	} {
		b, err := m.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := span{key: []byte("/p/"), end: []byte("/p0"), limit: 3}
		if kvs, more, err := decodeRangeBody(data, s); err == nil {
			if len(kvs) > 3 || more && len(kvs) < 3 {
				t.Fatalf("%d keys for a limit of 3", len(kvs))
			}
			for i, kv := range kvs {
				if !s.holds(kv.Key) || i > 0 && bytes.Compare(kvs[i-1].Key, kv.Key) >= 0 || kv.ModRevision < kv.CreateRevision || kv.CreateRevision < 1 || kv.Lease < 0 {
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
	})
}
