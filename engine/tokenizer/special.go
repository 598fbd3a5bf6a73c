package tokenizer

import (
	"sort"
	"strings"
)

// specialIndex finds the special-token texts (control, user-defined and
// unknown tokens) that occur in a text.
//
// Matching follows llama.cpp's tokenizer_st_partition: the special tokens
// are taken longest first, and each one splits every stretch of text that
// is still raw at all of its occurrences. The index only makes that cheap:
// one pass over the text finds which special tokens occur at all (by their
// first two bytes), and only those run the split.
type specialIndex struct {
	order map[int32]int32    // id → position in longest-first order
	first [256]bool          // bytes that start some special text
	one   [256][]int32       // one-byte special texts by their byte
	two   map[uint16][]int32 // longer texts by their first two bytes
}

func buildSpecialIndex(texts []string, types []TokenType) specialIndex {
	var ids []int32
	for i, s := range texts {
		if s == "" {
			continue
		}
		switch types[i] {
		case TypeControl, TypeUserDefined, TypeUnknown:
			ids = append(ids, int32(i))
		}
	}
	sort.SliceStable(ids, func(a, b int) bool { return len(texts[ids[a]]) > len(texts[ids[b]]) })
	x := specialIndex{order: make(map[int32]int32, len(ids)), two: make(map[uint16][]int32)}
	for pos, id := range ids {
		s := texts[id]
		x.order[id] = int32(pos)
		x.first[s[0]] = true
		if len(s) == 1 {
			x.one[s[0]] = append(x.one[s[0]], id)
		} else {
			k := uint16(s[0])<<8 | uint16(s[1])
			x.two[k] = append(x.two[k], id)
		}
	}
	return x
}

// frag is a stretch of the input: raw text [start, end), or a special
// token when id >= 0.
type frag struct {
	start, end int32
	id         int32
}

// partition splits text into raw stretches and special tokens. With
// special false only user-defined tokens are matched (llama.cpp does the
// same: they are ordinary text to the model, while control and unknown
// tokens must never come from user content).
func (t *Tokenizer) partition(text string, special bool, st *encodeState) []frag {
	frags := st.frags[:0]
	if len(text) == 0 {
		return frags
	}
	frags = append(frags, frag{0, int32(len(text)), -1})
	found := t.findSpecials(text, special, st)
	if len(found) == 0 {
		st.frags = frags
		return frags
	}
	next := st.frags2[:0]
	for _, id := range found {
		tok := t.texts[id]
		next = next[:0]
		for _, f := range frags {
			if f.id >= 0 {
				next = append(next, f)
				continue
			}
			s := int(f.start)
			for {
				k := strings.Index(text[s:f.end], tok)
				if k < 0 {
					break
				}
				k += s
				if k > s {
					next = append(next, frag{int32(s), int32(k), -1})
				}
				next = append(next, frag{int32(k), int32(k + len(tok)), id})
				s = k + len(tok)
			}
			if s < int(f.end) {
				next = append(next, frag{int32(s), f.end, -1})
			}
		}
		frags, next = next, frags
	}
	st.frags, st.frags2 = frags, next
	return frags
}

// findSpecials returns the special tokens that occur in text, longest
// first.
func (t *Tokenizer) findSpecials(text string, special bool, st *encodeState) []int32 {
	x := &t.specials
	found := st.found[:0]
	add := func(id int32) {
		ty := t.types[id]
		if !special && ty != TypeUserDefined {
			return
		}
		if len(found) < 16 {
			for _, f := range found {
				if f == id {
					return
				}
			}
		} else {
			if st.seen == nil {
				st.seen = make(map[int32]struct{})
			}
			if len(st.seen) == 0 {
				for _, f := range found {
					st.seen[f] = struct{}{}
				}
			}
			if _, dup := st.seen[id]; dup {
				return
			}
			st.seen[id] = struct{}{}
		}
		found = append(found, id)
	}
	for i := 0; i < len(text); i++ {
		c := text[i]
		if !x.first[c] {
			continue
		}
		for _, id := range x.one[c] {
			add(id)
		}
		if i+1 < len(text) {
			for _, id := range x.two[uint16(c)<<8|uint16(text[i+1])] {
				if strings.HasPrefix(text[i:], t.texts[id]) {
					add(id)
				}
			}
		}
	}
	clear(st.seen)
	sort.Slice(found, func(a, b int) bool { return x.order[found[a]] < x.order[found[b]] })
	st.found = found
	return found
}
