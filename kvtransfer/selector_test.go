package kvtransfer_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/duet-llm/duet/kvtransfer"
	"github.com/duet-llm/duet/kvtransfer/kvtransfertest"
	"github.com/duet-llm/duet/kvtransfer/tcp"
)

// brokenRDMA accepts nothing: both ends offer RDMA but setup fails.
type brokenRDMA struct{}

func (brokenRDMA) Accept([]byte) (tcp.RDMALink, []byte, error) {
	return nil, nil, errors.New("no queue pair for you")
}

type noDial struct{}

func (noDial) Dial(string) (tcp.RDMAPath, []byte, error) { return nil, nil, errors.New("no device") }

func TestSelector(t *testing.T) {
	lg := zaptest.NewLogger(t)
	pool := kvtransfertest.NewPool(4, 1024, 8)
	recv := kvtransfer.NewReceiver(kvtransfer.ReceiverConfig{}, lg)
	defer recv.Close()
	pool.Region, _ = recv.RegisterRegion(pool.Mem)
	plain := kvtransfertest.NewLoopback(t, recv, tcp.ServerConfig{}, tcp.Config{Conns: 1})
	// A second server on the same receiver that offers RDMA but fails setup.
	offers := kvtransfertest.NewLoopback(t, recv, tcp.ServerConfig{RDMA: brokenRDMA{}}, tcp.Config{Conns: 1})
	// An "rdma" transport whose setup always reaches the receiver and fails.
	rdmaTr := kvtransfertest.NewLoopback(t, nil, tcp.ServerConfig{}, tcp.Config{Conns: 1, RDMA: noDial{}}).Transport

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	run := func(sel *kvtransfer.Selector, eps []kvtransfer.Endpoint) error {
		res, err := recv.Reserve([]kvtransfer.Slot{pool.Slot(0)}, time.Minute)
		if err != nil {
			return err
		}
		defer res.Cancel("")
		d := res.Descriptor()
		d.Endpoints = eps
		s, err := sel.Open(ctx, &d)
		if err != nil {
			return err
		}
		if err := s.Write(ctx, 0, 0, make([]byte, 1024)); err != nil {
			return err
		}
		return s.Commit(ctx, nil)
	}
	plainEP := []kvtransfer.Endpoint{{Addr: plain.Addr}}
	rdmaEP := []kvtransfer.Endpoint{{Addr: offers.Addr, RDMA: true}}

	stats := new(kvtransfer.Counters)
	auto, _ := kvtransfer.NewSelector(kvtransfer.SelectorConfig{TCP: plain.Transport, RDMA: rdmaTr, Stats: stats}, lg)
	if err := run(auto, plainEP); err != nil {
		t.Fatal(err)
	}
	if c := auto.Choices()[plain.Addr]; c.Transport != "tcp" || c.Reason != "peer does not offer rdma" {
		t.Fatalf("choice %+v", c)
	}
	if err := run(auto, rdmaEP); err != nil {
		t.Fatalf("fallback: %v", err)
	}
	if c := auto.Choices()[offers.Addr]; c.Transport != "tcp" || c.Reason == "" {
		t.Fatalf("choice after failed setup %+v", c)
	}
	// The failed peer is not retried at once.
	if err := run(auto, rdmaEP); err != nil {
		t.Fatal(err)
	}
	if st := stats.Snapshot(); st.Fallbacks != 1 || st.SessionsTCP != 3 || st.SessionsRDMA != 0 {
		t.Fatalf("stats %+v", st)
	}

	forced, _ := kvtransfer.NewSelector(kvtransfer.SelectorConfig{Mode: kvtransfer.ModeRDMA, TCP: plain.Transport, RDMA: rdmaTr}, lg)
	if err := run(forced, plainEP); !errors.Is(err, kvtransfer.ErrRDMA) {
		t.Fatalf("forced rdma to a tcp-only peer: %v", err)
	}
	if err := run(forced, rdmaEP); !errors.Is(err, kvtransfer.ErrRDMA) {
		t.Fatalf("forced rdma with failing setup: %v", err)
	}
	tcpOnly, _ := kvtransfer.NewSelector(kvtransfer.SelectorConfig{Mode: kvtransfer.ModeTCP, TCP: plain.Transport, RDMA: rdmaTr}, lg)
	if err := run(tcpOnly, rdmaEP); err != nil {
		t.Fatal(err)
	}
	if c := tcpOnly.Choices()[offers.Addr]; c.Reason != "tcp forced" {
		t.Fatalf("choice %+v", c)
	}
	if _, err := kvtransfer.NewSelector(kvtransfer.SelectorConfig{Mode: kvtransfer.ModeRDMA}, lg); !errors.Is(err, kvtransfer.ErrRDMA) {
		t.Fatalf("rdma forced without rdma: %v", err)
	}
	for _, s := range []string{"auto", "tcp", "rdma"} {
		if m, err := kvtransfer.ParseMode(s); err != nil || m.String() != s {
			t.Fatalf("mode %q: %v %v", s, m, err)
		}
	}
	if _, err := kvtransfer.ParseMode("udp"); err == nil {
		t.Fatal("udp mode accepted")
	}
}
