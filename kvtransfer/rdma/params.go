package rdma

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrBadParams is a malformed connection-parameter message.
var ErrBadParams = errors.New("rdma: malformed connection parameters")

// paramsVersion is the first byte of ConnParams' encoding:
//
//	u8 version, 16 gid, u16 lid, u32 qpn, u32 psn, u8 mtu, u8 reserved,
//	u16 region count, then per region: u64 addr, u64 length, u32 rkey
const paramsVersion = 1

// MaxRegions bounds the regions one receiver advertises.
const MaxRegions = 64

// RegionKey is how a sender reaches one registered receiver region.
type RegionKey struct {
	Addr   uint64 // virtual address of the region's first byte
	Length uint64
	RKey   uint32
}

// ConnParams are one side's queue-pair parameters, exchanged over the TCP
// control connection (RDMAConnect from the sender, RDMAAccept back).
type ConnParams struct {
	GID     [16]byte
	LID     uint16
	QPN     uint32
	PSN     uint32
	MTU     uint8       // IBV_MTU_* enum (1=256 ... 5=4096)
	Regions []RegionKey // receiver only, indexed by kvtransfer.RegionID
}

// MarshalBinary encodes p.
func (p *ConnParams) MarshalBinary() ([]byte, error) {
	if len(p.Regions) > MaxRegions {
		return nil, fmt.Errorf("%w: %d regions", ErrBadParams, len(p.Regions))
	}
	b := make([]byte, 0, 32+20*len(p.Regions))
	b = append(b, paramsVersion)
	b = append(b, p.GID[:]...)
	b = binary.LittleEndian.AppendUint16(b, p.LID)
	b = binary.LittleEndian.AppendUint32(b, p.QPN)
	b = binary.LittleEndian.AppendUint32(b, p.PSN)
	b = append(b, p.MTU, 0)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(p.Regions)))
	for _, r := range p.Regions {
		b = binary.LittleEndian.AppendUint64(b, r.Addr)
		b = binary.LittleEndian.AppendUint64(b, r.Length)
		b = binary.LittleEndian.AppendUint32(b, r.RKey)
	}
	return b, nil
}

// UnmarshalBinary decodes p from outside bytes; p is unchanged on error.
func (p *ConnParams) UnmarshalBinary(b []byte) error {
	const fixed = 1 + 16 + 2 + 4 + 4 + 2 + 2
	if len(b) < fixed {
		return fmt.Errorf("%w: %d bytes", ErrBadParams, len(b))
	}
	if b[0] != paramsVersion {
		return fmt.Errorf("%w: version %d", ErrBadParams, b[0])
	}
	var out ConnParams
	copy(out.GID[:], b[1:17])
	out.LID = binary.LittleEndian.Uint16(b[17:])
	out.QPN = binary.LittleEndian.Uint32(b[19:])
	out.PSN = binary.LittleEndian.Uint32(b[23:])
	out.MTU = b[27]
	if b[28] != 0 {
		return fmt.Errorf("%w: reserved byte set", ErrBadParams)
	}
	if out.MTU < 1 || out.MTU > 5 {
		return fmt.Errorf("%w: mtu enum %d", ErrBadParams, out.MTU)
	}
	if out.QPN == 0 || out.QPN >= 1<<24 || out.PSN >= 1<<24 {
		return fmt.Errorf("%w: qpn %d psn %d", ErrBadParams, out.QPN, out.PSN)
	}
	n := int(binary.LittleEndian.Uint16(b[29:]))
	rest := b[fixed:]
	if n > MaxRegions || len(rest) != 20*n {
		return fmt.Errorf("%w: %d regions in %d bytes", ErrBadParams, n, len(rest))
	}
	for i := range n {
		r := RegionKey{
			Addr:   binary.LittleEndian.Uint64(rest[20*i:]),
			Length: binary.LittleEndian.Uint64(rest[20*i+8:]),
			RKey:   binary.LittleEndian.Uint32(rest[20*i+16:]),
		}
		if r.Length == 0 || r.Addr+r.Length < r.Addr {
			return fmt.Errorf("%w: region %d", ErrBadParams, i)
		}
		out.Regions = append(out.Regions, r)
	}
	*p = out
	return nil
}

// remoteAddr translates (region, offset, n) into the remote virtual
// address and rkey, checking the bounds of the registration.
func (p *ConnParams) remoteAddr(region uint32, off uint64, n int) (uint64, uint32, error) {
	if int(region) >= len(p.Regions) {
		return 0, 0, fmt.Errorf("rdma: region %d not advertised by the receiver", region)
	}
	r := p.Regions[region]
	if off > r.Length || uint64(n) > r.Length-off {
		return 0, 0, fmt.Errorf("rdma: %d bytes at %d outside region %d (%d bytes)", n, off, region, r.Length)
	}
	return r.Addr + off, r.RKey, nil
}
