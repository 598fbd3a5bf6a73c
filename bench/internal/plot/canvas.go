package plot

import (
	"image"
	"image/color"
	"math"
)

// canvas draws on an RGBA image; drawing outside its bounds is dropped.
type canvas struct{ img *image.RGBA }

func (c canvas) set(x, y int, col color.RGBA) {
	if (image.Point{x, y}).In(c.img.Rect) {
		c.img.SetRGBA(x, y, col)
	}
}

func (c canvas) fill(r image.Rectangle, col color.RGBA) {
	r = r.Intersect(c.img.Rect)
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			c.img.SetRGBA(x, y, col)
		}
	}
}

// rect draws the outline of r.
func (c canvas) rect(r image.Rectangle, col color.RGBA) {
	x0, y0, x1, y1 := float64(r.Min.X), float64(r.Min.Y), float64(r.Max.X-1), float64(r.Max.Y-1)
	c.line(x0, y0, x1, y0, col, 1)
	c.line(x0, y1, x1, y1, col, 1)
	c.line(x0, y0, x0, y1, col, 1)
	c.line(x1, y0, x1, y1, col, 1)
}

// line draws from (x0, y0) to (x1, y1) with a square pen of width w,
// stepping one pixel along the longer axis.
func (c canvas) line(x0, y0, x1, y1 float64, col color.RGBA, w int) {
	dx, dy := x1-x0, y1-y0
	n := int(math.Ceil(math.Max(math.Abs(dx), math.Abs(dy))))
	if n > 1<<16 {
		return // a wild coordinate; nothing sensible to draw
	}
	lo := -(w - 1) / 2
	for i := 0; i <= n; i++ {
		t := 0.0
		if n > 0 {
			t = float64(i) / float64(n)
		}
		x, y := int(math.Round(x0+dx*t)), int(math.Round(y0+dy*t))
		for a := lo; a < lo+w; a++ {
			for b := lo; b < lo+w; b++ {
				c.set(x+a, y+b, col)
			}
		}
	}
}

// text draws s with its top-left corner at (x, y); vertical text reads
// bottom to top, starting at (x, y) as its bottom-left corner.
func (c canvas) text(x, y int, s string, col color.RGBA, vertical bool) {
	pen := 0
	for _, r := range s {
		g := glyph(r)
		for row := range glyphH {
			for cell := range glyphW {
				if g[row]&(1<<(glyphW-1-cell)) == 0 {
					continue
				}
				for a := range scale {
					for b := range scale {
						u, v := pen+cell*scale+a, row*scale+b // along and across the text
						if vertical {
							c.set(x+v, y-u, col)
						} else {
							c.set(x+u, y+v, col)
						}
					}
				}
			}
		}
		pen += advance * scale
	}
}
