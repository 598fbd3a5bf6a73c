package kvtransfer

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"time"
)

// RegionID names a memory region registered with a Receiver.
type RegionID uint32

// Slot is one contiguous range of a registered region that a reservation
// may write: in the engine's layout, one (layer, block) of the KV pool.
type Slot struct {
	Region RegionID
	Offset uint64 // byte offset in the region
	Length uint32 // bytes
}

// End returns the first byte past the slot.
func (s Slot) End() uint64 { return s.Offset + uint64(s.Length) }

// TokenSize is the size of a capability token: 128 random bits.
const TokenSize = 16

// Token is the capability a sender presents to write a reservation. It is
// drawn from crypto/rand; whoever holds it may write the reservation's slots.
type Token [TokenSize]byte

// NewToken returns a fresh random token.
func NewToken() Token {
	var t Token
	_, _ = rand.Read(t[:]) // crypto/rand.Read does not fail on Linux
	return t
}

// Equal compares in constant time.
func (t Token) Equal(o Token) bool { return subtle.ConstantTimeCompare(t[:], o[:]) == 1 }

// String shows only a prefix: tokens are secrets and must not reach logs.
func (t Token) String() string { return hex.EncodeToString(t[:2]) + "…" }

// Endpoint is where a receiver takes KV writes: a TCP address (host:port)
// that serves the framed protocol and, when RDMA is set, also sets up an RDMA
// data path on request.
type Endpoint struct {
	Addr string
	RDMA bool
}

// Descriptor is what the decode node hands the router, and the router the
// prefill node, to describe one reservation. It is plain data; MarshalBinary
// gives a compact, versioned binary form for a proto bytes field (see
// descriptorVersion for the layout), or a proto message can carry the fields
// one by one.
//
// The order of Slots is the contract between the two engines: a sender's
// Write(slot i, ...) lands in Slots[i]. duet's engine orders them layer-major
// (slot = layer*blocks + block) so each layer is one contiguous index range.
type Descriptor struct {
	ID        uint64
	Token     Token
	Expiry    time.Time
	Endpoints []Endpoint
	Slots     []Slot
}

// Size is the sum of the slot lengths.
func (d *Descriptor) Size() int64 {
	var n int64
	for _, s := range d.Slots {
		n += int64(s.Length)
	}
	return n
}

// HasRDMA reports whether any endpoint offers RDMA.
func (d *Descriptor) HasRDMA() bool {
	for _, e := range d.Endpoints {
		if e.RDMA {
			return true
		}
	}
	return false
}

// Limits of the descriptor encoding.
const (
	MaxSlots     = 1 << 20
	MaxEndpoints = 16
	maxAddr      = 255
)

// descriptorVersion is the first byte of the binary form:
//
//	u8  version (1)
//	u64 id
//	16  token
//	i64 expiry, unix nanoseconds (0 = none)
//	u8  endpoint count, then per endpoint: u8 flags (bit0 = rdma), u8 len, addr
//	u32 run count, then per run (all little endian):
//	    u32 region, u64 offset, u32 length, u32 count, u64 stride
//
// A run is count slots of the same length at offset, offset+stride, ...;
// the engine's layer-major layout compresses to one run per layer or fewer.
const descriptorVersion = 1

type slotRun struct {
	region RegionID
	offset uint64
	length uint32
	count  uint32
	stride uint64
}

func compressSlots(slots []Slot) []slotRun {
	var runs []slotRun
	for _, s := range slots {
		if n := len(runs); n > 0 {
			r := &runs[n-1]
			if r.region == s.Region && r.length == s.Length && r.count < math.MaxUint32 {
				next := r.offset + uint64(r.count)*r.stride
				if r.count == 1 && s.Offset > r.offset {
					r.stride = s.Offset - r.offset
					r.count++
					continue
				}
				if r.count > 1 && s.Offset == next {
					r.count++
					continue
				}
			}
		}
		runs = append(runs, slotRun{region: s.Region, offset: s.Offset, length: s.Length, count: 1})
	}
	return runs
}

// MarshalBinary encodes the descriptor (see descriptorVersion).
func (d *Descriptor) MarshalBinary() ([]byte, error) {
	if len(d.Endpoints) > MaxEndpoints {
		return nil, fmt.Errorf("%w: %d endpoints", ErrBadDescriptor, len(d.Endpoints))
	}
	if len(d.Slots) > MaxSlots {
		return nil, fmt.Errorf("%w: %d slots", ErrBadDescriptor, len(d.Slots))
	}
	runs := compressSlots(d.Slots)
	b := make([]byte, 0, 1+8+TokenSize+8+1+len(d.Endpoints)*32+4+len(runs)*28)
	b = append(b, descriptorVersion)
	b = binary.LittleEndian.AppendUint64(b, d.ID)
	b = append(b, d.Token[:]...)
	var exp int64
	if !d.Expiry.IsZero() {
		exp = d.Expiry.UnixNano()
	}
	b = binary.LittleEndian.AppendUint64(b, uint64(exp))
	b = append(b, byte(len(d.Endpoints)))
	for _, e := range d.Endpoints {
		if len(e.Addr) > maxAddr || e.Addr == "" {
			return nil, fmt.Errorf("%w: endpoint address %q", ErrBadDescriptor, e.Addr)
		}
		var fl byte
		if e.RDMA {
			fl = 1
		}
		b = append(b, fl, byte(len(e.Addr)))
		b = append(b, e.Addr...)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(runs)))
	for _, r := range runs {
		b = binary.LittleEndian.AppendUint32(b, uint32(r.region))
		b = binary.LittleEndian.AppendUint64(b, r.offset)
		b = binary.LittleEndian.AppendUint32(b, r.length)
		b = binary.LittleEndian.AppendUint32(b, r.count)
		b = binary.LittleEndian.AppendUint64(b, r.stride)
	}
	return b, nil
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.err = fmt.Errorf("%w: truncated", ErrBadDescriptor)
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}
func (r *reader) u8() uint8 {
	if p := r.take(1); p != nil {
		return p[0]
	}
	return 0
}
func (r *reader) u32() uint32 {
	if p := r.take(4); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}
func (r *reader) u64() uint64 {
	if p := r.take(8); p != nil {
		return binary.LittleEndian.Uint64(p)
	}
	return 0
}

// UnmarshalBinary decodes a descriptor. Outside bytes: every count and every
// offset is checked; on error d is left unchanged.
func (d *Descriptor) UnmarshalBinary(b []byte) error {
	r := &reader{b: b}
	if v := r.u8(); r.err == nil && v != descriptorVersion {
		return fmt.Errorf("%w: version %d", ErrBadDescriptor, v)
	}
	var out Descriptor
	out.ID = r.u64()
	copy(out.Token[:], r.take(TokenSize))
	if exp := int64(r.u64()); exp != 0 {
		out.Expiry = time.Unix(0, exp)
	}
	ne := int(r.u8())
	if ne > MaxEndpoints {
		return fmt.Errorf("%w: %d endpoints", ErrBadDescriptor, ne)
	}
	for i := 0; i < ne && r.err == nil; i++ {
		fl := r.u8()
		n := int(r.u8())
		addr := r.take(n)
		if r.err == nil && (fl&^1 != 0 || n == 0) {
			return fmt.Errorf("%w: endpoint %d", ErrBadDescriptor, i)
		}
		out.Endpoints = append(out.Endpoints, Endpoint{Addr: string(addr), RDMA: fl&1 != 0})
	}
	nr := r.u32()
	if r.err != nil {
		return r.err
	}
	if uint64(nr)*28 > uint64(len(r.b)) {
		return fmt.Errorf("%w: %d runs in %d bytes", ErrBadDescriptor, nr, len(r.b))
	}
	total := 0
	for i := uint32(0); i < nr; i++ {
		run := slotRun{region: RegionID(r.u32()), offset: r.u64(), length: r.u32(), count: r.u32(), stride: r.u64()}
		if run.count == 0 || run.length == 0 {
			return fmt.Errorf("%w: empty run %d", ErrBadDescriptor, i)
		}
		if total += int(run.count); total > MaxSlots {
			return fmt.Errorf("%w: more than %d slots", ErrBadDescriptor, MaxSlots)
		}
		// The last slot must not overflow a uint64 offset.
		span := uint64(run.count-1) * run.stride
		if run.stride != 0 && span/run.stride != uint64(run.count-1) ||
			span > math.MaxUint64-uint64(run.length) ||
			run.offset > math.MaxUint64-span-uint64(run.length) {
			return fmt.Errorf("%w: run %d overflows", ErrBadDescriptor, i)
		}
		for j := uint32(0); j < run.count; j++ {
			out.Slots = append(out.Slots, Slot{Region: run.region, Offset: run.offset + uint64(j)*run.stride, Length: run.length})
		}
	}
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrBadDescriptor, len(r.b))
	}
	*d = out
	return nil
}

// validateSlots checks a slot list for emptiness, zero lengths, overflow and
// overlaps among its own slots. Region bounds are checked by the receiver.
func validateSlots(slots []Slot) error {
	if len(slots) == 0 || len(slots) > MaxSlots {
		return fmt.Errorf("%w: %d slots", ErrBadSlots, len(slots))
	}
	for i, s := range slots {
		if s.Length == 0 {
			return fmt.Errorf("%w: slot %d is empty", ErrBadSlots, i)
		}
		if s.Offset > math.MaxUint64-uint64(s.Length) {
			return fmt.Errorf("%w: slot %d overflows", ErrBadSlots, i)
		}
	}
	sorted := slices.Clone(slots)
	slices.SortFunc(sorted, func(a, b Slot) int {
		if a.Region != b.Region {
			return int(a.Region) - int(b.Region)
		}
		switch {
		case a.Offset < b.Offset:
			return -1
		case a.Offset > b.Offset:
			return 1
		}
		return 0
	})
	for i := 1; i < len(sorted); i++ {
		if sorted[i].Region == sorted[i-1].Region && sorted[i].Offset < sorted[i-1].End() {
			return fmt.Errorf("%w: slots overlap at region %d offset %d", ErrBadSlots, sorted[i].Region, sorted[i].Offset)
		}
	}
	return nil
}
