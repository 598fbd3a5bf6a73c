package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// preTokenizer names a hand-written equivalent of one of the split regexes
// byte-level BPE vocabularies are trained with. Go's regexp has no
// lookahead, and the regexes are small, so each is a scanner that returns
// where the match starting at a position ends, trying the alternatives in
// order exactly as a backtracking engine would.
type preTokenizer uint8

const (
	// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
	preGPT2 preTokenizer = iota
	// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
	preLlama3
	// Llama 3's with \p{N} in place of \p{N}{1,3}: every digit alone.
	preQwen2
	// Every \p{N} isolated first, then the GPT-2 split on what is between.
	preSmolLM
	// [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|
	// [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|
	// \p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
	preTekken
)

func (p preTokenizer) String() string {
	switch p {
	case preLlama3:
		return "llama3"
	case preQwen2:
		return "qwen2"
	case preSmolLM:
		return "smollm"
	case preTekken:
		return "tekken"
	}
	return "gpt2"
}

type preConfig struct {
	pre          preTokenizer
	ignoreMerges bool // a pre-token that is itself a token is emitted whole
	addBOS       bool // llama.cpp's add_bos default for this family
	exact        bool // the split is exactly the one the name stands for
}

// preConfigs maps tokenizer.ggml.pre to a split, following llama.cpp's
// llama-vocab.cpp. A name not listed here (and an absent key) gets the
// GPT-2 split. "default" does too: llama.cpp's "default" is a legacy chain
// of four regexes that no current converter writes, so it is not exact.
var preConfigs = map[string]preConfig{
	"default": {pre: preGPT2},

	"gpt2": {pre: preGPT2, exact: true}, "gpt-2": {pre: preGPT2, exact: true},
	"phi-2": {pre: preGPT2, exact: true}, "roberta-bpe": {pre: preGPT2, exact: true},
	"mpt": {pre: preGPT2, exact: true}, "olmo": {pre: preGPT2, exact: true},
	"jais": {pre: preGPT2, exact: true}, "gigachat": {pre: preGPT2, exact: true},
	"jina-es": {pre: preGPT2, exact: true}, "jina-de": {pre: preGPT2, exact: true},
	"jina-v1-en": {pre: preGPT2, exact: true}, "jina-v2-es": {pre: preGPT2, exact: true},
	"jina-v2-de": {pre: preGPT2, exact: true}, "jina-v2-code": {pre: preGPT2, exact: true},

	"llama3":    {pre: preLlama3, ignoreMerges: true, addBOS: true, exact: true},
	"llama-v3":  {pre: preLlama3, ignoreMerges: true, addBOS: true, exact: true},
	"llama-bpe": {pre: preLlama3, ignoreMerges: true, addBOS: true, exact: true},
	"falcon3":   {pre: preLlama3, ignoreMerges: true, addBOS: true, exact: true},
	"pixtral":   {pre: preLlama3, ignoreMerges: true, addBOS: true, exact: true},
	"dbrx":      {pre: preLlama3, exact: true},
	"smaug-bpe": {pre: preLlama3, exact: true},

	"qwen2": {pre: preQwen2, exact: true}, "deepseek-r1-qwen": {pre: preQwen2, exact: true},
	"megrez": {pre: preQwen2, exact: true}, "stablelm2": {pre: preQwen2, exact: true},

	"smollm": {pre: preSmolLM, exact: true}, "starcoder": {pre: preSmolLM, exact: true},
	"refact": {pre: preSmolLM, exact: true}, "command-r": {pre: preSmolLM, exact: true},
	"codeshell": {pre: preSmolLM, exact: true}, "exaone": {pre: preSmolLM, exact: true},
	"minerva-7b": {pre: preSmolLM, exact: true},

	"tekken": {pre: preTekken, ignoreMerges: true, addBOS: true, exact: true},
}

// split appends to ends the end offset of every pre-token of s, in order
// (the first starts at 0, each next one where the previous ended).
func (p preTokenizer) split(s string, ends []int32) []int32 {
	if p == preSmolLM {
		// \p{N} isolated, then the GPT-2 split on the runs between.
		start := 0
		for i := 0; i < len(s); {
			r, w := utf8.DecodeRuneInString(s[i:])
			if !isNumber(r) {
				i += w
				continue
			}
			ends = preGPT2.split2(s, start, i, ends)
			ends = append(ends, int32(i+w))
			i += w
			start = i
		}
		return preGPT2.split2(s, start, len(s), ends)
	}
	return p.split2(s, 0, len(s), ends)
}

// split2 splits s[from:to] (to is where the text ends for the regex: a
// lookahead at to sees the end of input).
func (p preTokenizer) split2(s string, from, to int, ends []int32) []int32 {
	s = s[:to]
	for i := from; i < to; {
		var j int
		switch p {
		case preLlama3:
			j = matchLlama3(s, i, 3)
		case preQwen2:
			j = matchLlama3(s, i, 1)
		case preTekken:
			j = matchTekken(s, i)
		default:
			j = matchGPT2(s, i)
		}
		if j <= i { // cannot happen: every character matches some alternative
			_, w := utf8.DecodeRuneInString(s[i:])
			j = i + w
		}
		ends = append(ends, int32(j))
		i = j
	}
	return ends
}

// Character classes. Invalid UTF-8 decodes as utf8.RuneError (width 1), a
// symbol: "other" in every regex.

func isLetter(r rune) bool {
	if r < utf8.RuneSelf {
		return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z'
	}
	return unicode.IsLetter(r)
}

func isNumber(r rune) bool {
	if r < utf8.RuneSelf {
		return '0' <= r && r <= '9'
	}
	return unicode.IsNumber(r)
}

// isSpace is \s: Unicode White_Space.
func isSpace(r rune) bool {
	if r < utf8.RuneSelf {
		return r == ' ' || '\t' <= r && r <= '\r'
	}
	return unicode.IsSpace(r)
}

// isOther is [^\s\p{L}\p{N}].
func isOther(r rune) bool { return !isSpace(r) && !isLetter(r) && !isNumber(r) }

func runeAt(s string, i int) (rune, int) {
	if c := s[i]; c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRuneInString(s[i:])
}

// runEnd returns the end of the run of characters in class starting at i.
func runEnd(s string, i int, class func(rune) bool) int {
	for i < len(s) {
		r, w := runeAt(s, i)
		if !class(r) {
			break
		}
		i += w
	}
	return i
}

// contraction matches the contractions 's 't 're 've 'm 'll 'd at s[i], an
// apostrophe; fold makes the letters ASCII case-insensitive (llama.cpp's
// reading of (?i:...)). It returns the end of the match or -1.
func contraction(s string, i int, fold bool) int {
	low := func(k int) byte {
		if k >= len(s) {
			return 0
		}
		c := s[k]
		if fold && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		return c
	}
	switch c1 := low(i + 1); c1 {
	case 's', 't', 'm', 'd':
		return i + 2
	case 'r', 'v':
		if low(i+2) == 'e' {
			return i + 3
		}
	case 'l':
		if low(i+2) == 'l' {
			return i + 3
		}
	}
	return -1
}

// matchSpaces matches the whitespace alternatives at s[i], a space
// character: \s*[\r\n]+ when withNewline, then \s+(?!\S), then \s+.
func matchSpaces(s string, i int, withNewline bool) int {
	end, lastNL, lastStart := i, -1, i
	for end < len(s) {
		r, w := runeAt(s, end)
		if !isSpace(r) {
			break
		}
		if r == '\r' || r == '\n' {
			lastNL = end + w
		}
		lastStart = end
		end += w
	}
	if withNewline && lastNL > 0 {
		return lastNL // \s*[\r\n]+ ends after the run's last newline
	}
	if end == len(s) {
		return end // \s+(?!\S) at the end of input
	}
	if lastStart > i {
		return lastStart // \s+(?!\S) gives back the last space
	}
	return end // \s+
}

func matchGPT2(s string, i int) int {
	r, w := runeAt(s, i)
	if r == '\'' {
		if j := contraction(s, i, false); j > 0 {
			return j
		}
	}
	// ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+'
	j := i
	if r == ' ' && i+w < len(s) {
		j = i + w
	}
	for _, class := range [...]func(rune) bool{isLetter, isNumber, isOther} {
		if c, _ := runeAt(s, j); class(c) {
			return runEnd(s, j, class)
		}
		if j != i { // the optional space backtracks
			if class(r) {
				return runEnd(s, i, class)
			}
		}
	}
	return matchSpaces(s, i, false)
}

func matchLlama3(s string, i int, maxDigits int) int {
	r, w := runeAt(s, i)
	if r == '\'' {
		if j := contraction(s, i, true); j > 0 {
			return j
		}
	}
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if isLetter(r) {
		return runEnd(s, i, isLetter)
	}
	if r != '\r' && r != '\n' && !isNumber(r) && i+w < len(s) {
		if c, _ := runeAt(s, i+w); isLetter(c) {
			return runEnd(s, i+w, isLetter)
		}
	}
	// \p{N}{1,maxDigits}
	if isNumber(r) {
		j := i
		for k := 0; k < maxDigits && j < len(s); k++ {
			c, cw := runeAt(s, j)
			if !isNumber(c) {
				break
			}
			j += cw
		}
		return j
	}
	// ' ?[^\s\p{L}\p{N}]+[\r\n]*'
	if j, ok := matchPunct(s, i, r, w, false); ok {
		return j
	}
	return matchSpaces(s, i, true)
}

// matchPunct matches ' ?[^\s\p{L}\p{N}]+[\r\n]*' (with '/' in the trailing
// class when slash is set: Tekken's [\r\n/]*).
func matchPunct(s string, i int, r rune, w int, slash bool) (int, bool) {
	j := i
	if r == ' ' {
		j = i + w
	}
	if j >= len(s) {
		return 0, false
	}
	if c, _ := runeAt(s, j); !isOther(c) {
		return 0, false // and without the space, s[i] is a space: no match
	}
	j = runEnd(s, j, isOther)
	for j < len(s) && (s[j] == '\r' || s[j] == '\n' || slash && s[j] == '/') {
		j++
	}
	return j, true
}

// Tekken's letter classes.
func isUpperish(r rune) bool { // [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]
	if r < utf8.RuneSelf {
		return 'A' <= r && r <= 'Z'
	}
	return unicode.In(r, unicode.Lu, unicode.Lt, unicode.Lm, unicode.Lo, unicode.M)
}

func isLowerish(r rune) bool { // [\p{Ll}\p{Lm}\p{Lo}\p{M}]
	if r < utf8.RuneSelf {
		return 'a' <= r && r <= 'z'
	}
	return unicode.In(r, unicode.Ll, unicode.Lm, unicode.Lo, unicode.M)
}

// isTekkenPrefix is [^\r\n\p{L}\p{N}].
func isTekkenPrefix(r rune) bool { return r != '\r' && r != '\n' && !isLetter(r) && !isNumber(r) }

// tekkenWord matches U*L+ (lowerRequired) or U+L* from s[j], where U and L
// are the upper- and lower-ish classes, which overlap: the greedy U* gives
// back characters until one can start L+.
func tekkenWord(s string, j int, lowerRequired bool) int {
	// positions of the U run starting at j
	var buf [32]int
	pos := append(buf[:0], j)
	k := j
	for k < len(s) {
		c, cw := runeAt(s, k)
		if !isUpperish(c) {
			break
		}
		k += cw
		pos = append(pos, k)
	}
	if !lowerRequired {
		if len(pos) == 1 {
			return -1 // U+ needs one
		}
		return runEnd(s, k, isLowerish)
	}
	for n := len(pos) - 1; n >= 0; n-- {
		p := pos[n]
		if p >= len(s) {
			continue
		}
		if c, _ := runeAt(s, p); isLowerish(c) {
			return runEnd(s, p, isLowerish)
		}
	}
	return -1
}

func matchTekken(s string, i int) int {
	r, w := runeAt(s, i)
	for _, lowerRequired := range [...]bool{true, false} {
		if isTekkenPrefix(r) && i+w < len(s) {
			if j := tekkenWord(s, i+w, lowerRequired); j > 0 {
				return j
			}
		}
		if j := tekkenWord(s, i, lowerRequired); j > 0 {
			return j
		}
	}
	if isNumber(r) {
		return i + w
	}
	if j, ok := matchPunct(s, i, r, w, true); ok {
		return j
	}
	return matchSpaces(s, i, true)
}
