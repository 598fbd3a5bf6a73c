package tcp_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/duet-llm/duet/kvtransfer"
	"github.com/duet-llm/duet/kvtransfer/kvtransfertest"
	"github.com/duet-llm/duet/kvtransfer/tcp"
)

// BenchmarkTransfer measures a transfer scattered over 16 KiB slots, open
// to commit, and reports GB/s (and µs per transfer for the small one). The
// comparison with raw TCP in the same run is cmd/duet-bench-kv.
func BenchmarkTransfer(b *testing.B) {
	for _, size := range []int{64 << 10, 1 << 20, 16 << 20} {
		for _, conns := range []int{1, 4} {
			b.Run(fmt.Sprintf("%dKiB/conns=%d", size>>10, conns), func(b *testing.B) {
				benchTransfer(b, size, conns)
			})
		}
	}
}

func benchTransfer(b *testing.B, size, conns int) {
	const slot = 16 << 10
	n := size / slot
	pool := kvtransfertest.NewPool(4*n, slot, 0)
	recv := kvtransfer.NewReceiver(kvtransfer.ReceiverConfig{}, nil) // no per-reservation debug logging
	defer recv.Close()
	pool.Region, _ = recv.RegisterRegion(pool.Mem)
	lb := kvtransfertest.NewLoopback(b, recv, tcp.ServerConfig{}, tcp.Config{Conns: conns})
	src := kvtransfertest.Random(rand.New(rand.NewPCG(1, 1)), size)
	r := rand.New(rand.NewPCG(2, 2))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b.SetBytes(int64(size))
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		res, err := recv.Reserve(pool.Pick(r, n), time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		d := res.Descriptor()
		b.StartTimer()
		s, err := lb.Transport.Open(ctx, &d)
		if err != nil {
			b.Fatal(err)
		}
		for i := range n {
			if err := s.Write(ctx, i, 0, src[i*slot:(i+1)*slot]); err != nil {
				b.Fatal(err)
			}
		}
		if err := s.Commit(ctx, []byte("tok")); err != nil {
			b.Fatal(err)
		}
	}
	sec := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(float64(size)/sec/1e9, "GB/s")
	b.ReportMetric(sec*1e6, "us/transfer")
}
