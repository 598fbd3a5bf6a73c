// Package gen holds the few types that the router's HTTP layer (package
// api) and its scheduler (package dispatch) exchange: a tokenized,
// validated Request, the Tokens that come back one at a time, the Result
// at the end, and the errors that say why a generation could not start.
//
// The HTTP layer owns everything about the wire format: it parses and
// validates the OpenAI request, applies the chat template, tokenizes,
// draws the seed, decodes tokens to text, applies stop strings and frames
// the answer. The dispatcher owns everything about the cluster: it picks a
// (prefill, decode) pair, runs both legs and relays the sampled tokens.
// These types are the whole contract between the two, so they stay small
// and carry only what crosses that line.
//
// Error contract:
//   - ErrOverloaded before any token: the cluster has no capacity now; the
//     API layer waits and retries within its queue timeout, then answers
//     503 with Retry-After.
//   - ErrUnavailable before any token: no node pair can serve the model at
//     all; the API layer answers 503.
//   - A *StreamError: the generation failed after tokens were emitted. If
//     the API layer has already sent text to the client it ends the event
//     stream with an error event, otherwise it answers 502.
//   - Any other error before any token: 502.
package gen
