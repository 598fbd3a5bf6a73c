package llama

import (
	"math"
	"testing"
)

// TestRopeLayouts checks both pair layouts, partial rotation, linear
// scaling and frequency factors against the formula in float64.
func TestRopeLayouts(t *testing.T) {
	cases := []struct {
		name   string
		layout RopeLayout
		dims   int // rotated dimensions of a head of 8
		scale  float64
		freq   []float32
	}{
		{"norm", RopeNorm, 8, 1, nil},
		{"neox", RopeNeoX, 8, 1, nil},
		{"neox partial", RopeNeoX, 4, 1, nil},
		{"norm partial", RopeNorm, 4, 1, nil},
		{"linear scale", RopeNorm, 8, 4, nil},
		{"freq factors", RopeNeoX, 8, 1, []float32{1, 2, 4, 8}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := &Model{Config: Config{HeadDim: 8, RopeDims: tc.dims, RopeBase: 10000, RopeScale: tc.scale, RopeLayout: tc.layout}, FreqFactors: tc.freq}
			s := &State{m: m, cfg: StateConfig{MaxContext: 64}}
			s.initRope()
			const heads, pos = 2, 37
			x := make([]float32, heads*8)
			for i := range x {
				x[i] = float32(i%7) - 2.5
			}
			orig := append([]float32(nil), x...)
			s.rope(x, heads, pos)
			half := tc.dims / 2
			for h := 0; h < heads; h++ {
				v, o := x[h*8:(h+1)*8], orig[h*8:(h+1)*8]
				for i := 0; i < half; i++ {
					a, b := i, i+half
					if tc.layout == RopeNorm {
						a, b = 2*i, 2*i+1
					}
					theta := math.Pow(10000, -float64(2*i)/float64(tc.dims))
					if tc.freq != nil {
						theta /= float64(tc.freq[i])
					}
					ang := float64(pos) / tc.scale * theta
					wa := float64(o[a])*math.Cos(ang) - float64(o[b])*math.Sin(ang)
					wb := float64(o[a])*math.Sin(ang) + float64(o[b])*math.Cos(ang)
					if math.Abs(float64(v[a])-wa) > 1e-5 || math.Abs(float64(v[b])-wb) > 1e-5 {
						t.Fatalf("head %d pair %d: (%v, %v), want (%v, %v)", h, i, v[a], v[b], wa, wb)
					}
				}
				for d := 0; d < 8; d++ {
					if d >= tc.dims && v[d] != o[d] { // both layouts rotate the first dims only
						t.Fatalf("head %d dim %d changed outside the rotated part", h, d)
					}
				}
			}
		})
	}
}
