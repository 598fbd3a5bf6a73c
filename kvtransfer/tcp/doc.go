// Package tcp is kvtransfer's TCP transport: Server serves a
// kvtransfer.Receiver, Transport is the sender side.
//
// The sender keeps persistent connections per peer (Config.Conns, several
// for bandwidth) and multiplexes sessions over them: a session's stream is
// cut into 256 KiB stripes that go round the connections from its home one
// (a session of up to a stripe stays on one connection, so its commit waits
// on no other), each connection's first frame of the session an OPEN with
// the capability token. Writes are queued, not copied (a queue entry is a
// header and a slice of the caller's memory, no allocation); one writer
// goroutine per connection drains the queue with writev from the caller's
// memory, coalescing a run of writes to one reservation into a single
// FrameWriteV.
//
// The first MiB of a session, written in one burst, is only queued: its
// Flush or Commit writes the queues itself, on the caller's goroutine, one
// writev per connection, so a short prompt's KV costs no goroutine hand-off
// at all. Past that MiB, or when a write comes after a pause of 200µs or
// more (the engine shipping a layer, computing the next, shipping that;
// the clock is read every 64 KiB of a burst), the writers are woken and
// stream what is queued while the caller computes. A writer that is already writing is never woken: it drains the
// queue to the end before it stops.
//
// Replies (Flushed, Committed, Canceled, Error) are read by the Flush or
// Commit waiting for them whenever no other goroutine is reading the
// connection: it sleeps in the runtime poller on the socket and the reply
// wakes it directly, so a small session's round trip is a ping-pong like a
// raw TCP one, with no goroutine hand-off (waking an idle CPU is dearer
// than the round trip itself in a virtual machine). A background reader
// per connection looks every 50ms (500ms when no session uses it) for
// replies nobody waits for (a Canceled frame under a session still
// writing, an Error before a close, EOF), and reads for callers that found
// the connection taken (see replies.go).
//
// The server reads through a small lookahead buffer (8 KiB): a frame
// header, a segment table, a token or a commit payload usually arrived with
// the previous read and costs no system call. Each write payload is checked
// against the reservation (kvtransfer.Attachment) before a byte of it is
// read, then read with readv straight into the slots, the lookahead as the
// last buffer so the next frame's first bytes come along. The payload bytes
// that were already in the lookahead are copied into the slot: at most 8
// KiB per frame, the rest lands in place. A commit on one connection waits
// for bytes still in flight on the others (the receiver counts them), so
// the sender needs no extra round trip before committing.
//
// Deadlines cost nothing on the fast path: a read or write that does not
// have to wait sets none. Only when a read inside a frame must wait does
// the reader arm FrameTimeout, and only when a write must wait for the peer
// to take bytes does the writer arm WriteTimeout (again at each wait).
//
// Failure handling: a protocol violation (see package kvtransfer) gets an
// Error frame, a half-close and the connection closed; a reservation that
// expired or was canceled gets a Canceled frame and its in-flight bytes are
// discarded while the connection stays up. A peer that dies is seen as EOF
// or a reset by the next write or read (within the background reader's
// poll when nothing else touches the connection); one that stops reading is caught by the sender's
// WriteTimeout, one that stalls mid-frame by the server's FrameTimeout, and
// a vanished host by TCP keepalive. Either way every session and
// reservation on the connection ends with an error, and the receiver's
// reservation is delivered as failed once no write into it is in progress.
//
// TLS is optional (ServerConfig.TLS, Config.TLS); with it, payloads cannot
// be read with readv and go through the TLS record layer (one copy).
package tcp
