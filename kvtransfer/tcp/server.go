package tcp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/duet-llm/duet/kvtransfer"
	"github.com/duet-llm/duet/kvtransfer/internal/wire"
)

// ServerConfig configures the receiver side.
type ServerConfig struct {
	// Addr is the listen address (host:port; port 0 picks one).
	Addr string
	// Advertise is the address put in descriptors (default: the listener's).
	Advertise string
	// TLS, when set, is required of every connection.
	TLS *tls.Config
	// FrameTimeout bounds how long the rest of a frame (segment table,
	// payload) may take once its header arrived, counted from the first
	// read that has to wait; a sender that stalls mid-frame loses the
	// connection (default 5s). An idle connection has no timeout: TCP
	// keepalive (KeepAlive) finds dead peers.
	FrameTimeout time.Duration
	// WriteTimeout bounds one reply write (default 5s).
	WriteTimeout time.Duration
	// KeepAlive is the TCP keepalive idle time and probe interval (default
	// 1s, 3 probes): a peer whose host vanished is found in a few seconds.
	KeepAlive time.Duration
	// RequireCRC refuses write frames without a CRC32C.
	RequireCRC bool
	// RDMA, when set, accepts RDMA data paths and advertises RDMA.
	RDMA RDMAAcceptor
}

func (c ServerConfig) withDefaults() ServerConfig {
	if c.FrameTimeout <= 0 {
		c.FrameTimeout = 5 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 5 * time.Second
	}
	if c.KeepAlive <= 0 {
		c.KeepAlive = time.Second
	}
	return c
}

// Server serves a Receiver over TCP: it reads write frames straight into
// reservation slots.
type Server struct {
	cfg  ServerConfig
	recv *kvtransfer.Receiver
	lg   *zap.Logger

	ready chan struct{}
	mu    sync.Mutex
	addr  net.Addr
	conns map[*serverConn]struct{}
	wg    sync.WaitGroup
}

// NewServer returns a server for recv. It does no I/O; Run listens.
func NewServer(cfg ServerConfig, recv *kvtransfer.Receiver, lg *zap.Logger) *Server {
	if lg == nil {
		lg = zap.NewNop()
	}
	return &Server{cfg: cfg.withDefaults(), recv: recv, lg: lg, ready: make(chan struct{}), conns: map[*serverConn]struct{}{}}
}

// Ready is closed once the server listens (Addr is then valid).
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr returns the listen address (nil before Ready).
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Run listens, advertises the endpoint on the receiver and serves until ctx
// is done; then it closes every connection (failing their reservations) and
// returns once all its goroutines have ended.
func (s *Server) Run(ctx context.Context) error {
	lc := net.ListenConfig{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: s.cfg.KeepAlive, Interval: s.cfg.KeepAlive, Count: 3}}
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("kv listen %s: %w", s.cfg.Addr, err)
	}
	adv := s.cfg.Advertise
	if adv == "" {
		adv = ln.Addr().String()
	}
	remove := s.recv.AddEndpoint(kvtransfer.Endpoint{Addr: adv, RDMA: s.cfg.RDMA != nil})
	defer remove()
	s.mu.Lock()
	s.addr = ln.Addr()
	s.mu.Unlock()
	close(s.ready)
	s.lg.Info("kv server listening", zap.String("addr", ln.Addr().String()), zap.Bool("rdma", s.cfg.RDMA != nil), zap.Bool("tls", s.cfg.TLS != nil))

	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil {
				s.lg.Error("kv accept failed", zap.Error(err))
			}
			break
		}
		sc := &serverConn{s: s, c: c, raw: c, peer: c.RemoteAddr().String(), entries: map[uint64]*entry{},
			out: make([]byte, wire.HeaderSize, wire.HeaderSize+wire.MaxControl)}
		s.mu.Lock()
		s.conns[sc] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			sc.serve()
			s.mu.Lock()
			delete(s.conns, sc)
			s.mu.Unlock()
		}()
	}
	s.mu.Lock()
	for sc := range s.conns {
		sc.close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// entry is one reservation opened on one connection.
type entry struct {
	att  *kvtransfer.Attachment
	dead error // non-nil: the reservation ended; discard writes until the sender aborts
}

type serverConn struct {
	s    *Server
	c    net.Conn // raw, or TLS over raw
	raw  net.Conn
	peer string

	wmu  sync.Mutex // serializes frames to the sender; guards out and wiov
	out  []byte     // the frame being sent
	wiov [][]byte

	mu      sync.Mutex
	entries map[uint64]*entry
	closed  bool
	rdma    RDMALink

	// reader-goroutine state: the frame reader and scratch for writev frames
	in   *connReader
	segs []wire.Segment
	dsts [][]byte
}

// violation is a protocol error: refuse, tell the sender why, close.
type violation struct {
	id   uint64
	code uint32
	err  error
}

func (v *violation) Error() string { return v.err.Error() }

func (sc *serverConn) close() {
	sc.mu.Lock()
	sc.closed = true
	sc.mu.Unlock()
	sc.raw.Close()
}

func (sc *serverConn) serve() {
	lg := sc.s.lg.With(zap.String("peer", sc.peer))
	err := sc.loop()
	var v *violation
	if errors.As(err, &v) {
		sc.s.recv.Counters().Refused.Add(1)
		lg.Warn("kv frame refused, closing connection", zap.Uint64("reservation-id", v.id), zap.Error(v.err))
		msg := v.err.Error()
		if len(msg) > wire.MaxMessage {
			msg = msg[:wire.MaxMessage]
		}
		if sc.send(wire.Header{Type: wire.FrameError, ID: v.id, Slot: v.code}, []byte(msg)) == nil {
			sc.linger()
		}
	}
	sc.close()
	sc.mu.Lock()
	entries := sc.entries
	sc.entries = nil
	link := sc.rdma
	sc.rdma = nil
	sc.mu.Unlock()
	gone := fmt.Errorf("%w: %s: %w", kvtransfer.ErrPeerGone, sc.peer, err)
	for _, e := range entries {
		if e.att != nil {
			e.att.Detach()
			e.att.Fail(gone)
		}
	}
	if link != nil {
		link.Close()
	}
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && v == nil {
		lg.Info("kv connection ended", zap.Error(err), zap.Int("open-reservations", len(entries)))
	}
}

// linger makes the Error frame reach the sender: closing with unread bytes
// in the receive buffer sends a reset, which can destroy the frame in the
// sender's buffer. So: half-close, and drain briefly before closing.
func (sc *serverConn) linger() {
	if tc, ok := sc.raw.(*net.TCPConn); ok && sc.c == sc.raw {
		tc.CloseWrite()
	}
	sc.raw.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	io.CopyN(io.Discard, sc.raw, 64<<20)
}

// send writes one frame to the sender.
func (sc *serverConn) send(h wire.Header, payload []byte) error {
	h.Length = uint32(len(payload))
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	sc.out = sc.out[:wire.HeaderSize]
	h.Encode(sc.out)
	sc.out = append(sc.out, payload...)
	var err error
	_, sc.wiov, err = writeTo(sc.c, net.Buffers{sc.out}, sc.s.cfg.WriteTimeout, sc.wiov)
	if err != nil {
		sc.raw.Close() // the reader notices and cleans up
	}
	return err
}

func (sc *serverConn) sendErr(h wire.Type, id uint64, err error) {
	msg := err.Error()
	if len(msg) > wire.MaxMessage {
		msg = msg[:wire.MaxMessage]
	}
	_ = sc.send(wire.Header{Type: h, ID: id, Slot: codeOf(err)}, []byte(msg))
}

func (sc *serverConn) handshake() error {
	sc.c.SetDeadline(time.Now().Add(sc.s.cfg.FrameTimeout))
	defer sc.c.SetDeadline(time.Time{})
	if sc.s.cfg.TLS != nil {
		tc := tls.Server(sc.c, sc.s.cfg.TLS)
		if err := tc.Handshake(); err != nil {
			return fmt.Errorf("tls handshake: %w", err)
		}
		sc.c = tc
	}
	var b [wire.HelloSize]byte
	if _, err := io.ReadFull(sc.c, b[:]); err != nil {
		return fmt.Errorf("read hello: %w", err)
	}
	if _, err := wire.DecodeHello(b[:]); err != nil {
		return &violation{code: wire.CodeProtocol, err: fmt.Errorf("%w: %w", kvtransfer.ErrProtocol, err)}
	}
	var feat uint16
	if sc.s.cfg.RDMA != nil {
		feat |= wire.FeatureRDMA
	}
	wire.Hello{Version: wire.Version, Features: feat}.Encode(b[:])
	_, err := sc.c.Write(b[:])
	return err
}

func (sc *serverConn) loop() error {
	if err := sc.handshake(); err != nil {
		return err
	}
	sc.in = newConnReader(sc.c, sc.s.cfg.FrameTimeout)
	var h wire.Header
	for {
		hb, err := sc.in.header(wire.HeaderSize)
		if err != nil {
			return err
		}
		if err := h.Decode(hb); err != nil {
			return &violation{code: wire.CodeProtocol, err: fmt.Errorf("%w: %w", kvtransfer.ErrProtocol, err)}
		}
		switch h.Type {
		case wire.FrameOpen:
			err = sc.open(&h)
		case wire.FrameWrite:
			err = sc.write(&h)
		case wire.FrameWriteV:
			err = sc.writev(&h)
		case wire.FrameFlush:
			err = sc.flush(&h)
		case wire.FrameCommit:
			err = sc.commit(&h)
		case wire.FrameAbort:
			err = sc.abort(&h)
		case wire.FrameRDMAConnect:
			err = sc.rdmaConnect(&h)
		case wire.FramePing:
			err = sc.send(wire.Header{Type: wire.FramePong, Arg: h.Arg}, nil)
		default:
			err = &violation{id: h.ID, code: wire.CodeProtocol, err: fmt.Errorf("%w: unexpected %s frame", kvtransfer.ErrProtocol, h.Type)}
		}
		if err != nil {
			return err
		}
	}
}

// readPayload returns a control frame's payload (at most wire.MaxControl
// bytes, checked by the header decoder). It is valid until the next read.
func (sc *serverConn) readPayload(n uint32) ([]byte, error) {
	return sc.in.next(int(n))
}

func (sc *serverConn) lookup(id uint64) (*entry, bool) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	e, ok := sc.entries[id]
	return e, ok
}

func (sc *serverConn) open(h *wire.Header) error {
	p, err := sc.readPayload(h.Length)
	if err != nil {
		return err
	}
	if _, dup := sc.lookup(h.ID); dup {
		return &violation{id: h.ID, code: wire.CodeProtocol, err: fmt.Errorf("%w: reservation %d opened twice", kvtransfer.ErrProtocol, h.ID)}
	}
	id := h.ID
	tok := kvtransfer.Token(p)
	att, err := sc.s.recv.Attach(id, tok, kvtransfer.AttachHooks{
		Ended: func(st kvtransfer.State, err error) { sc.ended(id, st, err) },
		Kill:  sc.close,
	})
	switch {
	case err == nil:
	case benign(err):
		// The reservation ended before the sender opened it: tell the
		// sender, and discard what it pipelined behind the open.
		sc.mu.Lock()
		if sc.entries != nil {
			sc.entries[id] = &entry{dead: err}
		}
		sc.mu.Unlock()
		sc.sendErr(wire.FrameCanceled, id, err)
		return nil
	default: // wrong token, unknown id, already committed
		return &violation{id: id, code: codeOf(err), err: err}
	}
	sc.mu.Lock()
	if sc.entries == nil {
		sc.mu.Unlock()
		att.Detach()
		return net.ErrClosed
	}
	sc.entries[id] = &entry{att: att}
	sc.mu.Unlock()
	return nil
}

// ended is the reservation's callback: it ended for a reason this
// connection did not cause (canceled, expired, committed over another
// connection, failed elsewhere).
func (sc *serverConn) ended(id uint64, st kvtransfer.State, err error) {
	sc.mu.Lock()
	e, ok := sc.entries[id]
	if !ok || sc.closed {
		sc.mu.Unlock()
		return
	}
	if st == kvtransfer.StateCommitted {
		delete(sc.entries, id)
		sc.mu.Unlock()
		return
	}
	e.dead = err
	sc.mu.Unlock()
	sc.sendErr(wire.FrameCanceled, id, err)
}

func (sc *serverConn) write(h *wire.Header) error {
	e, ok := sc.lookup(h.ID)
	if !ok {
		return &violation{id: h.ID, code: wire.CodeNotOpen, err: fmt.Errorf("%w: write to reservation %d, not open on this connection", kvtransfer.ErrProtocol, h.ID)}
	}
	if h.Flags&wire.FlagCRC == 0 && sc.s.cfg.RequireCRC {
		return &violation{id: h.ID, code: wire.CodeCRC, err: fmt.Errorf("%w: write without crc", kvtransfer.ErrChecksum)}
	}
	sc.mu.Lock()
	dead := e.dead
	sc.mu.Unlock()
	if dead != nil {
		return sc.in.discard(int64(h.Length))
	}
	dst, err := e.att.BeginWrite(h.Slot, h.Arg, h.Length)
	if err != nil {
		if benign(err) {
			sc.mu.Lock()
			e.dead = err
			sc.mu.Unlock()
			return sc.in.discard(int64(h.Length))
		}
		if errors.Is(err, kvtransfer.ErrOutOfBounds) {
			e.att.Fail(err)
		}
		return &violation{id: h.ID, code: codeOf(err), err: err}
	}
	sc.dsts = append(sc.dsts[:0], dst)
	n, err := sc.in.payload(sc.dsts)
	sc.dsts[0] = nil
	if err == nil && h.Flags&wire.FlagCRC != 0 {
		if got := wire.CRC(dst); got != h.CRC {
			err = &violation{id: h.ID, code: wire.CodeCRC, err: fmt.Errorf("%w: slot %d offset %d: got %#x want %#x", kvtransfer.ErrChecksum, h.Slot, h.Arg, got, h.CRC)}
			e.att.EndWrite(n, err)
			e.att.Fail(err)
			return err
		}
	}
	e.att.EndWrite(n, err)
	return err
}

// writev lands a batch of writes: every segment is checked before any
// payload byte is read, then one readv fills all the segments' slots.
func (sc *serverConn) writev(h *wire.Header) error {
	e, ok := sc.lookup(h.ID)
	if !ok {
		return &violation{id: h.ID, code: wire.CodeNotOpen, err: fmt.Errorf("%w: write to reservation %d, not open on this connection", kvtransfer.ErrProtocol, h.ID)}
	}
	if h.Flags&wire.FlagCRC == 0 && sc.s.cfg.RequireCRC {
		return &violation{id: h.ID, code: wire.CodeCRC, err: fmt.Errorf("%w: write without crc", kvtransfer.ErrChecksum)}
	}
	table, err := sc.in.next(int(h.Slot) * wire.SegmentSize)
	if err != nil {
		return err
	}
	segs, err := wire.DecodeSegments(h, table, sc.segs)
	sc.segs = segs
	if err != nil {
		return &violation{id: h.ID, code: wire.CodeProtocol, err: fmt.Errorf("%w: %w", kvtransfer.ErrProtocol, err)}
	}
	sc.mu.Lock()
	dead := e.dead
	sc.mu.Unlock()
	if dead != nil {
		return sc.in.discard(int64(h.Length))
	}
	dsts, err := e.att.BeginWrites(len(segs), func(i int) (uint32, uint64, uint32) {
		return segs[i].Slot, segs[i].Offset, segs[i].Length
	}, sc.dsts[:0])
	sc.dsts = dsts
	if err != nil {
		if benign(err) {
			sc.mu.Lock()
			e.dead = err
			sc.mu.Unlock()
			return sc.in.discard(int64(h.Length))
		}
		if errors.Is(err, kvtransfer.ErrOutOfBounds) {
			e.att.Fail(err)
		}
		return &violation{id: h.ID, code: codeOf(err), err: err}
	}
	n, rerr := sc.in.payload(dsts)
	landed := int64(n)
	var bad error
	if rerr != nil {
		// Only the segments that arrived whole count.
		landed = 0
		for _, dst := range dsts {
			if n < len(dst) {
				break
			}
			n -= len(dst)
			landed += int64(len(dst))
		}
	} else if h.Flags&wire.FlagCRC != 0 {
		for i, dst := range dsts {
			if c := wire.CRC(dst); c != segs[i].CRC {
				bad = &violation{id: h.ID, code: wire.CodeCRC, err: fmt.Errorf("%w: slot %d offset %d: got %#x want %#x", kvtransfer.ErrChecksum, segs[i].Slot, segs[i].Offset, c, segs[i].CRC)}
				break
			}
		}
	}
	e.att.EndWrites(len(dsts), landed, rerr)
	clear(dsts)
	if bad != nil {
		e.att.Fail(bad)
		return bad
	}
	return rerr
}

func (sc *serverConn) flush(h *wire.Header) error {
	e, ok := sc.lookup(h.ID)
	if !ok {
		return &violation{id: h.ID, code: wire.CodeNotOpen, err: fmt.Errorf("%w: flush of reservation %d, not open on this connection", kvtransfer.ErrProtocol, h.ID)}
	}
	sc.mu.Lock()
	dead := e.dead
	sc.mu.Unlock()
	if dead != nil {
		sc.sendErr(wire.FrameCanceled, h.ID, dead)
		return nil
	}
	return sc.send(wire.Header{Type: wire.FrameFlushed, ID: h.ID, Arg: h.Arg}, nil)
}

func (sc *serverConn) commit(h *wire.Header) error {
	payload, err := sc.readPayload(h.Length)
	if err != nil {
		return err
	}
	e, ok := sc.lookup(h.ID)
	if !ok {
		return &violation{id: h.ID, code: wire.CodeNotOpen, err: fmt.Errorf("%w: commit of reservation %d, not open on this connection", kvtransfer.ErrProtocol, h.ID)}
	}
	sc.mu.Lock()
	dead := e.dead
	sc.mu.Unlock()
	if dead != nil {
		sc.sendErr(wire.FrameCanceled, h.ID, dead)
		return nil
	}
	if h.Flags&wire.FlagRDMA != 0 {
		if err := sc.rdmaFence(h); err != nil {
			return err
		}
	}
	id := h.ID
	e.att.Commit(h.Arg, payload, func(err error) {
		sc.mu.Lock()
		if sc.entries != nil {
			delete(sc.entries, id)
		}
		sc.mu.Unlock()
		e.att.Detach()
		if err == nil {
			_ = sc.send(wire.Header{Type: wire.FrameCommitted, ID: id}, nil)
			return
		}
		if benign(err) && !errors.Is(err, kvtransfer.ErrSizeMismatch) {
			sc.sendErr(wire.FrameCanceled, id, err)
			return
		}
		// Sizes that do not add up: refuse and close.
		sc.s.recv.Counters().Refused.Add(1)
		sc.s.lg.Warn("kv commit refused, closing connection", zap.String("peer", sc.peer), zap.Uint64("reservation-id", id), zap.Error(err))
		sc.sendErr(wire.FrameError, id, err)
		sc.close()
	})
	return nil
}

func (sc *serverConn) abort(h *wire.Header) error {
	reason, err := sc.readPayload(h.Length)
	if err != nil {
		return err
	}
	sc.mu.Lock()
	e, ok := sc.entries[h.ID]
	delete(sc.entries, h.ID)
	sc.mu.Unlock()
	if !ok {
		return nil // a race with a commit or cancel: nothing to do
	}
	if e.att != nil {
		e.att.Detach()
		if e.dead == nil {
			e.att.Abort(string(reason))
		}
	}
	return nil
}
