package kvtransfertest

import (
	"bytes"
	"fmt"
	"math/rand/v2"

	"github.com/duet-llm/duet/kvtransfer"
)

// Canary is the byte a Pool fills its memory with; any byte outside a
// written slot that is not Canary was written where it must not be.
const Canary = 0xA5

// Pool is receiver memory with slots scattered in it, gaps between them.
type Pool struct {
	Mem      []byte
	Region   kvtransfer.RegionID
	SlotSize int
	Gap      int
	Slots    int
}

// NewPool returns a pool of n slots of slotSize bytes with gap canary bytes
// before, between and after them.
func NewPool(n, slotSize, gap int) *Pool {
	mem := bytes.Repeat([]byte{Canary}, n*(slotSize+gap)+gap)
	return &Pool{Mem: mem, SlotSize: slotSize, Gap: gap, Slots: n}
}

// Slot returns pool slot i.
func (p *Pool) Slot(i int) kvtransfer.Slot {
	return kvtransfer.Slot{Region: p.Region, Offset: uint64(p.Gap + i*(p.SlotSize+p.Gap)), Length: uint32(p.SlotSize)}
}

// Pick returns k distinct pool slots in random order (scattered).
func (p *Pool) Pick(r *rand.Rand, k int) []kvtransfer.Slot {
	idx := r.Perm(p.Slots)[:k]
	out := make([]kvtransfer.Slot, k)
	for i, j := range idx {
		out[i] = p.Slot(j)
	}
	return out
}

// Bytes returns the memory of s.
func (p *Pool) Bytes(s kvtransfer.Slot) []byte { return p.Mem[s.Offset:s.End()] }

// CheckCanaries reports the first byte outside every slot in written that
// is not Canary.
func (p *Pool) CheckCanaries(written []kvtransfer.Slot) error {
	inside := make([]bool, len(p.Mem))
	for _, s := range written {
		for i := s.Offset; i < s.End(); i++ {
			inside[i] = true
		}
	}
	for i, b := range p.Mem {
		if !inside[i] && b != Canary {
			return fmt.Errorf("byte %d outside the slots was written (%#x)", i, b)
		}
	}
	return nil
}

// CheckUntouched reports the first byte of s that is not Canary.
func (p *Pool) CheckUntouched(s kvtransfer.Slot) error {
	for i, b := range p.Bytes(s) {
		if b != Canary {
			return fmt.Errorf("slot at %d: byte %d was written (%#x)", s.Offset, i, b)
		}
	}
	return nil
}

// Random returns n random bytes.
func Random(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}
