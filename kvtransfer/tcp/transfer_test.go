package tcp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sync/errgroup"

	"github.com/duet-llm/duet/kvtransfer"
	"github.com/duet-llm/duet/kvtransfer/kvtransfertest"
	"github.com/duet-llm/duet/kvtransfer/tcp"
)

func TestMain(m *testing.M) {
	if helperMain() {
		return
	}
	goleak.VerifyTestMain(m)
}

// node is one decode node: a pool, a receiver, a server.
type node struct {
	pool *kvtransfertest.Pool
	lb   *kvtransfertest.Loopback
}

func newNode(t testing.TB, slots, slotSize int, scfg tcp.ServerConfig, ccfg tcp.Config, rcfg kvtransfer.ReceiverConfig) *node {
	t.Helper()
	pool := kvtransfertest.NewPool(slots, slotSize, 64)
	recv := kvtransfer.NewReceiver(rcfg, zaptest.NewLogger(t))
	id, err := recv.RegisterRegion(pool.Mem)
	if err != nil {
		t.Fatal(err)
	}
	pool.Region = id
	t.Cleanup(recv.Close) // runs after the loopback stops
	return &node{pool: pool, lb: kvtransfertest.NewLoopback(t, recv, scfg, ccfg)}
}

// transfer writes data into every slot of the reservation from several
// goroutines, in random order, then commits with payload.
func transfer(ctx context.Context, tr kvtransfer.Transport, d *kvtransfer.Descriptor, data [][]byte, payload []byte, chunk int, r *rand.Rand) error {
	s, err := tr.Open(ctx, d)
	if err != nil {
		return err
	}
	type piece struct{ slot, off, n int }
	var pieces []piece
	for i := range d.Slots {
		for off := 0; off < len(data[i]); off += chunk {
			pieces = append(pieces, piece{i, off, min(chunk, len(data[i])-off)})
		}
	}
	r.Shuffle(len(pieces), func(i, j int) { pieces[i], pieces[j] = pieces[j], pieces[i] })
	var g errgroup.Group
	const writers = 3
	for w := range writers {
		g.Go(func() error {
			for k := w; k < len(pieces); k += writers {
				p := pieces[k]
				if err := s.Write(ctx, p.slot, int64(p.off), data[p.slot][p.off:p.off+p.n]); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		s.Abort(ctx, err.Error())
		return err
	}
	if err := s.Flush(ctx); err != nil {
		return err
	}
	return s.Commit(ctx, payload)
}

func TestScatteredTransfersManySessionsSeveralPeers(t *testing.T) {
	const (
		peers    = 3
		sessions = 24 // per peer, all at once
		perRes   = 6  // slots per reservation
		slotSize = 16 << 10
	)
	ccfgs := []tcp.Config{{Conns: 1}, {Conns: 4, CRC: true, MaxChunk: 5000}}
	for _, ccfg := range ccfgs {
		t.Run(fmt.Sprintf("conns=%d/crc=%v", ccfg.Conns, ccfg.CRC), func(t *testing.T) {
			var nodes []*node
			for range peers {
				nodes = append(nodes, newNode(t, sessions*perRes+7, slotSize, tcp.ServerConfig{RequireCRC: ccfg.CRC}, ccfg, kvtransfer.ReceiverConfig{}))
			}
			// One sender transport writes to every peer.
			sender := nodes[0].lb.Transport
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			type job struct {
				n    *node
				res  *kvtransfer.Reservation
				data [][]byte
				pay  []byte
			}
			var jobs []job
			seed := rand.New(rand.NewPCG(1, 2))
			for _, n := range nodes {
				perm := seed.Perm(n.pool.Slots)
				for s := range sessions {
					var slots []kvtransfer.Slot
					for _, j := range perm[s*perRes : (s+1)*perRes] {
						slots = append(slots, n.pool.Slot(j))
					}
					res, err := n.lb.Receiver.Reserve(slots, 0)
					if err != nil {
						t.Fatal(err)
					}
					data := make([][]byte, perRes)
					for i := range data {
						// The last slot is only partly written.
						size := slotSize
						if i == perRes-1 {
							size = slotSize/2 + 3
						}
						data[i] = kvtransfertest.Random(seed, size)
					}
					jobs = append(jobs, job{n, res, data, fmt.Appendf(nil, "first-token=%d", s)})
				}
			}
			var g errgroup.Group
			for i, j := range jobs {
				g.Go(func() error {
					d := j.res.Descriptor()
					return transfer(ctx, sender, &d, j.data, j.pay, 4096+i, rand.New(rand.NewPCG(uint64(i), 9)))
				})
			}
			if err := g.Wait(); err != nil {
				t.Fatalf("transfer: %v", err)
			}
			written := map[*node][]kvtransfer.Slot{}
			for _, j := range jobs {
				out, err := j.res.Wait(ctx)
				if err != nil || out.State != kvtransfer.StateCommitted || !bytes.Equal(out.Payload, j.pay) {
					t.Fatalf("outcome %+v %v", out, err)
				}
				var want int64
				d := j.res.Descriptor()
				for i, s := range d.Slots {
					got := j.n.pool.Bytes(s)[:len(j.data[i])]
					if !bytes.Equal(got, j.data[i]) {
						t.Fatalf("reservation %d slot %d: bytes differ", j.res.ID(), i)
					}
					want += int64(len(j.data[i]))
					// The unwritten tail of a partial slot is untouched.
					if err := j.n.pool.CheckUntouched(kvtransfer.Slot{Region: s.Region, Offset: s.Offset + uint64(len(j.data[i])), Length: s.Length - uint32(len(j.data[i]))}); len(j.data[i]) < int(s.Length) && err != nil {
						t.Fatal(err)
					}
					written[j.n] = append(written[j.n], kvtransfer.Slot{Region: s.Region, Offset: s.Offset, Length: uint32(len(j.data[i]))})
				}
				if out.Bytes != want {
					t.Fatalf("outcome bytes %d, want %d", out.Bytes, want)
				}
			}
			for _, n := range nodes {
				if err := n.pool.CheckCanaries(written[n]); err != nil {
					t.Fatal(err)
				}
				st := n.lb.Receiver.Stats()
				if st.Committed != sessions || st.Refused != 0 {
					t.Fatalf("receiver stats %+v", st)
				}
			}
			if st := sender.Stats(); st.Committed != peers*sessions {
				t.Fatalf("sender stats %+v", st)
			}
		})
	}
}

func TestFlushMeansLanded(t *testing.T) {
	n := newNode(t, 8, 4096, tcp.ServerConfig{}, tcp.Config{Conns: 3}, kvtransfer.ReceiverConfig{})
	res, err := n.lb.Receiver.Reserve(n.pool.Pick(rand.New(rand.NewPCG(3, 3)), 4), 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d := res.Descriptor()
	s, err := n.lb.Transport.Open(ctx, &d)
	if err != nil {
		t.Fatal(err)
	}
	data := kvtransfertest.Random(rand.New(rand.NewPCG(1, 1)), 4096)
	for i := range d.Slots {
		if err := s.Write(ctx, i, 0, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// After Flush, the bytes are in the receiver's memory, before commit.
	// (The race detector cannot see the ordering a TCP round trip gives,
	// so under -race the bytes are checked after commit instead.)
	for _, sl := range d.Slots {
		if !raceEnabled && !bytes.Equal(n.pool.Bytes(sl), data) {
			t.Fatal("flush returned before the bytes landed")
		}
	}
	if res.Outcome().State != kvtransfer.StateActive {
		t.Fatal("reservation ended before commit")
	}
	if err := s.Commit(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := res.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	for _, sl := range d.Slots {
		if !bytes.Equal(n.pool.Bytes(sl), data) {
			t.Fatal("committed bytes differ")
		}
	}
	if err := s.Commit(ctx, nil); !errors.Is(err, kvtransfer.ErrSessionDone) {
		t.Fatalf("second commit: %v", err)
	}
	if err := s.Write(ctx, 0, 0, data); !errors.Is(err, kvtransfer.ErrSessionDone) {
		t.Fatalf("write after commit: %v", err)
	}
}

func TestAbortAndCancel(t *testing.T) {
	n := newNode(t, 16, 4096, tcp.ServerConfig{}, tcp.Config{Conns: 2}, kvtransfer.ReceiverConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r := rand.New(rand.NewPCG(4, 4))
	data := kvtransfertest.Random(r, 4096)

	t.Run("sender aborts", func(t *testing.T) {
		res, _ := n.lb.Receiver.Reserve(n.pool.Pick(r, 2), 0)
		d := res.Descriptor()
		s, _ := n.lb.Transport.Open(ctx, &d)
		if err := s.Write(ctx, 0, 0, data); err != nil {
			t.Fatal(err)
		}
		if err := s.Abort(ctx, "prefill crashed"); err != nil {
			t.Fatal(err)
		}
		out, _ := res.Wait(ctx)
		if out.State != kvtransfer.StateAborted || !errors.Is(out.Err, kvtransfer.ErrAborted) {
			t.Fatalf("outcome %+v", out)
		}
	})
	t.Run("receiver cancels mid-transfer", func(t *testing.T) {
		res, _ := n.lb.Receiver.Reserve(n.pool.Pick(r, 2), 0)
		d := res.Descriptor()
		s, _ := n.lb.Transport.Open(ctx, &d)
		if err := s.Write(ctx, 0, 0, data); err != nil {
			t.Fatal(err)
		}
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		res.Cancel("client went away")
		out, _ := res.Wait(ctx)
		if out.State != kvtransfer.StateCanceled {
			t.Fatalf("outcome %+v", out)
		}
		// The sender's next flush or commit fails promptly with the reason.
		start := time.Now()
		err := s.Commit(ctx, nil)
		if !errors.Is(err, kvtransfer.ErrCanceled) {
			t.Fatalf("commit after cancel: %v", err)
		}
		if time.Since(start) > time.Second {
			t.Fatalf("commit took %v to fail", time.Since(start))
		}
		// The connection survived: another session on it still works.
		res2, _ := n.lb.Receiver.Reserve(n.pool.Pick(r, 1), 0)
		d2 := res2.Descriptor()
		if err := transfer(ctx, n.lb.Transport, &d2, [][]byte{data}, []byte("ok"), 1000, r); err != nil {
			t.Fatalf("session after cancel: %v", err)
		}
		if st := n.lb.Receiver.Stats(); st.Refused != 0 {
			t.Fatalf("a cancel counted as a refusal: %+v", st)
		}
	})
	t.Run("expired before open", func(t *testing.T) {
		res, _ := n.lb.Receiver.Reserve(n.pool.Pick(r, 1), 30*time.Millisecond)
		out, _ := res.Wait(ctx)
		if out.State != kvtransfer.StateExpired {
			t.Fatalf("outcome %+v", out)
		}
		d := res.Descriptor()
		s, _ := n.lb.Transport.Open(ctx, &d)
		sl := d.Slots[0]
		if err := s.Write(ctx, 0, 0, data); err != nil && !errors.Is(err, kvtransfer.ErrExpired) {
			t.Fatal(err)
		}
		if err := s.Commit(ctx, nil); !errors.Is(err, kvtransfer.ErrExpired) {
			t.Fatalf("commit after expiry: %v", err)
		}
		if err := n.pool.CheckUntouched(sl); err != nil {
			t.Fatalf("write after expiry landed: %v", err)
		}
	})
}

// Bytes do not wait for the commit: a burst past the lazy limit streams at
// once, and so does a write that comes after a pause (the engine shipping
// one layer while it computes the next), taking the bytes queued before it.
func TestBytesMoveBeforeCommit(t *testing.T) {
	const slotSize = 64 << 10
	for _, tc := range []struct {
		name  string
		slots int
		pause bool
	}{
		{"burst past the lazy limit", 40, false},
		{"write after a pause", 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t, tc.slots, slotSize, tcp.ServerConfig{}, tcp.Config{Conns: 2}, kvtransfer.ReceiverConfig{})
			res, err := n.lb.Receiver.Reserve(n.pool.Pick(rand.New(rand.NewPCG(10, 10)), tc.slots), time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			d := res.Descriptor()
			s, err := n.lb.Transport.Open(ctx, &d)
			if err != nil {
				t.Fatal(err)
			}
			data := kvtransfertest.Random(rand.New(rand.NewPCG(11, 11)), slotSize)
			for i := range tc.slots {
				if tc.pause && i > 0 {
					time.Sleep(5 * time.Millisecond)
				}
				if err := s.Write(ctx, i, 0, data); err != nil {
					t.Fatal(err)
				}
			}
			want := uint64(tc.slots * slotSize)
			for n.lb.Receiver.Stats().BytesReceived < want {
				if ctx.Err() != nil {
					t.Fatalf("%d of %d bytes landed without a flush or commit", n.lb.Receiver.Stats().BytesReceived, want)
				}
				time.Sleep(time.Millisecond)
			}
			if err := s.Commit(ctx, nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}
