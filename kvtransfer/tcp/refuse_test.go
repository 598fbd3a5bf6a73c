package tcp_test

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/duet-llm/duet/kvtransfer"
	"github.com/duet-llm/duet/kvtransfer/internal/wire"
	"github.com/duet-llm/duet/kvtransfer/kvtransfertest"
	"github.com/duet-llm/duet/kvtransfer/tcp"
)

// rawPeer speaks frames directly, to do what a correct sender never does.
type rawPeer struct {
	t *testing.T
	c net.Conn
}

func dialRaw(t *testing.T, addr string) *rawPeer {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var b [wire.HelloSize]byte
	wire.Hello{Version: wire.Version}.Encode(b[:])
	if _, err := c.Write(b[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, b[:]); err != nil {
		t.Fatal(err)
	}
	return &rawPeer{t: t, c: c}
}

func (p *rawPeer) send(h wire.Header, payload []byte) {
	p.t.Helper()
	h.Length = uint32(len(payload))
	var b [wire.HeaderSize]byte
	h.Encode(b[:])
	// A closed connection is an expected outcome of some cases.
	_, _ = p.c.Write(append(b[:], payload...))
}

// expect reads frames until one of type ty (returned), or fails.
func (p *rawPeer) expect(ty wire.Type) (wire.Header, string) {
	p.t.Helper()
	p.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	for {
		var b [wire.HeaderSize]byte
		if _, err := io.ReadFull(p.c, b[:]); err != nil {
			p.t.Fatalf("waiting for %s: %v", ty, err)
		}
		var h wire.Header
		if err := h.Decode(b[:]); err != nil {
			p.t.Fatal(err)
		}
		msg := make([]byte, h.Length)
		io.ReadFull(p.c, msg)
		if h.Type == ty {
			return h, string(msg)
		}
	}
}

// expectClosed checks the server closed the connection.
func (p *rawPeer) expectClosed() {
	p.t.Helper()
	p.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := io.Copy(io.Discard, p.c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		p.t.Fatalf("connection not closed by the server: %v", err)
	}
}

func TestRefusals(t *testing.T) {
	lg := zaptest.NewLogger(t)
	pool := kvtransfertest.NewPool(64, 4096, 128)
	recv := kvtransfer.NewReceiver(kvtransfer.ReceiverConfig{}, lg)
	defer recv.Close()
	pool.Region, _ = recv.RegisterRegion(pool.Mem)
	lb := kvtransfertest.NewLoopback(t, recv, tcp.ServerConfig{}, tcp.Config{})
	r := rand.New(rand.NewPCG(5, 5))
	data := kvtransfertest.Random(r, 4096)
	var committed []kvtransfer.Slot // slots legitimately written, for the canary check

	type tc struct {
		name     string
		ttl      time.Duration
		run      func(p *rawPeer, d kvtransfer.Descriptor, res *kvtransfer.Reservation)
		code     uint32
		closed   bool             // the connection must be closed
		state    kvtransfer.State // the reservation's state afterwards
		untouchd bool             // the reservation's slots must hold no byte
	}
	open := func(p *rawPeer, d kvtransfer.Descriptor) {
		p.send(wire.Header{Type: wire.FrameOpen, ID: d.ID}, d.Token[:])
	}
	tests := []tc{
		{name: "slot index past the reservation", run: func(p *rawPeer, d kvtransfer.Descriptor, _ *kvtransfer.Reservation) {
			open(p, d)
			p.send(wire.Header{Type: wire.FrameWrite, ID: d.ID, Slot: uint32(len(d.Slots))}, data[:16])
		}, code: wire.CodeBounds, closed: true, state: kvtransfer.StateFailed, untouchd: true},
		{name: "write past the slot end", run: func(p *rawPeer, d kvtransfer.Descriptor, _ *kvtransfer.Reservation) {
			open(p, d)
			p.send(wire.Header{Type: wire.FrameWrite, ID: d.ID, Slot: 0, Arg: 4000}, data[:200])
		}, code: wire.CodeBounds, closed: true, state: kvtransfer.StateFailed, untouchd: true},
		{name: "offset overflow", run: func(p *rawPeer, d kvtransfer.Descriptor, _ *kvtransfer.Reservation) {
			open(p, d)
			p.send(wire.Header{Type: wire.FrameWrite, ID: d.ID, Slot: 0, Arg: ^uint64(0) - 10}, data[:100])
		}, code: wire.CodeBounds, closed: true, state: kvtransfer.StateFailed, untouchd: true},
		{name: "wrong token", run: func(p *rawPeer, d kvtransfer.Descriptor, _ *kvtransfer.Reservation) {
			bad := d.Token
			bad[15] ^= 1
			p.send(wire.Header{Type: wire.FrameOpen, ID: d.ID}, bad[:])
			p.send(wire.Header{Type: wire.FrameWrite, ID: d.ID}, data[:64])
		}, code: wire.CodeBadToken, closed: true, state: kvtransfer.StateActive, untouchd: true},
		{name: "unknown reservation", run: func(p *rawPeer, d kvtransfer.Descriptor, _ *kvtransfer.Reservation) {
			p.send(wire.Header{Type: wire.FrameOpen, ID: d.ID + 1000}, d.Token[:])
		}, code: wire.CodeBadToken, closed: true, state: kvtransfer.StateActive, untouchd: true},
		{name: "write without open", run: func(p *rawPeer, d kvtransfer.Descriptor, _ *kvtransfer.Reservation) {
			p.send(wire.Header{Type: wire.FrameWrite, ID: d.ID}, data[:64])
		}, code: wire.CodeNotOpen, closed: true, state: kvtransfer.StateActive, untouchd: true},
		{name: "write after commit", run: func(p *rawPeer, d kvtransfer.Descriptor, res *kvtransfer.Reservation) {
			open(p, d)
			p.send(wire.Header{Type: wire.FrameWrite, ID: d.ID}, data[:100])
			p.send(wire.Header{Type: wire.FrameCommit, ID: d.ID, Arg: 100}, []byte("tok"))
			p.expect(wire.FrameCommitted)
			committed = append(committed, kvtransfer.Slot{Region: d.Slots[0].Region, Offset: d.Slots[0].Offset, Length: 100})
			zeros := make([]byte, 100)
			p.send(wire.Header{Type: wire.FrameWrite, ID: d.ID}, zeros)
		}, code: wire.CodeNotOpen, closed: true, state: kvtransfer.StateCommitted},
		{name: "reopen after commit", run: func(p *rawPeer, d kvtransfer.Descriptor, res *kvtransfer.Reservation) {
			open(p, d)
			p.send(wire.Header{Type: wire.FrameCommit, ID: d.ID, Arg: 0}, nil)
			p.expect(wire.FrameCommitted)
			open(p, d)
		}, code: wire.CodeCommitted, closed: true, state: kvtransfer.StateCommitted, untouchd: true},
		{name: "commit of more bytes than written", run: func(p *rawPeer, d kvtransfer.Descriptor, _ *kvtransfer.Reservation) {
			open(p, d)
			p.send(wire.Header{Type: wire.FrameWrite, ID: d.ID}, data[:100])
			p.send(wire.Header{Type: wire.FrameCommit, ID: d.ID, Arg: 1 << 40}, nil)
		}, code: wire.CodeSize, closed: true, state: kvtransfer.StateFailed},
		{name: "commit of fewer bytes than written", run: func(p *rawPeer, d kvtransfer.Descriptor, _ *kvtransfer.Reservation) {
			open(p, d)
			p.send(wire.Header{Type: wire.FrameWrite, ID: d.ID}, data[:100])
			p.send(wire.Header{Type: wire.FrameCommit, ID: d.ID, Arg: 99}, nil)
		}, code: wire.CodeSize, closed: true, state: kvtransfer.StateFailed},
		{name: "bad crc", run: func(p *rawPeer, d kvtransfer.Descriptor, _ *kvtransfer.Reservation) {
			open(p, d)
			p.send(wire.Header{Type: wire.FrameWrite, Flags: wire.FlagCRC, CRC: wire.CRC(data[:64]) ^ 1, ID: d.ID}, data[:64])
		}, code: wire.CodeCRC, closed: true, state: kvtransfer.StateFailed},
		{name: "malformed header", run: func(p *rawPeer, d kvtransfer.Descriptor, _ *kvtransfer.Reservation) {
			open(p, d)
			var b [wire.HeaderSize]byte
			b[0] = 77
			p.c.Write(b[:])
		}, code: wire.CodeProtocol, closed: true, state: kvtransfer.StateFailed, untouchd: true},
		{name: "write after expiry is discarded", ttl: 50 * time.Millisecond, run: func(p *rawPeer, d kvtransfer.Descriptor, res *kvtransfer.Reservation) {
			open(p, d)
			res.Wait(context.Background())
			p.send(wire.Header{Type: wire.FrameWrite, ID: d.ID}, data[:100])
			h, _ := p.expect(wire.FrameCanceled)
			if h.Slot != wire.CodeExpired {
				t.Errorf("canceled code %d", h.Slot)
			}
			// The connection stays up for other sessions: a ping answers.
			p.send(wire.Header{Type: wire.FramePing, Arg: 7}, nil)
			if h, _ := p.expect(wire.FramePong); h.Arg != 7 {
				t.Errorf("pong %d", h.Arg)
			}
		}, code: 0, closed: false, state: kvtransfer.StateExpired, untouchd: true},
		{name: "write after receiver cancel is discarded", run: func(p *rawPeer, d kvtransfer.Descriptor, res *kvtransfer.Reservation) {
			open(p, d)
			p.send(wire.Header{Type: wire.FramePing}, nil)
			p.expect(wire.FramePong) // the open has been processed
			res.Cancel("client went away")
			p.expect(wire.FrameCanceled)
			p.send(wire.Header{Type: wire.FrameWrite, ID: d.ID}, data[:100])
			p.send(wire.Header{Type: wire.FrameAbort, ID: d.ID}, nil)
			p.send(wire.Header{Type: wire.FramePing}, nil)
			p.expect(wire.FramePong)
		}, code: 0, closed: false, state: kvtransfer.StateCanceled, untouchd: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := recv.Reserve(pool.Pick(r, 2), tt.ttl)
			if err != nil {
				t.Fatal(err)
			}
			d := res.Descriptor()
			refusedBefore := recv.Stats().Refused
			p := dialRaw(t, lb.Addr)
			tt.run(p, d, res)
			if tt.closed {
				h, msg := p.expect(wire.FrameError)
				if h.Slot != tt.code {
					t.Fatalf("error code %d (%s), want %d", h.Slot, msg, tt.code)
				}
				p.expectClosed()
				if recv.Stats().Refused != refusedBefore+1 {
					t.Fatalf("refusal not counted")
				}
			}
			if tt.state != kvtransfer.StateActive {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				out, err := res.Wait(ctx)
				cancel()
				if err != nil || out.State != tt.state {
					t.Fatalf("outcome %+v %v, want %s", out, err, tt.state)
				}
			} else if res.Outcome().State != kvtransfer.StateActive {
				t.Fatalf("a refused stranger changed the reservation: %+v", res.Outcome())
			} else {
				res.Cancel("test done")
				res.Wait(context.Background())
			}
			if tt.untouchd {
				for _, s := range d.Slots {
					if err := pool.CheckUntouched(s); err != nil {
						t.Fatal(err)
					}
				}
			}
		})
	}
	// Slots written by refused-but-in-bounds writes (bad crc, size cases)
	// are inside their reservations; nothing outside any reserved slot
	// changed.
	var all []kvtransfer.Slot
	for i := range pool.Slots {
		all = append(all, pool.Slot(i))
	}
	if err := pool.CheckCanaries(all); err != nil {
		t.Fatal(err)
	}
	// A committed slot kept its committed bytes despite the later write.
	for _, s := range committed {
		if got := pool.Bytes(s); string(got) != string(data[:100]) {
			t.Fatal("a write after commit changed committed bytes")
		}
	}
}

func TestBadHello(t *testing.T) {
	recv := kvtransfer.NewReceiver(kvtransfer.ReceiverConfig{}, nil)
	defer recv.Close()
	lb := kvtransfertest.NewLoopback(t, recv, tcp.ServerConfig{}, tcp.Config{})
	c, err := net.Dial("tcp", lb.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("server kept a non-kv connection open: %v", err)
	}
}
