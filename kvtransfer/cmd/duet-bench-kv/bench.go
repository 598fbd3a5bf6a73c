package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/duet-llm/duet/kvtransfer"
	"github.com/duet-llm/duet/kvtransfer/tcp"
)

type config struct {
	SizesMiB     []int
	Conns        []int
	SlotSize     int
	Budget       time.Duration
	LatencyIters int
	CRC          bool
}

func defaultConfig() config {
	return config{SlotSize: 16 << 10, Budget: 2 * time.Second, LatencyIters: 3000}
}

const latencyBytes = 64 << 10

func bench(ctx context.Context, cfg config, lg *zap.Logger, w io.Writer) error {
	maxSize := slices.Max(cfg.SizesMiB) << 20
	slots := maxSize / cfg.SlotSize
	// The pool has room for twice the largest transfer so slots scatter.
	pool := make([]byte, 2*slots*cfg.SlotSize)
	src := make([]byte, maxSize)
	for i := range src {
		src[i] = byte(i * 7)
	}
	// The raw baselines copy into a buffer as large as the pool, at a new
	// place each time, so their destination is as cold in the caches as the
	// kv slots are: "raw" into one contiguous window (the kernel copies a
	// long run, the fastest case), "raw-scat" with readv into as many slots
	// of the same size as kv, scattered the same way (what any receiver of
	// paged KV pays; the difference to kv is the protocol's own cost). Both
	// buffers are touched first: a decode node's pool is faulted in long
	// before a transfer, and a page fault per 4 KiB on one side only would
	// measure the kernel's page allocator.
	dst := make([]byte, len(pool))
	prefault(pool)
	prefault(dst)
	recv := kvtransfer.NewReceiver(kvtransfer.ReceiverConfig{}, lg)
	defer recv.Close()
	region, err := recv.RegisterRegion(pool)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	srv := tcp.NewServer(tcp.ServerConfig{Addr: "127.0.0.1:0"}, recv, lg)
	g.Go(func() error { return srv.Run(gctx) })
	// Raw TCP: a sink that reads n bytes into dst at the offset the sender
	// names, and acks with one byte.
	rawLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	g.Go(func() error { <-gctx.Done(); return rawLn.Close() })
	g.Go(func() error { serveRaw(rawLn, dst, cfg.SlotSize); return nil })
	defer func() { cancel(); g.Wait() }()
	select {
	case <-srv.Ready():
	case <-gctx.Done():
		return g.Wait()
	}
	addr := srv.Addr().String()

	r := rand.New(rand.NewPCG(1, 1))
	// reserve grants n scattered slots of the pool.
	reserve := func(n int) (*kvtransfer.Reservation, error) {
		perm := r.Perm(2 * slots)[:n]
		sl := make([]kvtransfer.Slot, n)
		for i, j := range perm {
			sl[i] = kvtransfer.Slot{Region: region, Offset: uint64(j * cfg.SlotSize), Length: uint32(cfg.SlotSize)}
		}
		return recv.Reserve(sl, time.Minute)
	}
	// window picks where in dst a raw copy of size bytes lands.
	window := func(size int) int { return r.IntN((len(dst)-size)/cfg.SlotSize+1) * cfg.SlotSize }

	fmt.Fprintf(w, "# kvtransfer over loopback TCP, %d KiB slots scattered in a %d MiB pool, GOMAXPROCS=%d, crc=%v\n",
		cfg.SlotSize>>10, len(pool)>>20, runtime.GOMAXPROCS(0), cfg.CRC)
	fmt.Fprintf(w, "# raw = plain TCP copy of the same bytes over as many connections (default socket buffers on both)\n")
	fmt.Fprintf(w, "#   into a contiguous window at a random place of an equally large, equally prefaulted buffer;\n")
	fmt.Fprintf(w, "# raw-scat = the same, read with readv into %d KiB slots at random places of that buffer\n", cfg.SlotSize>>10)
	fmt.Fprintf(w, "# kv, raw and raw-scat runs alternate; best of >=3 runs each (spread = worst/best)\n")
	fmt.Fprintf(w, "%-8s %-5s %9s %9s %9s %6s %10s %8s %8s %9s\n", "size", "conns", "kv GB/s", "raw GB/s", "scat GB/s", "ratio", "ratio-scat", "kv-sprd", "raw-sprd", "scat-sprd")
	for _, conns := range cfg.Conns {
		tr := tcp.New(tcp.Config{Conns: conns, CRC: cfg.CRC}, lg)
		tctx, tcancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { tr.Run(tctx); close(done) }()
		raw, err := dialRaw(rawLn.Addr().String(), conns)
		if err != nil {
			tcancel()
			return err
		}
		for _, mib := range cfg.SizesMiB {
			size := mib << 20
			kvRun := func() (time.Duration, error) {
				res, err := reserve(size / cfg.SlotSize)
				if err != nil {
					return 0, err
				}
				d := res.Descriptor()
				start := time.Now()
				if err := transfer(ctx, tr, &d, src[:size], cfg.SlotSize); err != nil {
					return 0, err
				}
				el := time.Since(start)
				if out, _ := res.Wait(ctx); out.State != kvtransfer.StateCommitted {
					return 0, fmt.Errorf("outcome %+v", out)
				}
				return el, nil
			}
			rawRun := func() (time.Duration, error) { return raw.copy(src[:size], window(size), false) }
			scatRun := func() (time.Duration, error) { return raw.copy(src[:size], 0, true) }
			runs, err := measure(cfg.Budget, kvRun, rawRun, scatRun)
			if err != nil {
				tcancel()
				return fmt.Errorf("%d MiB x %d conns: %w", mib, conns, err)
			}
			kvG, rawG, scatG := gbps(size, runs[0].best), gbps(size, runs[1].best), gbps(size, runs[2].best)
			fmt.Fprintf(w, "%-8s %-5d %9.2f %9.2f %9.2f %6.2f %10.2f %8.2f %8.2f %9.2f\n", fmt.Sprintf("%dMiB", mib), conns, kvG, rawG, scatG,
				kvG/rawG, kvG/scatG, runs[0].spread(), runs[1].spread(), runs[2].spread())
			fmt.Fprintf(w, "RESULT kv_throughput_%dmib_%dconn %.3f GB/s\n", mib, conns, kvG)
			fmt.Fprintf(w, "RESULT raw_throughput_%dmib_%dconn %.3f GB/s\n", mib, conns, rawG)
			fmt.Fprintf(w, "RESULT raw_scattered_throughput_%dmib_%dconn %.3f GB/s\n", mib, conns, scatG)
			fmt.Fprintf(w, "RESULT kv_vs_raw_%dmib_%dconn %.3f ratio\n", mib, conns, kvG/rawG)
			fmt.Fprintf(w, "RESULT kv_vs_raw_scattered_%dmib_%dconn %.3f ratio\n", mib, conns, kvG/scatG)
		}
		raw.close()
		tcancel()
		<-done
	}

	// Latency: open-to-commit of 64 KiB on warm connections.
	fmt.Fprintf(w, "\n# open-to-commit of a %d KiB transfer (%d slots), warm connections, %d samples\n", latencyBytes>>10, latencyBytes/cfg.SlotSize, cfg.LatencyIters)
	fmt.Fprintf(w, "%-34s %10s %10s\n", "what", "p50 us", "p99 us")
	raw, err := dialRaw(rawLn.Addr().String(), 1)
	if err != nil {
		return err
	}
	defer raw.close()
	ping, err := sample(cfg.LatencyIters, func() (time.Duration, error) { return raw.copy(src[:1], window(1), false) })
	if err != nil {
		return err
	}
	rtt64, err := sample(cfg.LatencyIters, func() (time.Duration, error) {
		return raw.copy(src[:latencyBytes], window(latencyBytes), false)
	})
	if err != nil {
		return err
	}
	printLat(w, "raw tcp round trip, 1 byte", "raw_rtt_1b", ping)
	printLat(w, "raw tcp 64 KiB + 1-byte reply", "raw_rtt_64kib", rtt64)
	for _, conns := range cfg.Conns {
		tr := tcp.New(tcp.Config{Conns: conns, CRC: cfg.CRC}, lg)
		tctx, tcancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { tr.Run(tctx); close(done) }()
		lat, err := sample(cfg.LatencyIters, func() (time.Duration, error) {
			res, err := reserve(latencyBytes / cfg.SlotSize)
			if err != nil {
				return 0, err
			}
			d := res.Descriptor()
			d.Endpoints = []kvtransfer.Endpoint{{Addr: addr}}
			start := time.Now()
			if err := transfer(ctx, tr, &d, src[:latencyBytes], cfg.SlotSize); err != nil {
				return 0, err
			}
			return time.Since(start), nil
		})
		tcancel()
		<-done
		if err != nil {
			return err
		}
		name := fmt.Sprintf("kv_open_to_commit_64kib_%dconn", conns)
		printLat(w, fmt.Sprintf("kv open-to-commit, %d conn", conns), name, lat)
		fmt.Fprintf(w, "RESULT %s_p50_vs_raw_rtt_64kib %.2f ratio\n", name, float64(lat[len(lat)/2])/float64(rtt64[len(rtt64)/2]))
		fmt.Fprintf(w, "RESULT %s_p50_vs_raw_rtt_1b %.2f ratio\n", name, float64(lat[len(lat)/2])/float64(ping[len(ping)/2]))
	}
	return nil
}

// prefault touches every page of b.
func prefault(b []byte) {
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
}

// transfer writes src into the descriptor's slots in order and commits.
func transfer(ctx context.Context, tr kvtransfer.Transport, d *kvtransfer.Descriptor, src []byte, slot int) error {
	s, err := tr.Open(ctx, d)
	if err != nil {
		return err
	}
	for i := range d.Slots {
		if err := s.Write(ctx, i, 0, src[i*slot:(i+1)*slot]); err != nil {
			return err
		}
	}
	return s.Commit(ctx, []byte("first-token"))
}

// runs are the best and worst of one side's runs.
type runs struct{ best, worst time.Duration }

func (r *runs) add(d time.Duration) {
	if r.best == 0 || d < r.best {
		r.best = d
	}
	r.worst = max(r.worst, d)
}

func (r runs) spread() float64 { return float64(r.worst) / float64(r.best) }

// measure runs fs in turn, at least 3 rounds and until budget is spent, so
// all see the same machine.
func measure(budget time.Duration, fs ...func() (time.Duration, error)) ([]runs, error) {
	out := make([]runs, len(fs))
	start := time.Now()
	for i := 0; i < 3 || (time.Since(start) < budget && i < 200); i++ {
		for j, f := range fs {
			d, err := f()
			if err != nil {
				return nil, fmt.Errorf("run %d: %w", j, err)
			}
			out[j].add(d)
		}
	}
	return out, nil
}

// sample runs f n times (after a warm-up) and returns sorted durations.
func sample(n int, f func() (time.Duration, error)) ([]time.Duration, error) {
	for range 50 {
		if _, err := f(); err != nil {
			return nil, err
		}
	}
	out := make([]time.Duration, n)
	for i := range out {
		d, err := f()
		if err != nil {
			return nil, err
		}
		out[i] = d
	}
	slices.Sort(out)
	return out, nil
}

func printLat(w io.Writer, what, name string, d []time.Duration) {
	p50, p99 := d[len(d)/2], d[len(d)*99/100]
	fmt.Fprintf(w, "%-34s %10.1f %10.1f\n", what, us(p50), us(p99))
	fmt.Fprintf(w, "RESULT %s_p50 %.1f us\n", name, us(p50))
	fmt.Fprintf(w, "RESULT %s_p99 %.1f us\n", name, us(p99))
}

func us(d time.Duration) float64 { return float64(d) / 1e3 }

func gbps(n int, d time.Duration) float64 { return float64(n) / d.Seconds() / 1e9 }

// rawConns is the raw TCP baseline: n connections; a copy splits the bytes
// across them and waits for each one's 1-byte ack.
type rawConns struct{ cs []net.Conn }

func dialRaw(addr string, n int) (*rawConns, error) {
	r := &rawConns{}
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			r.close()
			return nil, err
		}
		r.cs = append(r.cs, c)
	}
	return r, nil
}

func (r *rawConns) close() {
	for _, c := range r.cs {
		c.Close()
	}
}

// rawHeader is a raw copy's header: length, destination offset, and
// whether the sink scatters the bytes over random slots instead.
const rawHeader = 24

// copy sends src split over the connections, to land at offset off of the
// sink's buffer (or scattered), and waits for every ack. One connection is
// driven from the caller's goroutine, as a kv session with one connection
// is.
func (r *rawConns) copy(src []byte, off int, scatter bool) (time.Duration, error) {
	start := time.Now()
	if len(r.cs) == 1 {
		err := rawSend(r.cs[0], src, off, scatter)
		return time.Since(start), err
	}
	per := (len(src) + len(r.cs) - 1) / len(r.cs)
	var wg sync.WaitGroup
	errs := make([]error, len(r.cs))
	for i, c := range r.cs {
		lo := min(i*per, len(src))
		hi := min(lo+per, len(src))
		if lo == hi {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = rawSend(c, src[lo:hi], off+lo, scatter)
		}()
	}
	wg.Wait()
	return time.Since(start), errors.Join(errs...)
}

func rawSend(c net.Conn, b []byte, off int, scatter bool) error {
	var hdr [rawHeader]byte
	putLen(hdr[:8], len(b))
	putLen(hdr[8:16], off)
	if scatter {
		hdr[16] = 1
	}
	bufs := net.Buffers{hdr[:], b}
	if _, err := bufs.WriteTo(c); err != nil {
		return err
	}
	var ack [1]byte
	_, err := io.ReadFull(c, ack[:])
	return err
}

func putLen(b []byte, n int) {
	for i := range 8 {
		b[i] = byte(n >> (8 * i))
	}
}

func getLen(b []byte) int {
	n := 0
	for i := range 8 {
		n |= int(b[i]) << (8 * i)
	}
	return n
}

// serveRaw reads length- and offset-prefixed blobs into dst (contiguous
// at the offset, or with readv over random slot-sized pieces of dst) and
// acks each.
func serveRaw(ln net.Listener, dst []byte, slot int) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for seed := uint64(1); ; seed++ {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			rc, err := c.(syscall.Conn).SyscallConn()
			if err != nil {
				return
			}
			r := rand.New(rand.NewPCG(seed, 7))
			var hdr [rawHeader]byte
			var bufs [][]byte
			for {
				if _, err := io.ReadFull(c, hdr[:]); err != nil {
					return
				}
				n, off := getLen(hdr[:8]), getLen(hdr[8:16])
				if n < 0 || off < 0 || n > len(dst)-off {
					return
				}
				if hdr[16] == 0 {
					if _, err := io.ReadFull(c, dst[off:off+n]); err != nil {
						return
					}
				} else {
					bufs = bufs[:0]
					for left := n; left > 0; left -= slot {
						at := r.IntN(len(dst)/slot) * slot
						bufs = append(bufs, dst[at:at+min(slot, left)])
					}
					if err := readvAll(rc, bufs); err != nil {
						return
					}
				}
				if _, err := c.Write([]byte{1}); err != nil {
					return
				}
			}
		}()
	}
}

// readvAll fills bufs with readv(2), as the kv receiver reads its slots.
func readvAll(rc syscall.RawConn, bufs [][]byte) error {
	for len(bufs) > 0 {
		iov := bufs[:min(len(bufs), 1024)]
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, rerr = unix.Readv(int(fd), iov)
			return rerr != unix.EAGAIN
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrUnexpectedEOF
		}
		for n > 0 {
			if k := len(bufs[0]); n >= k {
				n -= k
				bufs = bufs[1:]
			} else {
				bufs[0] = bufs[0][n:]
				n = 0
			}
		}
	}
	return nil
}
