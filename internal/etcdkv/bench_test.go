package etcdkv

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"gitlab.com/writ-ci/writ/internal/state/etcdtest"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkClient runs what one prepare asks the fleet store (a new
// client and its handshake, the allowlist's two keys in one read, an
// entry's key, a compare-and-swap of it) through this client ("gw", its
// name from when it spoke etcd's JSON gateway; now gRPC with messages
// encoded by hand) and through etcd's gRPC client, interleaved, against
// the same member of a real 3-member cluster. "cpu-gw/grpc" compares this
// process's CPU time; "gw/grpc" compares wall time. Neither counts the
// package initialisation of etcd's generated packages, which only
// clientv3 needs (measure that with GODEBUG=inittrace=1 ./bin/writ
// --version).
func BenchmarkClient(b *testing.B) {
	c := etcdtest.Start(b, 3)
	tc, err := c.ClientTLS("bench")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	gw := func(i int) error {
		cl, err := New(Config{Endpoints: c.Endpoints[:1], TLS: tc})
		if err != nil {
			return err
		}
		defer cl.Close()
		cl.Connect()
		key := fmt.Sprintf("/bench/gw/%d", i%8)
		if _, err := cl.Txn(ctx, nil, []Op{OpGet("/bench/mark"), OpGet("/bench/rejected")}, nil); err != nil {
			return err
		}
		kv, err := cl.Get(ctx, key)
		if err != nil {
			return err
		}
		var rev int64
		if kv != nil {
			rev = kv.ModRevision
		}
		_, err = cl.Txn(ctx, []Compare{ModRevisionIs(key, rev)}, []Op{OpPut(key, "v", 0)}, nil)
		return err
	}
	grpc := func(i int) error {
		cl, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints[:1], TLS: tc, Logger: zap.NewNop(), DialTimeout: 5 * time.Second})
		if err != nil {
			return err
		}
		defer cl.Close()
		rctx := clientv3.WithRequireLeader(ctx)
		key := fmt.Sprintf("/bench/grpc/%d", i%8)
		if _, err := cl.Txn(rctx).Then(clientv3.OpGet("/bench/mark"), clientv3.OpGet("/bench/rejected")).Commit(); err != nil {
			return err
		}
		r, err := cl.Get(rctx, key)
		if err != nil {
			return err
		}
		var rev int64
		if len(r.Kvs) == 1 {
			rev = r.Kvs[0].ModRevision
		}
		_, err = cl.Txn(rctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).Then(clientv3.OpPut(key, "v")).Commit()
		return err
	}
	var wall, cpu [2]time.Duration
	clients := []func(int) error{gw, grpc}
	run := func(i int) {
		// Alternate which goes first.
		for _, k := range [][]int{{0, 1}, {1, 0}}[i%2] {
			start, c0 := time.Now(), cpuTime()
			if err := clients[k](i); err != nil {
				b.Fatal(err)
			}
			wall[k] += time.Since(start)
			cpu[k] += cpuTime() - c0
		}
	}
	run(0) // warm both
	wall, cpu = [2]time.Duration{}, [2]time.Duration{}
	b.ResetTimer()
	n := max(b.N, 20)
	for i := range n {
		run(i)
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d) / float64(n) / float64(time.Millisecond) }
	b.ReportMetric(ms(wall[0]), "ms-gw")
	b.ReportMetric(ms(wall[1]), "ms-grpc")
	b.ReportMetric(float64(wall[0])/float64(wall[1]), "gw/grpc")
	b.ReportMetric(ms(cpu[0]), "cpu-ms-gw")
	b.ReportMetric(ms(cpu[1]), "cpu-ms-grpc")
	b.ReportMetric(float64(cpu[0])/float64(cpu[1]), "cpu-gw/grpc")
}
