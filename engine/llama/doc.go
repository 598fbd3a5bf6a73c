// Package llama is the forward pass of Llama-family decoder-only
// transformers (Llama 2/3, TinyLlama, Mistral-dense, SmolLM shapes; qwen2's
// NeoX RoPE and QKV biases): RMSNorm, rotary position embeddings in both
// pair layouts with base and linear scale from the GGUF metadata,
// grouped-query attention (MQA and MHA as special cases), SwiGLU, tied or
// separate output weights, float32 activations.
//
// # One call, many sequences
//
// State.Forward takes a batch of Steps: each appends some tokens to one
// sequence — a whole prompt, a prefill chunk or one decode token — so
// batched prefill of prompts of different lengths, chunked prefill across
// calls and a decode step over sequences at different positions are the
// same operation. The tokens of all steps form one activation matrix, so
// every weight matrix is read once per call.
//
// # Batch invariance
//
// A sequence's logits are bit-identical whatever else is in its batch,
// however its prompt was chunked, and wherever its KV was computed
// (another State, another process):
//
//   - every matrix product uses the kernels' canonical per-element
//     reduction order, independent of batch size, tiling and threads;
//   - element-wise steps (norms, RoPE, SwiGLU) round each operation
//     explicitly, so no compiler can fuse them differently;
//   - attention reads every key and value back from the paged KV cache,
//     in the cache's dtype, never from the fresh float32 projections, so
//     a token attends to exactly the bytes a later call (or a decode node
//     that received them) will see; softmax and the weighted sum run in
//     position order.
//
// The tests assert all three properties bit for bit for every KV dtype,
// and TestGoldenLogits pins the logits themselves on every kernel
// implementation.
//
// # Attention
//
// One attention task is up to 16 query tokens of one head (one sequence)
// against all their keys. Its scores are computed per KV block with the
// queries in the lanes of a register (kernel.AttnScores) and stored
// position-major, so the softmax of all 16 queries is one pass of vertical
// operations (kernel.SoftmaxTile) whose weights come out key-major, ready
// for the weighted sum of values (kernel.WeightedSum): per block, the keys
// every query of the tile sees in one call for the whole tile, then each
// query's remaining keys on the causal edge. Every output element still
// takes its keys in position order, one rounding per operation, so the
// bits are those of the scalar loops. A single query (a decode step) takes
// the one-query kernels instead (kernel.DotRows, kernel.SoftmaxRow), whose
// lanes are key positions.
//
// # Work on the caller or across workers
//
// Between the matrix products, the element-wise steps (biases, RoPE,
// storing K/V, residual adds fused with the next RMSNorm, SwiGLU) are one
// row job split over token rows. Attention tasks, row jobs and small
// matrix products run on the calling goroutine when a call holds only a
// few microseconds of them (a small model's decode step): waking a worker
// would cost more than it saves. Which goroutine computes a row or a task
// never changes its bits.
//
// # Shipping layers
//
// Forward calls onLayer after a layer's keys and values of the whole batch
// are stored and before that layer's attention runs, so a caller can ship
// the layer (kvcache.Pool.LayerSlots) while the rest of the pass computes.
package llama
