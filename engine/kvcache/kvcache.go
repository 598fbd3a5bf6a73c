package kvcache

import (
	"errors"
	"fmt"
	"sync"
)

// Errors.
var (
	ErrNoBlocks = errors.New("kvcache: not enough free blocks")
	ErrLayout   = errors.New("kvcache: invalid layout")
	ErrBlock    = errors.New("kvcache: invalid block")
)

// DType is the element type of cached keys and values.
type DType uint8

// The cache element types.
const (
	F32 DType = iota
	F16
	I8
)

var dtypeNames = [...]string{F32: "f32", F16: "f16", I8: "int8"}

func (d DType) String() string {
	if int(d) < len(dtypeNames) {
		return dtypeNames[d]
	}
	return fmt.Sprintf("kvdtype(%d)", uint8(d))
}

// ParseDType parses "f32", "f16" or "int8" (also "i8", "q8").
func ParseDType(s string) (DType, error) {
	switch s {
	case "f32", "float32":
		return F32, nil
	case "f16", "float16", "half":
		return F16, nil
	case "int8", "i8", "q8":
		return I8, nil
	}
	return 0, fmt.Errorf("%w: unknown KV dtype %q (want f32, f16 or int8)", ErrLayout, s)
}

// ElemBytes is the size of one element.
func (d DType) ElemBytes() int {
	switch d {
	case F16:
		return 2
	case I8:
		return 1
	}
	return 4
}

// Layout is the shape of the cache; two processes exchanging KV bytes must
// use equal layouts.
type Layout struct {
	DType       DType
	BlockTokens int // tokens per block, a multiple of 16
	Layers      int
	KVHeads     int
	HeadDim     int
}

// Validate checks the layout.
func (l Layout) Validate() error {
	switch {
	case l.DType > I8:
		return fmt.Errorf("%w: dtype %v", ErrLayout, l.DType)
	case l.BlockTokens <= 0 || l.BlockTokens%16 != 0 || l.BlockTokens > 1024:
		return fmt.Errorf("%w: block tokens %d (a multiple of 16 up to 1024)", ErrLayout, l.BlockTokens)
	case l.Layers <= 0 || l.KVHeads <= 0 || l.HeadDim <= 0:
		return fmt.Errorf("%w: layers %d, kv heads %d, head dim %d", ErrLayout, l.Layers, l.KVHeads, l.HeadDim)
	case l.Layers > 1024 || l.KVHeads > 1024 || l.HeadDim > 1024:
		return fmt.Errorf("%w: layers %d, kv heads %d, head dim %d out of range", ErrLayout, l.Layers, l.KVHeads, l.HeadDim)
	}
	return nil
}

func (l Layout) String() string {
	return fmt.Sprintf("%s/%dtok/%dL/%dH/%dD", l.DType, l.BlockTokens, l.Layers, l.KVHeads, l.HeadDim)
}

// vecBytes is the size of the K (or V) part of a slot.
func (l Layout) vecBytes() int { return l.KVHeads * l.BlockTokens * l.HeadDim * l.DType.ElemBytes() }

// scaleBytes is the size of the K (or V) scales of a slot (int8 only).
func (l Layout) scaleBytes() int {
	if l.DType != I8 {
		return 0
	}
	return l.KVHeads * l.BlockTokens * 4
}

// SlotBytes is the size of one (layer, block) slot.
func (l Layout) SlotBytes() int { return 2*l.vecBytes() + 2*l.scaleBytes() }

// BlockBytes is the memory one block takes across all layers.
func (l Layout) BlockBytes() int { return l.SlotBytes() * l.Layers }

// BytesPerToken is the KV memory one token takes across all layers.
func (l Layout) BytesPerToken() float64 { return float64(l.BlockBytes()) / float64(l.BlockTokens) }

// BlocksFor is the number of blocks needed to hold n tokens.
func (l Layout) BlocksFor(n int) int { return (n + l.BlockTokens - 1) / l.BlockTokens }

// Offsets within a slot of the parts for one head, as documented in the
// package comment.

// KOffset is the byte offset of K[head][tok] within a slot.
func (l Layout) KOffset(head, tok int) int {
	return (head*l.BlockTokens + tok) * l.HeadDim * l.DType.ElemBytes()
}

// VOffset is the byte offset of V[head][tok] within a slot.
func (l Layout) VOffset(head, tok int) int { return l.vecBytes() + l.KOffset(head, tok) }

// KScaleOffset is the byte offset of Kscale[head][tok] (int8 only).
func (l Layout) KScaleOffset(head, tok int) int {
	return 2*l.vecBytes() + (head*l.BlockTokens+tok)*4
}

// VScaleOffset is the byte offset of Vscale[head][tok] (int8 only).
func (l Layout) VScaleOffset(head, tok int) int { return l.scaleBytes() + l.KScaleOffset(head, tok) }

// Seq is a sequence's block table: the blocks holding its KV, in order, and
// how many tokens of KV they hold. The engine appends to Len as it computes.
type Seq struct {
	Blocks []int32
	Len    int
}

// Capacity is how many tokens the sequence's blocks can hold.
func (s *Seq) Capacity(l Layout) int { return len(s.Blocks) * l.BlockTokens }

// Pool is the block pool: one arena allocated at creation and a free list.
// Allocation and freeing are safe for concurrent use; the slot bytes are
// not synchronized (the engine and the KV receiver own disjoint blocks).
type Pool struct {
	layout    Layout
	numBlocks int
	slotBytes int
	arena     []byte
	release   func() error

	mu   sync.Mutex
	free []int32 // stack of free block ids
	used []bool
}

// BlocksForBudget is how many blocks fit in budget bytes.
func BlocksForBudget(l Layout, budget int64) int {
	if l.BlockBytes() == 0 {
		return 0
	}
	return int(budget / int64(l.BlockBytes()))
}

// NewPool allocates a pool of numBlocks blocks. The arena is zeroed.
func NewPool(l Layout, numBlocks int) (*Pool, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	if numBlocks <= 0 || numBlocks > 1<<31-1 {
		return nil, fmt.Errorf("%w: %d blocks", ErrLayout, numBlocks)
	}
	size := int64(numBlocks) * int64(l.BlockBytes())
	if size > 1<<46 {
		return nil, fmt.Errorf("%w: %d blocks of %d bytes is too large", ErrLayout, numBlocks, l.BlockBytes())
	}
	arena, release, err := allocArena(int(size))
	if err != nil {
		return nil, fmt.Errorf("kvcache: allocate %d bytes: %w", size, err)
	}
	p := &Pool{layout: l, numBlocks: numBlocks, slotBytes: l.SlotBytes(), arena: arena, release: release,
		free: make([]int32, numBlocks), used: make([]bool, numBlocks)}
	for i := range p.free {
		p.free[i] = int32(numBlocks - 1 - i) // pop order 0, 1, 2, …
	}
	return p, nil
}

// Close releases the arena. The pool must not be used afterwards.
func (p *Pool) Close() error {
	if p.release == nil {
		return nil
	}
	err := p.release()
	p.release, p.arena = nil, nil
	return err
}

// Layout returns the pool's layout.
func (p *Pool) Layout() Layout { return p.layout }

// NumBlocks is the total number of blocks.
func (p *Pool) NumBlocks() int { return p.numBlocks }

// FreeBlocks is the number of blocks not allocated.
func (p *Pool) FreeBlocks() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.free)
}

// Alloc takes n blocks from the pool, all or nothing.
func (p *Pool) Alloc(n int) ([]int32, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n < 0 || n > len(p.free) {
		return nil, fmt.Errorf("%w: want %d, %d free", ErrNoBlocks, n, len(p.free))
	}
	out := make([]int32, n)
	for i := range out {
		b := p.free[len(p.free)-1]
		p.free = p.free[:len(p.free)-1]
		p.used[b] = true
		out[i] = b
	}
	return out, nil
}

// Grow appends blocks to s until it can hold n tokens.
func (p *Pool) Grow(s *Seq, n int) error {
	need := p.layout.BlocksFor(n) - len(s.Blocks)
	if need <= 0 {
		return nil
	}
	b, err := p.Alloc(need)
	if err != nil {
		return err
	}
	s.Blocks = append(s.Blocks, b...)
	return nil
}

// Free returns blocks to the pool. Freeing a block twice or an id out of
// range is an error and frees nothing.
func (p *Pool) Free(blocks []int32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, b := range blocks {
		if b < 0 || int(b) >= p.numBlocks || !p.used[b] {
			return fmt.Errorf("%w: free of block %d (not allocated)", ErrBlock, b)
		}
		for _, c := range blocks[:i] {
			if c == b {
				return fmt.Errorf("%w: block %d freed twice", ErrBlock, b)
			}
		}
	}
	for _, b := range blocks {
		p.used[b] = false
		p.free = append(p.free, b)
	}
	return nil
}

// Release frees a sequence's blocks and empties it.
func (p *Pool) Release(s *Seq) error {
	err := p.Free(s.Blocks)
	s.Blocks, s.Len = s.Blocks[:0], 0
	return err
}

// Arena is the whole pool memory, for registering with a KV transport.
func (p *Pool) Arena() []byte { return p.arena }

// SlotOffset is the arena offset of the (layer, block) slot.
func (p *Pool) SlotOffset(layer int, block int32) int {
	return (layer*p.numBlocks + int(block)) * p.slotBytes
}

// Slot is the memory of one (layer, block) slot, in the documented layout.
func (p *Pool) Slot(layer int, block int32) []byte {
	off := p.SlotOffset(layer, block)
	return p.arena[off : off+p.slotBytes : off+p.slotBytes]
}

// LayerSlots appends to dst the slots of one layer of a sequence, in block
// table order: exactly the bytes to ship for that layer.
func (p *Pool) LayerSlots(dst [][]byte, s *Seq, layer int) [][]byte {
	for _, b := range s.Blocks {
		dst = append(dst, p.Slot(layer, b))
	}
	return dst
}

// Install copies a slot received from elsewhere into (layer, block).
func (p *Pool) Install(layer int, block int32, data []byte) error {
	if layer < 0 || layer >= p.layout.Layers || block < 0 || int(block) >= p.numBlocks {
		return fmt.Errorf("%w: slot (%d, %d) out of range", ErrBlock, layer, block)
	}
	if len(data) != p.slotBytes {
		return fmt.Errorf("%w: slot data is %d bytes, layout needs %d", ErrBlock, len(data), p.slotBytes)
	}
	copy(p.Slot(layer, block), data)
	return nil
}
