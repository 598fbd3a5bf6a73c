package plot

import (
	"bytes"
	"errors"
	"image/color"
	"image/png"
	"math"
	"testing"
)

func TestTicks(t *testing.T) {
	tests := []struct {
		name   string
		lo, hi float64
		log    bool
		want   []string
	}{
		{"0..100", 0, 100, false, []string{"0", "20", "40", "60", "80", "100"}},
		{"0..1", 0, 1.05, false, []string{"0.0", "0.2", "0.4", "0.6", "0.8", "1.0"}},
		{"3..17", 3, 17, false, []string{"5", "10", "15"}},
		{"big", 0, 50000, false, []string{"0", "10k", "20k", "30k", "40k", "50k"}},
		{"log decades", 0.5, 20000, true, []string{"1", "10", "100", "1000", "10k"}},
		{"log few decades", 3, 300, true, []string{"5", "10", "20", "50", "100", "200"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ticks(tt.lo, tt.hi, tt.log)
			if len(got) != len(tt.want) {
				t.Fatalf("ticks %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i].label != tt.want[i] {
					t.Fatalf("ticks %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestGlyphs(t *testing.T) {
	for r, s := range font {
		if len(s) != 7*5+6 {
			t.Fatalf("glyph %q is malformed: %q", r, s)
		}
	}
	if glyph('a') != glyph('A') {
		t.Fatal("lower case is not drawn as capitals")
	}
	if glyph('~') != glyph('?') {
		t.Fatal("an unknown rune is not drawn as ?")
	}
	if g := glyph('1'); g[6] != 0b01110 {
		t.Fatalf("'1' bottom row %05b", g[6])
	}
	if textWidth("ab", 2) != 22 || textWidth("", 2) != 0 {
		t.Fatal("text width")
	}
}

func countColor(t *testing.T, b []byte, c color.RGBA) int {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	bd := img.Bounds()
	for y := bd.Min.Y; y < bd.Max.Y; y++ {
		for x := bd.Min.X; x < bd.Max.X; x++ {
			r, g, bb, _ := img.At(x, y).RGBA()
			if uint8(r>>8) == c.R && uint8(g>>8) == c.G && uint8(bb>>8) == c.B {
				n++
			}
		}
	}
	return n
}

func TestRender(t *testing.T) {
	ch := Chart{Title: "TTFT CDF", XLabel: "ms", YLabel: "fraction", LogX: true, Width: 600, Height: 400,
		Series: []Series{
			{Name: "colocated", X: []float64{10, 20, 40, 1000}, Y: []float64{0.25, 0.5, 0.75, 1}},
			{Name: "pd", X: []float64{0, 15, 30, math.NaN(), 50}, Y: []float64{0, 0.3, 0.6, 0.9, 1}},
		}}
	var buf bytes.Buffer
	if err := ch.WritePNG(&buf); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 600 || b.Dy() != 400 {
		t.Fatalf("size %v", b)
	}
	// Both series and their legend swatches are drawn in their colors.
	for i := range ch.Series {
		if n := countColor(t, buf.Bytes(), Palette[i]); n < 200 {
			t.Fatalf("series %d: %d pixels of its color", i, n)
		}
	}
	// The same chart renders to the same bytes.
	var again bytes.Buffer
	if err := ch.WritePNG(&again); err != nil || !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Fatal("rendering is not reproducible")
	}
}

func TestRenderEdgeCases(t *testing.T) {
	tests := []struct {
		name string
		c    Chart
		err  error
	}{
		{"no series", Chart{}, ErrNoData},
		{"only NaN", Chart{Series: []Series{{X: []float64{math.NaN()}, Y: []float64{1}}}}, ErrNoData},
		{"log with no positive x", Chart{LogX: true, Series: []Series{{X: []float64{0, -1}, Y: []float64{1, 2}}}}, ErrNoData},
		{"one point", Chart{Points: true, Series: []Series{{Name: "a", X: []float64{2}, Y: []float64{3}}}}, nil},
		{"flat", Chart{Series: []Series{{X: []float64{1, 2, 3}, Y: []float64{0, 0, 0}}}}, nil},
		{"one point log", Chart{LogX: true, Series: []Series{{X: []float64{5}, Y: []float64{1}}}}, nil},
		{"fixed y", Chart{YMin: 0, YMax: 1, Series: []Series{{X: []float64{1, 2}, Y: []float64{-5, 5}}}}, nil},
		{"huge values", Chart{Series: []Series{{X: []float64{-1e300, 1e300}, Y: []float64{1e-300, 1e300}}}}, nil},
		{"mismatched lengths", Chart{Series: []Series{{X: []float64{1, 2, 3}, Y: []float64{1}}}}, nil},
		{"many series wrap the legend", Chart{Series: manySeries(12)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.c.Render()
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
		})
	}
	if _, err := (&Chart{Width: 60, Height: 60, Series: manySeries(1)}).Render(); err == nil {
		t.Fatal("a chart too small to draw rendered")
	}
}

func manySeries(n int) []Series {
	s := make([]Series, n)
	for i := range s {
		s[i] = Series{Name: "a long series name", X: []float64{0, 1}, Y: []float64{float64(i), float64(i + 1)}}
	}
	return s
}

func TestFixedRange(t *testing.T) {
	// Points outside a fixed x range are clipped, not drawn on the frame.
	c := Chart{LogX: true, XMin: 10, XMax: 1000, Width: 400, Height: 300,
		Series: []Series{{Name: "s", X: []float64{0.001, 100, 100000}, Y: []float64{0, 0.5, 1}}}}
	x0, x1, _, _, ok := c.bounds()
	if !ok || x0 != 10 || x1 != 1000 {
		t.Fatalf("bounds %v %v", x0, x1)
	}
	if _, err := c.Render(); err != nil {
		t.Fatal(err)
	}
	// A log range that starts at 0 cannot be used; the data's is.
	c.XMin = 0
	if x0, _, _, _, _ := c.bounds(); x0 <= 0 {
		t.Fatalf("log range from %v", x0)
	}
}
