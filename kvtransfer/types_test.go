package kvtransfer

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

func layerMajor(layers, blocks int, slot uint32, base uint64) []Slot {
	var out []Slot
	for l := range layers {
		for b := range blocks {
			// blocks of one request are scattered in the pool
			blk := uint64(b * 7 % 1000)
			out = append(out, Slot{Region: 0, Offset: base + (uint64(l)*1000+blk)*uint64(slot), Length: slot})
		}
	}
	return out
}

func TestDescriptorRoundTrip(t *testing.T) {
	exp := time.Unix(1700000000, 123456789)
	tests := []struct {
		name string
		d    Descriptor
		max  int // encoded size bound
	}{
		{"one slot", Descriptor{ID: 1, Token: NewToken(), Expiry: exp, Endpoints: []Endpoint{{Addr: "10.0.0.1:7400"}}, Slots: []Slot{{Region: 2, Offset: 4096, Length: 512}}}, 200},
		{"rdma endpoints", Descriptor{ID: 1 << 60, Token: NewToken(), Endpoints: []Endpoint{{Addr: "[fe80::1]:7400", RDMA: true}, {Addr: "decode-3:7400"}}, Slots: []Slot{{Length: 1}}}, 200},
		{"contiguous run", Descriptor{ID: 5, Slots: layerMajor(1, 1, 16384, 0)}, 100},
		{"32 layers x 64 blocks", Descriptor{ID: 6, Slots: layerMajor(32, 64, 65536, 1<<30)}, 32*28*64 + 100},
		{"irregular", Descriptor{ID: 7, Slots: []Slot{{Offset: 100, Length: 5}, {Offset: 50, Length: 5}, {Region: 1, Offset: 0, Length: 9}, {Region: 1, Offset: 9, Length: 9}, {Region: 1, Offset: 18, Length: 9}}}, 300},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.d.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if len(b) > tc.max {
				t.Fatalf("encoded %d bytes, want <= %d", len(b), tc.max)
			}
			var got Descriptor
			if err := got.UnmarshalBinary(b); err != nil {
				t.Fatal(err)
			}
			if !got.Expiry.Equal(tc.d.Expiry) {
				t.Fatalf("expiry %v want %v", got.Expiry, tc.d.Expiry)
			}
			got.Expiry, tc.d.Expiry = time.Time{}, time.Time{}
			if !reflect.DeepEqual(got, tc.d) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, tc.d)
			}
		})
	}
	// Layer-major slots of a contiguous block range compress to one run.
	var slots []Slot
	for l := range 32 {
		for b := range 16 {
			slots = append(slots, Slot{Offset: uint64(l*16+b) * 8192, Length: 8192})
		}
	}
	d := Descriptor{Slots: slots}
	b, _ := d.MarshalBinary()
	if len(b) > 80 {
		t.Fatalf("512 contiguous slots encoded in %d bytes", len(b))
	}
}

func TestDescriptorRefusals(t *testing.T) {
	good := Descriptor{ID: 1, Endpoints: []Endpoint{{Addr: "a:1"}}, Slots: []Slot{{Offset: 8, Length: 8}, {Offset: 24, Length: 8}, {Offset: 40, Length: 8}}}
	enc, _ := good.MarshalBinary()
	runStart := len(enc) - 28
	tests := []struct {
		name string
		mod  func([]byte) []byte
	}{
		{"empty", func(b []byte) []byte { return nil }},
		{"version", func(b []byte) []byte { b[0] = 9; return b }},
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }},
		{"trailing", func(b []byte) []byte { return append(b, 0) }},
		{"too many endpoints", func(b []byte) []byte { b[33] = 200; return b }},
		{"endpoint flags", func(b []byte) []byte { b[34] = 0x80; return b }},
		{"huge run count", func(b []byte) []byte { b[runStart-4], b[runStart-3] = 0xff, 0xff; return b }},
		{"zero count", func(b []byte) []byte { copy(b[runStart+16:], []byte{0, 0, 0, 0}); return b }},
		{"zero length", func(b []byte) []byte { copy(b[runStart+12:], []byte{0, 0, 0, 0}); return b }},
		{"too many slots", func(b []byte) []byte { copy(b[runStart+16:], []byte{0, 0, 0x20, 0}); return b }},
		{"overflowing run", func(b []byte) []byte {
			copy(b[runStart+20:], []byte{0, 0, 0, 0, 0, 0, 0, 0x80})
			return b
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mod(append([]byte(nil), enc...))
			d := Descriptor{ID: 42}
			err := d.UnmarshalBinary(b)
			if !errors.Is(err, ErrBadDescriptor) {
				t.Fatalf("got %v", err)
			}
			if d.ID != 42 || d.Slots != nil {
				t.Fatal("refused decode changed the descriptor")
			}
		})
	}
}

// FuzzDescriptor: descriptors come from another node through the router.
func FuzzDescriptor(f *testing.F) {
	for _, d := range []Descriptor{
		{ID: 1, Token: Token{1}, Endpoints: []Endpoint{{Addr: "h:1", RDMA: true}}, Slots: []Slot{{Offset: 1, Length: 2}}},
		{ID: 2, Slots: layerMajor(4, 4, 4096, 0)},
	} {
		b, _ := d.MarshalBinary()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var d Descriptor
		if err := d.UnmarshalBinary(b); err != nil {
			return
		}
		if len(d.Slots) > MaxSlots || len(d.Endpoints) > MaxEndpoints {
			t.Fatalf("accepted %d slots, %d endpoints", len(d.Slots), len(d.Endpoints))
		}
		for _, s := range d.Slots {
			if s.Length == 0 || s.End() < s.Offset {
				t.Fatalf("accepted slot %+v", s)
			}
		}
		again, err := d.MarshalBinary()
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		var d2 Descriptor
		if err := d2.UnmarshalBinary(again); err != nil || !reflect.DeepEqual(d.Slots, d2.Slots) {
			t.Fatalf("re-decode differs: %v", err)
		}
	})
}
