package commonv1

// PromptHash is the 64-bit FNV-1a hash of the tokens as little-endian
// int32s. The router sends it with Reserve and the prefill node with its
// commit, so a decode node never admits KV computed for another prompt.
func PromptHash(tokens []int32) uint64 {
	h := uint64(14695981039346656037)
	for _, t := range tokens {
		for i := 0; i < 4; i++ {
			h ^= uint64(byte(t >> (8 * i)))
			h *= 1099511628211
		}
	}
	return h
}
