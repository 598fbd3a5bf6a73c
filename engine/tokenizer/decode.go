package tokenizer

import (
	"unicode/utf8"
)

// Piece returns the bytes token id decodes to on its own, before UTF-8
// reassembly: SPM's "▁" as a space, a byte token as its one byte, a
// byte-level BPE token as its bytes (possibly part of a character). It is
// "" for control, unknown, unused and out-of-range ids. (OpenAI's logprobs
// report these bytes per token.)
func (t *Tokenizer) Piece(id int32) string { return t.piece(id) }

// piece returns what id decodes to ("" for control, unknown, unused and
// out-of-range ids).
func (t *Tokenizer) piece(id int32) string {
	if id < 0 || int(id) >= len(t.pieces) {
		return ""
	}
	return t.pieces[id]
}

// leading applies llama.cpp's leading-space rule to the first id of a
// sequence: with a dummy prefix (SPM), the first token's piece loses one
// leading space, unless the sequence starts with BOS of a model that adds
// BOS, in which case the space stays. It returns the piece to emit.
func (t *Tokenizer) leading(id int32) string {
	p := t.piece(id)
	if !t.addSpacePrefix || t.addBOS && id == t.bos {
		return p
	}
	if len(p) > 0 && p[0] == ' ' {
		return p[1:]
	}
	return p
}

// Decode turns ids into text: control and unknown tokens print nothing,
// byte tokens are reassembled into characters, SPM's "▁" becomes a space
// and byte-level characters become their bytes. An invalid or incomplete
// UTF-8 sequence becomes U+FFFD, one per byte that cannot start a
// character. Out-of-range ids are skipped.
//
// The first token's leading space follows llama.cpp: for an SPM vocabulary
// with a dummy prefix it is dropped (so Decode(Encode(s, false)) == s),
// except when the ids start with BOS, where it stays
// (Decode(Encode(s, true)) == " "+s). Use DecodeContinuation for ids that
// continue earlier text, such as generated tokens.
func (t *Tokenizer) Decode(ids []int32) string { return t.decode(ids, false) }

// DecodeContinuation decodes ids that continue earlier text (a completion
// after its prompt): like Decode, but the first token keeps its leading
// space.
func (t *Tokenizer) DecodeContinuation(ids []int32) string { return t.decode(ids, true) }

func (t *Tokenizer) decode(ids []int32, cont bool) string {
	n := 0
	for _, id := range ids {
		n += len(t.piece(id))
	}
	buf := make([]byte, 0, n)
	for i, id := range ids {
		if i == 0 && !cont {
			buf = append(buf, t.leading(id)...)
		} else {
			buf = append(buf, t.piece(id)...)
		}
	}
	if utf8.Valid(buf) {
		return string(buf)
	}
	return string(appendValid(nil, buf, true))
}

// appendValid appends the decidable prefix of b to dst with every invalid
// byte replaced by U+FFFD, exactly as utf8.DecodeRune walks it. Unless
// final, an incomplete sequence at the end of b is left out; the returned
// count says how many bytes of b were consumed.
func appendValid(dst, b []byte, final bool) []byte {
	dst, _ = appendValidN(dst, b, final)
	return dst
}

func appendValidN(dst, b []byte, final bool) ([]byte, int) {
	i := 0
	for i < len(b) {
		if c := b[i]; c < utf8.RuneSelf {
			dst = append(dst, c)
			i++
			continue
		}
		r, w := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && w == 1 {
			if !final && !utf8.FullRune(b[i:]) {
				break // may still complete: wait for more bytes
			}
			dst = append(dst, "\uFFFD"...)
			i++
			continue
		}
		dst = append(dst, b[i:i+w]...)
		i += w
	}
	return dst, i
}

// Decoder turns a stream of ids into text as they arrive. The text of
// every Push, then Flush, concatenated, equals Decode (or, for a
// continuation decoder, DecodeContinuation) of all the ids pushed: a
// character split across tokens (byte-fallback tokens, byte-level pieces)
// comes out whole with the token that completes it, and a sequence that
// can no longer become valid comes out as U+FFFD at once.
//
// A token whose piece is whole UTF-8 while nothing is held back is
// returned without copying or allocating. A Decoder is not safe for
// concurrent use; make one per stream.
type Decoder struct {
	t       *Tokenizer
	cont    bool
	started bool
	n       int     // bytes held back
	pending [4]byte // an incomplete UTF-8 sequence (at most 3 bytes)
	buf     []byte  // scratch: held-back bytes and the new piece
	out     []byte  // scratch: the text to return
}

// NewDecoder returns a streaming decoder equivalent to Decode.
func (t *Tokenizer) NewDecoder() *Decoder { return &Decoder{t: t} }

// NewContinuationDecoder returns a streaming decoder equivalent to
// DecodeContinuation: for generated tokens that follow a prompt, where the
// first token's leading space is part of the text.
func (t *Tokenizer) NewContinuationDecoder() *Decoder { return &Decoder{t: t, cont: true} }

// Push adds one id and returns the text that is now complete.
func (d *Decoder) Push(id int32) string {
	var p string
	if !d.started && !d.cont {
		p = d.t.leading(id)
	} else {
		p = d.t.piece(id)
	}
	d.started = true
	if d.n == 0 && (len(p) == 0 || id >= 0 && int(id) < len(d.t.pieceOK) && d.t.pieceOK[id]) {
		return p // whole characters, nothing held back: no copy
	}
	b := append(append(d.buf[:0], d.pending[:d.n]...), p...)
	out, used := appendValidN(d.out[:0], b, false)
	d.n = copy(d.pending[:], b[used:])
	d.buf, d.out = b[:0], out[:0]
	return string(out)
}

// Flush ends the stream: a dangling incomplete sequence comes out as
// U+FFFD. The decoder is then ready for a new stream.
func (d *Decoder) Flush() string {
	var out string
	if d.n > 0 {
		out = string(appendValid(nil, d.pending[:d.n], true))
	}
	d.Reset()
	return out
}

// Reset drops any held-back bytes and starts a new stream.
func (d *Decoder) Reset() {
	d.n = 0
	d.started = false
}
