package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Version is the protocol version this package speaks.
const Version = 1

// HeaderSize is the size of every frame header; HelloSize of the hello.
const (
	HeaderSize = 32
	HelloSize  = 16
)

// Limits on payloads other than writes, whose length is bounded by the slot.
const (
	// MaxWrite bounds one write frame's payload (a slot is at most this big
	// on the wire; bigger writes are split by the sender).
	MaxWrite = 16 << 20
	// TokenSize is the size of a capability token (OPEN payload).
	TokenSize = 16
	// MaxCommitPayload bounds the small commit payload (first token, length,
	// checksum).
	MaxCommitPayload = 4096
	// MaxMessage bounds reasons carried by ABORT, ERROR and CANCELED frames.
	MaxMessage = 1024
	// MaxControl bounds control payloads (RDMA connection parameters).
	MaxControl = 4096
)

// Type is a frame type.
type Type uint8

// Frame types. Sender to receiver: Open, Write, Flush, Commit, Abort,
// RDMAConnect. Receiver to sender: Flushed, Committed, Error, Canceled,
// RDMAAccept.
const (
	FrameOpen        Type = 1  // id, payload = token: bind the reservation to this connection
	FrameWrite       Type = 2  // id, slot, arg = offset, payload = bytes
	FrameFlush       Type = 3  // id, arg = sequence: ask for Flushed once all earlier frames are done
	FrameCommit      Type = 4  // id, arg = total bytes written, payload = commit payload
	FrameAbort       Type = 5  // id, payload = reason: sender gives up (also: done with id on this connection)
	FrameFlushed     Type = 6  // id, arg = sequence
	FrameCommitted   Type = 7  // id
	FrameError       Type = 8  // id, slot = code, payload = message
	FrameCanceled    Type = 9  // id, slot = code, payload = reason: receiver ended the reservation
	FrameRDMAConnect Type = 10 // payload = sender's RDMA connection parameters
	FrameRDMAAccept  Type = 11 // payload = receiver's RDMA connection parameters (or slot = error code)
	FramePing        Type = 12 // arg = nonce: liveness and latency probe
	FramePong        Type = 13 // arg = nonce
	// FrameWriteV carries several writes of one reservation: slot = segment
	// count, length = payload bytes (the sum of the segment lengths); the
	// header is followed by count segment descriptors (SegmentSize bytes
	// each), then the payload, segment after segment. A receiver reads the
	// whole payload with one readv straight into every segment's slot.
	FrameWriteV Type = 14
)

// SegmentSize is the size of one FrameWriteV segment descriptor:
//
//	u32 slot, u32 length, u64 offset, u32 crc32c, u32 reserved (zero)
const SegmentSize = 24

// MaxSegments bounds the segments of one FrameWriteV.
const MaxSegments = 256

// Segment is one write inside a FrameWriteV.
type Segment struct {
	Slot   uint32
	Length uint32
	Offset uint64
	CRC    uint32
}

// EncodeSegments appends the descriptors of segs to b.
func EncodeSegments(b []byte, segs []Segment) []byte {
	for _, s := range segs {
		b = binary.LittleEndian.AppendUint32(b, s.Slot)
		b = binary.LittleEndian.AppendUint32(b, s.Length)
		b = binary.LittleEndian.AppendUint64(b, s.Offset)
		b = binary.LittleEndian.AppendUint32(b, s.CRC)
		b = binary.LittleEndian.AppendUint32(b, 0)
	}
	return b
}

// DecodeSegments parses the segment table of h (len(b) must be
// h.Slot*SegmentSize) into segs[:0], checking that the lengths add up to
// h.Length and that no segment is empty.
func DecodeSegments(h *Header, b []byte, segs []Segment) ([]Segment, error) {
	if h.Type != FrameWriteV || len(b) != int(h.Slot)*SegmentSize {
		return segs[:0], fmt.Errorf("%w: segment table of %d bytes for %d segments", ErrMalformed, len(b), h.Slot)
	}
	segs = segs[:0]
	var total uint64
	for i := 0; i < int(h.Slot); i++ {
		p := b[i*SegmentSize:]
		s := Segment{
			Slot:   binary.LittleEndian.Uint32(p),
			Length: binary.LittleEndian.Uint32(p[4:]),
			Offset: binary.LittleEndian.Uint64(p[8:]),
			CRC:    binary.LittleEndian.Uint32(p[16:]),
		}
		if binary.LittleEndian.Uint32(p[20:]) != 0 {
			return segs[:0], fmt.Errorf("%w: segment %d reserved bytes set", ErrMalformed, i)
		}
		if s.Length == 0 {
			return segs[:0], fmt.Errorf("%w: segment %d is empty", ErrMalformed, i)
		}
		total += uint64(s.Length)
		segs = append(segs, s)
	}
	if total != uint64(h.Length) {
		return segs[:0], fmt.Errorf("%w: segments add up to %d bytes, header says %d", ErrMalformed, total, h.Length)
	}
	return segs, nil
}

func (t Type) String() string {
	switch t {
	case FrameOpen:
		return "open"
	case FrameWrite:
		return "write"
	case FrameFlush:
		return "flush"
	case FrameCommit:
		return "commit"
	case FrameAbort:
		return "abort"
	case FrameFlushed:
		return "flushed"
	case FrameCommitted:
		return "committed"
	case FrameError:
		return "error"
	case FrameCanceled:
		return "canceled"
	case FrameRDMAConnect:
		return "rdma-connect"
	case FrameRDMAAccept:
		return "rdma-accept"
	case FramePing:
		return "ping"
	case FramePong:
		return "pong"
	case FrameWriteV:
		return "writev"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Flags.
const (
	FlagCRC uint8 = 1 << 0 // Header.CRC is the CRC32C of the payload
	// FlagRDMA on a commit: the bytes went over the RDMA data path and are
	// fenced by a WRITE_WITH_IMM on the connection's queue pair.
	FlagRDMA  uint8 = 1 << 1
	knownFlag       = FlagCRC | FlagRDMA
)

// Hello feature flags.
const (
	FeatureCRC  uint16 = 1 << 0 // the side will send CRCs on writes
	FeatureRDMA uint16 = 1 << 1 // the side can set up an RDMA data path
)

// Errors.
var (
	ErrMalformed = errors.New("wire: malformed frame")
	ErrBadMagic  = errors.New("wire: not a duet kv connection")
	ErrVersion   = errors.New("wire: unsupported protocol version")
	ErrCRC       = errors.New("wire: payload CRC32C mismatch")
)

// Error codes carried in Error and Canceled frames (Header.Slot).
const (
	CodeUnknown    uint32 = 0
	CodeBadToken   uint32 = 1 // unknown reservation or wrong token
	CodeExpired    uint32 = 2
	CodeCanceled   uint32 = 3 // the receiver canceled the reservation
	CodeAborted    uint32 = 4
	CodeCommitted  uint32 = 5 // the reservation is already committed
	CodeBounds     uint32 = 6 // write outside the reserved slots
	CodeSize       uint32 = 7 // sizes do not add up at commit
	CodeProtocol   uint32 = 8 // malformed or unexpected frame
	CodeCRC        uint32 = 9
	CodeFailed     uint32 = 10 // the reservation failed (a connection carrying it died)
	CodeShutdown   uint32 = 11
	CodeRDMA       uint32 = 12 // RDMA setup refused or failed
	CodeNotOpen    uint32 = 13 // frame for a reservation not opened on this connection
	codeMaxDefined uint32 = 13
)

// Header is a decoded frame header.
type Header struct {
	Type   Type
	Flags  uint8
	Length uint32
	ID     uint64
	Slot   uint32
	CRC    uint32
	Arg    uint64
}

// MaxPayload returns the largest payload a frame of type t may carry.
func MaxPayload(t Type) (uint32, bool) {
	switch t {
	case FrameWrite, FrameWriteV:
		return MaxWrite, true
	case FrameOpen:
		return TokenSize, true
	case FrameCommit:
		return MaxCommitPayload, true
	case FrameAbort, FrameError, FrameCanceled:
		return MaxMessage, true
	case FrameRDMAConnect, FrameRDMAAccept:
		return MaxControl, true
	case FrameFlush, FrameFlushed, FrameCommitted, FramePing, FramePong:
		return 0, true
	}
	return 0, false
}

// Encode writes h into b, which must hold HeaderSize bytes.
func (h *Header) Encode(b []byte) {
	_ = b[HeaderSize-1]
	b[0] = byte(h.Type)
	b[1] = h.Flags
	b[2], b[3] = 0, 0
	binary.LittleEndian.PutUint32(b[4:], h.Length)
	binary.LittleEndian.PutUint64(b[8:], h.ID)
	binary.LittleEndian.PutUint32(b[16:], h.Slot)
	binary.LittleEndian.PutUint32(b[20:], h.CRC)
	binary.LittleEndian.PutUint64(b[24:], h.Arg)
}

// Decode parses and validates a header. It checks everything that can be
// checked without the reservation: type, flags, reserved bits, payload limits.
func (h *Header) Decode(b []byte) error {
	if len(b) < HeaderSize {
		return fmt.Errorf("%w: short header (%d bytes)", ErrMalformed, len(b))
	}
	t := Type(b[0])
	limit, ok := MaxPayload(t)
	if !ok {
		return fmt.Errorf("%w: unknown frame type %d", ErrMalformed, b[0])
	}
	if b[1]&^knownFlag != 0 {
		return fmt.Errorf("%w: unknown flags %#x", ErrMalformed, b[1])
	}
	if b[2] != 0 || b[3] != 0 {
		return fmt.Errorf("%w: reserved bytes set", ErrMalformed)
	}
	n := binary.LittleEndian.Uint32(b[4:])
	if n > limit {
		return fmt.Errorf("%w: %s payload %d > %d", ErrMalformed, t, n, limit)
	}
	if t == FrameOpen && n != TokenSize {
		return fmt.Errorf("%w: open token is %d bytes, want %d", ErrMalformed, n, TokenSize)
	}
	if t == FrameWriteV {
		if c := binary.LittleEndian.Uint32(b[16:]); c == 0 || c > MaxSegments {
			return fmt.Errorf("%w: writev with %d segments", ErrMalformed, c)
		}
	}
	if b[1]&FlagCRC != 0 && t != FrameWrite && t != FrameWriteV {
		return fmt.Errorf("%w: crc flag on %s", ErrMalformed, t)
	}
	if b[1]&FlagRDMA != 0 && t != FrameCommit {
		return fmt.Errorf("%w: rdma flag on %s", ErrMalformed, t)
	}
	*h = Header{
		Type:   t,
		Flags:  b[1],
		Length: n,
		ID:     binary.LittleEndian.Uint64(b[8:]),
		Slot:   binary.LittleEndian.Uint32(b[16:]),
		CRC:    binary.LittleEndian.Uint32(b[20:]),
		Arg:    binary.LittleEndian.Uint64(b[24:]),
	}
	if (t == FrameError || t == FrameCanceled) && h.Slot > codeMaxDefined {
		h.Slot = CodeUnknown
	}
	return nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC returns the CRC32C of p (hardware accelerated where the CPU has it).
func CRC(p []byte) uint32 { return crc32.Checksum(p, castagnoli) }

// UpdateCRC extends crc with p.
func UpdateCRC(crc uint32, p []byte) uint32 { return crc32.Update(crc, castagnoli, p) }

// Hello is the first message each side sends.
type Hello struct {
	Version  uint16
	Features uint16
}

var magic = [8]byte{'D', 'U', 'E', 'T', 'K', 'V', 0, 0}

// Encode writes the hello into b (HelloSize bytes).
func (h Hello) Encode(b []byte) {
	_ = b[HelloSize-1]
	copy(b, magic[:])
	binary.LittleEndian.PutUint16(b[8:], h.Version)
	binary.LittleEndian.PutUint16(b[10:], h.Features)
	binary.LittleEndian.PutUint32(b[12:], 0)
}

// DecodeHello parses a hello. Unknown feature bits are ignored (a newer peer
// may offer more); a different version is ErrVersion.
func DecodeHello(b []byte) (Hello, error) {
	if len(b) < HelloSize {
		return Hello{}, fmt.Errorf("%w: short hello", ErrMalformed)
	}
	if [8]byte(b[:8]) != magic {
		return Hello{}, ErrBadMagic
	}
	h := Hello{
		Version:  binary.LittleEndian.Uint16(b[8:]),
		Features: binary.LittleEndian.Uint16(b[10:]),
	}
	if h.Version != Version {
		return h, fmt.Errorf("%w: %d (want %d)", ErrVersion, h.Version, Version)
	}
	return h, nil
}
