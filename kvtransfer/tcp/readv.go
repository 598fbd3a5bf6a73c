package tcp

import (
	"io"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// readvFull fills every buffer in bufs from c, in order. On a plain TCP
// connection it uses readv(2) through the runtime poller (deadlines hold),
// so one system call can land bytes in many slots; otherwise (TLS) it reads
// buffer by buffer. It returns how many bytes landed in bufs.
//
// extra (the next frame's header buffer) is filled opportunistically by the
// same system calls: it returns once bufs are full, with however many bytes
// of extra had already arrived (extraN). That saves a system call per frame.
func readvFull(c net.Conn, bufs [][]byte, extra []byte, iov [][]byte) (n, extraN int, err error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		total := 0
		for _, b := range bufs {
			n, err := io.ReadFull(c, b)
			total += n
			if err != nil {
				return total, 0, err
			}
		}
		return total, 0, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	total := 0
	i, off := 0, 0 // next byte to fill: bufs[i][off]
	for i < len(bufs) && len(bufs[i]) == 0 {
		i++
	}
	for i < len(bufs) {
		iov = iov[:0]
		iov = append(iov, bufs[i][off:])
		for _, b := range bufs[i+1:] {
			if len(iov) == 1023 { // IOV_MAX, less one for extra
				break
			}
			iov = append(iov, b)
		}
		last := len(iov) == len(bufs)-i
		if last && len(extra) > 0 {
			iov = append(iov, extra)
		}
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
			return total, 0, err
		}
		if n == 0 {
			return total, 0, io.ErrUnexpectedEOF
		}
		for n > 0 && i < len(bufs) {
			left := len(bufs[i]) - off
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
		if n > 0 {
			return total, n, nil // bufs are full; n bytes went to extra
		}
		for i < len(bufs) && len(bufs[i]) == 0 {
			i++
		}
	}
	return total, 0, nil
}
