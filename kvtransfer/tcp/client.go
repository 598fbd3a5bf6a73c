package tcp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/duet-llm/duet/kvtransfer"
	"github.com/duet-llm/duet/kvtransfer/internal/wire"
)

// Config configures the sender side.
type Config struct {
	// Conns is the number of parallel connections per peer (default 4).
	Conns int
	// CRC adds a CRC32C of each write's payload, checked by the receiver.
	CRC bool
	// DialTimeout bounds dialing and the handshake (default 2s).
	DialTimeout time.Duration
	// WriteTimeout: a connection whose socket takes no bytes for this long
	// (a receiver that stopped reading) fails, and so do its sessions
	// (default 2s).
	WriteTimeout time.Duration
	// KeepAlive is the TCP keepalive idle time and probe interval
	// (default 1s, 3 probes).
	KeepAlive time.Duration
	// MaxChunk splits writes larger than this into several frames, which
	// go over different connections (default 1 MiB).
	MaxChunk int
	// MaxQueued bounds the bytes queued per connection before Write
	// blocks (default 32 MiB).
	MaxQueued int
	// TLS, when set, is used for every connection.
	TLS *tls.Config
	// RDMA, when set, makes every session write through an RDMA data path
	// set up over the connection; sessions fail if it cannot be set up.
	// (rdma.NewTransport sets this; leave it nil for plain TCP.)
	RDMA RDMADialer
}

func (c Config) withDefaults() Config {
	if c.Conns <= 0 {
		c.Conns = 4
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 2 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 2 * time.Second
	}
	if c.KeepAlive <= 0 {
		c.KeepAlive = time.Second
	}
	if c.MaxChunk <= 0 {
		c.MaxChunk = 1 << 20
	}
	c.MaxChunk = min(c.MaxChunk, wire.MaxWrite)
	if c.MaxQueued <= 0 {
		c.MaxQueued = 32 << 20
	}
	return c
}

// Transport is the sender side over TCP: persistent connections per peer,
// frames written with writev straight from the caller's memory.
type Transport struct {
	cfg   Config
	lg    *zap.Logger
	stats kvtransfer.Counters
	name  string

	mu      sync.Mutex
	peers   map[string]*peer
	stopped bool
	wg      sync.WaitGroup
}

var _ kvtransfer.Transport = (*Transport)(nil)

// New returns a transport. It does no I/O; connections are dialed by the
// first Open to each peer and belong to Run, which must be running.
func New(cfg Config, lg *zap.Logger) *Transport {
	if lg == nil {
		lg = zap.NewNop()
	}
	name := "tcp"
	if cfg.RDMA != nil {
		name = "rdma"
	}
	return &Transport{cfg: cfg.withDefaults(), lg: lg, peers: map[string]*peer{}, name: name}
}

// Name returns "tcp" (or "rdma" with an RDMA data path).
func (t *Transport) Name() string { return t.name }

// Stats returns the sender's counters.
func (t *Transport) Stats() kvtransfer.Stats { return t.stats.Snapshot() }

// Run blocks until ctx is done, then closes every connection (failing the
// sessions on them) and returns once all goroutines have ended.
func (t *Transport) Run(ctx context.Context) error {
	<-ctx.Done()
	t.mu.Lock()
	t.stopped = true
	var conns []*clientConn
	for _, p := range t.peers {
		p.mu.Lock()
		conns = append(conns, p.conns...)
		p.mu.Unlock()
	}
	t.mu.Unlock()
	for _, c := range conns {
		c.fail(kvtransfer.ErrClosed)
	}
	t.wg.Wait()
	return nil
}

func (t *Transport) peer(addr string) (*peer, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return nil, kvtransfer.ErrClosed
	}
	p, ok := t.peers[addr]
	if !ok {
		p = &peer{t: t, addr: addr}
		t.peers[addr] = p
	}
	return p, nil
}

// Open starts a session for d. It dials d's first reachable endpoint if
// needed; the token is checked by the receiver when the first frame for
// the session arrives.
func (t *Transport) Open(ctx context.Context, d *kvtransfer.Descriptor) (kvtransfer.Session, error) {
	if len(d.Slots) == 0 {
		return nil, &kvtransfer.TransferError{Op: "open", ID: d.ID, Err: kvtransfer.ErrBadSlots}
	}
	var errs []error
	for _, ep := range d.Endpoints {
		if t.cfg.RDMA != nil && !ep.RDMA {
			continue
		}
		p, err := t.peer(ep.Addr)
		if err != nil {
			return nil, err
		}
		conns, err := p.ready(ctx)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s := &session{
			t: t, p: p, id: d.ID, token: d.Token, slots: d.Slots, conns: conns,
			opened: make([]bool, len(conns)), committed: make(chan struct{}),
		}
		s.home = int(d.ID % uint64(len(conns)))
		return s, nil
	}
	if len(errs) == 0 {
		errs = append(errs, kvtransfer.ErrNoEndpoint)
	}
	return nil, &kvtransfer.TransferError{Op: "open", ID: d.ID, Err: errors.Join(errs...)}
}

type peer struct {
	t    *Transport
	addr string

	dial  sync.Mutex // one dialer at a time
	mu    sync.Mutex
	conns []*clientConn
}

// ready returns the peer's live connections, dialing the missing ones.
func (p *peer) ready(ctx context.Context) ([]*clientConn, error) {
	p.mu.Lock()
	conns := p.conns
	p.mu.Unlock()
	if len(conns) >= p.t.cfg.Conns && allAlive(conns) {
		return conns, nil // p.conns is replaced, never changed in place
	}
	p.dial.Lock()
	defer p.dial.Unlock()
	p.mu.Lock()
	live := liveConns(p.conns)
	p.conns = live
	need := p.t.cfg.Conns - len(live)
	p.mu.Unlock()
	if need <= 0 {
		return live, nil
	}
	type res struct {
		c   *clientConn
		err error
	}
	ch := make(chan res, need)
	for range need {
		go func() { c, err := p.dialOne(ctx); ch <- res{c, err} }()
	}
	var firstErr error
	var fresh []*clientConn
	for range need {
		r := <-ch
		if r.err != nil {
			firstErr = r.err
			continue
		}
		fresh = append(fresh, r.c)
	}
	p.t.mu.Lock()
	stopped := p.t.stopped
	if !stopped {
		for _, c := range fresh {
			p.t.wg.Add(2)
			go func() { defer p.t.wg.Done(); c.writeLoop() }()
			go func() { defer p.t.wg.Done(); c.readLoop() }()
		}
	}
	p.t.mu.Unlock()
	if stopped {
		for _, c := range fresh {
			c.raw.Close()
		}
		return nil, kvtransfer.ErrClosed
	}
	p.mu.Lock()
	live = liveConns(append(p.conns[:len(p.conns):len(p.conns)], fresh...))
	p.conns = live
	p.mu.Unlock()
	if len(live) == 0 {
		return nil, &kvtransfer.TransferError{Op: "dial", Peer: p.addr, Err: firstErr}
	}
	return live, nil
}

func allAlive(cs []*clientConn) bool {
	for _, c := range cs {
		if !c.alive() {
			return false
		}
	}
	return true
}

func liveConns(cs []*clientConn) []*clientConn {
	out := make([]*clientConn, 0, len(cs))
	for _, c := range cs {
		if c.alive() {
			out = append(out, c)
		}
	}
	return out
}

func (p *peer) dialOne(ctx context.Context) (*clientConn, error) {
	cfg := &p.t.cfg
	ctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	d := net.Dialer{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: cfg.KeepAlive, Interval: cfg.KeepAlive, Count: 3}}
	raw, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	c := &clientConn{p: p, raw: raw, c: raw, kick: make(chan struct{}, 1), done: make(chan struct{}), sessions: map[uint64]*session{},
		scratch: make([]byte, 0, scratchSize), rwake: make(chan struct{}, 1)}
	if err := c.handshake(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("handshake with %s: %w", p.addr, err)
	}
	c.in = newConnReader(c.c, 0)
	return c, nil
}

// frame is one queued frame: its header and the caller's bytes (not
// copied). The writer encodes headers as it writes, so it can coalesce a
// run of writes to one reservation into one FrameWriteV.
type frame struct {
	h       wire.Header
	payload []byte
}

func (f *frame) write() bool { return f.h.Type == wire.FrameWrite }

// Bounds of one batch (one writev): buffers, and the scratch that holds
// its headers and segment tables (a header and a segment per buffer at
// most, so maxBufs of them always fit).
const (
	maxBufs     = iovMax - 24
	scratchSize = maxBufs * (wire.HeaderSize + wire.SegmentSize)
)

type clientConn struct {
	p    *peer
	raw  net.Conn
	c    net.Conn // raw or TLS
	rdma RDMAPath

	qmu     sync.Mutex
	queue   []frame // queue[qhead:] is waiting
	qhead   int
	queued  int           // write payload bytes in queue
	space   chan struct{} // closed when the writer drained the queue (nil when nobody waits)
	kick    chan struct{}
	done    chan struct{}
	err     error // why the connection failed; set before done closes
	failing bool
	writing bool // a goroutine is writing to the socket (writer or a caller's direct write)

	// Owned by the goroutine that set writing: the batch being written.
	bufs    net.Buffers
	scratch []byte // headers and segment tables of the batch
	segs    []wire.Segment
	iov     [][]byte

	smu      sync.Mutex
	sessions map[uint64]*session // routes receiver replies

	// The reader role (see replies.go): rmu guards the role's state; in and
	// lastErr belong to the goroutine that holds it.
	rmu       sync.Mutex
	reading   bool   // a goroutine holds the role
	rgen      uint64 // changes with every holder
	rdeadline bool   // a read deadline is set on the connection
	waiters   int    // callers waiting for a reply
	rwake     chan struct{}
	in        *connReader
	lastErr   error // an Error frame just before the close explains it

	rdmaReply chan []byte // the RDMAAccept answer, during setup
}

func (c *clientConn) alive() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

func (c *clientConn) handshake(ctx context.Context) error {
	if dl, ok := ctx.Deadline(); ok {
		c.raw.SetDeadline(dl)
		defer c.raw.SetDeadline(time.Time{})
	}
	if tc := c.p.t.cfg.TLS; tc != nil {
		cfg := tc.Clone()
		if cfg.ServerName == "" {
			host, _, _ := net.SplitHostPort(c.p.addr)
			cfg.ServerName = host
		}
		t := tls.Client(c.raw, cfg)
		if err := t.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		c.c = t
	}
	var feat uint16
	if c.p.t.cfg.CRC {
		feat |= wire.FeatureCRC
	}
	if c.p.t.cfg.RDMA != nil {
		feat |= wire.FeatureRDMA
	}
	var b [wire.HelloSize]byte
	wire.Hello{Version: wire.Version, Features: feat}.Encode(b[:])
	if _, err := c.c.Write(b[:]); err != nil {
		return err
	}
	if _, err := io.ReadFull(c.c, b[:]); err != nil {
		return err
	}
	h, err := wire.DecodeHello(b[:])
	if err != nil {
		return err
	}
	if c.p.t.cfg.RDMA != nil {
		if h.Features&wire.FeatureRDMA == 0 {
			return fmt.Errorf("%w: receiver does not offer rdma", kvtransfer.ErrRDMA)
		}
		return c.setupRDMA()
	}
	return nil
}

// setupRDMA runs the queue-pair exchange on the fresh connection, before
// its reader starts.
func (c *clientConn) setupRDMA() error {
	path, params, err := c.p.t.cfg.RDMA.Dial(c.p.addr)
	if err != nil {
		return fmt.Errorf("%w: %w", kvtransfer.ErrRDMA, err)
	}
	var hb [wire.HeaderSize]byte
	h := wire.Header{Type: wire.FrameRDMAConnect, Length: uint32(len(params))}
	h.Encode(hb[:])
	bufs := net.Buffers{hb[:], params}
	if _, err := bufs.WriteTo(c.c); err != nil {
		path.Close()
		return err
	}
	if _, err := io.ReadFull(c.c, hb[:]); err != nil {
		path.Close()
		return err
	}
	if err := h.Decode(hb[:]); err != nil || h.Type != wire.FrameRDMAAccept {
		path.Close()
		return fmt.Errorf("%w: bad rdma accept (%v)", kvtransfer.ErrProtocol, err)
	}
	reply := make([]byte, h.Length)
	if _, err := io.ReadFull(c.c, reply); err != nil {
		path.Close()
		return err
	}
	if h.Slot != 0 {
		path.Close()
		return errOf(h.Slot, string(reply))
	}
	if err := path.Connect(reply); err != nil {
		path.Close()
		return fmt.Errorf("%w: %w", kvtransfer.ErrRDMA, err)
	}
	c.rdma = path
	return nil
}

// fail marks the connection dead, closes it and fails its sessions.
func (c *clientConn) fail(err error) {
	c.qmu.Lock()
	if c.failing {
		c.qmu.Unlock()
		return
	}
	c.failing = true
	c.err = err
	c.queue, c.qhead = nil, 0
	if c.space != nil {
		close(c.space)
		c.space = nil
	}
	close(c.done)
	c.qmu.Unlock()
	c.raw.Close()
	if c.rdma != nil {
		c.rdma.Close()
	}
	c.smu.Lock()
	sessions := c.sessions
	c.sessions = map[uint64]*session{}
	c.smu.Unlock()
	for _, s := range sessions {
		s.fail(&kvtransfer.TransferError{Op: "write", Peer: c.p.addr, ID: s.id, Err: err})
	}
}

func (c *clientConn) route(s *session) {
	c.smu.Lock()
	c.sessions[s.id] = s
	c.smu.Unlock()
}

func (c *clientConn) unroute(id uint64) {
	c.smu.Lock()
	delete(c.sessions, id)
	c.smu.Unlock()
}

// lazyMax: the first lazyMax bytes a session writes are queued without
// waking the writer goroutines; its Flush or Commit then writes the queues
// on the caller's goroutine as coalesced writevs. A transfer of up to
// lazyMax written in one burst (a short prompt's KV) thus costs one writev
// per connection and no goroutine hand-off; a bigger one wakes the writers
// once past lazyMax and streams while the caller computes. A caller that
// pauses between writes (a prompt's KV shipped layer by layer while later
// layers compute) does not leave its bytes waiting for the commit: the
// first write at a lazyCheck boundary that comes lazyDelay or more after
// the previous boundary wakes the writers, which send everything queued.
const (
	lazyMax   = 1 << 20
	lazyDelay = 200 * time.Microsecond
	lazyCheck = 64 << 10 // how often (in bytes) a burst looks at the clock
)

// How a queued frame gets written.
type pushMode int

const (
	pushKick  pushMode = iota // wake the writer goroutine
	pushLazy                  // leave it queued; a later kick or drain sends it
	pushDrain                 // write the queue now on this goroutine if nobody is writing
)

// push queues a frame holding n write payload bytes. It returns the
// connection's error if it failed.
func (c *clientConn) push(f frame, n int, mode pushMode) error {
	c.qmu.Lock()
	if c.failing {
		err := c.err
		c.qmu.Unlock()
		return err
	}
	c.queue = append(c.queue, f)
	c.queued += n
	// A goroutine that is writing drains the queue to the end before it
	// stops, so it needs no wake-up.
	idle := !c.writing
	c.qmu.Unlock()
	switch {
	case mode == pushKick && idle:
		c.kickWriter()
	case mode == pushDrain:
		if !c.drain() {
			c.qmu.Lock()
			err := c.err
			c.qmu.Unlock()
			return err
		}
	}
	return nil
}

func (c *clientConn) kickWriter() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// kickIfQueued wakes the writer if frames wait and nobody is writing.
func (c *clientConn) kickIfQueued() {
	c.qmu.Lock()
	wake := !c.writing && len(c.queue) > c.qhead
	c.qmu.Unlock()
	if wake {
		c.kickWriter()
	}
}

// writeNow writes bufs (holding n write payload bytes) to the socket; only
// the goroutine that set c.writing may call it.
func (c *clientConn) writeNow(bufs net.Buffers, n int) error {
	var err error
	_, c.iov, err = writeTo(c.c, bufs, c.p.t.cfg.WriteTimeout, c.iov)
	if err != nil {
		var ne net.Error
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
			err = fmt.Errorf("%w: receiver took no bytes for %v", kvtransfer.ErrTimeout, c.p.t.cfg.WriteTimeout)
		} else {
			err = fmt.Errorf("%w: %w", kvtransfer.ErrPeerGone, err)
		}
		c.fail(err)
		return err
	}
	c.p.t.stats.BytesSent.Add(uint64(n))
	return nil
}

// pushWait queues a write frame, waiting while the queue holds MaxQueued
// bytes (backpressure).
func (c *clientConn) pushWait(ctx context.Context, f frame, n int, mode pushMode) error {
	for {
		c.qmu.Lock()
		if c.failing {
			err := c.err
			c.qmu.Unlock()
			return err
		}
		if c.queued == 0 || c.queued+n <= c.p.t.cfg.MaxQueued {
			c.queue = append(c.queue, f)
			c.queued += n
			idle := !c.writing
			c.qmu.Unlock()
			if mode == pushKick && idle {
				c.kickWriter()
			}
			return nil
		}
		if c.space == nil {
			c.space = make(chan struct{})
		}
		space := c.space
		wake := !c.writing
		c.qmu.Unlock()
		if wake {
			c.kickWriter() // lazily queued frames must go for space to come
		}
		select {
		case <-space:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// maxBatch bounds one writev's payload so WriteTimeout measures a stall,
// not a big batch on a slow link.
const maxBatch = 4 << 20

func (c *clientConn) writeLoop() {
	for {
		select {
		case <-c.kick:
		case <-c.done:
			return
		}
		if !c.drain() {
			return
		}
	}
}

// drain writes queued frames until the queue is empty, unless another
// goroutine is writing (that one drains what it finds before it stops).
// It reports false once the connection failed.
func (c *clientConn) drain() bool {
	for {
		c.qmu.Lock()
		if c.failing {
			c.qmu.Unlock()
			return false
		}
		if c.writing || len(c.queue) == c.qhead {
			c.qmu.Unlock()
			return true
		}
		bufs, bytes := c.takeBatch()
		c.writing = true
		c.qmu.Unlock()
		err := c.writeNow(bufs, bytes)
		clear(bufs)
		if err != nil {
			return false
		}
		c.qmu.Lock()
		c.writing = false
		c.queued -= bytes
		if c.space != nil {
			close(c.space)
			c.space = nil
		}
		c.qmu.Unlock()
	}
}

// takeBatch moves up to maxBatch bytes of queued frames into c.bufs,
// coalescing each run of writes to one reservation into a FrameWriteV, and
// returns the buffers and the write payload bytes in them. c.qmu is held.
func (c *clientConn) takeBatch() (net.Buffers, int) {
	bufs, scratch := c.bufs[:0], c.scratch[:0]
	q := c.queue[c.qhead:]
	bytes, i := 0, 0
	for i < len(q) && (i == 0 || bytes < maxBatch) {
		f := &q[i]
		j := i + 1
		run := len(f.payload)
		if f.write() {
			for j < len(q) && j-i < wire.MaxSegments {
				g := &q[j]
				if !g.write() || g.h.ID != f.h.ID || g.h.Flags != f.h.Flags || run+len(g.payload) > wire.MaxWrite {
					break
				}
				run += len(g.payload)
				j++
			}
		}
		// Stop where the batch's buffers or scratch would run out (the
		// scratch must not grow: bufs point into it).
		j = min(j, i+maxBufs-1-len(bufs))
		if j <= i {
			break
		}
		if j-i > 1 {
			run = 0
			for _, g := range q[i:j] {
				run += len(g.payload)
			}
		}
		start := len(scratch)
		if j-i == 1 {
			scratch = scratch[:start+wire.HeaderSize]
			f.h.Encode(scratch[start:])
			bufs = append(bufs, scratch[start:len(scratch):len(scratch)])
			if len(f.payload) > 0 {
				bufs = append(bufs, f.payload)
			}
			if f.write() {
				bytes += len(f.payload)
			}
			i++
			continue
		}
		// A run of writes to one reservation: one writev frame.
		segs := c.segs[:0]
		for _, g := range q[i:j] {
			segs = append(segs, wire.Segment{Slot: g.h.Slot, Length: g.h.Length, Offset: g.h.Arg, CRC: g.h.CRC})
		}
		c.segs = segs
		h := wire.Header{Type: wire.FrameWriteV, Flags: f.h.Flags, Length: uint32(run), ID: f.h.ID, Slot: uint32(len(segs))}
		scratch = scratch[:start+wire.HeaderSize]
		h.Encode(scratch[start:])
		scratch = wire.EncodeSegments(scratch, segs)
		bufs = append(bufs, scratch[start:len(scratch):len(scratch)])
		for _, g := range q[i:j] {
			bufs = append(bufs, g.payload)
		}
		bytes += run
		i = j
	}
	clear(q[:i])
	c.qhead += i
	switch {
	case c.qhead == len(c.queue):
		c.queue, c.qhead = c.queue[:0], 0
	case c.qhead >= 1024 && 2*c.qhead >= len(c.queue):
		n := copy(c.queue, c.queue[c.qhead:])
		clear(c.queue[n:])
		c.queue, c.qhead = c.queue[:n], 0
	}
	c.bufs, c.scratch = bufs, scratch
	return bufs, bytes
}

// flushWait is one Flush: the connections whose Flushed has not come.
type flushWait struct {
	pending map[*clientConn]bool
	note    chan struct{} // signaled at each Flushed, closed on failure
}

// session is one reservation being written.
type session struct {
	t     *Transport
	p     *peer
	id    uint64
	token kvtransfer.Token
	slots []kvtransfer.Slot
	conns []*clientConn // the peer's connections when the session opened
	home  int           // the connection of a small session

	mu        sync.Mutex
	opened    []bool // OPEN queued on conns[i]
	err       error  // first failure; sticky
	ended     bool   // Commit or Abort called
	written   int64
	last      time.Time // of the latest Write
	seq       uint64
	flushes   map[uint64]*flushWait
	committed chan struct{}
	commitErr error
	aborted   bool // ABORT frames sent
}

// stripe is how many bytes of a session go to one connection before the
// next takes over: long enough for big writev batches on each, short
// enough that a MiB spreads over four of them. A session of up to a
// stripe stays on its home connection (its commit then waits on no other).
const stripe = 256 << 10

// conn returns the connection for the write at position pos of the
// session's stream.
func (s *session) conn(pos int64) int {
	return (s.home + int(pos/stripe)) % len(s.conns)
}

// use returns conn i, queuing the OPEN on it first if this session has not
// used it yet. s.mu is held, so no later frame of this session can overtake
// the OPEN on that connection.
func (s *session) useLocked(i int) (*clientConn, error) {
	if s.err != nil {
		return nil, s.err
	}
	c := s.conns[i]
	if !s.opened[i] {
		f := frame{h: wire.Header{Type: wire.FrameOpen, Length: kvtransfer.TokenSize, ID: s.id}, payload: s.token[:]}
		c.route(s)
		if err := c.push(f, 0, pushLazy); err != nil {
			c.unroute(s.id)
			return nil, s.failLocked(&kvtransfer.TransferError{Op: "open", Peer: s.p.addr, ID: s.id, Err: err})
		}
		s.opened[i] = true
	}
	return c, nil
}

func (s *session) use(i int) (*clientConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.useLocked(i)
}

func (s *session) Write(ctx context.Context, slot int, off int64, src []byte) error {
	if slot < 0 || slot >= len(s.slots) || off < 0 || off > int64(s.slots[slot].Length) ||
		int64(len(src)) > int64(s.slots[slot].Length)-off {
		return &kvtransfer.TransferError{Op: "write", Peer: s.p.addr, ID: s.id,
			Err: fmt.Errorf("%w: %d bytes at %d in slot %d of %d", kvtransfer.ErrOutOfBounds, len(src), off, slot, len(s.slots))}
	}
	for len(src) > 0 {
		n := min(len(src), s.t.cfg.MaxChunk)
		chunk := src[:n]
		lazy := false
		var now time.Time
		s.mu.Lock()
		if s.err == nil && s.ended {
			s.mu.Unlock()
			return kvtransfer.ErrSessionDone
		}
		pos := s.written
		if end := pos + int64(n); end <= lazyMax {
			lazy = true
			// The clock is read where the stream crosses a lazyCheck
			// boundary, not on every write (it costs ~0.1µs).
			if pos == 0 || (end-1)/lazyCheck != (pos-1)/lazyCheck {
				now = time.Now()
				lazy = pos == 0 || now.Sub(s.last) < lazyDelay
				s.last = now
			}
		}
		c, err := s.useLocked(s.conn(pos))
		if err == nil {
			s.written += int64(n)
		}
		s.mu.Unlock()
		if err != nil {
			return err
		}
		if c.rdma != nil {
			sl := s.slots[slot]
			if err := c.rdma.Write(sl.Region, sl.Offset+uint64(off), chunk); err != nil {
				return s.fail(&kvtransfer.TransferError{Op: "write", Peer: s.p.addr, ID: s.id, Err: err})
			}
			s.t.stats.BytesSent.Add(uint64(n))
		} else {
			f := frame{h: wire.Header{Type: wire.FrameWrite, Length: uint32(n), ID: s.id, Slot: uint32(slot), Arg: uint64(off)}, payload: chunk}
			if s.t.cfg.CRC {
				f.h.Flags = wire.FlagCRC
				f.h.CRC = wire.CRC(chunk)
			}
			// The first lazyMax bytes of a burst wait for Flush or Commit
			// to write them on the caller's goroutine; a later write, or
			// one after a pause, wakes the writers (every connection's, the
			// first time), which take all that is queued.
			mode := pushLazy
			if !lazy {
				mode = pushKick
				if pos <= lazyMax {
					for _, o := range s.conns {
						if o != c {
							o.kickIfQueued()
						}
					}
				}
			}
			if err := c.pushWait(ctx, f, n, mode); err != nil {
				if ctx.Err() != nil {
					s.mu.Lock()
					s.written -= int64(n) // never queued
					s.mu.Unlock()
					return err
				}
				return s.fail(&kvtransfer.TransferError{Op: "write", Peer: s.p.addr, ID: s.id, Err: err})
			}
		}
		src, off = src[n:], off+int64(n)
	}
	return nil
}

func (s *session) fail(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failLocked(err)
}

// failLocked records the first failure, wakes every waiter and tells each
// connection this session used that it is done with the reservation.
func (s *session) failLocked(err error) error {
	if s.err != nil {
		return s.err
	}
	s.err = err
	switch {
	case errors.Is(err, kvtransfer.ErrCanceled):
		s.t.stats.CountOutcome(kvtransfer.StateCanceled)
	case errors.Is(err, kvtransfer.ErrExpired):
		s.t.stats.CountOutcome(kvtransfer.StateExpired)
	default:
		s.t.stats.CountOutcome(kvtransfer.StateFailed)
	}
	for seq, w := range s.flushes {
		close(w.note)
		delete(s.flushes, seq)
	}
	select {
	case <-s.committed:
	default:
		s.commitErr = err
		close(s.committed)
	}
	s.abortLocked("")
	return err
}

// abortLocked sends ABORT on every connection the session opened (the
// receiver aborts the reservation if it is still active, and forgets the
// reservation on that connection either way).
func (s *session) abortLocked(reason string) {
	if s.aborted {
		return
	}
	s.aborted = true
	for i, c := range s.conns {
		if !s.opened[i] {
			continue
		}
		c.unroute(s.id)
		f := frame{h: wire.Header{Type: wire.FrameAbort, Length: uint32(len(reason)), ID: s.id}, payload: []byte(reason)}
		_ = c.push(f, 0, pushKick)
	}
}

func (s *session) Flush(ctx context.Context) error {
	if err := s.fenceRDMA(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	if s.err != nil {
		defer s.mu.Unlock()
		return s.err
	}
	s.seq++
	seq := s.seq
	w := &flushWait{pending: map[*clientConn]bool{}, note: make(chan struct{}, 1)}
	var conns []*clientConn
	for i, c := range s.conns {
		if s.opened[i] {
			conns = append(conns, c)
			w.pending[c] = true
		}
	}
	if len(conns) == 0 {
		s.mu.Unlock()
		return nil // nothing written
	}
	if s.flushes == nil {
		s.flushes = map[uint64]*flushWait{}
	}
	s.flushes[seq] = w
	s.mu.Unlock()
	for _, c := range conns {
		f := frame{h: wire.Header{Type: wire.FrameFlush, ID: s.id, Arg: seq}}
		if err := c.push(f, 0, pushDrain); err != nil {
			return s.fail(&kvtransfer.TransferError{Op: "flush", Peer: s.p.addr, ID: s.id, Err: err})
		}
	}
	for _, c := range conns {
		done := func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return !w.pending[c] || s.err != nil
		}
		if err := c.await(ctx, done, w.note); err != nil {
			if ctx.Err() != nil {
				return err
			}
			return s.fail(&kvtransfer.TransferError{Op: "flush", Peer: s.p.addr, ID: s.id, Err: err})
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	return nil
}

func (s *session) flushed(c *clientConn, seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w, ok := s.flushes[seq]; ok && w.pending[c] {
		delete(w.pending, c)
		if len(w.pending) == 0 {
			delete(s.flushes, seq)
		}
		select {
		case w.note <- struct{}{}:
		default:
		}
	}
}

func (s *session) Commit(ctx context.Context, payload []byte) error {
	if len(payload) > wire.MaxCommitPayload {
		return fmt.Errorf("%w: commit payload of %d bytes (max %d)", kvtransfer.ErrSizeMismatch, len(payload), wire.MaxCommitPayload)
	}
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return kvtransfer.ErrSessionDone
	}
	s.ended = true
	first := 0
	for i := range s.conns {
		if s.opened[i] {
			first = i
			break
		}
	}
	total := s.written
	s.mu.Unlock()
	c, err := s.use(first)
	if err != nil {
		return err
	}
	h := wire.Header{Type: wire.FrameCommit, Length: uint32(len(payload)), ID: s.id, Arg: uint64(total)}
	if c.rdma != nil {
		// Every RDMA write of this session went over some connection's
		// queue pair; fence them all, then commit.
		if err := s.fenceRDMA(ctx); err != nil {
			return err
		}
		h.Flags = wire.FlagRDMA
	}
	// Writes still lazily queued on the other connections go first, from
	// here (a writer already writing finishes them instead): the receiver
	// holds the commit until their bytes land. A failure there fails the
	// session through the connection.
	s.mu.Lock()
	others := make([]*clientConn, 0, len(s.conns))
	for i, o := range s.conns {
		if s.opened[i] && o != c {
			others = append(others, o)
		}
	}
	s.mu.Unlock()
	for _, o := range others {
		o.drain()
	}
	if err := c.push(frame{h: h, payload: payload}, 0, pushDrain); err != nil {
		return s.fail(&kvtransfer.TransferError{Op: "commit", Peer: s.p.addr, ID: s.id, Err: err})
	}
	// Wait for the reply, reading it ourselves if nobody else reads.
	done := func() bool {
		select {
		case <-s.committed:
			return true
		default:
			return false
		}
	}
	if err := c.await(ctx, done, s.committed); err != nil {
		if ctx.Err() != nil {
			s.fail(&kvtransfer.TransferError{Op: "commit", Peer: s.p.addr, ID: s.id, Err: ctx.Err()})
			return ctx.Err()
		}
		return s.fail(&kvtransfer.TransferError{Op: "commit", Peer: s.p.addr, ID: s.id, Err: err})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.commitErr != nil {
		return s.commitErr
	}
	s.t.stats.CountOutcome(kvtransfer.StateCommitted)
	return nil
}

func (s *session) fenceRDMA(ctx context.Context) error {
	s.mu.Lock()
	var paths []RDMAPath
	for i, c := range s.conns {
		if s.opened[i] && c.rdma != nil {
			paths = append(paths, c.rdma)
		}
	}
	s.mu.Unlock()
	for _, p := range paths {
		if err := p.Fence(ctx, s.id); err != nil {
			return s.fail(&kvtransfer.TransferError{Op: "commit", Peer: s.p.addr, ID: s.id, Err: err})
		}
	}
	return nil
}

func (s *session) commitOK() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.committed:
		return
	default:
	}
	close(s.committed)
	for i, c := range s.conns {
		if s.opened[i] {
			c.unroute(s.id)
		}
	}
}

func (s *session) Abort(ctx context.Context, reason string) error {
	if len(reason) > wire.MaxMessage {
		reason = reason[:wire.MaxMessage]
	}
	s.mu.Lock()
	if s.ended || s.err != nil {
		s.mu.Unlock()
		return nil
	}
	s.ended = true
	any := false
	for _, o := range s.opened {
		any = any || o
	}
	s.mu.Unlock()
	if !any {
		// Nothing sent yet: open on one connection so the receiver hears of
		// the abort now rather than at expiry.
		if _, err := s.use(0); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.abortLocked(reason)
	s.err = kvtransfer.ErrAborted
	s.mu.Unlock()
	s.t.stats.CountOutcome(kvtransfer.StateAborted)
	return nil
}
