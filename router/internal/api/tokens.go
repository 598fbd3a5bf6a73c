package api

import (
	"unicode/utf8"

	"github.com/duet-llm/duet/engine/tokenizer"
)

// tokenBytes returns the bytes a token decodes to on its own (the
// tokenizer's piece: a byte token is one byte, possibly half a character).
// Control, unknown and unused tokens are empty, as in decoded text.
func tokenBytes(t *tokenizer.Tokenizer, id int32) []byte { return []byte(t.Piece(id)) }

// tokenString is a token's text for the logprobs lists: the text itself
// when it is valid UTF-8, else "bytes:\xNN..." (OpenAI's spelling for a
// token that is part of a character).
func tokenString(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	const hex = "0123456789abcdef"
	s := make([]byte, 0, 6+4*len(b))
	s = append(s, "bytes:"...)
	for _, c := range b {
		s = append(s, '\\', 'x', hex[c>>4], hex[c&15])
	}
	return string(s)
}

func intsOf(b []byte) []int {
	out := make([]int, len(b))
	for i, c := range b {
		out[i] = int(c)
	}
	return out
}
