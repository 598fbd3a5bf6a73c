// Package api is the router's OpenAI-compatible HTTP layer: it turns
// requests to /v1/completions and /v1/chat/completions into tokenized,
// validated gen.Requests for a Generator (package dispatch, which runs the
// prefill and decode legs), and turns the tokens that come back into
// OpenAI answers, whole or as server-sent events.
//
// # Endpoints
//
//	POST /v1/completions        prompt: a string, [string], [ids] or [[ids]]
//	POST /v1/chat/completions   messages: system/developer/user/assistant, text content
//	GET  /v1/models             the configured models (object "list")
//	GET  /v1/models/{id}        one model, or 404 model_not_found
//	GET  /healthz               200 while the process is up (never needs a key)
//	GET  /readyz                200 when a served model has a routable node pair (per Readiness), else 503
//
// Any other path is 404 and a known path with another method is 405 (with
// Allow), both with an OpenAI error body. Every answer carries X-Request-Id:
// the client's when it is 1 to 64 characters of [A-Za-z0-9._-], else a new
// random one; completion ids are "cmpl-<request id>" and
// "chatcmpl-<request id>".
//
// # A request's path
//
//  1. Route, then API key when keys are configured (Authorization: Bearer,
//     compared as SHA-256 digests in constant time; 401 invalid_api_key).
//  2. Body: Content-Type must be application/json or absent (absent is
//     accepted so that curl -d without -H works; anything else is 415),
//     at most MaxBodyBytes (413), valid UTF-8 (400: encoding/json would
//     silently turn invalid bytes into U+FFFD, so the raw body is checked
//     first), a JSON object.
//  3. Fields are read from the object by exact key (encoding/json's struct
//     matching is case-insensitive; OpenAI's is not), so each error names
//     the parameter: wrong type → invalid_type, out of range →
//     invalid_value, and so on. JSON null counts as absent. Unknown keys
//     are ignored, as OpenAI ignores them, except the parameters duet does
//     not implement, which are refused unless they hold their no-op value:
//     n and best_of other than 1, echo, suffix, logit_bias, tools,
//     functions, tool_choice/function_call other than "none",
//     response_format other than text, non-text modalities, audio, and
//     tool calls in messages. Sampling parameters are checked by
//     sample.Params.Validate, whose errors carry the wire name.
//  4. The model must be configured (404 model_not_found). The prompt is
//     rendered (package chat) and tokenized: a completion prompt string with
//     EncodeSpecial (like vLLM and llama.cpp, a raw prompt may spell special
//     tokens), a chat with the template's special tokens as tokens and the
//     content as plain text (content cannot inject a turn marker), token ids
//     as given. BOS is added when the tokenizer says the model wants it.
//  5. max_tokens (or max_completion_tokens, which wins) defaults to 16 for
//     completions (OpenAI) and to the rest of the context for chat; prompt
//     plus max_tokens over the context length is 400 context_length_exceeded
//     with OpenAI's wording. A seed is drawn when the client sent none and
//     logged, so any completion can be replayed. StopTokens are the model's
//     end-of-generation ids.
//  6. Admission: at most MaxConcurrent generations run; up to MaxQueue more
//     wait (FIFO) up to QueueTimeout; beyond that, 429 with Retry-After. A
//     Generator that answers gen.ErrOverloaded before any token is retried
//     with a doubling backoff until the queue timeout, then 503 with
//     Retry-After. The slot is held until the answer is written.
//  7. Tokens are decoded incrementally (never half a UTF-8 character), cut
//     at the first stop string (sample.Stopper; on a match the generation's
//     context is canceled and finish_reason is "stop"; the text ends before
//     the stop string) and written. A stop token ends the completion with
//     "stop" and is never text. usage.completion_tokens counts every token
//     the generator emitted, the stop token included (as vLLM does).
//
// Nothing before step 6 changes any state: bad input gets its 4xx and the
// API serves the next request as if it had never come. Tokenizing happens
// before admission, so it is bounded by the body limit, not by the slots.
//
// # Streaming
//
// With "stream": true the answer is text/event-stream: "data: <chunk>\n\n"
// events and a final "data: [DONE]\n\n". Headers are written with the first
// chunk that carries text (for chat, preceded by the chunk with
// {"role":"assistant","content":""}), so an error before any text (no
// capacity, no node, a failed leg) is still an ordinary JSON error answer
// with its status (502/503/504). A generation that fails after text was
// sent ends the stream with an error event, data: {"error":{...}}, then
// [DONE]. The last choice chunk has empty text (an empty delta for chat) and
// finish_reason. With stream_options.include_usage every chunk has
// "usage": null and one more chunk with empty choices carries the usage.
// Each write has a deadline (WriteTimeout) so that a client that stops
// reading cannot hold a generation slot; a client that disconnects cancels
// the generation's context.
//
// # Logprobs
//
// Completions take "logprobs": 0..5 and answer the legacy object: tokens,
// token_logprobs, top_logprobs (per token an object of the top
// alternatives, best first, plus the sampled token: up to logprobs+1
// entries) and text_offset (in Unicode code points from the start of the
// completion). Chat takes "logprobs": true and "top_logprobs": 0..20 and
// answers {"content": [{token, logprob, bytes, top_logprobs: [...]}],
// "refusal": null}. A token that is part of a character is spelled
// "bytes:\xNN"; -Inf is sent as -9999.0. In a stream, each chunk carries
// the logprobs of the tokens whose text it carries (tokens held back by a
// pending stop string or an incomplete character ride with the next
// chunk). A stop token has no logprobs entry.
//
// # Logging
//
// One line per request at info (probes at debug), with kebab-case keys:
// request-id, method, path, status (499 when the client went away), model,
// stream, prompt-tokens, completion-tokens, finish-reason, seed,
// queue-wait, ttft (from the end of the queue wait to the first token),
// duration, the generator's timings and the error.
//
// # Observing
//
// Config.Observer, when set, is told about every completion request once
// its answer is over (Done: endpoint, model, outcome, status, token counts,
// the queue wait, the time to first token from the request's arrival, the
// duration and the generator's timings) and about every token after a
// request's first (InterToken: the gap since the previous token). Package
// metrics implements it; Load reports the running and queued generations.
// Probes and model lists are not completion requests and are not observed.
package api
