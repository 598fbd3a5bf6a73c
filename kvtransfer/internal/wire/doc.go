// Package wire is the framed protocol that kvtransfer's TCP transport speaks
// (and that carries the RDMA control exchange).
//
// A connection starts with a 16-byte hello from each side (magic "DUETKV\x00\x00",
// version, feature flags, reserved) and then carries frames. Every frame is a
// fixed 32-byte header, little endian, followed by Length payload bytes:
//
//	off size field
//	  0    1 type      (FrameOpen, FrameWrite, ...)
//	  1    1 flags     (FlagCRC: the CRC field holds the CRC32C of the payload)
//	  2    2 reserved  (must be zero; a decoder refuses anything else)
//	  4    4 length    (payload bytes that follow the header)
//	  8    8 id        (reservation id)
//	 16    4 slot      (slot index for writes; segment count for writev;
//	                    error code for errors)
//	 20    4 crc       (CRC32C of the payload when FlagCRC is set)
//	 24    8 arg       (byte offset inside the slot for writes; total bytes
//	                    for commits; sequence number for flushes)
//
// FrameWriteV batches writes of one reservation: the header is followed by
// a table of segment descriptors (slot, length, offset, crc) and then the
// payloads back to back, so a receiver reads the table, checks every
// segment against the reservation, and reads all the payload with one
// readv into the segments' slot memory. Senders coalesce queued writes into
// it; on a 16 KiB-slot transfer it cuts receiver syscalls from two per slot
// to about three per megabyte.
//
// The header is fixed-size so a receiver can read it with one ReadFull, check
// every field against the reservation, and then read the payload of a write
// straight into slot memory: there is no staging buffer. A sender writes the
// header and the caller's bytes with one writev (net.Buffers).
//
// Decoding never trusts the peer: unknown types, nonzero reserved bits, unknown
// flags and lengths above the per-type limit are errors (ErrMalformed), never
// panics. The decoder is fuzzed (FuzzDecodeHeader, FuzzDecodeHello; seeds in
// testdata/fuzz).
package wire
