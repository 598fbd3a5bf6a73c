//go:build linux && (amd64 || arm64)

package rdma

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/duet-llm/duet/kvtransfer"
	"github.com/duet-llm/duet/kvtransfer/kvtransfertest"
	"github.com/duet-llm/duet/kvtransfer/tcp"
)

// TestLoadLibrary resolves every verb from the real libibverbs when it is
// installed, and lists devices: on a kernel without InfiniBand,
// ibv_get_device_list fails with ENOSYS, which must read as "no devices".
func TestLoadLibrary(t *testing.T) {
	lib, err := Load()
	if errors.Is(err, ErrNoLibrary) {
		t.Skipf("libibverbs.so.1 not installed (Debian: libibverbs1): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	devs, err := lib.Devices()
	if err != nil {
		t.Fatalf("device list: %v", err)
	}
	t.Logf("rdma devices: %v", devs)
	if _, err := lib.Open("no-such-device"); !errors.Is(err, ErrNoDevice) {
		t.Fatalf("open of a missing device: %v", err)
	}
	if _, err := load("libdoes-not-exist.so.9"); !errors.Is(err, ErrNoLibrary) {
		t.Fatalf("missing library: %v", err)
	}
}

// TestHardwareLoopback moves bytes through a real RDMA device (sender and
// receiver on this host) when there is one.
func TestHardwareLoopback(t *testing.T) {
	entries, _ := os.ReadDir("/sys/class/infiniband")
	if len(entries) == 0 {
		t.Skip("no rdma device in /sys/class/infiniband: hardware path not exercised")
	}
	lib, err := Load()
	if err != nil {
		t.Skipf("rdma device present but libibverbs not loadable: %v", err)
	}
	devs, _ := lib.Devices()
	if len(devs) == 0 {
		t.Skip("libibverbs lists no device")
	}
	lg := zaptest.NewLogger(t)
	cfg := Config{Device: devs[0], GIDIndex: 0}
	if dev := os.Getenv("KVTRANSFER_RDMA_GID_INDEX"); dev != "" {
		t.Logf("gid index from env: %s", dev)
	}
	pool := kvtransfertest.NewPool(32, 64<<10, 256)
	recv := kvtransfer.NewReceiver(kvtransfer.ReceiverConfig{}, lg)
	defer recv.Close()
	pool.Region, _ = recv.RegisterRegion(pool.Mem)
	acc, err := OpenAcceptor(cfg, recv, nil, lg)
	if err != nil {
		t.Skipf("device %s not usable for a loopback queue pair: %v", devs[0], err)
	}
	defer acc.Close()
	lb := kvtransfertest.NewLoopback(t, recv, tcp.ServerConfig{RDMA: acc}, tcp.Config{})
	tr, dialer := NewTransport(tcp.Config{Conns: 2}, cfg, lg)
	src := kvtransfertest.Random(rand.New(rand.NewPCG(1, 1)), 16*(64<<10))
	dialer.RegisterSource(src)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { tr.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	res, err := recv.Reserve(pool.Pick(rand.New(rand.NewPCG(2, 2)), 16), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	d := res.Descriptor()
	_ = lb
	s, err := tr.Open(ctx, &d)
	if err != nil {
		t.Fatal(err)
	}
	for i := range d.Slots {
		if err := s.Write(ctx, i, 0, src[i*(64<<10):(i+1)*(64<<10)]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Commit(ctx, []byte("rdma")); err != nil {
		t.Fatal(err)
	}
	out, _ := res.Wait(ctx)
	if out.State != kvtransfer.StateCommitted {
		t.Fatalf("outcome %+v", out)
	}
	for i, sl := range d.Slots {
		if string(pool.Bytes(sl)) != string(src[i*(64<<10):(i+1)*(64<<10)]) {
			t.Fatalf("slot %d differs", i)
		}
	}
	if err := pool.CheckCanaries(d.Slots); err != nil {
		t.Fatal(err)
	}
}
