package tcp_test

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/duet-llm/duet/kvtransfer"
	"github.com/duet-llm/duet/kvtransfer/internal/wire"
	"github.com/duet-llm/duet/kvtransfer/kvtransfertest"
	"github.com/duet-llm/duet/kvtransfer/tcp"
)

// noticeWithin is the bound: the surviving side has a clear error
// within a second of its peer's death. (A dead peer is found by the kernel
// closing its sockets, not by a timer, so this is slack, not a race.)
const noticeWithin = time.Second

func TestSenderKilledMidTransfer(t *testing.T) {
	n := newNode(t, 64, 64<<10, tcp.ServerConfig{}, tcp.Config{}, kvtransfer.ReceiverConfig{})
	res, err := n.lb.Receiver.Reserve(n.pool.Pick(rand.New(rand.NewPCG(6, 6)), 32), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	d := res.Descriptor()
	b, _ := d.MarshalBinary()
	h := startHelper(t, "sender", "KVTRANSFER_TEST_DESC="+hex.EncodeToString(b))
	h.line(t, "WRITING", 10*time.Second)
	if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), noticeWithin)
	defer cancel()
	out, err := res.Wait(ctx)
	if err != nil {
		t.Fatalf("reservation still %s %v after the sender was killed", res.Outcome().State, time.Since(killed))
	}
	if out.State != kvtransfer.StateFailed || !errors.Is(out.Err, kvtransfer.ErrPeerGone) {
		t.Fatalf("outcome %+v", out)
	}
	t.Logf("receiver noticed the kill in %v: %v", time.Since(killed), out.Err)
	if err := n.pool.CheckCanaries(d.Slots); err != nil {
		t.Fatal(err)
	}
}

func TestReceiverKilledMidTransfer(t *testing.T) {
	h := startHelper(t, "receiver")
	d := h.descriptor(t)
	tr := kvtransfertest.NewLoopback(t, nil, tcp.ServerConfig{}, tcp.Config{Conns: 2}).Transport
	ctx := context.Background()
	s, err := tr.Open(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, d.Slots[0].Length)
	for i := range d.Slots {
		if err := s.Write(ctx, i, 0, buf); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	h.cmd.Process.Signal(syscall.SIGKILL)
	killed := time.Now()
	// The prefill keeps writing layers; within a second it has an error.
	wctx, cancel := context.WithTimeout(ctx, noticeWithin)
	defer cancel()
	for err == nil {
		for i := 0; i < len(d.Slots) && err == nil; i++ {
			err = s.Write(wctx, i, 0, buf)
		}
		if err == nil {
			err = s.Flush(wctx)
		}
	}
	if !errors.Is(err, kvtransfer.ErrPeerGone) {
		t.Fatalf("after %v: %v, want ErrPeerGone", time.Since(killed), err)
	}
	t.Logf("sender noticed the kill in %v: %v", time.Since(killed), err)
	if err := s.Commit(ctx, nil); !errors.Is(err, kvtransfer.ErrPeerGone) {
		t.Fatalf("commit after the receiver died: %v", err)
	}
}

func TestSlowReceiver(t *testing.T) {
	h := startHelper(t, "receiver")
	d := h.descriptor(t)
	tr := kvtransfertest.NewLoopback(t, nil, tcp.ServerConfig{}, tcp.Config{Conns: 1, WriteTimeout: 300 * time.Millisecond, MaxQueued: 1 << 20}).Transport
	ctx := context.Background()
	s, err := tr.Open(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, d.Slots[0].Length)
	if err := s.Write(ctx, 0, 0, buf); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// The receiver stops reading (its process is stopped, sockets open).
	h.cmd.Process.Signal(syscall.SIGSTOP)
	defer h.cmd.Process.Signal(syscall.SIGCONT)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var stalled time.Time
	for err == nil {
		for i := 0; i < len(d.Slots) && err == nil; i++ {
			start := time.Now()
			err = s.Write(wctx, i, 0, buf)
			if time.Since(start) > 50*time.Millisecond && stalled.IsZero() {
				stalled = start // backpressure: the queue is full
			}
		}
	}
	if !errors.Is(err, kvtransfer.ErrTimeout) {
		t.Fatalf("slow receiver: %v, want ErrTimeout", err)
	}
	if !stalled.IsZero() {
		t.Logf("sender gave up %v after backpressure began: %v", time.Since(stalled), err)
	}
	// Once it runs again, the receiver finds the connection gone and fails
	// the reservation: nothing is left stuck.
	h.cmd.Process.Signal(syscall.SIGCONT)
	if st := h.line(t, "OUTCOME ", 2*time.Second); st != "failed" {
		t.Fatalf("receiver outcome %q", st)
	}
}

func TestSenderResetsConnection(t *testing.T) {
	n := newNode(t, 8, 64<<10, tcp.ServerConfig{}, tcp.Config{}, kvtransfer.ReceiverConfig{})
	res, _ := n.lb.Receiver.Reserve(n.pool.Pick(rand.New(rand.NewPCG(7, 7)), 2), time.Minute)
	d := res.Descriptor()
	p := dialRaw(t, n.lb.Addr)
	p.send(wire.Header{Type: wire.FrameOpen, ID: d.ID}, d.Token[:])
	// Half a frame: the server is reading the payload into the slot.
	var hb [wire.HeaderSize]byte
	(&wire.Header{Type: wire.FrameWrite, ID: d.ID, Length: 60000}).Encode(hb[:])
	p.c.Write(append(hb[:], make([]byte, 30000)...))
	time.Sleep(20 * time.Millisecond)
	p.c.(*net.TCPConn).SetLinger(0)
	p.c.Close()
	reset := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), noticeWithin)
	defer cancel()
	out, err := res.Wait(ctx)
	if err != nil || out.State != kvtransfer.StateFailed {
		t.Fatalf("after a reset: %+v %v (%v)", out, err, time.Since(reset))
	}
	if err := n.pool.CheckCanaries(d.Slots); err != nil {
		t.Fatal(err)
	}
}

func TestReceiverResetsConnection(t *testing.T) {
	// A receiver endpoint that completes the handshake, takes some bytes and
	// resets: the one corner the real server does not do on purpose.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		var b [wire.HelloSize]byte
		io.ReadFull(c, b[:])
		wire.Hello{Version: wire.Version}.Encode(b[:])
		c.Write(b[:])
		io.CopyN(io.Discard, c, 1<<20)
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}()
	tr := kvtransfertest.NewLoopback(t, nil, tcp.ServerConfig{}, tcp.Config{Conns: 1}).Transport
	d := &kvtransfer.Descriptor{ID: 1, Endpoints: []kvtransfer.Endpoint{{Addr: ln.Addr().String()}},
		Slots: []kvtransfer.Slot{{Length: 1 << 20}, {Offset: 1 << 20, Length: 1 << 20}}}
	ctx := context.Background()
	s, err := tr.Open(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	wctx, cancel := context.WithTimeout(ctx, noticeWithin)
	defer cancel()
	for err == nil {
		if err = s.Write(wctx, 0, 0, buf); err == nil {
			err = s.Flush(wctx)
		}
	}
	if !errors.Is(err, kvtransfer.ErrPeerGone) {
		t.Fatalf("after a reset: %v, want ErrPeerGone", err)
	}
}

// A Commit that reads its own reply from a receiver that never answers
// returns when its context ends, and leaves the connection usable.
func TestCommitWaitCanceled(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		var b [wire.HelloSize]byte
		io.ReadFull(c, b[:])
		wire.Hello{Version: wire.Version}.Encode(b[:])
		c.Write(b[:])
		accepted <- c
		io.Copy(io.Discard, c) // takes every frame, answers none
	}()
	tr := kvtransfertest.NewLoopback(t, nil, tcp.ServerConfig{}, tcp.Config{Conns: 1}).Transport
	d := &kvtransfer.Descriptor{ID: 7, Endpoints: []kvtransfer.Endpoint{{Addr: ln.Addr().String()}},
		Slots: []kvtransfer.Slot{{Length: 4096}}}
	s, err := tr.Open(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(context.Background(), 0, 0, make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Commit(ctx, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("commit without a reply: %v", err)
	}
	c := <-accepted
	defer c.Close()
	// The connection survived the interrupted read: a second session's
	// frames still go out on it.
	d2 := *d
	d2.ID = 8
	s2, err := tr.Open(context.Background(), &d2)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Write(context.Background(), 0, 0, make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	if err := s2.Flush(ctx2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("flush without a reply: %v", err)
	}
	if st := tr.Stats(); st.BytesSent < 2*4096 {
		t.Fatalf("the second session's bytes were not sent: %+v", st)
	}
}
