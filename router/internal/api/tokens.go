package api

import (
	"strings"
	"unicode/utf8"

	"github.com/duet-llm/duet/engine/tokenizer"
)

// tokenBytes returns the bytes a token decodes to on its own: the piece the
// tokenizer's Decoder emits for it, before UTF-8 reassembly (a byte token
// is one byte, possibly half a character). Control, unknown and unused
// tokens are empty, as in decoded text.
//
// The tokenizer keeps this table unexported, so it is rebuilt here from
// TokenText and TokenType following the tokenizer's rules; a test checks
// it against the tokenizer's Decode for every token of the test vocabularies.
func tokenBytes(t *tokenizer.Tokenizer, id int32) []byte {
	text := t.TokenText(id)
	switch t.TokenType(id) {
	case tokenizer.TypeUserDefined:
		return []byte(text)
	case tokenizer.TypeNormal:
		if t.Kind() == tokenizer.KindSPM {
			return []byte(strings.ReplaceAll(text, "\u2581", " "))
		}
		return decodeByteLevel(text)
	case tokenizer.TypeByte:
		if t.Kind() == tokenizer.KindSPM && len(text) == 6 && strings.HasPrefix(text, "<0x") && text[5] == '>' {
			if b, ok := unhex2(text[3], text[4]); ok {
				return []byte{b}
			}
		}
	}
	return nil
}

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

func unhex2(hi, lo byte) (byte, bool) {
	h, ok1 := unhex(hi)
	l, ok2 := unhex(lo)
	return h<<4 | l, ok1 && ok2
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// unicodeToByte inverts GPT-2's bytes_to_unicode: the printable bytes '!'
// to '~', '¡' to '¬' and '®' to 'ÿ' stand for themselves, the other 68
// bytes are U+0100 onwards in byte order. Every mapped rune is < 0x144.
var unicodeToByte = func() (m [0x144]int16) {
	for i := range m {
		m[i] = -1
	}
	n := 0
	for b := 0; b < 256; b++ {
		r := b
		if !('!' <= b && b <= '~' || 0xA1 <= b && b <= 0xAC || 0xAE <= b && b <= 0xFF) {
			r = 256 + n
			n++
		}
		m[r] = int16(b)
	}
	return m
}()

// decodeByteLevel maps a byte-level token text back to bytes; a character
// outside the alphabet stays as its UTF-8.
func decodeByteLevel(s string) []byte {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		if r < rune(len(unicodeToByte)) && unicodeToByte[r] >= 0 {
			out = append(out, byte(unicodeToByte[r]))
		} else {
			out = utf8.AppendRune(out, r)
		}
	}
	return out
}
