package etcdgw

import (
	"bytes"
	"encoding/json"
	"testing"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/protoadapt"
)

// The gateway's JSON is protojson of etcd's own messages. The tests below
// marshal and unmarshal etcdserverpb's types (test-only: they do not link
// into writ) the way each gateway version does, so the client is checked
// against the forms of etcd 3.6 too, while the cluster on this machine is
// Debian's etcd 3.4.

// gatewayForms are the response marshalers: grpc-gateway v1's jsonpb with
// OrigName (etcd 3.4, 3.5) and v2's default (etcd 3.6: JSON names, zero
// values written).
var gatewayForms = map[string]protojson.MarshalOptions{
	"etcd 3.4 and 3.5": {UseProtoNames: true},
	"etcd 3.6":         {EmitUnpopulated: true},
}

func marshalAs(t *testing.T, o protojson.MarshalOptions, m protoadapt.MessageV1) []byte {
	t.Helper()
	b, err := o.Marshal(protoadapt.MessageV2Of(m))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGatewayResponseForms(t *testing.T) {
	hdr := &etcdserverpb.ResponseHeader{ClusterId: 1<<63 + 5, MemberId: 7, Revision: 12, RaftTerm: 3}
	kvs := []*mvccpb.KeyValue{
		{Key: []byte("/p/a"), CreateRevision: 3, ModRevision: 11, Version: 4, Value: []byte{0, 0xff, '"', '\n'}, Lease: 77},
		{Key: []byte("/p/b"), CreateRevision: 5, ModRevision: 5, Version: 1},
	}
	rng := &etcdserverpb.RangeResponse{Header: hdr, Kvs: kvs, Count: 3, More: true}
	none := &etcdserverpb.RangeResponse{Header: hdr}
	failed := &etcdserverpb.TxnResponse{Header: hdr, Responses: []*etcdserverpb.ResponseOp{
		{Response: &etcdserverpb.ResponseOp_ResponseRange{ResponseRange: &etcdserverpb.RangeResponse{
			Header: &etcdserverpb.ResponseHeader{Revision: 12}, Kvs: kvs[:1], Count: 1}}},
	}}
	succeeded := &etcdserverpb.TxnResponse{Header: hdr, Succeeded: true, Responses: []*etcdserverpb.ResponseOp{
		{Response: &etcdserverpb.ResponseOp_ResponsePut{ResponsePut: &etcdserverpb.PutResponse{Header: &etcdserverpb.ResponseHeader{Revision: 12}}}},
		{Response: &etcdserverpb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: &etcdserverpb.DeleteRangeResponse{Header: &etcdserverpb.ResponseHeader{Revision: 12}, Deleted: 1}}},
		{Response: &etcdserverpb.ResponseOp_ResponseRange{ResponseRange: &etcdserverpb.RangeResponse{Header: &etcdserverpb.ResponseHeader{Revision: 12}}}},
	}}
	grant := &etcdserverpb.LeaseGrantResponse{Header: hdr, ID: 1<<62 + 9, TTL: 60}

	for name, o := range gatewayForms {
		t.Run(name, func(t *testing.T) {
			got, more, err := decodeRangeBody(marshalAs(t, o, rng), span{key: []byte("/p/"), end: []byte("/p0"), limit: 2})
			if err != nil || !more || len(got) != 2 {
				t.Fatalf("range %s: %+v %v %v", marshalAs(t, o, rng), got, more, err)
			}
			for i, kv := range got {
				w := kvs[i]
				if !bytes.Equal(kv.Key, w.Key) || !bytes.Equal(kv.Value, w.Value) || kv.CreateRevision != w.CreateRevision ||
					kv.ModRevision != w.ModRevision || kv.Version != w.Version || kv.Lease != w.Lease {
					t.Fatalf("key %d: %+v, want %+v", i, kv, w)
				}
			}
			if got, _, err := decodeRangeBody(marshalAs(t, o, none), span{key: []byte("/p/a")}); err != nil || len(got) != 0 {
				t.Fatalf("empty range %s: %+v %v", marshalAs(t, o, none), got, err)
			}
			get, put := []Op{OpGet("/p/a")}, []Op{OpPut("/p/a", "x", 0), OpDelete("/p/b"), OpGet("/p/c")}
			r, err := decodeTxn(marshalAs(t, o, failed), put, get)
			if err != nil || r.Succeeded || r.Gets[0] == nil || r.Gets[0].Lease != 77 {
				t.Fatalf("failed txn %s: %+v %v", marshalAs(t, o, failed), r, err)
			}
			r, err = decodeTxn(marshalAs(t, o, succeeded), put, get)
			if err != nil || !r.Succeeded || len(r.Gets) != 3 || r.Gets[2] != nil {
				t.Fatalf("succeeded txn %s: %+v %v", marshalAs(t, o, succeeded), r, err)
			}
			id, ttl, err := decodeGrant(marshalAs(t, o, grant))
			if err != nil || id != grant.ID || ttl != 60 {
				t.Fatalf("grant %s: %d %d %v", marshalAs(t, o, grant), id, ttl, err)
			}
		})
	}
}

// Every gateway reads the requests this client writes as it means them,
// with no field it does not know (protojson refuses unknown fields unless
// told to discard them).
func TestGatewayReadsRequests(t *testing.T) {
	body, err := txnBody(
		[]Compare{ModRevisionIs("/m", 0), CreateRevisionIs("/c", 42)},
		[]Op{OpPut("/m", "v\x00", 1<<62+1), OpDelete("/d")},
		[]Op{OpGet("/g")})
	if err != nil {
		t.Fatal(err)
	}
	var txn etcdserverpb.TxnRequest
	if err := protojson.Unmarshal(body, protoadapt.MessageV2Of(&txn)); err != nil {
		t.Fatalf("%s: %v", body, err)
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
	if p == nil || string(p.Key) != "/m" || string(p.Value) != "v\x00" || p.Lease != 1<<62+1 {
		t.Fatalf("put: %v", txn.Success[0])
	}
	if d := txn.Success[1].GetRequestDeleteRange(); d == nil || string(d.Key) != "/d" || d.RangeEnd != nil {
		t.Fatalf("delete: %v", txn.Success[1])
	}
	if g := txn.Failure[0].GetRequestRange(); g == nil || string(g.Key) != "/g" || g.RangeEnd != nil || g.Limit != 0 {
		t.Fatalf("get: %v", txn.Failure[0])
	}

	rb, _ := json.Marshal(rangeRequest{Key: []byte("/p/"), RangeEnd: []byte(PrefixEnd("/p/")), Limit: "64"})
	var rr etcdserverpb.RangeRequest
	if err := protojson.Unmarshal(rb, protoadapt.MessageV2Of(&rr)); err != nil || string(rr.RangeEnd) != "/p0" || rr.Limit != 64 || rr.Serializable {
		t.Fatalf("range %s: %v %v", rb, &rr, err)
	}
	gb, _ := json.Marshal(leaseGrantRequest{TTL: "60"})
	var lg etcdserverpb.LeaseGrantRequest
	if err := protojson.Unmarshal(gb, protoadapt.MessageV2Of(&lg)); err != nil || lg.TTL != 60 || lg.ID != 0 {
		t.Fatalf("grant %s: %v %v", gb, &lg, err)
	}
}
