package tokenizer

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/duet-llm/duet/engine/gguf"
)

// Errors FromGGUF returns, wrapped with the detail of what was wrong.
var (
	ErrUnsupported = errors.New("tokenizer: unsupported tokenizer model")
	ErrMissing     = errors.New("tokenizer: required metadata missing")
	ErrBadVocab    = errors.New("tokenizer: malformed vocabulary")
	ErrBadMerges   = errors.New("tokenizer: malformed merges")
	ErrSpecialID   = errors.New("tokenizer: special token id out of range")
)

// Kinds of tokenizer, as Kind reports them.
const (
	KindSPM = "spm" // tokenizer.ggml.model = "llama": SentencePiece-style BPE over scores
	KindBPE = "bpe" // tokenizer.ggml.model = "gpt2": GPT-2 byte-level BPE over ranked merges
)

// TokenType is a vocabulary entry's type as GGUF stores it
// (tokenizer.ggml.token_type, the values of llama.cpp's llama_token_type).
type TokenType int32

// The token types.
const (
	TypeUndefined   TokenType = 0
	TypeNormal      TokenType = 1
	TypeUnknown     TokenType = 2
	TypeControl     TokenType = 3
	TypeUserDefined TokenType = 4
	TypeUnused      TokenType = 5
	TypeByte        TokenType = 6
)

func (t TokenType) String() string {
	switch t {
	case TypeUndefined:
		return "undefined"
	case TypeNormal:
		return "normal"
	case TypeUnknown:
		return "unknown"
	case TypeControl:
		return "control"
	case TypeUserDefined:
		return "user-defined"
	case TypeUnused:
		return "unused"
	case TypeByte:
		return "byte"
	}
	return fmt.Sprintf("type(%d)", int32(t))
}

// GGUF metadata keys read by FromGGUF.
const (
	keyModel        = "tokenizer.ggml.model"
	keyPre          = "tokenizer.ggml.pre"
	keyTokens       = "tokenizer.ggml.tokens"
	keyScores       = "tokenizer.ggml.scores"
	keyTypes        = "tokenizer.ggml.token_type"
	keyMerges       = "tokenizer.ggml.merges"
	keyBOS          = "tokenizer.ggml.bos_token_id"
	keyEOS          = "tokenizer.ggml.eos_token_id"
	keyUNK          = "tokenizer.ggml.unknown_token_id"
	keyPAD          = "tokenizer.ggml.padding_token_id"
	keyEOT          = "tokenizer.ggml.eot_token_id"
	keyEOM          = "tokenizer.ggml.eom_token_id"
	keyAddBOS       = "tokenizer.ggml.add_bos_token"
	keyAddEOS       = "tokenizer.ggml.add_eos_token"
	keyAddPrefix    = "tokenizer.ggml.add_space_prefix"
	keyChatTemplate = "tokenizer.chat_template"
)

// eogTexts are token texts that end a turn. As llama.cpp does, a token
// with one of these texts is treated as a control token (whatever type the
// file gives it: converters have marked some user-defined) and ends
// generation.
var eogTexts = []string{
	"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
	"<|eom_id|>", "<EOT>", "<|end_of_text|>",
}

// Tokenizer turns text into token ids and back for one vocabulary. It is
// immutable once built and safe for concurrent use.
type Tokenizer struct {
	kind   string
	texts  []string
	types  []TokenType
	scores []float32
	ids    map[string]int32 // token text → id

	// pieces[id] is what Decode emits for id; pieceOK[id] reports that the
	// piece is valid UTF-8 on its own (the Decoder's zero-copy path).
	pieces  []string
	pieceOK []bool

	bos, eos, unk, pad int32 // -1: none
	eog                []int32
	addBOS, addEOS     bool
	addSpacePrefix     bool
	chatTemplate       string

	// SPM
	byteTok  [256]int32 // <0xXX> byte tokens (-1: none)
	hasBytes bool
	spmSplit bool // no token has "▁" after another character (see spmSegment)

	// BPE
	pre          preTokenizer
	preName      string
	preKnown     bool
	ignoreMerges bool
	merges       map[uint64]merge // (left id, right id) → rank and result
	cache        *wordCache       // pre-token → ids
	byteLevel    [256]int32       // id of the byte-level character of each byte (-1: none)

	// special-token matching (see special.go)
	specials specialIndex

	scratch sync.Pool // *encodeState
}

type merge struct{ rank, id int32 }

func mergeKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// FromGGUF builds the tokenizer that a model file's metadata describes.
// Every array length, special id and merge is checked: a malformed
// vocabulary is an error, never a panic.
func FromGGUF(md *gguf.Metadata) (*Tokenizer, error) {
	if md == nil {
		return nil, fmt.Errorf("%w: no metadata", ErrMissing)
	}
	model, err := md.String(keyModel)
	if err != nil {
		if errors.Is(err, gguf.ErrKeyNotFound) {
			return nil, fmt.Errorf("%w: %s", ErrMissing, keyModel)
		}
		return nil, fmt.Errorf("%w: %v", ErrBadVocab, err)
	}
	t := &Tokenizer{bos: -1, eos: -1, unk: -1, pad: -1}
	switch model {
	case "llama":
		t.kind = KindSPM
		// llama.cpp's SPM defaults; the keys below override them.
		t.addBOS, t.addSpacePrefix = true, true
	case "gpt2":
		t.kind = KindBPE
	default:
		return nil, fmt.Errorf("%w: %s = %q (supported: \"llama\", \"gpt2\")", ErrUnsupported, keyModel, model)
	}

	if err := t.loadVocab(md); err != nil {
		return nil, err
	}
	if err := t.loadSpecialIDs(md); err != nil {
		return nil, err
	}
	if t.kind == KindBPE {
		if err := t.loadBPE(md); err != nil {
			return nil, err
		}
	}
	// Explicit flags override the defaults of the kind and pre-tokenizer.
	for _, f := range []struct {
		key string
		dst *bool
	}{{keyAddBOS, &t.addBOS}, {keyAddEOS, &t.addEOS}, {keyAddPrefix, &t.addSpacePrefix}} {
		if v, ok, err := optBool(md, f.key); err != nil {
			return nil, err
		} else if ok {
			*f.dst = v
		}
	}
	if t.kind == KindBPE {
		// llama.cpp never adds a dummy prefix to byte-level BPE input;
		// honouring the flag only in decode would break round trips.
		t.addSpacePrefix = false
	}
	if s, ok, err := optString(md, keyChatTemplate); err != nil {
		return nil, err
	} else if ok {
		t.chatTemplate = s
	}
	t.spmSplit = t.kind == KindSPM && !anyInnerSpace(t.texts)
	t.buildPieces()
	t.specials = buildSpecialIndex(t.texts, t.types)
	t.scratch.New = func() any { return new(encodeState) }
	return t, nil
}

func (t *Tokenizer) loadVocab(md *gguf.Metadata) error {
	toks, err := md.Strings(keyTokens)
	if err != nil {
		if errors.Is(err, gguf.ErrKeyNotFound) {
			return fmt.Errorf("%w: %s", ErrMissing, keyTokens)
		}
		return fmt.Errorf("%w: %v", ErrBadVocab, err)
	}
	n := len(toks)
	if n == 0 {
		return fmt.Errorf("%w: empty %s", ErrBadVocab, keyTokens)
	}
	if n > math.MaxInt32 {
		return fmt.Errorf("%w: %d tokens", ErrBadVocab, n)
	}
	t.texts = toks
	t.scores = make([]float32, n)
	if md.Has(keyScores) {
		sc, err := md.Float32s(keyScores)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadVocab, err)
		}
		if len(sc) != n {
			return fmt.Errorf("%w: %d scores for %d tokens", ErrBadVocab, len(sc), n)
		}
		for i, s := range sc {
			if s != s {
				return fmt.Errorf("%w: score of token %d is NaN", ErrBadVocab, i)
			}
		}
		copy(t.scores, sc)
	}
	t.types = make([]TokenType, n)
	if md.Has(keyTypes) {
		ty, err := md.Int32s(keyTypes)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadVocab, err)
		}
		if len(ty) != n {
			return fmt.Errorf("%w: %d token types for %d tokens", ErrBadVocab, len(ty), n)
		}
		for i, v := range ty {
			// Values outside the known set are kept as undefined
			// tokens, as llama.cpp does: never produced, never printed.
			if v < int32(TypeUndefined) || v > int32(TypeByte) {
				v = int32(TypeUndefined)
			}
			t.types[i] = TokenType(v)
		}
	} else {
		for i := range t.types {
			t.types[i] = TypeNormal
		}
	}
	// Turn-ending texts are control tokens whatever the file says.
	for i, s := range toks {
		if t.types[i] != TypeControl && isEOGText(s) {
			t.types[i] = TypeControl
		}
	}

	// Text → id. Two tokens with one text are an error when both can be
	// produced or matched; an unused or undefined duplicate loses quietly.
	t.ids = make(map[string]int32, n)
	for i, s := range toks {
		if s == "" || !reachable(t.types[i]) {
			continue
		}
		if j, dup := t.ids[s]; dup {
			return fmt.Errorf("%w: tokens %d and %d are both %q", ErrBadVocab, j, i, s)
		}
		t.ids[s] = int32(i)
	}
	for i, s := range toks {
		if s == "" || reachable(t.types[i]) {
			continue
		}
		if _, dup := t.ids[s]; !dup {
			t.ids[s] = int32(i)
		}
	}

	for i := range t.byteTok {
		t.byteTok[i] = -1
	}
	if t.kind == KindSPM {
		for i, s := range toks {
			if t.types[i] != TypeByte {
				continue
			}
			b, ok := parseByteToken(s)
			if !ok {
				return fmt.Errorf("%w: byte token %d is %q, want <0xXX>", ErrBadVocab, i, s)
			}
			if j := t.byteTok[b]; j >= 0 {
				return fmt.Errorf("%w: tokens %d and %d are both byte 0x%02X", ErrBadVocab, j, i, b)
			}
			t.byteTok[b] = int32(i)
			t.hasBytes = true
		}
	}
	return nil
}

func reachable(ty TokenType) bool {
	return ty != TypeUnused && ty != TypeUndefined
}

func isEOGText(s string) bool {
	for _, e := range eogTexts {
		if s == e {
			return true
		}
	}
	return false
}

// parseByteToken reads "<0xAB>" (hex digits of either case).
func parseByteToken(s string) (byte, bool) {
	if len(s) != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>' {
		return 0, false
	}
	hi, ok1 := unhex(s[3])
	lo, ok2 := unhex(s[4])
	return hi<<4 | lo, ok1 && ok2
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

func (t *Tokenizer) loadSpecialIDs(md *gguf.Metadata) error {
	n := int64(len(t.texts))
	for _, s := range []struct {
		key string
		dst *int32
	}{{keyBOS, &t.bos}, {keyEOS, &t.eos}, {keyUNK, &t.unk}, {keyPAD, &t.pad}} {
		id, err := optID(md, s.key, n)
		if err != nil {
			return err
		}
		*s.dst = id
	}
	eot, err := optID(md, keyEOT, n)
	if err != nil {
		return err
	}
	eom, err := optID(md, keyEOM, n)
	if err != nil {
		return err
	}
	addEOG := func(id int32) {
		if id < 0 {
			return
		}
		for _, e := range t.eog {
			if e == id {
				return
			}
		}
		t.eog = append(t.eog, id)
	}
	addEOG(t.eos)
	addEOG(eot)
	addEOG(eom)
	for i, s := range t.texts {
		if isEOGText(s) && t.types[i] == TypeControl {
			addEOG(int32(i))
		}
	}
	sort.Slice(t.eog, func(i, j int) bool { return t.eog[i] < t.eog[j] })
	return nil
}

// optID reads an optional token id: absent, -1 or 0xFFFFFFFF mean none.
func optID(md *gguf.Metadata, key string, n int64) (int32, error) {
	if !md.Has(key) {
		return -1, nil
	}
	v, err := md.Int(key)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrBadVocab, err)
	}
	if v == -1 || v == 0xFFFFFFFF {
		return -1, nil
	}
	if v < 0 || v >= n {
		return 0, fmt.Errorf("%w: %s = %d, vocabulary has %d tokens", ErrSpecialID, key, v, n)
	}
	return int32(v), nil
}

func optBool(md *gguf.Metadata, key string) (bool, bool, error) {
	if !md.Has(key) {
		return false, false, nil
	}
	v, err := md.Bool(key)
	if err != nil {
		return false, false, fmt.Errorf("%w: %v", ErrBadVocab, err)
	}
	return v, true, nil
}

func optString(md *gguf.Metadata, key string) (string, bool, error) {
	if !md.Has(key) {
		return "", false, nil
	}
	v, err := md.String(key)
	if err != nil {
		return "", false, fmt.Errorf("%w: %v", ErrBadVocab, err)
	}
	return v, true, nil
}

func (t *Tokenizer) loadBPE(md *gguf.Metadata) error {
	name, _, err := optString(md, keyPre)
	if err != nil {
		return err
	}
	cfg, known := preConfigs[name]
	t.pre, t.preName, t.preKnown = cfg.pre, cfg.pre.String(), known && cfg.exact
	t.ignoreMerges = cfg.ignoreMerges
	if cfg.addBOS {
		t.addBOS = true
	}

	for b := 0; b < 256; b++ {
		t.byteLevel[b] = -1
		if id, ok := t.ids[byteToUnicode[b]]; ok && encodable(t.types[id]) {
			t.byteLevel[b] = id
		}
	}

	lines, err := md.Strings(keyMerges)
	if err != nil {
		if errors.Is(err, gguf.ErrKeyNotFound) {
			return fmt.Errorf("%w: %s (a gpt2 tokenizer needs its merges)", ErrMissing, keyMerges)
		}
		return fmt.Errorf("%w: %v", ErrBadMerges, err)
	}
	if len(lines) > math.MaxInt32 {
		return fmt.Errorf("%w: %d merges", ErrBadMerges, len(lines))
	}
	t.cache = newWordCache()
	t.merges = make(map[uint64]merge, len(lines))
	var cat []byte
	for rank, line := range lines {
		// "left right", split at the first space after the first byte
		// (a left part may itself be a space), as llama.cpp splits it.
		sp := -1
		if len(line) > 1 {
			if k := strings.IndexByte(line[1:], ' '); k >= 0 {
				sp = k + 1
			}
		}
		if sp < 0 || sp == len(line)-1 {
			return fmt.Errorf("%w: merge %d is %q, want \"left right\"", ErrBadMerges, rank, line)
		}
		l, r := line[:sp], line[sp+1:]
		li, lok := t.ids[l]
		ri, rok := t.ids[r]
		cat = append(append(cat[:0], l...), r...)
		ci, cok := t.ids[string(cat)]
		if !lok || !rok || !cok {
			return fmt.Errorf("%w: merge %d %q: %q, %q or their concatenation is not in the vocabulary", ErrBadMerges, rank, line, l, r)
		}
		if !encodable(t.types[li]) || !encodable(t.types[ri]) || !encodable(t.types[ci]) {
			// A merge that would build (or build from) a control or
			// unknown token: never applied, so plain text can never
			// turn into a control token.
			continue
		}
		k := mergeKey(li, ri)
		if _, dup := t.merges[k]; !dup { // the first (best) rank wins
			t.merges[k] = merge{rank: int32(rank), id: ci}
		}
	}
	return nil
}

// encodable reports whether the encoder may produce a token of this type
// from plain text (merges, lookups). Control, unknown, unused and byte
// tokens come only from special-token matching or byte fallback.
func encodable(ty TokenType) bool { return ty == TypeNormal || ty == TypeUserDefined }

// lookup returns the id of an encodable token with this text.
func (t *Tokenizer) lookup(s string) (int32, bool) {
	id, ok := t.ids[s]
	if !ok || !encodable(t.types[id]) {
		return -1, false
	}
	return id, true
}

func (t *Tokenizer) lookupBytes(b []byte) (int32, bool) {
	id, ok := t.ids[string(b)] // no allocation: the compiler special-cases map[string(b)]
	if !ok || !encodable(t.types[id]) {
		return -1, false
	}
	return id, true
}

// buildPieces computes what each token decodes to.
func (t *Tokenizer) buildPieces() {
	t.pieces = make([]string, len(t.texts))
	t.pieceOK = make([]bool, len(t.texts))
	var buf []byte
	for i, s := range t.texts {
		var p string
		switch t.types[i] {
		case TypeUserDefined:
			p = s
		case TypeNormal:
			if t.kind == KindSPM {
				p = strings.ReplaceAll(s, spmSpace, " ")
			} else {
				buf = decodeByteLevel(buf[:0], s)
				p = string(buf)
			}
		case TypeByte:
			if t.kind == KindSPM {
				b, _ := parseByteToken(s) // validated in loadVocab
				p = string([]byte{b})
			}
		}
		t.pieces[i] = p
		t.pieceOK[i] = utf8.ValidString(p)
	}
}

// Kind reports the tokenizer algorithm: KindSPM or KindBPE.
func (t *Tokenizer) Kind() string { return t.kind }

// VocabSize is the number of tokens.
func (t *Tokenizer) VocabSize() int { return len(t.texts) }

// TokenText returns the vocabulary text of id ("" when out of range): the
// raw entry, "▁" and byte-level characters included.
func (t *Tokenizer) TokenText(id int32) string {
	if id < 0 || int(id) >= len(t.texts) {
		return ""
	}
	return t.texts[id]
}

// TokenType returns the type of id (TypeUndefined when out of range).
// Turn-ending tokens (eogTexts) are reported as control tokens.
func (t *Tokenizer) TokenType(id int32) TokenType {
	if id < 0 || int(id) >= len(t.types) {
		return TypeUndefined
	}
	return t.types[id]
}

// TokenID returns the id of the token whose vocabulary text is s.
func (t *Tokenizer) TokenID(s string) (int32, bool) {
	id, ok := t.ids[s]
	return id, ok
}

// BOS returns the beginning-of-sequence token, if the vocabulary has one.
func (t *Tokenizer) BOS() (int32, bool) { return t.bos, t.bos >= 0 }

// EOS returns the end-of-sequence token, if the vocabulary has one.
func (t *Tokenizer) EOS() (int32, bool) { return t.eos, t.eos >= 0 }

// Unknown returns the unknown token, if the vocabulary has one.
func (t *Tokenizer) Unknown() (int32, bool) { return t.unk, t.unk >= 0 }

// Padding returns the padding token, if the vocabulary has one.
func (t *Tokenizer) Padding() (int32, bool) { return t.pad, t.pad >= 0 }

// AddBOS reports whether the model wants BOS before a prompt
// (tokenizer.ggml.add_bos_token, else llama.cpp's default for the kind and
// pre-tokenizer). Pass it as Encode's addBOS.
func (t *Tokenizer) AddBOS() bool { return t.addBOS }

// AddEOS reports whether the model wants EOS after a prompt
// (tokenizer.ggml.add_eos_token). Encode never appends EOS itself.
func (t *Tokenizer) AddEOS() bool { return t.addEOS }

// AddSpacePrefix reports whether SPM input gets a dummy-prefix space
// (always false for BPE).
func (t *Tokenizer) AddSpacePrefix() bool { return t.addSpacePrefix }

// IsEndOfGeneration reports whether id ends a generation: EOS, the
// eot/eom ids of the metadata, and the control tokens <|eot_id|>,
// <|im_end|>, <|end|>, <end_of_turn>, <|endoftext|>, <|eom_id|>, <EOT>,
// <|end_of_text|> where the vocabulary has them.
func (t *Tokenizer) IsEndOfGeneration(id int32) bool {
	for _, e := range t.eog {
		if e == id {
			return true
		}
	}
	return false
}

// EndOfGeneration returns every id IsEndOfGeneration accepts, ascending.
func (t *Tokenizer) EndOfGeneration() []int32 { return append([]int32(nil), t.eog...) }

// ChatTemplate returns tokenizer.chat_template ("" when absent).
func (t *Tokenizer) ChatTemplate() string { return t.chatTemplate }

// PreTokenizer reports the pre-tokenizer a BPE vocabulary uses ("gpt2",
// "llama3", "qwen2", "smollm" or "tekken"; "" for SPM) and whether
// tokenizer.ggml.pre named it exactly. known is false when the name was
// absent, "default", or unknown and the GPT-2 split was used instead.
func (t *Tokenizer) PreTokenizer() (name string, known bool) {
	if t.kind != KindBPE {
		return "", true
	}
	return t.preName, t.preKnown
}

// anyInnerSpace reports whether some token has "▁" right after a character
// other than "▁".
func anyInnerSpace(texts []string) bool {
	for _, s := range texts {
		for i := 1; i < len(s); i++ {
			k := strings.Index(s[i:], spmSpace)
			if k < 0 {
				break
			}
			i += k
			if !strings.HasSuffix(s[:i], spmSpace) {
				return true
			}
		}
	}
	return false
}
