package tokenizer

import (
	"unicode/utf8"
)

// spmSpace is U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's escaped space.
const spmSpace = "\u2581"

// maxPooledText is the longest input whose scratch goes back to the pool.
const maxPooledText = 1 << 20

// encodeState is the scratch one Encode call needs; it is pooled so that
// steady-state encoding allocates only its result.
type encodeState struct {
	buf    []byte
	syms   []symbol
	spmq   []spmBigram
	bpeq   []bpeBigram
	frags  []frag
	frags2 []frag
	found  []int32
	seen   map[int32]struct{}
	ends   []int32
}

// symbol is one node of the doubly linked list of pieces being merged:
// buf[start:start+n] (n == 0 once merged into its left neighbour) and, for
// BPE, its token id.
type symbol struct {
	start, n   int32
	prev, next int32
	id         int32
}

// Encode tokenizes plain text. Text that looks like a control token
// ("<s>", "<|eot_id|>") stays text: user content can never inject one.
// With addBOS, the BOS token (if the vocabulary has one) comes first;
// AddBOS says whether the model wants it.
func (t *Tokenizer) Encode(text string, addBOS bool) []int32 {
	return t.encode(text, addBOS, false)
}

// EncodeSpecial tokenizes text in which the texts of control, user-defined
// and unknown tokens ("<s>", "<|start_header_id|>") become those tokens:
// for prompts rendered from a chat template, never for raw user content.
// A rendered template often starts with BOS's text already; pass addBOS
// false then, or the prompt starts with two BOS tokens.
//
// Encoding needs about 30 bytes of scratch per input byte: callers bound
// the input (the router limits request bodies).
func (t *Tokenizer) EncodeSpecial(text string, addBOS bool) []int32 {
	return t.encode(text, addBOS, true)
}

func (t *Tokenizer) encode(text string, addBOS, special bool) []int32 {
	st := t.scratch.Get().(*encodeState)
	defer func() {
		if len(text) <= maxPooledText { // do not keep a huge input's scratch alive
			t.scratch.Put(st)
		}
	}()
	out := make([]int32, 0, len(text)/2+4)
	if addBOS && t.bos >= 0 {
		out = append(out, t.bos)
	}
	frags := t.partition(text, special, st)
	if t.kind == KindSPM {
		return t.encodeSPM(text, frags, out, st)
	}
	return t.encodeBPE(text, frags, out, st)
}

// ---- SentencePiece-style BPE ----

type spmBigram struct {
	left, right int32
	score       float32
	size        int32
}

// before orders the queue: the highest score first, then the leftmost.
func (a spmBigram) before(b spmBigram) bool {
	return a.score > b.score || a.score == b.score && a.left < b.left
}

func (t *Tokenizer) encodeSPM(text string, frags []frag, out []int32, st *encodeState) []int32 {
	prevSpecial := true // the dummy prefix goes before the first stretch of text
	for _, f := range frags {
		if f.id >= 0 {
			out = append(out, f.id)
			prevSpecial = true
			continue
		}
		buf := st.buf[:0]
		if t.addSpacePrefix && prevSpecial {
			buf = append(buf, spmSpace...)
		}
		for _, c := range []byte(text[f.start:f.end]) {
			if c == ' ' {
				buf = append(buf, spmSpace...)
			} else {
				buf = append(buf, c)
			}
		}
		st.buf = buf
		out = t.spmSegment(st, buf, out)
		prevSpecial = false
	}
	return out
}

// spmSegment encodes one escaped stretch of text: start from its
// characters and repeatedly merge the adjacent pair whose concatenation is
// the vocabulary token of highest score (leftmost on ties), as
// SentencePiece's BPE and llama.cpp's llm_tokenizer_spm do. Characters left
// that are not tokens fall back to <0xXX> byte tokens.
//
// When no token has "▁" right after another character (t.spmSplit, true of
// Llama's and TinyStories' vocabularies), no merge can join a character to
// a following "▁", so the text is cut before every "▁" that follows
// another character and the words merge separately: the same result, with
// small heaps.
func (t *Tokenizer) spmSegment(st *encodeState, text []byte, out []int32) []int32 {
	if !t.spmSplit {
		return t.spmMerge(st, text, out)
	}
	start := 0
	for i := 0; i+len(spmSpace) <= len(text); {
		if string(text[i:i+len(spmSpace)]) != spmSpace {
			i++
			continue
		}
		if i > start && !(i >= len(spmSpace) && string(text[i-len(spmSpace):i]) == spmSpace) {
			out = t.spmMerge(st, text[start:i], out)
			start = i
		}
		i += len(spmSpace)
	}
	return t.spmMerge(st, text[start:], out)
}

// spmMerge runs the merges on one piece of escaped text.
func (t *Tokenizer) spmMerge(st *encodeState, text []byte, out []int32) []int32 {
	syms := st.syms[:0]
	for off := 0; off < len(text); {
		_, w := utf8.DecodeRune(text[off:]) // an invalid byte is a character of its own
		idx := int32(len(syms))
		syms = append(syms, symbol{start: int32(off), n: int32(w), prev: idx - 1, next: idx + 1})
		off += w
	}
	if len(syms) == 0 {
		return out
	}
	syms[len(syms)-1].next = -1
	q := st.spmq[:0]
	for i := int32(1); i < int32(len(syms)); i++ {
		q = t.spmTry(q, syms, text, i-1, i)
	}
	for len(q) > 0 {
		var b spmBigram
		b, q = pop(q)
		l, r := &syms[b.left], &syms[b.right]
		if l.n == 0 || r.n == 0 || l.n+r.n != b.size {
			continue // stale: one side has merged since
		}
		l.n += r.n
		r.n = 0
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = b.left
		}
		q = t.spmTry(q, syms, text, l.prev, b.left)
		q = t.spmTry(q, syms, text, b.left, l.next)
	}
	st.syms, st.spmq = syms, q

	for i := int32(0); i != -1; i = syms[i].next {
		s := &syms[i]
		piece := text[s.start : s.start+s.n]
		if id, ok := t.lookupBytes(piece); ok {
			out = append(out, id)
			continue
		}
		out = t.spmFallback(piece, out)
	}
	return out
}

func (t *Tokenizer) spmTry(q []spmBigram, syms []symbol, text []byte, l, r int32) []spmBigram {
	if l < 0 || r < 0 {
		return q
	}
	a, b := &syms[l], &syms[r]
	id, ok := t.lookupBytes(text[a.start : b.start+b.n])
	if !ok {
		return q
	}
	return push(q, spmBigram{left: l, right: r, score: t.scores[id], size: a.n + b.n})
}

// spmFallback encodes a character that is not a token: its UTF-8 bytes as
// byte tokens, or the unknown token when the vocabulary has no byte tokens
// (or lacks one of them). With neither, the character is dropped.
func (t *Tokenizer) spmFallback(piece []byte, out []int32) []int32 {
	if !t.hasBytes {
		if t.unk >= 0 {
			out = append(out, t.unk)
		}
		return out
	}
	for _, c := range piece {
		if id := t.byteTok[c]; id >= 0 {
			out = append(out, id)
		} else if t.unk >= 0 {
			out = append(out, t.unk)
		}
	}
	return out
}

// bigram is a candidate merge; before orders the merge queue (a binary
// min-heap by before, so the best merge pops first).
type bigram[T any] interface{ before(T) bool }

func push[T bigram[T]](q []T, x T) []T {
	q = append(q, x)
	for i := len(q) - 1; i > 0; {
		p := (i - 1) / 2
		if !q[i].before(q[p]) {
			break
		}
		q[i], q[p] = q[p], q[i]
		i = p
	}
	return q
}

func pop[T bigram[T]](q []T) (T, []T) {
	top := q[0]
	n := len(q) - 1
	q[0] = q[n]
	q = q[:n]
	for i := 0; ; {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && q[r].before(q[l]) {
			m = r
		}
		if !q[m].before(q[i]) {
			break
		}
		q[i], q[m] = q[m], q[i]
		i = m
	}
	return top, q
}

// ---- GPT-2 byte-level BPE ----

type bpeBigram struct {
	left, right int32
	rank        int32
	lid, rid    int32 // the ids the pair had when queued
	id          int32 // the merged token
}

// before orders the queue: the lowest rank first, then the leftmost.
func (a bpeBigram) before(b bpeBigram) bool {
	return a.rank < b.rank || a.rank == b.rank && a.left < b.left
}

func (t *Tokenizer) encodeBPE(text string, frags []frag, out []int32, st *encodeState) []int32 {
	for _, f := range frags {
		if f.id >= 0 {
			out = append(out, f.id)
			continue
		}
		seg := text[f.start:f.end]
		ends := t.pre.split(seg, st.ends[:0])
		st.ends = ends
		start := int32(0)
		for _, e := range ends {
			word := seg[start:e]
			start = e
			if t.cache == nil || len(word) < 3 || len(word) > cacheMaxWord {
				out = t.bpeWord(st, word, out)
				continue
			}
			var hit bool
			if out, hit = t.cache.appendTo(word, out); hit {
				continue
			}
			n := len(out)
			out = t.bpeWord(st, word, out)
			t.cache.put(word, out[n:])
		}
	}
	return out
}

// bpeWord encodes one pre-token: its bytes become byte-level characters,
// then the adjacent pair of lowest merge rank (leftmost on ties) merges
// until no ranked pair is left, as GPT-2's and llama.cpp's BPE do.
func (t *Tokenizer) bpeWord(st *encodeState, word string, out []int32) []int32 {
	if len(word) == 0 {
		return out
	}
	if len(word) == 1 {
		return t.bpeEmit(t.byteLevel[word[0]], out)
	}
	if t.ignoreMerges {
		buf := appendByteLevel(st.buf[:0], word)
		st.buf = buf
		if id, ok := t.lookupBytes(buf); ok {
			return append(out, id)
		}
	}
	syms := st.syms[:0]
	for i := 0; i < len(word); i++ {
		idx := int32(i)
		syms = append(syms, symbol{start: idx, n: 1, prev: idx - 1, next: idx + 1, id: t.byteLevel[word[i]]})
	}
	syms[len(syms)-1].next = -1
	q := st.bpeq[:0]
	for i := int32(1); i < int32(len(syms)); i++ {
		q = t.bpeTry(q, syms, i-1, i)
	}
	for len(q) > 0 {
		var b bpeBigram
		b, q = pop(q)
		l, r := &syms[b.left], &syms[b.right]
		if l.n == 0 || r.n == 0 || l.id != b.lid || r.id != b.rid || l.next != b.right {
			continue // stale
		}
		l.n += r.n
		l.id = b.id
		r.n = 0
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = b.left
		}
		q = t.bpeTry(q, syms, l.prev, b.left)
		q = t.bpeTry(q, syms, b.left, l.next)
	}
	st.syms, st.bpeq = syms, q
	for i := int32(0); i != -1; i = syms[i].next {
		out = t.bpeEmit(syms[i].id, out)
	}
	return out
}

// bpeEmit appends a final symbol. A byte whose byte-level character is not
// in the vocabulary becomes the unknown token, or is dropped (llama.cpp
// drops it).
func (t *Tokenizer) bpeEmit(id int32, out []int32) []int32 {
	if id >= 0 {
		return append(out, id)
	}
	if t.unk >= 0 {
		return append(out, t.unk)
	}
	return out
}

func (t *Tokenizer) bpeTry(q []bpeBigram, syms []symbol, l, r int32) []bpeBigram {
	if l < 0 || r < 0 {
		return q
	}
	a, b := syms[l].id, syms[r].id
	if a < 0 || b < 0 {
		return q
	}
	m, ok := t.merges[mergeKey(a, b)]
	if !ok {
		return q
	}
	return push(q, bpeBigram{left: l, right: r, rank: m.rank, lid: a, rid: b, id: m.id})
}

// byteToUnicode is GPT-2's bytes_to_unicode: the printable bytes '!'..'~',
// '¡'..'¬' and '®'..'ÿ' stand for themselves; the other 68 bytes map, in
// order, to U+0100 onwards, so every byte is a visible character.
var (
	byteToUnicode [256]string
	unicodeToByte = map[rune]byte{}
)

func init() {
	n := rune(0)
	for b := 0; b < 256; b++ {
		r := rune(b)
		if !('!' <= b && b <= '~' || 0xA1 <= b && b <= 0xAC || 0xAE <= b && b <= 0xFF) {
			r = 256 + n
			n++
		}
		byteToUnicode[b] = string(r)
		unicodeToByte[r] = byte(b)
	}
}

func appendByteLevel(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		dst = append(dst, byteToUnicode[s[i]]...)
	}
	return dst
}

// decodeByteLevel maps a byte-level token text back to bytes. A character
// outside the table (not produced by the byte-level alphabet) is kept as
// its own UTF-8.
func decodeByteLevel(dst []byte, s string) []byte {
	for _, r := range s {
		if b, ok := unicodeToByte[r]; ok {
			dst = append(dst, b)
		} else {
			dst = utf8.AppendRune(dst, r)
		}
	}
	return dst
}
