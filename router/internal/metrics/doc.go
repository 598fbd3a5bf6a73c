// Package metrics measures the router: it is the API layer's Observer and
// turns each completion request into Prometheus series (requests by
// outcome; time to first token, inter-token latency, time per output token
// and end-to-end latency histograms; the parts of the time to first token)
// and into the recent-traffic figures the live dashboard shows.
//
// # Two views of the same events
//
// Prometheus histograms are cumulative since start and bucketed: right for
// a scraper that takes rates and quantiles over time, wrong for a page
// that wants "the p99 TTFT of the last minute" without a Prometheus server.
// So a Recorder also keeps the latest samples (a bounded ring per series,
// Config.Window long, 60 s by default) and computes exact percentiles and
// rates over them when asked (Traffic). Both views are fed by the same
// calls, so they never disagree about what was counted.
//
// Nothing here is registered globally: the Recorder and the other
// collectors are prometheus.Collectors that the binary registers in its
// own registry (see NewRegistry), next to the cluster's.
//
// # The parts of the time to first token
//
// duet_router_request_stage_seconds splits a successful request's time by
// stage: router_queue (arrival to the winning attempt's Reserve: parsing,
// tokenizing, the wait for a generation slot, choosing a pair, retries),
// decode_admission (Reserve and Attach on the decode node), prefill_queue
// and prefill_compute (as the prefill node measured them), prefill_overhead
// (the rest of the prefill leg: the RPC, opening the KV session, sampling).
// These five add up to the request's TTFT. kv_transfer is apart: the time
// from the first token to the decode node's Admitted event, the part of the
// layer-wise KV transfer that compute did not hide. It delays the second
// token, not the first, because the prefill node returns the first token
// before its commit lands.
package metrics
