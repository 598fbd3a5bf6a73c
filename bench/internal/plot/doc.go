// Package plot draws the benchmark's charts as PNG with the standard
// library alone: line charts (latency CDFs, figures against request
// rate) with axes, round-number ticks, a linear or log x axis, a legend
// and a built-in 5×7 bitmap font.
//
// A plotting library (gonum/plot) would draw nicer text, but it pulls in
// a font stack and a vector backend for what are a handful of line
// charts; a small plotter here keeps the module's dependencies to the
// ones the repository already allows and the output byte-for-byte
// reproducible.
package plot
