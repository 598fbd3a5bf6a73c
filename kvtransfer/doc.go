// Package kvtransfer moves a request's KV cache from the prefill node that
// computed it into the slots the decode node reserved for it, while the
// prefill is still computing later layers.
//
// # The two sides
//
// The receiver (decode node) owns a Receiver: it registers its KV pool once
// (RegisterRegion) and grants a Reservation per request (Reserve): a list of
// slots, a 128-bit capability Token drawn from crypto/rand, and an expiry.
// Reservation.Descriptor is the plain-data form the router hands to the
// prefill node (MarshalBinary gives a compact, versioned binary form for a
// proto bytes field). The decode node learns the outcome (committed with a
// small payload, aborted, expired, canceled or failed, with byte counts)
// from Reservation.Done/Wait or ReceiverConfig.OnOutcome, and may Cancel.
// An outcome is delivered only once no write into the slots is in progress,
// so the slots can be reused at once.
//
// The sender (prefill node) holds a Transport and opens a Session per
// reservation: Write(slot, offset, bytes) queues bytes from its own memory
// (not copied) and returns, so the engine computes the next layer while the
// bytes move; Flush waits until everything written so far has landed;
// Commit sends the payload once every byte landed; Abort gives up.
//
// # Why the receiver is separate from the transports
//
// Reservation state (bounds, tokens, expiry, byte counts, outcomes, the
// wait for in-flight writes before reclaim) is the same whatever moves the
// bytes, so it lives here once. Transports (tcp.Server for the framed TCP
// protocol and the RDMA control channel) attach to it through Attach and
// the Attachment methods, the transport-facing side of this package.
//
// # Choosing a transport
//
// Selector is a Transport that uses RDMA when both ends offer it and setup
// succeeds, TCP otherwise (ModeAuto); ModeTCP and ModeRDMA force one. The
// choice per peer and any fallback reason are logged and kept (Choices);
// counts go to Stats.
//
// # Safety
//
// Over TCP the receiver checks every frame against the reservation before a
// byte is read into memory: a write outside the reserved slots, a wrong
// token, a write to a committed reservation or one never opened on the
// connection, or a commit whose sizes do not add up is refused and the
// connection closed (the sender gets the reason). A reservation that
// expired or was canceled under a sender is different: that is a race a
// correct sender hits, so the receiver tells the sender (Canceled frame),
// discards the bytes still in flight for that reservation without writing
// them, and keeps the connection for the other sessions on it. Over RDMA
// the sender's library enforces the same bounds before it posts a write;
// the receiver's NIC only enforces the registered region (see package rdma).
package kvtransfer
