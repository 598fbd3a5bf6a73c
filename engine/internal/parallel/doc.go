// Package parallel is the engine's worker pool: it splits a matrix product
// (or any range of independent work) across GOMAXPROCS goroutines, with the
// calling goroutine taking part.
//
// Decode calls it hundreds of times per token, so a call allocates nothing
// at steady state and costs about a microsecond: work is described by a
// Task, an interface a caller implements on a pre-allocated struct; the
// workers are woken with empty struct tokens on a buffered channel and the
// last helper to finish hands one back; the pool keeps its own per-call
// state. Waking a parked goroutine costs tens of microseconds in a virtual
// machine, so an idle worker polls for the next call, and a caller for its
// helpers, for up to 50µs before parking. Calls on one Pool are serialised
// (a second caller waits for the first); use one Pool per independent
// stream of work.
//
// MatMul runs a product of fewer than about 256K multiply-adds on the
// caller alone: a small model's decode step is a string of such products,
// each a few microseconds, and a hand-off would cost as much.
//
// Work is handed out in chunks claimed with an atomic counter, so a worker
// that the operating system delays does not hold up the others. Which
// worker computes which rows never changes a result: every output element
// of kernel.MatMulRows has the same bits however the rows are split.
//
// New starts nothing; the worker goroutines start on the first call and
// Close stops them and waits for them to end.
package parallel
