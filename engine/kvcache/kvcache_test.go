package kvcache

import (
	"errors"
	"testing"
)

func TestLayoutSizes(t *testing.T) {
	cases := []struct {
		l    Layout
		slot int
	}{
		{Layout{F32, 16, 5, 4, 8}, 2 * 4 * 16 * 8 * 4},
		{Layout{F16, 16, 5, 4, 8}, 2 * 4 * 16 * 8 * 2},
		{Layout{I8, 32, 2, 2, 64}, 2*2*32*64 + 2*2*32*4},
	}
	for _, c := range cases {
		if err := c.l.Validate(); err != nil {
			t.Fatal(err)
		}
		if got := c.l.SlotBytes(); got != c.slot {
			t.Errorf("%v: slot %d, want %d", c.l, got, c.slot)
		}
		if c.l.BlockBytes() != c.slot*c.l.Layers {
			t.Errorf("%v: block bytes", c.l)
		}
		// The last part of the slot ends exactly at SlotBytes.
		l := c.l
		end := l.VOffset(l.KVHeads-1, l.BlockTokens-1) + l.HeadDim*l.DType.ElemBytes()
		if l.DType == I8 {
			end = l.VScaleOffset(l.KVHeads-1, l.BlockTokens-1) + 4
		}
		if end != l.SlotBytes() {
			t.Errorf("%v: parts end at %d, slot is %d", l, end, l.SlotBytes())
		}
	}
	for _, bad := range []Layout{{F32, 8, 1, 1, 1}, {F32, 16, 0, 1, 1}, {DType(9), 16, 1, 1, 1}, {F16, 16, 1, 1, 2000}} {
		if bad.Validate() == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	if n := BlocksForBudget(Layout{F32, 16, 5, 4, 8}, 1<<20); n != (1<<20)/(5*2*4*16*8*4) {
		t.Errorf("budget blocks %d", n)
	}
}

func TestPoolAllocFree(t *testing.T) {
	l := Layout{F16, 16, 2, 2, 8}
	p, err := NewPool(l, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if len(p.Arena()) != 10*l.BlockBytes() || p.FreeBlocks() != 10 {
		t.Fatalf("arena %d free %d", len(p.Arena()), p.FreeBlocks())
	}
	a, err := p.Alloc(4)
	if err != nil || len(a) != 4 || p.FreeBlocks() != 6 {
		t.Fatalf("alloc %v %v", a, err)
	}
	if _, err := p.Alloc(7); !errors.Is(err, ErrNoBlocks) || p.FreeBlocks() != 6 {
		t.Fatalf("over-alloc: %v, free %d", err, p.FreeBlocks())
	}
	if err := p.Free([]int32{a[0], a[0]}); !errors.Is(err, ErrBlock) || p.FreeBlocks() != 6 {
		t.Fatalf("double free: %v", err)
	}
	if err := p.Free([]int32{42}); !errors.Is(err, ErrBlock) {
		t.Fatalf("bad id: %v", err)
	}
	if err := p.Free(a); err != nil || p.FreeBlocks() != 10 {
		t.Fatalf("free: %v", err)
	}
	if err := p.Free(a[:1]); !errors.Is(err, ErrBlock) {
		t.Fatalf("free of a free block: %v", err)
	}

	s := &Seq{}
	if err := p.Grow(s, 33); err != nil || len(s.Blocks) != 3 || s.Capacity(l) != 48 {
		t.Fatalf("grow: %v %v", err, s.Blocks)
	}
	if err := p.Grow(s, 40); err != nil || len(s.Blocks) != 3 {
		t.Fatalf("grow within capacity: %v %v", err, s.Blocks)
	}
	if err := p.Release(s); err != nil || p.FreeBlocks() != 10 || len(s.Blocks) != 0 {
		t.Fatalf("release: %v", err)
	}
}

func TestSlotsAndInstall(t *testing.T) {
	l := Layout{I8, 16, 3, 2, 4}
	p, err := NewPool(l, 5)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// Slots tile the arena without overlap, layer-major.
	seen := make([]bool, len(p.Arena()))
	for layer := 0; layer < 3; layer++ {
		for b := int32(0); b < 5; b++ {
			off := p.SlotOffset(layer, b)
			if off != (layer*5+int(b))*l.SlotBytes() {
				t.Fatalf("slot offset (%d,%d) = %d", layer, b, off)
			}
			for i := range p.Slot(layer, b) {
				if seen[off+i] {
					t.Fatal("slots overlap")
				}
				seen[off+i] = true
			}
		}
	}
	data := make([]byte, l.SlotBytes())
	for i := range data {
		data[i] = byte(i)
	}
	if err := p.Install(2, 4, data); err != nil {
		t.Fatal(err)
	}
	s := &Seq{Blocks: []int32{4, 1}}
	slots := p.LayerSlots(nil, s, 2)
	if len(slots) != 2 || slots[0][7] != 7 || slots[1][7] != 0 {
		t.Fatal("LayerSlots does not show the installed bytes")
	}
	for _, bad := range []struct {
		layer int
		block int32
		n     int
	}{{3, 0, l.SlotBytes()}, {0, 5, l.SlotBytes()}, {0, -1, l.SlotBytes()}, {0, 0, l.SlotBytes() - 1}} {
		if err := p.Install(bad.layer, bad.block, make([]byte, bad.n)); !errors.Is(err, ErrBlock) {
			t.Errorf("install %+v: %v", bad, err)
		}
	}
}

func TestParseDType(t *testing.T) {
	for s, want := range map[string]DType{"f32": F32, "f16": F16, "int8": I8} {
		if got, err := ParseDType(s); err != nil || got != want {
			t.Errorf("%s: %v %v", s, got, err)
		}
	}
	if _, err := ParseDType("q4"); err == nil {
		t.Error("q4 accepted")
	}
}
