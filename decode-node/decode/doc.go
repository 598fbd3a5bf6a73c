// Package decode is the decode node: it owns the KV block pool, grants
// reservations into it, receives prefilled KV into those reservations, and
// runs the continuous-batching decode loop that streams tokens back.
//
// # A reservation's life
//
// Reserve takes, all or nothing, the blocks for the prompt and the whole
// output (max_tokens) and opens a kvtransfer reservation over their slots,
// listed layer-major (slot = layer*len(blocks) + i) so that each layer is
// one contiguous run. The router attaches to the reservation's token stream
// at once and hands the descriptor to a prefill node, which writes each
// layer as it completes and commits with the first token (a KVCommit
// payload). On commit the sequence joins the running batch; every step
// feeds each running sequence its last token, samples the next from the
// logits, and sends it to the attached stream. A sequence leaves the batch
// when it samples a stop token or reaches max_tokens, or when its stream
// ends (the client went away): its blocks go back to the pool at once.
//
// For a colocated node (role "both") the prefill runs in the same process
// on the same engine and writes the reserved blocks directly; the
// reservation is then local, and the commit is a function call.
//
// # When blocks run out
//
// Blocks are reserved for prompt + max_tokens when the request arrives,
// so a running sequence never needs a block it does not have: nothing is
// preempted or swapped mid-decode. When the pool cannot hold a new request
// whole, Reserve fails with RESOURCE_EXHAUSTED and the router tries another
// decode node or queues the request. The price is memory held for outputs
// that end early; the router's max_tokens default (the context left) makes
// clients that set max_tokens get more concurrency.
//
// # Safety nets
//
// A reservation that is never committed expires (its TTL); one that is
// committed but never attached is canceled after the same TTL; a stream
// that ends cancels its sequence. Every path frees the blocks exactly once.
//
// # Metrics and logs
//
// Server.Collector exports the KV pool by state (free, reserved: waiting
// for its KV, running), reservations by outcome and refusals by reason,
// the waits before a sequence joins the batch, and batch sizes and step
// times (docs/metrics.md lists them). Every log line about a request
// carries its request-id: reserved, kv committed and finished at debug
// (the reserved line also names the kvtransfer reservation id that the
// transfer library's own lines use).
package decode
