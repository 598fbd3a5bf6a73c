// Package direct runs a generation on a (prefill, decode) node pair over
// gRPC itself, the way the router's dispatcher does, with no router in
// between: Reserve on the decode node, Attach to its token stream,
// Prefill on the prefill node, then read the tokens. Timed beside the same
// request sent through the router, it measures what the router adds (HTTP
// parsing and tokenizing, admission, pair choice, relaying tokens as SSE).
//
// It is a measuring tool, not a second dispatcher: one fixed pair, no
// retries, no load accounting. The prefill node's FirstToken carries its
// own queue, compute and transfer times, which Generate returns beside
// the sample: a TTFT then splits into prefill compute and the rest.
package direct
