package tcp

import (
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// lookahead is the size of a connection reader's buffer: it holds a frame
// header and any small payload (token, segment table, commit payload,
// messages), so the frames of a small session are parsed from one or two
// system calls. It must hold a header plus the largest segment table.
const lookahead = 8 << 10

// iovMax is the most buffers one readv or writev takes (Linux IOV_MAX).
const iovMax = 1024

// connReader reads frames from a connection. Headers and small payloads go
// through a lookahead buffer; write payloads go straight into slot memory
// with readv, which also refills the lookahead with whatever follows, so a
// frame costs no system call of its own when its bytes have arrived.
//
// The bytes of a write payload that arrived with the previous read sit in
// the lookahead and are copied into the slot: at most one lookahead's worth
// per frame, the rest of the payload is read in place.
//
// Deadlines: waiting for the next header has none (TCP keepalive finds dead
// peers); once a frame has started, the first read that would block arms a
// deadline of timeout (when timeout > 0), so a peer that stalls mid-frame
// fails the read. A read that does not block sets no deadline at all.
type connReader struct {
	c       net.Conn
	rc      syscall.RawConn // nil when reads must go through c (TLS)
	timeout time.Duration
	buf     []byte
	r, w    int  // the unread bytes are buf[r:w]
	armed   bool // a read deadline is set on c
	iov     [][]byte
}

func newConnReader(c net.Conn, timeout time.Duration) *connReader {
	cr := &connReader{c: c, timeout: timeout, buf: make([]byte, lookahead)}
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			cr.rc = rc
		}
	}
	return cr
}

// buffered is how many unread bytes the lookahead holds.
func (cr *connReader) buffered() int { return cr.w - cr.r }

// header returns the next HeaderSize bytes, waiting without a deadline.
// The bytes are valid until the next call.
func (cr *connReader) header(size int) ([]byte, error) {
	cr.endFrame()
	if err := cr.fill(size, false); err != nil {
		return nil, err
	}
	b := cr.buf[cr.r : cr.r+size]
	cr.r += size
	return b, nil
}

// next returns the next n bytes of the current frame (n <= lookahead).
// The bytes are valid until the next call.
func (cr *connReader) next(n int) ([]byte, error) {
	if err := cr.fill(n, true); err != nil {
		return nil, err
	}
	b := cr.buf[cr.r : cr.r+n]
	cr.r += n
	return b, nil
}

// endFrame clears the deadline armed for the frame just read.
func (cr *connReader) endFrame() {
	if cr.armed {
		cr.c.SetReadDeadline(time.Time{})
		cr.armed = false
	}
}

// arm sets the frame deadline, once per frame.
func (cr *connReader) arm() {
	if !cr.armed && cr.timeout > 0 {
		cr.c.SetReadDeadline(time.Now().Add(cr.timeout))
		cr.armed = true
	}
}

// fill reads until the lookahead holds n unread bytes.
func (cr *connReader) fill(n int, inFrame bool) error {
	if cr.w-cr.r >= n {
		return nil
	}
	if cr.r+n > len(cr.buf) {
		cr.w = copy(cr.buf, cr.buf[cr.r:cr.w])
		cr.r = 0
	}
	for cr.w-cr.r < n {
		var got int
		var err error
		if cr.rc == nil {
			if inFrame {
				cr.arm()
			}
			got, err = cr.c.Read(cr.buf[cr.w:])
		} else {
			cr.iov = append(cr.iov[:0], cr.buf[cr.w:])
			got, err = cr.readv(cr.iov, inFrame)
		}
		cr.w += got
		if err != nil {
			if errors.Is(err, io.EOF) && cr.w-cr.r > 0 {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// peek returns the next n unread bytes (n <= lookahead) without consuming
// them, reading as needed; with wait false it only takes what has already
// arrived and reports false when that is not n bytes. On a read error
// (a deadline included) the bytes already read stay buffered, so a later
// peek continues where this one stopped. Valid until the next read.
func (cr *connReader) peek(n int, wait bool) ([]byte, bool, error) {
	if cr.w-cr.r < n {
		if cr.r+n > len(cr.buf) {
			cr.w = copy(cr.buf, cr.buf[cr.r:cr.w])
			cr.r = 0
		}
		for cr.w-cr.r < n {
			var got int
			var err error
			switch {
			case wait:
				err = cr.fill(n, false)
			case cr.rc == nil:
				return nil, false, nil // TLS: no read without a wait
			default:
				cr.iov = append(cr.iov[:0], cr.buf[cr.w:])
				got, err = cr.readvNoWait(cr.iov)
				cr.w += got
				if err == nil && got == 0 {
					return nil, false, nil
				}
			}
			if err != nil {
				return nil, false, err
			}
		}
	}
	return cr.buf[cr.r : cr.r+n], true, nil
}

// skip consumes n bytes that peek returned.
func (cr *connReader) skip(n int) { cr.r += n }

// readvNoWait is readv that returns 0 bytes (and no error) when nothing
// has arrived, instead of waiting.
func (cr *connReader) readvNoWait(iov [][]byte) (int, error) {
	var n int
	var rerr error
	err := cr.rc.Read(func(fd uintptr) bool {
		n, rerr = unix.Readv(int(fd), iov)
		return true
	})
	if err == nil {
		err = rerr
	}
	if err == unix.EAGAIN {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// readv does one readv(2) into iov through the runtime poller, which waits
// when nothing has arrived. In a frame, the first wait arms the frame
// deadline (from inside the poller's callback, so it costs no extra call).
func (cr *connReader) readv(iov [][]byte, inFrame bool) (int, error) {
	var n int
	var rerr error
	err := cr.rc.Read(func(fd uintptr) bool {
		n, rerr = unix.Readv(int(fd), iov)
		if rerr == unix.EAGAIN {
			if inFrame {
				cr.arm()
			}
			return false
		}
		return true
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// payload fills dsts, in order, with the current frame's next bytes: first
// from the lookahead, then straight from the socket, with the lookahead as
// the last buffer of each readv so the next frame's first bytes come along.
// It returns how many bytes landed in dsts.
func (cr *connReader) payload(dsts [][]byte) (int, error) {
	total, i, off := 0, 0, 0 // next byte to fill: dsts[i][off]
	for i < len(dsts) && cr.r < cr.w {
		k := copy(dsts[i][off:], cr.buf[cr.r:cr.w])
		cr.r += k
		total += k
		if off += k; off == len(dsts[i]) {
			i, off = i+1, 0
		}
	}
	for i < len(dsts) && len(dsts[i]) == 0 {
		i++
	}
	if i == len(dsts) {
		return total, nil
	}
	cr.r, cr.w = 0, 0 // the lookahead is empty
	if cr.rc == nil {
		for ; i < len(dsts); i, off = i+1, 0 {
			cr.arm()
			n, err := io.ReadFull(cr.c, dsts[i][off:])
			total += n
			if err != nil {
				return total, err
			}
		}
		return total, nil
	}
	for i < len(dsts) {
		iov := append(cr.iov[:0], dsts[i][off:])
		for _, b := range dsts[i+1:] {
			if len(iov) == iovMax-1 { // room for the lookahead
				break
			}
			iov = append(iov, b)
		}
		if len(iov) == len(dsts)-i {
			iov = append(iov, cr.buf)
		}
		cr.iov = iov
		n, err := cr.readv(iov, true)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return total, err
		}
		for n > 0 && i < len(dsts) {
			left := len(dsts[i]) - off
			if n < left {
				off += n
				total += n
				n = 0
				break
			}
			n -= left
			total += left
			i, off = i+1, 0
		}
		cr.w = n // bytes past dsts went to the lookahead
		for i < len(dsts) && len(dsts[i]) == 0 {
			i++
		}
	}
	clear(cr.iov)
	return total, nil
}

// discard skips n bytes of the current frame.
func (cr *connReader) discard(n int64) error {
	for n > 0 {
		if cr.r == cr.w {
			cr.r, cr.w = 0, 0
			if err := cr.fill(1, true); err != nil {
				return err
			}
		}
		k := min(n, int64(cr.w-cr.r))
		cr.r += int(k)
		n -= k
	}
	return nil
}

// writeTo writes every byte of bufs to c. On a plain TCP connection it
// calls writev(2) itself: a write that goes through at once sets no
// deadline, and each wait for the peer to take bytes arms timeout as it
// begins, so timeout bounds how long the peer takes no bytes. bufs'
// elements are consumed; iov is scratch, returned for reuse. Other
// connections (TLS) get one deadline for the whole call and net.Buffers.
func writeTo(c net.Conn, bufs net.Buffers, timeout time.Duration, iov [][]byte) (int64, [][]byte, error) {
	var rc syscall.RawConn
	if sc, ok := c.(syscall.Conn); ok {
		rc, _ = sc.SyscallConn()
	}
	if rc == nil {
		c.SetWriteDeadline(time.Now().Add(timeout))
		n, err := bufs.WriteTo(c)
		return n, iov, err
	}
	var total int64
	armed := false
	for len(bufs) > 0 {
		iov = iov[:0]
		for _, b := range bufs {
			if len(iov) == iovMax {
				break
			}
			if len(b) > 0 {
				iov = append(iov, b)
			}
		}
		if len(iov) == 0 {
			break
		}
		var n int
		var werr error
		err := rc.Write(func(fd uintptr) bool {
			n, werr = unix.Writev(int(fd), iov)
			if werr == unix.EAGAIN {
				c.SetWriteDeadline(time.Now().Add(timeout))
				armed = true
				return false
			}
			return true
		})
		if err == nil {
			err = werr
		}
		if err != nil {
			clear(iov)
			if armed {
				c.SetWriteDeadline(time.Time{})
			}
			return total, iov, err
		}
		total += int64(n)
		for n > 0 {
			if k := len(bufs[0]); n >= k {
				n -= k
				bufs = bufs[1:]
			} else {
				bufs[0] = bufs[0][n:]
				n = 0
			}
		}
		for len(bufs) > 0 && len(bufs[0]) == 0 {
			bufs = bufs[1:]
		}
	}
	clear(iov)
	if armed {
		c.SetWriteDeadline(time.Time{})
	}
	return total, iov, nil
}
