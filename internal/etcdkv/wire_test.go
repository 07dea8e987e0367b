package etcdkv

import (
	"bytes"
	"testing"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// The messages are checked against etcd's own generated code (test-only:
// etcdserverpb does not link into writ): what this package encodes, etcd
// decodes to the request meant; what etcd encodes, this package reads.

type marshaler interface{ Marshal() ([]byte, error) }

func etcdBytes(t *testing.T, m marshaler) []byte {
	t.Helper()
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEtcdReadsRequests(t *testing.T) {
	body := txnRequest(
		[]Compare{ModRevisionIs("/m", 0), CreateRevisionIs("/c", 42)},
		[]Op{OpPut("/m", "v\x00", 1<<62+1), OpDelete("/d")},
		[]Op{OpGet("/g")})
	var txn etcdserverpb.TxnRequest
	if err := txn.Unmarshal(body); err != nil {
		t.Fatalf("%x: %v", body, err)
	}
	c0, c1 := txn.Compare[0], txn.Compare[1]
	if c0.Result != etcdserverpb.Compare_EQUAL || c0.Target != etcdserverpb.Compare_MOD || string(c0.Key) != "/m" {
		t.Fatalf("compare 0: %v", c0)
	}
	// A compare against revision 0 (absent) must set the target, not
	// leave the union empty.
	if u, ok := c0.TargetUnion.(*etcdserverpb.Compare_ModRevision); !ok || u.ModRevision != 0 {
		t.Fatalf("compare 0 target: %#v", c0.TargetUnion)
	}
	if u, ok := c1.TargetUnion.(*etcdserverpb.Compare_CreateRevision); !ok || u.CreateRevision != 42 || c1.Target != etcdserverpb.Compare_CREATE {
		t.Fatalf("compare 1: %v", c1)
	}
	p := txn.Success[0].GetRequestPut()
	if p == nil || string(p.Key) != "/m" || string(p.Value) != "v\x00" || p.Lease != 1<<62+1 || p.PrevKv {
		t.Fatalf("put: %v", txn.Success[0])
	}
	if d := txn.Success[1].GetRequestDeleteRange(); d == nil || string(d.Key) != "/d" || d.RangeEnd != nil || d.PrevKv {
		t.Fatalf("delete: %v", txn.Success[1])
	}
	if g := txn.Failure[0].GetRequestRange(); g == nil || string(g.Key) != "/g" || g.RangeEnd != nil || g.Limit != 0 {
		t.Fatalf("get: %v", txn.Failure[0])
	}

	var rr etcdserverpb.RangeRequest
	rb := rangeRequest(span{key: []byte("/p/"), end: []byte(PrefixEnd("/p/")), limit: 64})
	if err := rr.Unmarshal(rb); err != nil || string(rr.Key) != "/p/" || string(rr.RangeEnd) != "/p0" || rr.Limit != 64 || rr.Serializable {
		t.Fatalf("range %x: %v %v", rb, &rr, err)
	}
	var lg etcdserverpb.LeaseGrantRequest
	if err := lg.Unmarshal(grantRequest(60)); err != nil || lg.TTL != 60 || lg.ID != 0 {
		t.Fatalf("grant: %v %v", &lg, err)
	}
}

func TestEtcdResponses(t *testing.T) {
	hdr := &etcdserverpb.ResponseHeader{ClusterId: 1<<63 + 5, MemberId: 7, Revision: 12, RaftTerm: 3}
	kvs := []*mvccpb.KeyValue{
		{Key: []byte("/p/a"), CreateRevision: 3, ModRevision: 11, Version: 4, Value: []byte{0, 0xff, '"', '\n'}, Lease: 77},
		{Key: []byte("/p/b"), CreateRevision: 5, ModRevision: 5, Version: 1},
	}
	got, more, err := decodeRangeBody(etcdBytes(t, &etcdserverpb.RangeResponse{Header: hdr, Kvs: kvs, More: true, Count: 3}),
		span{key: []byte("/p/"), end: []byte("/p0"), limit: 2})
	if err != nil || !more || len(got) != 2 || string(got[0].Key) != "/p/a" || !bytes.Equal(got[0].Value, kvs[0].Value) ||
		got[0].Lease != 77 || got[0].ModRevision != 11 || got[0].CreateRevision != 3 || got[0].Version != 4 || len(got[1].Value) != 0 {
		t.Fatalf("range: %+v %v %v", got, more, err)
	}
	if got, _, err := decodeRangeBody(etcdBytes(t, &etcdserverpb.RangeResponse{Header: hdr}), span{key: []byte("/x")}); err != nil || len(got) != 0 {
		t.Fatalf("empty range: %+v %v", got, err)
	}

	txn := &etcdserverpb.TxnResponse{Header: hdr, Succeeded: true, Responses: []*etcdserverpb.ResponseOp{
		{Response: &etcdserverpb.ResponseOp_ResponseRange{ResponseRange: &etcdserverpb.RangeResponse{Header: hdr, Kvs: kvs[:1], Count: 1}}},
		{Response: &etcdserverpb.ResponseOp_ResponsePut{ResponsePut: &etcdserverpb.PutResponse{Header: hdr}}},
		{Response: &etcdserverpb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: &etcdserverpb.DeleteRangeResponse{Header: hdr, Deleted: 1}}},
	}}
	r, err := decodeTxn(etcdBytes(t, txn), []Op{OpGet("/p/a"), OpPut("/p/b", "v", 0), OpDelete("/p/c")}, nil)
	if err != nil || !r.Succeeded || r.Gets[0] == nil || string(r.Gets[0].Key) != "/p/a" || r.Gets[1] != nil {
		t.Fatalf("txn: %+v %v", r, err)
	}
	// A failed compare: succeeded is left out, the else branch answered.
	// A nested response's header may be empty: only the transaction's
	// counts.
	failed := &etcdserverpb.TxnResponse{Header: hdr, Responses: []*etcdserverpb.ResponseOp{
		{Response: &etcdserverpb.ResponseOp_ResponseRange{ResponseRange: &etcdserverpb.RangeResponse{Header: &etcdserverpb.ResponseHeader{}}}},
	}}
	if r, err := decodeTxn(etcdBytes(t, failed), []Op{OpPut("/p/a", "v", 0)}, []Op{OpGet("/p/a")}); err != nil || r.Succeeded || r.Gets[0] != nil {
		t.Fatalf("failed txn: %+v %v", r, err)
	}
	// The answer to another branch, or of another kind, is refused.
	if _, err := decodeTxn(etcdBytes(t, txn), []Op{OpGet("/p/a"), OpDelete("/p/b"), OpDelete("/p/c")}, nil); err == nil {
		t.Fatal("a put's answer accepted for a delete")
	}

	id, ttl, err := decodeGrant(etcdBytes(t, &etcdserverpb.LeaseGrantResponse{Header: hdr, ID: 7587839221445806083, TTL: 60}))
	if err != nil || id != 7587839221445806083 || ttl != 60 {
		t.Fatalf("grant: %d %d %v", id, ttl, err)
	}
	if _, _, err := decodeGrant(etcdBytes(t, &etcdserverpb.LeaseGrantResponse{Header: hdr, ID: 1, TTL: 60, Error: "lease exists"})); err == nil {
		t.Fatal("a grant with an error accepted")
	}
}
