// Package engine is duet's built-in inference engine for Llama-family
// decoder-only transformers: GGUF loading, tokenizers, the forward pass over
// a paged KV cache, and sampling.
package engine
