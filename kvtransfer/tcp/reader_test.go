package tcp_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/duet-llm/duet/kvtransfer"
	"github.com/duet-llm/duet/kvtransfer/internal/wire"
	"github.com/duet-llm/duet/kvtransfer/kvtransfertest"
	"github.com/duet-llm/duet/kvtransfer/tcp"
)

// frameBytes encodes one frame.
func frameBytes(h wire.Header, payload []byte) []byte {
	h.Length = uint32(len(payload))
	b := make([]byte, wire.HeaderSize, wire.HeaderSize+len(payload))
	h.Encode(b)
	return append(b, payload...)
}

// writevBytes encodes a FrameWriteV of one reservation.
func writevBytes(id uint64, segs []wire.Segment, payloads [][]byte) []byte {
	var total int
	for _, p := range payloads {
		total += len(p)
	}
	b := make([]byte, wire.HeaderSize)
	(&wire.Header{Type: wire.FrameWriteV, ID: id, Slot: uint32(len(segs)), Length: uint32(total)}).Encode(b)
	b = wire.EncodeSegments(b, segs)
	for _, p := range payloads {
		b = append(b, p...)
	}
	return b
}

// A sender that stops in the middle of a frame loses the connection after
// FrameTimeout; one that is merely idle between frames keeps it.
func TestStalledSender(t *testing.T) {
	const frameTimeout = 150 * time.Millisecond
	n := newNode(t, 8, 4096, tcp.ServerConfig{FrameTimeout: frameTimeout}, tcp.Config{}, kvtransfer.ReceiverConfig{})
	r := rand.New(rand.NewPCG(8, 8))
	data := kvtransfertest.Random(r, 4096)
	tests := []struct {
		name    string
		partial []byte // what the sender sends before it stalls
	}{
		{"mid payload", frameBytes(wire.Header{Type: wire.FrameWrite}, data)[:wire.HeaderSize+1000]},
		{"mid segment table", writevBytes(0, []wire.Segment{{Length: 100}, {Slot: 1, Length: 100}}, [][]byte{data[:100], data[:100]})[:wire.HeaderSize+30]},
		{"mid writev payload", writevBytes(0, []wire.Segment{{Length: 3000}, {Slot: 1, Length: 3000}}, [][]byte{data[:3000], data[:3000]})[:wire.HeaderSize+2*wire.SegmentSize+4000]},
	}
	perm := r.Perm(n.pool.Slots)
	var used []kvtransfer.Slot // slots of every reservation so far
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			slots := []kvtransfer.Slot{n.pool.Slot(perm[0]), n.pool.Slot(perm[1])}
			perm = perm[2:]
			used = append(used, slots...)
			res, err := n.lb.Receiver.Reserve(slots, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			d := res.Descriptor()
			p := dialRaw(t, n.lb.Addr)
			p.send(wire.Header{Type: wire.FrameOpen, ID: d.ID}, d.Token[:])
			partial := bytes.Clone(tt.partial)
			binaryID(partial, d.ID)
			if _, err := p.c.Write(partial); err != nil {
				t.Fatal(err)
			}
			stalled := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 10*frameTimeout)
			defer cancel()
			out, err := res.Wait(ctx)
			if err != nil || out.State != kvtransfer.StateFailed {
				t.Fatalf("after a stall of %v: %+v %v", time.Since(stalled), out, err)
			}
			if el := time.Since(stalled); el < frameTimeout {
				t.Fatalf("connection cut after %v, before the frame timeout", el)
			}
			p.expectClosed()
			if err := n.pool.CheckCanaries(used); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("idle between frames", func(t *testing.T) {
		res, err := n.lb.Receiver.Reserve([]kvtransfer.Slot{n.pool.Slot(perm[0])}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		d := res.Descriptor()
		p := dialRaw(t, n.lb.Addr)
		p.send(wire.Header{Type: wire.FrameOpen, ID: d.ID}, d.Token[:])
		p.send(wire.Header{Type: wire.FrameWrite, ID: d.ID}, data[:100])
		time.Sleep(3 * frameTimeout)
		p.send(wire.Header{Type: wire.FrameCommit, ID: d.ID, Arg: 100}, nil)
		p.expect(wire.FrameCommitted)
		if out, _ := res.Wait(context.Background()); out.State != kvtransfer.StateCommitted {
			t.Fatalf("outcome %+v", out)
		}
		if got := n.pool.Bytes(d.Slots[0])[:100]; !bytes.Equal(got, data[:100]) {
			t.Fatal("bytes differ")
		}
	})
}

// binaryID sets the reservation id of the frame header at the start of b.
func binaryID(b []byte, id uint64) {
	for i := range 8 {
		b[8+i] = byte(id >> (8 * i))
	}
}

// Frames that arrive in pieces of every size, split anywhere (inside
// headers, segment tables, payloads, across frames), land exactly as when
// they arrive whole.
func TestFramesInPieces(t *testing.T) {
	const slotSize = 3000
	n := newNode(t, 16, slotSize, tcp.ServerConfig{}, tcp.Config{}, kvtransfer.ReceiverConfig{})
	r := rand.New(rand.NewPCG(9, 9))
	for _, maxPiece := range []int{5, 60, 700, 20000} {
		res, err := n.lb.Receiver.Reserve(n.pool.Pick(r, 4), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		d := res.Descriptor()
		data := make([][]byte, len(d.Slots))
		for i := range data {
			data[i] = kvtransfertest.Random(r, slotSize)
		}
		var stream []byte
		stream = append(stream, frameBytes(wire.Header{Type: wire.FrameOpen, ID: d.ID}, d.Token[:])...)
		// slot 0 in two writes, slots 1-2 in one writev, slot 3 in a
		// writev of two segments.
		stream = append(stream, frameBytes(wire.Header{Type: wire.FrameWrite, ID: d.ID, Slot: 0}, data[0][:1000])...)
		stream = append(stream, frameBytes(wire.Header{Type: wire.FrameWrite, ID: d.ID, Slot: 0, Arg: 1000}, data[0][1000:])...)
		stream = append(stream, writevBytes(d.ID, []wire.Segment{{Slot: 1, Length: slotSize}, {Slot: 2, Length: slotSize}}, [][]byte{data[1], data[2]})...)
		stream = append(stream, frameBytes(wire.Header{Type: wire.FramePing, Arg: 5}, nil)...)
		stream = append(stream, writevBytes(d.ID, []wire.Segment{{Slot: 3, Length: 10}, {Slot: 3, Length: slotSize - 10, Offset: 10}}, [][]byte{data[3][:10], data[3][10:]})...)
		stream = append(stream, frameBytes(wire.Header{Type: wire.FrameCommit, ID: d.ID, Arg: 4 * slotSize}, []byte("pieces"))...)
		p := dialRaw(t, n.lb.Addr)
		for len(stream) > 0 {
			k := min(len(stream), 1+r.IntN(maxPiece))
			if _, err := p.c.Write(stream[:k]); err != nil {
				t.Fatal(err)
			}
			stream = stream[k:]
			if r.IntN(32) == 0 {
				time.Sleep(200 * time.Microsecond) // let the server read a partial frame
			}
		}
		if h, _ := p.expect(wire.FramePong); h.Arg != 5 {
			t.Fatalf("pong %d", h.Arg)
		}
		p.expect(wire.FrameCommitted)
		out, _ := res.Wait(context.Background())
		if out.State != kvtransfer.StateCommitted || string(out.Payload) != "pieces" || out.Bytes != 4*slotSize {
			t.Fatalf("pieces up to %d: outcome %+v", maxPiece, out)
		}
		for i, s := range d.Slots {
			if !bytes.Equal(n.pool.Bytes(s), data[i]) {
				t.Fatalf("pieces up to %d: slot %d differs", maxPiece, i)
			}
		}
	}
	var all []kvtransfer.Slot
	for i := range n.pool.Slots {
		all = append(all, n.pool.Slot(i))
	}
	if err := n.pool.CheckCanaries(all); err != nil {
		t.Fatal(err)
	}
}

// FuzzServerStream sends a valid open followed by arbitrary bytes to a real
// server over loopback: whatever the bytes, the server neither panics nor
// writes outside the reservation's slots, and it ends the connection or
// keeps serving it (a ping still answers). Seeds: testdata/fuzz.
func FuzzServerStream(f *testing.F) {
	data := bytes.Repeat([]byte{0x3c}, 256)
	f.Add(frameBytes(wire.Header{Type: wire.FrameWrite, Slot: 1, Arg: 8}, data[:64]))
	f.Add(writevBytes(0, []wire.Segment{{Length: 16}, {Slot: 1, Length: 32, Offset: 100}}, [][]byte{data[:16], data[:32]}))
	f.Add(append(frameBytes(wire.Header{Type: wire.FrameWrite}, data[:8]), frameBytes(wire.Header{Type: wire.FrameCommit, Arg: 8}, []byte("x"))...))
	f.Add(frameBytes(wire.Header{Type: wire.FrameFlush, Arg: 1}, nil))
	f.Add(frameBytes(wire.Header{Type: wire.FrameWrite, Slot: 2}, data[:8]))

	pool := kvtransfertest.NewPool(4, 256, 64)
	recv := kvtransfer.NewReceiver(kvtransfer.ReceiverConfig{}, nil)
	pool.Region, _ = recv.RegisterRegion(pool.Mem)
	// No test logger: the server logs from its own goroutines, and the fuzz
	// target's *testing.F must not be logged to while it fuzzes.
	srv := tcp.NewServer(tcp.ServerConfig{Addr: "127.0.0.1:0", FrameTimeout: 100 * time.Millisecond}, recv, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	f.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			f.Error(err)
		}
		recv.Close()
	})
	<-srv.Ready()
	addr := srv.Addr().String()
	f.Fuzz(func(t *testing.T, stream []byte) {
		res, err := recv.Reserve([]kvtransfer.Slot{pool.Slot(1), pool.Slot(2)}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		d := res.Descriptor()
		// Frames of the fuzzed stream name this reservation wherever a
		// header could start at a frame boundary of the seeds.
		stream = bytes.Clone(stream)
		for off := 0; off+wire.HeaderSize <= len(stream); {
			var h wire.Header
			if h.Decode(stream[off:]) != nil {
				break
			}
			binaryID(stream[off:], d.ID)
			next := off + wire.HeaderSize + int(h.Length)
			if h.Type == wire.FrameWriteV {
				next += int(h.Slot) * wire.SegmentSize
			}
			off = next
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var hello [wire.HelloSize]byte
		wire.Hello{Version: wire.Version}.Encode(hello[:])
		msg := append(hello[:], frameBytes(wire.Header{Type: wire.FrameOpen, ID: d.ID}, d.Token[:])...)
		msg = append(msg, stream...)
		msg = append(msg, frameBytes(wire.Header{Type: wire.FramePing, Arg: 42}, nil)...)
		c.SetDeadline(time.Now().Add(2 * time.Second))
		// The server may close before it read everything: a fine outcome.
		// The half-close ends a stream that stops inside a header.
		_, _ = c.Write(msg)
		c.(*net.TCPConn).CloseWrite()
		// The server answers the hello and the ping, or closes the
		// connection (a refused frame, or a frame whose rest never comes):
		// read until either.
		if _, err := io.ReadFull(c, hello[:]); err != nil {
			t.Fatalf("no hello: %v", err)
		}
		for {
			var hb [wire.HeaderSize]byte
			if _, err := io.ReadFull(c, hb[:]); err != nil {
				break
			}
			var h wire.Header
			if err := h.Decode(hb[:]); err != nil {
				t.Fatalf("server sent a bad frame: %v", err)
			}
			if _, err := io.CopyN(io.Discard, c, int64(h.Length)); err != nil {
				break
			}
			if h.Type == wire.FramePong && h.Arg == 42 {
				break
			}
		}
		// Once the reservation has ended no write into the pool is in
		// progress (and the race detector sees the order).
		res.Cancel("fuzz case done")
		res.Wait(context.Background())
		if err := pool.CheckCanaries([]kvtransfer.Slot{pool.Slot(1), pool.Slot(2)}); err != nil {
			t.Fatal(err)
		}
	})
}
