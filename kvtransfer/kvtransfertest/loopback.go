package kvtransfertest

import (
	"context"
	"sync"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/duet-llm/duet/kvtransfer"
	"github.com/duet-llm/duet/kvtransfer/tcp"
)

// Loopback is a receiver served on 127.0.0.1 and a sender transport, both
// real, both stopped when the test ends.
type Loopback struct {
	Receiver  *kvtransfer.Receiver
	Server    *tcp.Server
	Transport *tcp.Transport
	Addr      string
}

// NewLoopback starts a server for recv (a new Receiver when nil) and a
// transport. Zero configs get defaults; the server's Addr is forced to
// 127.0.0.1:0.
func NewLoopback(t testing.TB, recv *kvtransfer.Receiver, scfg tcp.ServerConfig, ccfg tcp.Config) *Loopback {
	t.Helper()
	lg := zaptest.NewLogger(t)
	if recv == nil {
		recv = kvtransfer.NewReceiver(kvtransfer.ReceiverConfig{}, lg)
	}
	scfg.Addr = "127.0.0.1:0"
	srv := tcp.NewServer(scfg, recv, lg.Named("server"))
	tr := tcp.New(ccfg, lg.Named("sender"))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); errs <- srv.Run(ctx) }()
	go func() { defer wg.Done(); errs <- tr.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("loopback shutdown: %v", err)
			}
		}
	})
	select {
	case <-srv.Ready():
	case err := <-errs:
		t.Fatalf("kv server did not start: %v", err)
	}
	return &Loopback{Receiver: recv, Server: srv, Transport: tr, Addr: srv.Addr().String()}
}
