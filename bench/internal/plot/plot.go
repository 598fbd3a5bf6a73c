package plot

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"strconv"
)

// ErrNoData is returned for a chart with no finite point to draw.
var ErrNoData = errors.New("plot: no data")

// Series is one line of a chart.
type Series struct {
	Name string
	X, Y []float64
}

// Chart is a line chart.
type Chart struct {
	Title, XLabel, YLabel string
	// LogX draws the x axis in log scale (points with x ≤ 0 are left
	// out); latency CDFs whose tail spans decades read better so.
	LogX bool
	// Points marks each data point (for sparse series such as a sweep).
	Points bool
	// YMin and YMax fix the y range when YMax > YMin (else it is taken
	// from the data, from 0 when all values are positive); XMin and XMax
	// fix the x range likewise. Lines are clipped to the range.
	YMin, YMax float64
	XMin, XMax float64
	Series     []Series
	// Width and Height in pixels (default 900×560).
	Width, Height int
}

// Palette is the series colors, in order (a color-blind-safe set).
var Palette = []color.RGBA{
	{0, 114, 178, 255},   // blue
	{213, 94, 0, 255},    // vermillion
	{0, 158, 115, 255},   // green
	{204, 121, 167, 255}, // purple
	{230, 159, 0, 255},   // orange
	{86, 180, 233, 255},  // sky blue
	{0, 0, 0, 255},       // black
	{240, 228, 66, 255},  // yellow
}

var (
	white = color.RGBA{255, 255, 255, 255}
	ink   = color.RGBA{40, 40, 40, 255}
	grid  = color.RGBA{225, 225, 225, 255}
)

const scale = 2 // text scale: 10×14-pixel glyphs

// WritePNG renders the chart as PNG.
func (c *Chart) WritePNG(w io.Writer) error {
	img, err := c.Render()
	if err != nil {
		return err
	}
	return png.Encode(w, img)
}

// Render draws the chart.
func (c *Chart) Render() (*image.RGBA, error) {
	W, H := c.Width, c.Height
	if W <= 0 || H <= 0 {
		W, H = 900, 560
	}
	x0, x1, y0, y1, ok := c.bounds()
	if !ok {
		return nil, ErrNoData
	}
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	cv := canvas{img}
	cv.fill(img.Bounds(), white)

	// Layout: title and legend on top, y ticks on the left, x ticks and
	// label at the bottom.
	lineH := glyphH*scale + 8
	legendRows := c.legendRows(W - 40)
	top := 12 + lineH + legendRows*lineH + 8
	left, right, bottom := 20+lineH+7*advance*scale, 24, 12+2*lineH+8
	if W-right-left < 50 || H-bottom-top < 50 {
		return nil, fmt.Errorf("plot: %dx%d is too small", W, H)
	}
	plot := image.Rect(left, top, W-right, H-bottom)

	cv.text((W-textWidth(c.Title, scale))/2, 12, c.Title, ink, false)

	// Axes and ticks.
	xt := ticks(x0, x1, c.LogX)
	yt := ticks(y0, y1, false)
	px := func(x float64) float64 {
		if c.LogX {
			x, x0, x1 := math.Log10(x), math.Log10(x0), math.Log10(x1)
			return float64(plot.Min.X) + (x-x0)/(x1-x0)*float64(plot.Dx()-1)
		}
		return float64(plot.Min.X) + (x-x0)/(x1-x0)*float64(plot.Dx()-1)
	}
	py := func(y float64) float64 {
		return float64(plot.Max.Y-1) - (y-y0)/(y1-y0)*float64(plot.Dy()-1)
	}
	for _, t := range xt {
		x := int(math.Round(px(t.v)))
		cv.line(float64(x), float64(plot.Min.Y), float64(x), float64(plot.Max.Y-1), grid, 1)
		cv.line(float64(x), float64(plot.Max.Y), float64(x), float64(plot.Max.Y+5), ink, 1)
		cv.text(x-textWidth(t.label, scale)/2, plot.Max.Y+9, t.label, ink, false)
	}
	for _, t := range yt {
		y := int(math.Round(py(t.v)))
		cv.line(float64(plot.Min.X), float64(y), float64(plot.Max.X-1), float64(y), grid, 1)
		cv.line(float64(plot.Min.X-6), float64(y), float64(plot.Min.X-1), float64(y), ink, 1)
		cv.text(plot.Min.X-9-textWidth(t.label, scale), y-glyphH*scale/2, t.label, ink, false)
	}
	cv.rect(plot, ink)
	cv.text(plot.Min.X+(plot.Dx()-textWidth(c.XLabel, scale))/2, H-12-glyphH*scale, c.XLabel, ink, false)
	cv.text(14, plot.Min.Y+(plot.Dy()+textWidth(c.YLabel, scale))/2, c.YLabel, ink, true)

	// Series, clipped to the plot area.
	clip := canvas{img.SubImage(plot).(*image.RGBA)}
	for i, s := range c.Series {
		col := Palette[i%len(Palette)]
		prev, have := [2]float64{}, false
		for j := range min(len(s.X), len(s.Y)) {
			x, y := s.X[j], s.Y[j]
			if !finite(x) || !finite(y) || c.LogX && x <= 0 {
				have = false
				continue
			}
			p := [2]float64{px(x), py(y)}
			if have {
				clip.line(prev[0], prev[1], p[0], p[1], col, 2)
			}
			if c.Points {
				clip.fill(image.Rect(int(p[0])-3, int(p[1])-3, int(p[0])+4, int(p[1])+4), col)
			}
			prev, have = p, true
		}
	}

	// Legend: swatch and name per series, wrapped into rows.
	x, y := 20, 12+lineH
	for i, s := range c.Series {
		w := 28 + textWidth(s.Name, scale) + 24
		if x+w > W-20 && x > 20 {
			x, y = 20, y+lineH
		}
		col := Palette[i%len(Palette)]
		cv.fill(image.Rect(x, y+glyphH*scale/2-2, x+22, y+glyphH*scale/2+2), col)
		cv.text(x+28, y, s.Name, ink, false)
		x += w
	}
	return img, nil
}

func (c *Chart) legendRows(width int) int {
	if len(c.Series) == 0 {
		return 0
	}
	rows, x := 1, 0
	for _, s := range c.Series {
		w := 28 + textWidth(s.Name, scale) + 24
		if x+w > width && x > 0 {
			rows, x = rows+1, 0
		}
		x += w
	}
	return rows
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// bounds returns the data range, padded so no line sits on the frame.
func (c *Chart) bounds() (x0, x1, y0, y1 float64, ok bool) {
	x0, y0 = math.Inf(1), math.Inf(1)
	x1, y1 = math.Inf(-1), math.Inf(-1)
	for _, s := range c.Series {
		for j := range min(len(s.X), len(s.Y)) {
			x, y := s.X[j], s.Y[j]
			if !finite(x) || !finite(y) || c.LogX && x <= 0 {
				continue
			}
			x0, x1, y0, y1 = min(x0, x), max(x1, x), min(y0, y), max(y1, y)
			ok = true
		}
	}
	if !ok {
		return
	}
	if c.YMax > c.YMin {
		y0, y1 = c.YMin, c.YMax
	} else {
		if y0 > 0 {
			y0 = 0
		}
		if y1 == y0 {
			y1 = y0 + 1
		}
		y1 += (y1 - y0) * 0.05
	}
	if c.XMax > c.XMin && (!c.LogX || c.XMin > 0) {
		return c.XMin, c.XMax, y0, y1, true
	}
	if c.LogX {
		if x1 == x0 {
			x0, x1 = x0/2, x1*2
		}
		r := math.Log10(x1 / x0)
		x0, x1 = x0/math.Pow(10, r*0.03), x1*math.Pow(10, r*0.03)
		return x0, x1, y0, y1, true
	}
	if x1 == x0 {
		d := math.Max(math.Abs(x0)*0.1, 1)
		x0, x1 = x0-d, x1+d
	}
	pad := (x1 - x0) * 0.03
	return x0 - pad, x1 + pad, y0, y1, true
}

type tick struct {
	v     float64
	label string
}

// ticks picks about six round tick values in [lo, hi]: multiples of 1,
// 2 or 5 times a power of ten, or decades (and 2, 5 within them when the
// range spans few) on a log axis.
func ticks(lo, hi float64, logScale bool) []tick {
	var out []tick
	if logScale {
		d0, d1 := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
		mults := []float64{1}
		if d1-d0 <= 3 {
			mults = []float64{1, 2, 5}
		}
		for d := d0; d <= d1; d++ {
			for _, m := range mults {
				v := m * math.Pow(10, d)
				if v >= lo && v <= hi {
					out = append(out, tick{v, format(v, v)})
				}
			}
		}
		return out
	}
	step := niceStep((hi - lo) / 6)
	for v := math.Ceil(lo/step) * step; v <= hi+step*1e-9; v += step {
		if math.Abs(v) < step*1e-9 {
			v = 0
		}
		out = append(out, tick{v, format(v, step)})
	}
	return out
}

func niceStep(raw float64) float64 {
	if raw <= 0 || !finite(raw) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	switch f := raw / p; {
	case f <= 1:
		return p
	case f <= 2:
		return 2 * p
	case f <= 5:
		return 5 * p
	}
	return 10 * p
}

// format prints v with as many decimals as step needs, and thousands as
// "k" (2000 → 2k) to keep tick labels short.
func format(v, step float64) string {
	if a := math.Abs(v); a >= 10000 && math.Mod(v, 1000) == 0 {
		return strconv.FormatFloat(v/1000, 'f', -1, 64) + "k"
	}
	dec := 0
	if step < 1 {
		dec = int(math.Ceil(-math.Log10(step) - 1e-9))
	}
	return strconv.FormatFloat(v, 'f', dec, 64)
}
