// Package kvcache is the paged key/value cache: a pool of fixed-size blocks
// allocated once, per-sequence block tables, and the byte layout that other
// processes read and write when KV moves between nodes.
//
// # Memory layout
//
// A Pool owns one contiguous, page-aligned arena. It is divided into slots,
// one per (layer, block), laid out layer-major:
//
//	offset(layer, block) = (layer*NumBlocks + block) * SlotBytes
//
// so a layer's slots for consecutive block ids are adjacent. Within a slot,
// with H = KV heads, T = tokens per block, D = head dimension and E the
// element size of the dtype (f32: 4, f16: 2, int8: 1), all little-endian:
//
//	K       [H][T][D] elements         bytes [0, H*T*D*E)
//	V       [H][T][D] elements         bytes [H*T*D*E, 2*H*T*D*E)
//	Kscale  [H][T] float32 (int8 only) bytes [2*H*T*D*E, 2*H*T*D*E + 4*H*T)
//	Vscale  [H][T] float32 (int8 only) the next 4*H*T bytes
//
// SlotBytes is the sum. Token t of a sequence lives in block
// Blocks[t/T] at position t%T. Positions of the last block beyond the
// sequence's length hold stale bytes and are never read.
//
// An int8 element is q with value q*scale, where the scale belongs to one
// (head, token) pair: scale = absmax/127 over that token's D values,
// q = round-half-even(x/scale). The scales are stored per block and head as
// the layout above shows, one per token position. A single scale per
// (block, head) would make a token's stored value depend on which other
// tokens had reached the block when it was quantized, so the same prompt
// would give different logits depending on prefill chunking or on how
// decode steps were batched; per-token scales keep every stored byte a pure
// function of that token's own K or V vector (see the engine's batch
// invariance guarantee).
//
// # Moving KV between processes
//
// Because the layout on the wire equals the layout in memory, a sender hands
// out whole slots (Pool.Slot, Pool.LayerSlots) and a receiver writes received
// bytes straight into its own reserved slots (Pool.Arena at Pool.SlotOffset,
// or Pool.Install). Both sides must agree on the Layout, which the decode
// node advertises with every reservation.
package kvcache
