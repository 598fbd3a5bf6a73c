// Package dispatch runs a generation on the cluster: it picks a (prefill,
// decode) pair in one decision, runs both legs over gRPC and relays the
// tokens. It implements the HTTP layer's Generator.
//
// # Picking the pair
//
// The decode node is chosen first, by free KV blocks (after the blocks
// this router has just asked of it and the membership has not yet
// reported) and then by running sequences; a decode node that cannot hold
// the request whole is skipped. The prefill node is the one with the
// least queued prefill work (again counting this router's own recent
// assignments) among those with the same model, KV layout and kernel as
// the decode node, since KV bytes move verbatim. A "both" node chosen as
// decode node prefills its own requests: the reservation is local and no
// KV crosses the network.
//
// # The legs
//
//  1. Reserve on the decode node (deadline ReserveTimeout). The
//     reservation's TTL covers the prefill leg.
//  2. Attach to the reservation's token stream at once, so no round trip
//     is added after the prefill.
//  3. Prefill on the prefill node (deadline FirstTokenTimeout): it streams
//     the KV into the reservation and returns the first token, which is
//     passed to the client immediately.
//  4. The decode node streams the remaining tokens; each must arrive
//     within TokenTimeout of the previous event.
//
// # Failures
//
// Everything is owned by the request's context: a client that goes away
// cancels both calls, and the decode node frees the reservation, the
// prefill node aborts its transfer. Before the first token reaches the
// client, a failed leg is retried with a new pair that avoids the node
// that failed (a dead decode node also fails the prefill's transfer; the
// attach stream tells the two apart). After tokens were sent, a failure
// ends the generation with a gen.StreamError. No leg waits out another's
// timeout: each call has its own deadline, and the reservation TTL is only
// the safety net for a router that vanished.
//
// # Timings and counters
//
// A successful generation's gen.Result.Timings says where its time to
// first token went, as this router sees the legs: decode-admission
// (Reserve and Attach), prefill-queue and prefill-compute (the prefill
// node's own figures from its first-token message), prefill-overhead (the
// rest of the prefill leg: RPC, KV session, sampling) and kv-transfer (from
// the first token to the decode node's Admitted event: the KV the compute
// did not hide, which delays the second token). The API layer logs them
// and package metrics exports them. Stats counts attempts, retries, failed
// legs by side and generations that found no pair.
package dispatch
