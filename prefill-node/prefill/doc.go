// Package prefill is the prefill node: it queues prompts, batches them
// under a token budget, runs chunked prefill, ships each layer's KV into
// the decode node's reserved slots while the next layer computes, samples
// the first token and commits.
//
// # Scheduling
//
// Requests wait in a FIFO queue. Each engine step takes the queue in order
// and gives each request a chunk of its remaining prompt until the step's
// token budget (the engine's max batch tokens) is spent; a chunk that does
// not finish a prompt is a whole number of KV blocks, so every block is
// written by exactly one step and ships exactly once. Long prompts thus
// share steps with short ones instead of blocking them.
//
// # Shipping KV
//
// The prefill computes into blocks of this node's own pool. The engine
// calls back after each layer's keys and values are in the cache; the
// callback queues that layer's slots of the chunk's blocks on the
// request's kvtransfer session (asynchronous writes straight from the pool
// memory), and the engine goes on with attention and the next layer while
// the bytes move. After the last chunk the first token is sampled and sent
// to the router at once; the commit (first token, prompt length, prompt
// hash) follows in the background, and the local blocks are freed when the
// commit returns, since the transport reads them until then.
//
// On a colocated node (role "both") the reservation is local: the prefill
// computes straight into the reserved blocks of the shared pool and
// commits by a call, with no transfer at all.
//
// # Failure
//
// A request whose stream ends (the router canceled it) is dropped before
// the next step and its session aborted, which the decode node sees at
// once. A transfer error fails the request with the transport's message;
// the router then retries the pair.
//
// # Metrics and logs
//
// Server.Collector exports requests by outcome, the queue, compute and
// commit-wait times, batch sizes per engine step and the queue's size
// (docs/metrics.md lists them). Every log line about a request carries its
// request-id, as the router sent it: queued, prefilled and committed at
// debug, a failure at warn.
package prefill
