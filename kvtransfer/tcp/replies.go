package tcp

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/duet-llm/duet/kvtransfer"
	"github.com/duet-llm/duet/kvtransfer/internal/wire"
)

// Replies from the receiver (Flushed, Committed, Canceled, Error) are read
// by one goroutine at a time, the holder of the connection's reader role:
//
//   - a Flush or Commit waiting for its reply takes the role if it is free
//     and reads the socket itself. It sleeps in the runtime poller and the
//     reply wakes it directly: a commit round trip is a ping-pong like a
//     raw TCP one, with no goroutine hand-off (each costs a wake-up of an
//     idle CPU, which in a virtual machine is dearer than the round trip).
//   - the background reader (one goroutine per connection) looks every
//     readPoll for replies nobody waits for (a Canceled frame under a
//     session that is still writing, an Error before a close, the peer's
//     EOF), and reads on behalf of callers that found the role taken.
//
// A caller leaving the role while others still wait wakes the background
// reader, which then reads (with blocking reads) until no caller waits.
const (
	readPoll     = 50 * time.Millisecond  // while sessions use the connection
	readPollIdle = 500 * time.Millisecond // while none does
)

// takeRole takes the reader role if it is free, and returns its
// generation (a deadline set for one holder must not hit the next).
func (c *clientConn) takeRole() (uint64, bool) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.reading {
		return 0, false
	}
	c.reading = true
	c.rgen++
	return c.rgen, true
}

// dropRole gives the reader role back, clearing any deadline its holder
// left, and wakes the background reader if callers still wait.
func (c *clientConn) dropRole() {
	c.rmu.Lock()
	if c.rdeadline {
		c.c.SetReadDeadline(time.Time{})
		c.rdeadline = false
	}
	c.reading = false
	c.rgen++
	wake := c.waiters > 0
	c.rmu.Unlock()
	if wake {
		c.wakeReader()
	}
}

func (c *clientConn) wakeReader() {
	select {
	case c.rwake <- struct{}{}:
	default:
	}
}

// readFrame reads and dispatches one reply. With wait false it returns
// false when no whole frame has arrived. A read deadline (the background
// reader's poll, a caller's canceled context) leaves the frame unread.
func (c *clientConn) readFrame(wait bool) (bool, error) {
	hb, ok, err := c.in.peek(wire.HeaderSize, wait)
	if !ok || err != nil {
		return false, err
	}
	var h wire.Header
	if err := h.Decode(hb); err != nil {
		return false, fmt.Errorf("%w: %w", kvtransfer.ErrProtocol, err)
	}
	if h.Length > wire.MaxControl {
		return false, fmt.Errorf("%w: %s reply of %d bytes", kvtransfer.ErrProtocol, h.Type, h.Length)
	}
	n := wire.HeaderSize + int(h.Length)
	b, ok, err := c.in.peek(n, true) // the rest comes in the same segment
	if !ok || err != nil {
		return false, err
	}
	payload := b[wire.HeaderSize:n]
	c.dispatch(&h, payload)
	c.in.skip(n)
	return true, nil
}

// dispatch routes one reply to its session.
func (c *clientConn) dispatch(h *wire.Header, payload []byte) {
	c.smu.Lock()
	s := c.sessions[h.ID]
	c.smu.Unlock()
	switch h.Type {
	case wire.FrameFlushed:
		if s != nil {
			s.flushed(c, h.Arg)
		}
	case wire.FrameCommitted:
		if s != nil {
			s.commitOK()
		}
	case wire.FrameCanceled:
		if s != nil {
			s.fail(&kvtransfer.TransferError{Op: "write", Peer: c.p.addr, ID: h.ID, Err: errOf(h.Slot, string(payload))})
		}
	case wire.FrameError:
		err := &kvtransfer.TransferError{Op: "write", Peer: c.p.addr, ID: h.ID, Err: errOf(h.Slot, string(payload))}
		c.lastErr = err
		if s != nil {
			s.fail(err)
		}
	case wire.FramePong:
	default:
		c.fail(fmt.Errorf("%w: unexpected %s frame from receiver", kvtransfer.ErrProtocol, h.Type))
	}
}

// readFailed fails the connection for a read error (an Error frame just
// before the close explains it).
func (c *clientConn) readFailed(err error) {
	switch {
	case c.lastErr != nil:
		err = c.lastErr
	case errors.Is(err, kvtransfer.ErrProtocol):
	case c.alive():
		err = fmt.Errorf("%w: %w", kvtransfer.ErrPeerGone, err)
	}
	c.fail(err)
}

// readLoop is the background reader.
func (c *clientConn) readLoop() {
	t := time.NewTimer(readPoll)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-c.rwake:
		case <-t.C:
		}
		if _, ok := c.takeRole(); ok && !c.serveWaiters() {
			return
		}
		c.smu.Lock()
		poll := readPollIdle
		if len(c.sessions) > 0 {
			poll = readPoll
		}
		c.smu.Unlock()
		t.Reset(poll)
	}
}

// serveWaiters reads, holding the role: blocking (in readPoll steps) while
// callers wait, then whatever has arrived (over TLS, which cannot read
// without waiting, for up to readPoll). It drops the role and reports
// false once the connection failed.
func (c *clientConn) serveWaiters() bool {
	defer c.dropRole()
	tls := c.in.rc == nil
	for {
		c.rmu.Lock()
		waiting := c.waiters > 0
		block := waiting || tls
		if block && !c.rdeadline {
			c.c.SetReadDeadline(time.Now().Add(readPoll))
			c.rdeadline = true
		}
		c.rmu.Unlock()
		got, err := c.readFrame(block)
		if errors.Is(err, os.ErrDeadlineExceeded) && c.alive() {
			c.rmu.Lock()
			c.c.SetReadDeadline(time.Time{})
			c.rdeadline = false
			c.rmu.Unlock()
			if !waiting {
				return true
			}
			continue
		}
		if err != nil {
			c.readFailed(err)
			return false
		}
		if !got {
			return true // nothing has arrived
		}
	}
}

// await waits until done reports true, reading the connection itself when
// no other goroutine does (see the comment at the top). note is signaled
// (or closed) when a reply that may make done true arrives through another
// reader. It returns ctx's error, or the connection's once it failed.
func (c *clientConn) await(ctx context.Context, done func() bool, note <-chan struct{}) error {
	c.rmu.Lock()
	c.waiters++
	c.rmu.Unlock()
	leave := func() {
		c.rmu.Lock()
		c.waiters--
		c.rmu.Unlock()
	}
	for !done() {
		if gen, ok := c.takeRole(); ok {
			err := c.readUntil(ctx, gen, done)
			leave() // first, so dropRole wakes the reader only for others
			c.dropRole()
			return err
		}
		select {
		case <-note:
		case <-c.done:
			leave()
			return c.err
		case <-ctx.Done():
			leave()
			return ctx.Err()
		}
	}
	leave()
	return nil
}

// readUntil reads replies, holding the role, until done reports true.
// Canceling ctx interrupts the read with a past deadline.
func (c *clientConn) readUntil(ctx context.Context, gen uint64, done func() bool) error {
	stop := context.AfterFunc(ctx, func() {
		c.rmu.Lock()
		if c.reading && c.rgen == gen {
			c.c.SetReadDeadline(time.Unix(1, 0))
			c.rdeadline = true
		}
		c.rmu.Unlock()
	})
	defer stop()
	for !done() {
		if _, err := c.readFrame(true); err != nil {
			if ctx.Err() != nil && errors.Is(err, os.ErrDeadlineExceeded) {
				return ctx.Err()
			}
			c.readFailed(err)
			return c.err
		}
	}
	return nil
}
