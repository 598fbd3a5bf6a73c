// Package tcp is kvtransfer's TCP transport: Server serves a
// kvtransfer.Receiver, Transport is the sender side.
//
// The sender keeps persistent connections per peer (Config.Conns, several
// for bandwidth) and multiplexes sessions over them: a session's writes go
// round-robin over the connections, each preceded on its connection by an
// OPEN with the capability token. Writes are queued, not copied; one
// writer goroutine per connection drains the queue with writev (net.Buffers)
// from the caller's memory, coalescing a run of writes to one reservation
// into a single FrameWriteV. The first 64 KiB of a session are only queued;
// its Flush or Commit writes the queue itself, on the caller's goroutine, as
// one writev: a small transfer costs one system call and no goroutine
// hand-off, and a large one wakes the writer and streams while the caller
// computes.
//
// The server reads each frame header, checks it against the reservation
// (kvtransfer.Attachment), and only then reads the payload, with readv
// straight into the slots; the same readv also picks up the next header if
// it has arrived. A commit on one connection waits for bytes still in
// flight on the others (the receiver counts them), so the sender needs no
// extra round trip before committing.
//
// Failure handling: a protocol violation (see package kvtransfer) gets an
// Error frame, a half-close and the connection closed; a reservation that
// expired or was canceled gets a Canceled frame and its in-flight bytes are
// discarded while the connection stays up. A peer that dies is seen as EOF
// or a reset at once; one that stops reading is caught by the sender's
// WriteTimeout, one that stalls mid-frame by the server's FrameTimeout, and
// a vanished host by TCP keepalive. Either way every session and
// reservation on the connection ends with an error, and the receiver's
// reservation is delivered as failed once no write into it is in progress.
//
// TLS is optional (ServerConfig.TLS, Config.TLS); with it, payloads cannot
// be read with readv and go through the TLS record layer (one copy).
package tcp
