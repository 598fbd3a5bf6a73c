// Package gguf reads and writes GGUF model files, the single-file format of
// llama.cpp and its converters.
//
// A GGUF file is a little-endian header, a list of typed key/value metadata,
// a table of tensor descriptors, and an aligned data section holding the
// tensor bytes:
//
//	magic "GGUF" | version u32 | tensor_count u64 | kv_count u64
//	kv_count × (key string, value_type u32, value)
//	tensor_count × (name string, n_dims u32, dims u64×n_dims, type u32, offset u64)
//	padding to general.alignment (default 32)
//	tensor data (each tensor at its offset, relative to the data section)
//
// Strings are a u64 length followed by that many bytes (no terminator).
// Versions 2 and 3 are read; version 1 (u32 counts and string lengths, written
// by converters before August 2023) is refused with an error that says so.
//
// Open maps the file read-only into memory; tensor data is handed out as
// sub-slices of the mapping and never copied into the heap. Parse reads the
// same structure from a byte slice, which is what the fuzz target drives.
//
// The reader treats the file as hostile: every count and length is checked
// against the bytes that remain before anything is allocated, tensor shapes
// are checked for overflow, and every tensor must lie inside the data section.
// A truncated, corrupt or malicious file yields an error, never a panic.
package gguf
