// Package stats turns per-request latency samples into the figures a
// serving benchmark reports: percentiles, throughput and goodput under a
// latency SLO.
//
// # Percentiles
//
// Quantile interpolates linearly between the two nearest order statistics
// (the definition numpy calls "linear" and Excel PERCENTILE.INC): for n
// sorted values the q-quantile sits at rank h = (n-1)q, between x[⌊h⌋]
// and x[⌊h⌋+1]. It is exact at the sample minimum (q=0) and maximum
// (q=1), needs no distribution assumption, and agrees with what vLLM's
// and SGLang's benchmark scripts print (both call numpy.percentile), so
// figures are comparable across tools.
//
// # Goodput
//
// A request is good when it completed and met the SLO: time to first
// token ≤ SLO.TTFT and time per output token ≤ SLO.TPOT (a zero bound is
// not checked). TPOT is (end-to-end − TTFT)/(output tokens − 1), the
// average decode pace the client saw after the first token; a request
// with one output token has no TPOT and is judged by TTFT alone. Goodput
// is good requests per second of the run: the rate the deployment
// sustains within the SLO (DistServe's definition). Failed requests are
// never good.
package stats
