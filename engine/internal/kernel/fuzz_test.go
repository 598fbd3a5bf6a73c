package kernel

import (
	"encoding/binary"
	"math"
	"testing"
)

// FuzzMatMulRows feeds weight bytes of any content (NaN, Inf, subnormal
// F16 and BF16, any Q8_0 scale) and odd shapes to every implementation:
// a matrix that Validate accepts must give dotRef's bits everywhere and
// never touch memory outside its slices; one it rejects is not used.
//
// The first bytes choose the shape: type, rows (1-9), columns (1-70, or
// 32-96 for Q8_0), activation rows (1-7), row range; the rest are the
// weights, then the activations' bits.
func FuzzMatMulRows(f *testing.F) {
	f.Add([]byte{0, 3, 17, 2, 0, 1, 0x3c, 0x00, 0x80, 0x7f, 0xff, 0xff})
	f.Add([]byte{1, 8, 8, 1, 1, 7, 0x00, 0x7c, 0x01, 0x7c, 0x00, 0xfc})
	f.Add([]byte{3, 2, 1, 3, 0, 2, 0xff, 0x7b, 1, 2, 3, 0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 6 {
			return
		}
		dt := DType(data[0] % byte(numTypes))
		rows := 1 + int(data[1]%9)
		cols := 1 + int(data[2]%70)
		if dt == Q8_0 {
			cols = 32 * (1 + int(data[2]%3))
		}
		n := 1 + int(data[3]%7)
		r0 := int(data[4]) % rows
		r1 := r0 + 1 + int(data[5])%(rows-r0)
		rest := data[6:]
		w := Mat{Type: dt, Rows: rows, Cols: cols, Data: make([]byte, rows*RowBytes(dt, cols))}
		copy(w.Data, rest)
		if len(rest) < len(w.Data) {
			// Short input: also check that a matrix over the short data is
			// refused.
			short := Mat{Type: dt, Rows: rows, Cols: cols, Data: rest}
			if short.Validate() == nil {
				t.Fatalf("Validate accepted %d bytes for %s %dx%d", len(rest), dt, rows, cols)
			}
		}
		if err := w.Validate(); err != nil {
			t.Fatal(err)
		}
		x := make([]float32, n*cols)
		xs := rest[min(len(rest), len(w.Data)):]
		for i := range x {
			if 4*i+4 <= len(xs) {
				x[i] = math.Float32frombits(binary.LittleEndian.Uint32(xs[4*i:]))
			} else {
				x[i] = float32(i%7) - 3
			}
		}
		prev := Name()
		defer Use(prev)
		for _, name := range Available() {
			if err := Use(name); err != nil {
				t.Fatal(err)
			}
			dst := make([]float32, n*rows+1)
			dst[n*rows] = 42
			MatMulRows(dst[:n*rows], w, x, n, r0, r1)
			for b := 0; b < n; b++ {
				for r := r0; r < r1; r++ {
					want := dotRef(dt, w.Row(r), x[b*cols:(b+1)*cols])
					if got := dst[b*rows+r]; !same(got, want) {
						t.Fatalf("%s %s %dx%d n=%d: [%d,%d] = %v, ref %v", name, dt, rows, cols, n, b, r, got, want)
					}
				}
			}
			if dst[n*rows] != 42 {
				t.Fatalf("%s: wrote past dst", name)
			}
		}
	})
}
