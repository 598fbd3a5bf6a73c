// Package tokenizer turns text into token ids and back for the two
// vocabulary kinds GGUF model files carry, with llama.cpp's semantics, so
// a prompt tokenized here gives the engine the ids llama.cpp would give it.
// The router builds one from the model file's metadata (FromGGUF) without
// loading the weights.
//
// # SentencePiece-style BPE (tokenizer.ggml.model = "llama")
//
// Llama 1/2, Mistral v0.1 and TinyStories vocabularies. Each token has a
// score. Encoding:
//
//  1. Spaces become "▁" (U+2581), and with add_space_prefix (the default)
//     a "▁" goes before the text and before each stretch that follows a
//     special token.
//  2. The text starts as one symbol per character. The adjacent pair whose
//     concatenation is the vocabulary token with the highest score (the
//     leftmost among equal scores) merges, and this repeats until no pair
//     forms a token. A heap holds the candidate pairs, so n characters cost
//     O(n log n). When no token has "▁" right after another character
//     (true of Llama's vocabulary), no merge can cross a word start, so
//     the words merge separately, with the same result and small heaps.
//  3. A symbol left that is not a token (a character outside the
//     vocabulary) becomes its UTF-8 bytes as <0xAB> byte tokens. Only a
//     vocabulary without byte tokens falls back to the unknown token.
//
// Decoding maps "▁" back to a space and byte tokens back to bytes. As
// llama.cpp does, the first token loses one leading space (the dummy
// prefix), unless the ids start with BOS: Decode(Encode(s, false)) == s and
// Decode(Encode(s, true)) == " "+s. DecodeContinuation and
// NewContinuationDecoder keep the space, for generated tokens that
// continue a prompt. A literal "▁" in the input comes back as a space:
// SentencePiece cannot tell them apart.
//
// # GPT-2 byte-level BPE (tokenizer.ggml.model = "gpt2")
//
// Llama 3, Qwen2, SmolLM, Mistral Nemo (tekken) and GPT-2 vocabularies.
// Encoding:
//
//  1. A pre-tokenizer splits the text into words with the regex of the
//     vocabulary's family (tokenizer.ggml.pre): GPT-2's, Llama 3's (digits
//     in runs of at most three, case-insensitive contractions, newlines kept
//     with the whitespace before them), Qwen2's (Llama 3's with single
//     digits), SmolLM's (digits isolated, then GPT-2's), or tekken's.
//     Go's regexp has no lookahead (\s+(?!\S)), so each regex is a
//     hand-written scanner that tries the alternatives in order exactly as a
//     backtracking engine does; the tests check them against hand-derived
//     splits and against Python's regex module. An absent, "default" or
//     unknown name gets the GPT-2 regex (llama.cpp refuses unknown names,
//     and its "default" is a legacy chain of four regexes), and
//     PreTokenizer reports known = false so the caller can log it.
//  2. Each word's bytes become GPT-2's byte-level characters (every byte a
//     visible character: space is "Ġ", newline "Ċ"), one symbol per byte.
//  3. The adjacent pair with the lowest merge rank (its line number in
//     tokenizer.ggml.merges; the leftmost among equal ranks) merges until
//     no ranked pair is left. Merges are looked up by the pair of token
//     ids. For the Llama 3 and tekken families (ignore_merges) a word that
//     is itself a token is taken whole. A bounded, sharded cache keeps the
//     ids of recent words, since text repeats its words.
//
// Decoding maps byte-level characters back to bytes. Nothing is added
// before the text; llama.cpp's clean_up_tokenization_spaces (removing the
// space in " ." and " 's") is not applied, so decoding is an exact inverse
// and streams the same as it decodes whole.
//
// # Special tokens
//
// Token types come from tokenizer.ggml.token_type. Control tokens (BOS,
// EOS, <|eot_id|>, <|im_start|>) and the unknown token are produced from
// text only by EncodeSpecial, which the router uses for prompts it renders
// from a chat template. Encode treats their texts as plain text, so user
// content can never inject a turn boundary; this holds through merges too,
// since a merge that would build a control token is never applied.
// User-defined tokens are matched by both, before the text around them is
// tokenized, as llama.cpp does. Matching follows llama.cpp's
// tokenizer_st_partition: longest token text first, at every occurrence.
// Unused and undefined tokens are never produced.
//
// Decode prints nothing for control, unknown, unused and undefined tokens
// (llama.cpp without special-token rendering; TokenText gives a token's
// text). Turn-ending texts (<|eot_id|>, <|im_end|>, <|end|>,
// <end_of_turn>, <|endoftext|>, <|eom_id|>, <EOT>, <|end_of_text|>) are
// control tokens whatever type the file gives them, as llama.cpp forces
// them; with EOS and tokenizer.ggml.eot_token_id / eom_token_id they make
// up IsEndOfGeneration.
//
// BOS is added only when Encode's addBOS asks for it; AddBOS reports what
// the model wants (tokenizer.ggml.add_bos_token, else llama.cpp's default:
// true for SPM and the Llama 3 and tekken families). Encode never appends
// EOS; AddEOS reports tokenizer.ggml.add_eos_token for callers that do.
//
// # Streaming
//
// A Decoder turns ids into text one at a time for the router's token
// stream. It returns only whole UTF-8 characters, holding back at most
// three bytes of a character split across tokens (byte-fallback tokens,
// byte-level pieces), and its outputs plus Flush equal Decode of all the
// ids. A token that is whole text is returned without allocating.
//
// # Outside input
//
// Metadata comes from files: FromGGUF checks every array length, special
// id, byte token and merge line and returns an error wrapping one of the
// package's sentinels, never a panic. Encode accepts any string (invalid
// UTF-8 is encoded byte by byte), Decode any ids (out-of-range ids print
// nothing, invalid UTF-8 becomes U+FFFD). A Tokenizer is immutable and safe
// for concurrent use; a Decoder belongs to one stream.
package tokenizer
