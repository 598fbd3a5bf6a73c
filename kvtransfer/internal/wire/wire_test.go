package wire

import (
	"bytes"
	"errors"
	"testing"
)

func TestHeaderRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		h    Header
	}{
		{"open", Header{Type: FrameOpen, Length: TokenSize, ID: 7}},
		{"write crc", Header{Type: FrameWrite, Flags: FlagCRC, Length: 16384, ID: 1<<63 + 5, Slot: 31, CRC: 0xdeadbeef, Arg: 4096}},
		{"flush", Header{Type: FrameFlush, ID: 9, Arg: 3}},
		{"commit rdma", Header{Type: FrameCommit, Flags: FlagRDMA, Length: 12, ID: 9, Arg: 1 << 40}},
		{"error", Header{Type: FrameError, Length: 5, ID: 9, Slot: CodeBounds}},
		{"pong", Header{Type: FramePong, Arg: 77}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b [HeaderSize]byte
			tc.h.Encode(b[:])
			var got Header
			if err := got.Decode(b[:]); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if got != tc.h {
				t.Fatalf("round trip: got %+v want %+v", got, tc.h)
			}
		})
	}
}

func TestHeaderRefusals(t *testing.T) {
	good := func() []byte {
		var b [HeaderSize]byte
		h := Header{Type: FrameWrite, Length: 100, ID: 1}
		h.Encode(b[:])
		return b[:]
	}
	tests := []struct {
		name  string
		mod   func(b []byte) []byte
		wantE error
	}{
		{"short", func(b []byte) []byte { return b[:HeaderSize-1] }, ErrMalformed},
		{"type zero", func(b []byte) []byte { b[0] = 0; return b }, ErrMalformed},
		{"type unknown", func(b []byte) []byte { b[0] = 200; return b }, ErrMalformed},
		{"unknown flag", func(b []byte) []byte { b[1] = 0x80; return b }, ErrMalformed},
		{"reserved", func(b []byte) []byte { b[3] = 1; return b }, ErrMalformed},
		{"write too long", func(b []byte) []byte { b[4], b[5], b[6], b[7] = 0, 0, 0, 2; return b }, ErrMalformed},
		{"open short token", func(b []byte) []byte { b[0] = byte(FrameOpen); b[4] = 15; return b }, ErrMalformed},
		{"flush with payload", func(b []byte) []byte { b[0] = byte(FrameFlush); return b }, ErrMalformed},
		{"crc on commit", func(b []byte) []byte { b[0] = byte(FrameCommit); b[1] = FlagCRC; return b }, ErrMalformed},
		{"rdma on write", func(b []byte) []byte { b[1] = FlagRDMA; return b }, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h Header
			err := h.Decode(tc.mod(good()))
			if !errors.Is(err, tc.wantE) {
				t.Fatalf("got %v, want %v", err, tc.wantE)
			}
			if h != (Header{}) {
				t.Fatalf("refused decode changed the header: %+v", h)
			}
		})
	}
}

func TestHello(t *testing.T) {
	var b [HelloSize]byte
	Hello{Version: Version, Features: FeatureCRC | FeatureRDMA}.Encode(b[:])
	h, err := DecodeHello(b[:])
	if err != nil || h.Features != FeatureCRC|FeatureRDMA {
		t.Fatalf("hello round trip: %+v %v", h, err)
	}
	bad := b
	bad[0] = 'X'
	if _, err := DecodeHello(bad[:]); !errors.Is(err, ErrBadMagic) {
		t.Fatalf("bad magic: %v", err)
	}
	v2 := b
	v2[8] = 2
	if _, err := DecodeHello(v2[:]); !errors.Is(err, ErrVersion) {
		t.Fatalf("version: %v", err)
	}
	if _, err := DecodeHello(b[:3]); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short: %v", err)
	}
}

func TestCRC(t *testing.T) {
	// CRC32C check value from RFC 3720 (iSCSI): 32 bytes of zeros.
	if got := CRC(make([]byte, 32)); got != 0x8a9136aa {
		t.Fatalf("crc32c(zeros32) = %#x", got)
	}
	p := bytes.Repeat([]byte("kv"), 1000)
	if UpdateCRC(UpdateCRC(0, p[:500]), p[500:]) != CRC(p) {
		t.Fatal("incremental crc differs")
	}
}

// FuzzDecodeHeader: the decoder of outside bytes must never panic, and what it
// accepts must re-encode to the same bytes.
func FuzzDecodeHeader(f *testing.F) {
	for _, h := range []Header{
		{Type: FrameOpen, Length: TokenSize, ID: 1},
		{Type: FrameWrite, Flags: FlagCRC, Length: 4096, ID: 2, Slot: 3, CRC: 4, Arg: 5},
		{Type: FrameCommit, Flags: FlagRDMA, Length: 8, ID: 2, Arg: 4096},
	} {
		var b [HeaderSize]byte
		h.Encode(b[:])
		f.Add(b[:])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var h Header
		if err := h.Decode(b); err != nil {
			if h != (Header{}) {
				t.Fatalf("error but header set: %+v", h)
			}
			return
		}
		limit, _ := MaxPayload(h.Type)
		if h.Length > limit {
			t.Fatalf("accepted length %d above limit %d", h.Length, limit)
		}
		var out [HeaderSize]byte
		h.Encode(out[:])
		if (h.Type != FrameError && h.Type != FrameCanceled) && !bytes.Equal(out[:], b[:HeaderSize]) {
			t.Fatalf("re-encode differs:\n%x\n%x", out, b[:HeaderSize])
		}
	})
}

func FuzzDecodeHello(f *testing.F) {
	var b [HelloSize]byte
	Hello{Version: Version, Features: FeatureCRC}.Encode(b[:])
	f.Add(b[:])
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := DecodeHello(b)
		if err == nil && h.Version != Version {
			t.Fatalf("accepted version %d", h.Version)
		}
	})
}

func TestSegments(t *testing.T) {
	segs := []Segment{{Slot: 1, Length: 10, Offset: 5, CRC: 9}, {Slot: 7, Length: 6}}
	h := Header{Type: FrameWriteV, Slot: 2, Length: 16}
	b := EncodeSegments(nil, segs)
	got, err := DecodeSegments(&h, b, nil)
	if err != nil || len(got) != 2 || got[0] != segs[0] || got[1] != segs[1] {
		t.Fatalf("round trip %+v %v", got, err)
	}
	bad := []struct {
		name string
		h    Header
		b    []byte
	}{
		{"lengths do not add up", Header{Type: FrameWriteV, Slot: 2, Length: 17}, b},
		{"short table", Header{Type: FrameWriteV, Slot: 2, Length: 16}, b[:30]},
		{"empty segment", Header{Type: FrameWriteV, Slot: 1, Length: 0}, EncodeSegments(nil, []Segment{{Slot: 1}})},
		{"reserved", Header{Type: FrameWriteV, Slot: 1, Length: 1}, append(EncodeSegments(nil, []Segment{{Length: 1}})[:20], 1, 0, 0, 0)},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := DecodeSegments(&tc.h, tc.b, nil); !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v", err)
			}
		})
	}
	var hb [HeaderSize]byte
	(&Header{Type: FrameWriteV, Slot: MaxSegments + 1, Length: 1}).Encode(hb[:])
	var hh Header
	if err := hh.Decode(hb[:]); !errors.Is(err, ErrMalformed) {
		t.Fatalf("too many segments: %v", err)
	}
}

func FuzzDecodeSegments(f *testing.F) {
	f.Add(uint32(2), uint32(16), EncodeSegments(nil, []Segment{{Slot: 1, Length: 10, Offset: 5}, {Slot: 7, Length: 6}}))
	f.Fuzz(func(t *testing.T, count, length uint32, b []byte) {
		h := Header{Type: FrameWriteV, Slot: count % (MaxSegments + 1), Length: length}
		segs, err := DecodeSegments(&h, b, nil)
		if err != nil {
			return
		}
		var total uint64
		for _, s := range segs {
			total += uint64(s.Length)
		}
		if total != uint64(length) || len(segs) != int(h.Slot) {
			t.Fatalf("accepted segments that do not add up")
		}
	})
}
