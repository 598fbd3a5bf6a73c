// Package sample turns a row of logits into the next token with the OpenAI
// request parameters, and cuts streamed text at stop strings.
//
// A Sampler serves one completion: New(params, vocab), then one Sample(logits)
// per output token. A Stopper (NewStopper) serves the detokenized text of one
// completion.
//
// # Order of operations
//
// For each output token, Sample does, in this order:
//
//  1. Penalties on the logits. The repetition penalty (if not 1) first, once
//     for every distinct token of the prompt and of the output so far:
//     a positive logit is divided by it, a negative one multiplied (HF
//     transformers, llama.cpp, vLLM). Then, for every token of the output so
//     far with count c, logit -= c*frequency_penalty, then logit -=
//     presence_penalty (OpenAI). Presence and frequency see only the output,
//     never the prompt; the repetition penalty sees both, and needs the prompt
//     through Restore.
//  2. Logprobs, when asked: the log-softmax of the penalized logits over the
//     whole vocabulary, BEFORE temperature, top-k, top-p and min-p. They
//     describe the model (with penalties), not the truncated distribution
//     the token is drawn from.
//  3. Temperature 0: the token is the argmax, the lowest id on ties. Steps 4
//     to 9 do not run.
//  4. Temperature: logits are divided by it.
//  5. Top-k: the k best tokens by logit, the lowest id on ties.
//  6. Softmax over what is left.
//  7. Top-p: sort by probability (descending, ties by token id) and keep the
//     shortest prefix whose probability reaches top_p (at least one token).
//  8. Min-p: drop tokens whose probability is below min_p times the largest.
//  9. Renormalize and draw: with u the random number of this output token,
//     walk the kept tokens in that sorted order and return the first at which
//     the running sum of probability exceeds u times the kept total.
//
// NaN logits are never chosen and never listed in the top logprobs. A row
// with no candidate (all NaN or -Inf, after penalties) is ErrNoCandidates; a
// row whose largest logit is +Inf is ErrInfLogit (a broken model: no
// distribution can be defined). Neither panics, and a failed Sample changes
// nothing.
//
// # Determinism across processes
//
// In duet the prefill node samples output token 0 and the decode node the
// rest; the completion must be exactly what one process would produce. So
// the sampler keeps no RNG state: the random number for output token i is
// Uniform(seed, i), a SplitMix64-style hash of (seed, i) cut to 24 bits, i.e.
// a float32 in [0, 1) that is a multiple of 2^-24. The penalties depend only
// on the prompt and the output so far. The decode node rebuilds the prefill
// node's sampler with New(params with Seed set to the prefill sampler's
// Seed(), vocab) and Restore(prompt, generated). Without a seed in the request
// New draws one from crypto/rand and Seed() returns it, so a request can also
// be replayed.
//
// The same logits must also give the same token on any machine, so every
// number that decides the token is computed with a fixed sequence of IEEE
// float32 operations: exp is this package's own (prob), not math.Exp (which
// has per-architecture assembly), and products are rounded explicitly so no
// compiler may fuse them into an FMA. Logprobs use math.Log and may differ in
// the last bit across architectures; they never influence the choice.
//
// # Exact arithmetic
//
// Each probability p (relative to the most likely token, which has p = 1) is
// turned into an integer mass floor(p * 2^43); a token with p < 2^-43 has mass
// 0 and is never drawn. Sums of masses are exact, so they do not depend on
// the order of addition: the total, the top-p target (ceil(top_p * total), computed
// in float64), the min-p cut and the draw point floor(u * kept total) are
// integers computed the same way everywhere, and
// the token drawn is exactly the one a full sort of the vocabulary by
// (probability desc, id asc) followed by a running sum would give, whatever
// shortcut finds it. MaxVocab (2^20) keeps the total below 2^63.
//
// # Speed and memory
//
// Sample does not allocate at steady state. Greedy is one pass (argmax over
// four lanes). With top-k it is one pass with a k-entry heap that rejects
// most tokens with one comparison, then work on k tokens. Without top-k it
// is a max pass, a pass that computes every probability and adds its mass to
// a 1024-bucket histogram keyed by the probability's exponent and three
// mantissa bits, and then for top-p and for the draw only the one bucket that
// holds the cut is gathered and sorted: the vocabulary is never fully sorted.
// When top-p and the draw cut in the same bucket it is sorted once. The
// worst case is a flat distribution where one bucket holds most of the
// vocabulary. Logprobs need exp(logit - max) over the whole row: free at
// temperature 1 without top-k (the pass above computed exactly that), one
// more pass otherwise, plus a 20-entry heap for the alternatives.
//
// A Sampler holds the per-completion state (seed, counts of the output tokens
// when a penalty is on, the prompt's distinct tokens when the repetition
// penalty is on). The vocabulary-sized scratch memory (about 12 bytes per
// entry) lives in a Workspace; the samplers of a decode batch that sample one
// after the other can share one (NewWithWorkspace). The penalty lists start
// with room for min(max_tokens, 1024) distinct tokens and grow (allocating)
// past that.
//
// Sample changes the penalized entries of the caller's logits during the call
// and restores them before it returns.
//
// # Stop strings
//
// Stopper holds back the longest tail of the streamed text that could be the
// start of a stop string, and never releases text at or after a stop string.
// The stream stops where the first stop string ends (the earliest end wins;
// on equal ends the earlier start, then the lower index), which is what a
// detector that sees the text one piece at a time can decide, so the output
// is the same however the text is split. Stop token ids are handled by the
// Sampler (Params.StopTokens, FinishStop).
package sample
