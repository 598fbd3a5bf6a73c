package kernel

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// dotRef is the canonical dot product written as the specification reads,
// one element at a time; every implementation is tested against it bit for
// bit.
func dotRef(t DType, w []byte, x []float32) float32 {
	var p [16]float32
	k := len(x)
	if t == Q8_0 {
		for j := 0; j < k/32; j++ {
			blk := w[34*j : 34*(j+1)]
			d := f16ToF32(binary.LittleEndian.Uint16(blk))
			var tt [16]float32
			for l := 0; l < 16; l++ {
				tt[l] = float32(float32(int8(blk[2+l])) * x[32*j+l])
				tt[l] = fma32(float32(int8(blk[2+16+l])), x[32*j+16+l], tt[l])
				p[l] = fma32(tt[l], d, p[l])
			}
		}
	} else {
		for k0 := 0; k0 < k; k0 += 16 {
			for l := 0; l < 16; l++ {
				if k0+l < k {
					p[l] = fma32(refElem(t, w, k0+l), x[k0+l], p[l])
				}
			}
		}
	}
	for l := 0; l < 8; l++ {
		p[l] += p[l+8]
	}
	for l := 0; l < 4; l++ {
		p[l] += p[l+4]
	}
	for l := 0; l < 2; l++ {
		p[l] += p[l+2]
	}
	p[0] += p[1]
	return p[0]
}

// refElem converts element i of a row of type t (not Q8_0) to float32.
func refElem(t DType, w []byte, i int) float32 {
	switch t {
	case F32:
		return math.Float32frombits(binary.LittleEndian.Uint32(w[4*i:]))
	case F16:
		return f16ToF32(binary.LittleEndian.Uint16(w[2*i:]))
	case BF16:
		return math.Float32frombits(uint32(binary.LittleEndian.Uint16(w[2*i:])) << 16)
	case I8:
		return float32(int8(w[i]))
	}
	panic("refElem: " + t.String())
}

// same reports whether a and b are the same float32: equal bits, or both
// NaN (NaN payloads are not specified).
func same(a, b float32) bool {
	return math.Float32bits(a) == math.Float32bits(b) || (a != a && b != b)
}

var allTypes = []DType{F32, F16, BF16, Q8_0, I8}

// randF32 draws a float32 for activations: mostly moderate values of
// either sign, with some zeros, negative zeros, tiny values and
// subnormals so that signed zeros and underflow show up in partial sums.
func randF32(r *rand.Rand) float32 {
	switch r.IntN(16) {
	case 0:
		return 0
	case 1:
		return float32(math.Copysign(0, -1))
	case 2:
		return math.Float32frombits(r.Uint32()&0x807fffff | uint32(r.IntN(4))<<23) // subnormal or tiny
	case 3:
		return float32(r.NormFloat64() * 1e-30)
	}
	return float32(r.NormFloat64() * math.Exp2(float64(r.IntN(20)-10)))
}

// randRow fills a row of k elements of type t with finite random values.
func randRow(r *rand.Rand, t DType, k int) []byte {
	b := make([]byte, RowBytes(t, k))
	switch t {
	case F32:
		for i := 0; i < k; i++ {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(randF32(r)))
		}
	case F16:
		for i := 0; i < k; i++ {
			h := uint16(r.Uint32())
			if h&0x7c00 == 0x7c00 { // no Inf or NaN weights
				h &^= 0x4000
			}
			binary.LittleEndian.PutUint16(b[2*i:], h)
		}
	case BF16:
		for i := 0; i < k; i++ {
			binary.LittleEndian.PutUint16(b[2*i:], uint16(math.Float32bits(randF32(r))>>16))
		}
	case I8:
		for i := range b {
			b[i] = byte(r.Uint32())
		}
	case Q8_0:
		for j := 0; j < k/32; j++ {
			d := f32ToF16(float32(r.NormFloat64() * 0.01))
			binary.LittleEndian.PutUint16(b[34*j:], d)
			for l := 0; l < 32; l++ {
				b[34*j+2+l] = byte(r.Uint32())
			}
		}
	}
	return b
}

func randMat(r *rand.Rand, t DType, rows, cols int) Mat {
	m := Mat{Type: t, Rows: rows, Cols: cols, Data: make([]byte, 0, rows*RowBytes(t, cols))}
	for range rows {
		m.Data = append(m.Data, randRow(r, t, cols)...)
	}
	return m
}

func randVec(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = randF32(r)
	}
	return x
}

// forEachImpl runs f with each available implementation active.
func forEachImpl(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	prev := Name()
	defer func() {
		if err := Use(prev); err != nil {
			t.Fatal(err)
		}
	}()
	for _, name := range Available() {
		if err := Use(name); err != nil {
			t.Fatal(err)
		}
		t.Run(name, f)
	}
}

// colsFor lists the K values a type is tested at: tails of every kind for
// the element types, multiples of 32 for Q8_0.
func colsFor(t DType) []int {
	if t == Q8_0 {
		return []int{32, 64, 96, 160, 768}
	}
	return []int{1, 3, 8, 15, 16, 17, 31, 32, 33, 64, 100, 172, 768}
}

func TestDotMatchesRef(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		for _, dt := range allTypes {
			for _, k := range colsFor(dt) {
				for range 20 {
					w := randRow(r, dt, k)
					x := randVec(r, k)
					want := dotRef(dt, w, x)
					if got := Dot(dt, w, x); !same(got, want) {
						t.Fatalf("%s K=%d: Dot = %v (%#x), ref %v (%#x)", dt, k, got, math.Float32bits(got), want, math.Float32bits(want))
					}
				}
			}
		}
	})
}

// TestMatMulRowsMatchesRef checks every element of random matmuls, for
// every dtype, tail length and batch size 1..17, against dotRef, and that
// computing a row range alone changes nothing.
func TestMatMulRowsMatchesRef(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(3, 4))
		for _, dt := range allTypes {
			for _, k := range colsFor(dt) {
				rows := 1 + r.IntN(13)
				w := randMat(r, dt, rows, k)
				for n := 1; n <= 17; n += 1 + r.IntN(3) {
					x := randVec(r, n*k)
					dst := make([]float32, n*rows)
					MatMulRows(dst, w, x, n, 0, rows)
					for b := 0; b < n; b++ {
						for row := 0; row < rows; row++ {
							want := dotRef(dt, w.Row(row), x[b*k:(b+1)*k])
							if got := dst[b*rows+row]; !same(got, want) {
								t.Fatalf("%s K=%d rows=%d n=%d: [%d,%d] = %v, ref %v", dt, k, rows, n, b, row, got, want)
							}
						}
					}
					// A row range computed alone gives the same bits and
					// writes nothing outside it.
					r0 := r.IntN(rows)
					r1 := r0 + 1 + r.IntN(rows-r0)
					part := make([]float32, n*rows)
					for i := range part {
						part[i] = -1
					}
					MatMulRows(part, w, x, n, r0, r1)
					for b := 0; b < n; b++ {
						for row := 0; row < rows; row++ {
							got, want := part[b*rows+row], dst[b*rows+row]
							if row < r0 || row >= r1 {
								want = -1
							}
							if !same(got, want) {
								t.Fatalf("%s K=%d rows [%d,%d) n=%d: [%d,%d] = %v, want %v", dt, k, r0, r1, n, b, row, got, want)
							}
						}
					}
				}
			}
		}
	})
}

// TestBatchInvariance computes a batch of 16 with every implementation and
// checks each row against the same row computed alone by every other
// implementation.
func TestBatchInvariance(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	prev := Name()
	defer Use(prev)
	for _, dt := range allTypes {
		const k, rows, n = 160, 37, 16
		w := randMat(r, dt, rows, k)
		x := randVec(r, n*k)
		var results [][]float32
		for _, name := range Available() {
			if err := Use(name); err != nil {
				t.Fatal(err)
			}
			batch := make([]float32, n*rows)
			MatMulRows(batch, w, x, n, 0, rows)
			alone := make([]float32, n*rows)
			for b := 0; b < n; b++ {
				MatMulRows(alone[b*rows:(b+1)*rows], w, x[b*k:(b+1)*k], 1, 0, rows)
			}
			for i := range batch {
				if !same(batch[i], alone[i]) {
					t.Fatalf("%s %s: element %d in a batch of %d = %v, alone %v", name, dt, i, n, batch[i], alone[i])
				}
			}
			results = append(results, batch)
		}
		for i := 1; i < len(results); i++ {
			for j := range results[0] {
				if !same(results[i][j], results[0][j]) {
					t.Fatalf("%s: %s and %s differ at %d: %v vs %v", dt, Available()[i], Available()[0], j, results[i][j], results[0][j])
				}
			}
		}
	}
}

func TestAxpyMatchesRef(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(7, 8))
		for _, dt := range []DType{F32, F16, BF16, I8} {
			for _, n := range []int{0, 1, 7, 8, 15, 16, 17, 64, 100, 128} {
				x := randRow(r, dt, n)
				a := randF32(r)
				dst := randVec(r, n)
				want := make([]float32, n)
				for i := range want {
					want[i] = fma32(a, refElem(dt, x, i), dst[i])
				}
				Axpy(dt, dst, a, x)
				for i := range want {
					if !same(dst[i], want[i]) {
						t.Fatalf("%s n=%d: [%d] = %v, want %v", dt, n, i, dst[i], want[i])
					}
				}
				if dt == F32 {
					xf := make([]float32, n)
					ToF32(F32, xf, x)
					dst2 := randVec(r, n)
					for i := range want {
						want[i] = fma32(a, xf[i], dst2[i])
					}
					AxpyF32(dst2, a, xf)
					for i := range want {
						if !same(dst2[i], want[i]) {
							t.Fatalf("AxpyF32 n=%d: [%d] = %v, want %v", n, i, dst2[i], want[i])
						}
					}
				}
			}
		}
	})
}

func TestToF32(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(9, 10))
		for _, dt := range allTypes {
			for _, k := range colsFor(dt) {
				row := randRow(r, dt, k)
				got := make([]float32, k)
				ToF32(dt, got, row)
				for i := range got {
					var want float32
					if dt == Q8_0 {
						blk := row[34*(i/32):]
						want = float32(f16ToF32(binary.LittleEndian.Uint16(blk)) * float32(int8(blk[2+i%32])))
					} else {
						want = refElem(dt, row, i)
					}
					if !same(got[i], want) {
						t.Fatalf("%s K=%d: [%d] = %v, want %v", dt, k, i, got[i], want)
					}
				}
			}
		}
	})
}

func TestF32ToF16(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(11, 12))
		for _, n := range []int{0, 1, 7, 8, 9, 16, 33, 1000} {
			src := make([]float32, n)
			for i := range src {
				src[i] = math.Float32frombits(r.Uint32())
			}
			dst := make([]byte, 2*n+2)
			dst[2*n], dst[2*n+1] = 0xAA, 0xBB
			F32ToF16(dst, src)
			for i, v := range src {
				if got, want := binary.LittleEndian.Uint16(dst[2*i:]), f32ToF16(v); got != want {
					t.Fatalf("n=%d: [%d] %v -> %#04x, want %#04x", n, i, v, got, want)
				}
			}
			if dst[2*n] != 0xAA || dst[2*n+1] != 0xBB {
				t.Fatalf("n=%d: wrote past the end", n)
			}
		}
	})
}

func TestQuantizeI8(t *testing.T) {
	inf := float32(math.Inf(1))
	nan := float32(math.NaN())
	tests := []struct {
		name  string
		src   []float32
		scale float32
		want  []int8
	}{
		{"zeros", []float32{0, 0, 0}, 0, []int8{0, 0, 0}},
		{"empty", nil, 0, nil},
		{"absmax maps to 127", []float32{-2.54, 1.27, 0.01, 0.03}, 2.54 / 127, []int8{-127, 64, 0, 2}},
		{"ties to even", []float32{127, 0.5, 1.5, 2.5, -0.5}, 1, []int8{127, 0, 2, 2, 0}},
		{"non-finite", []float32{nan, inf, -inf, 12.7}, 0.1, []int8{0, 127, -127, 127}},
		{"only non-finite", []float32{nan, -inf}, 0, []int8{0, -127}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := make([]byte, len(tc.src))
			if s := QuantizeI8(dst, tc.src); s != tc.scale {
				t.Fatalf("scale %v, want %v", s, tc.scale)
			}
			for i := range tc.want {
				if int8(dst[i]) != tc.want[i] {
					t.Fatalf("q = %v, want %v", dst, tc.want)
				}
			}
		})
	}
}

func TestRowBytesAndValidate(t *testing.T) {
	tests := []struct {
		m    Mat
		rb   int
		fail bool
	}{
		{Mat{Type: F32, Rows: 2, Cols: 3, Data: make([]byte, 24)}, 12, false},
		{Mat{Type: F16, Rows: 2, Cols: 3, Data: make([]byte, 11)}, 6, true},
		{Mat{Type: BF16, Rows: 1, Cols: 5, Data: make([]byte, 10)}, 10, false},
		{Mat{Type: I8, Rows: 4, Cols: 8, Data: make([]byte, 32)}, 8, false},
		{Mat{Type: Q8_0, Rows: 2, Cols: 64, Data: make([]byte, 136)}, 68, false},
		{Mat{Type: Q8_0, Rows: 1, Cols: 40, Data: make([]byte, 100)}, -1, true},
		{Mat{Type: DType(9), Rows: 1, Cols: 4, Data: make([]byte, 100)}, -1, true},
		{Mat{Type: F32, Rows: -1, Cols: 4}, 16, true},
		{Mat{Type: F32, Rows: 1 << 40, Cols: 1 << 20, Data: make([]byte, 16)}, 1 << 22, true},
	}
	for _, tc := range tests {
		if rb := RowBytes(tc.m.Type, tc.m.Cols); rb != tc.rb {
			t.Errorf("RowBytes(%s, %d) = %d, want %d", tc.m.Type, tc.m.Cols, rb, tc.rb)
		}
		if err := tc.m.Validate(); (err != nil) != tc.fail {
			t.Errorf("Validate(%s %dx%d, %d bytes) = %v, want failure %v", tc.m.Type, tc.m.Rows, tc.m.Cols, len(tc.m.Data), err, tc.fail)
		}
	}
}

func TestUse(t *testing.T) {
	prev := Name()
	defer Use(prev)
	av := Available()
	if av[len(av)-1] != "generic" {
		t.Fatalf("Available() = %v, want generic last", av)
	}
	for _, name := range av {
		if err := Use(name); err != nil || Name() != name {
			t.Fatalf("Use(%q) = %v, Name() = %q", name, err, Name())
		}
	}
	if err := Use("sse9"); err == nil {
		t.Fatal("Use(sse9) succeeded")
	}
}

// TestMatMulRowsBlocking covers the cache blocking: more rows than a row
// block, more activation rows than a batch block (so both the large- and
// the small-batch loop orders run), and a tail.
func TestMatMulRowsBlocking(t *testing.T) {
	if testing.Short() {
		t.Skip("large shapes")
	}
	forEachImpl(t, func(t *testing.T) {
		if Name() == "generic" {
			t.Skip("the reference itself")
		}
		r := rand.New(rand.NewPCG(13, 14))
		for _, dt := range allTypes {
			k := 772
			if dt == Q8_0 {
				k = 800
			}
			const rows, n = 110, 70
			w := randMat(r, dt, rows, k)
			x := randVec(r, n*k)
			dst := make([]float32, n*rows)
			MatMulRows(dst, w, x, n, 3, rows-2)
			for b := 0; b < n; b++ {
				for row := 3; row < rows-2; row++ {
					want := dotRef(dt, w.Row(row), x[b*k:(b+1)*k])
					if got := dst[b*rows+row]; !same(got, want) {
						t.Fatalf("%s: [%d,%d] = %v, ref %v", dt, b, row, got, want)
					}
				}
			}
		}
	})
}

// TestSignedZero checks the padding of tails: partial sums that underflow
// to -0 must stay -0 through the padded lanes and the tree.
func TestSignedZero(t *testing.T) {
	forEachImpl(t, func(t *testing.T) {
		for _, k := range []int{16, 17, 31, 33, 47} { // every lane gets a product
			w := make([]byte, 4*k)
			x := make([]float32, k)
			for i := range x {
				binary.LittleEndian.PutUint32(w[4*i:], math.Float32bits(-1e-30))
				x[i] = 1e-30
			}
			got := Dot(F32, w, x)
			if want := dotRef(F32, w, x); math.Float32bits(got) != math.Float32bits(want) || !math.Signbit(float64(got)) || got != 0 {
				t.Fatalf("K=%d: Dot = %v (sign %v), ref %v; want -0", k, got, math.Signbit(float64(got)), want)
			}
		}
	})
}
