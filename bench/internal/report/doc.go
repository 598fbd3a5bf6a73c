// Package report writes what a benchmark measured: the JSON record (the
// run, its summary per stage and per request class, and every raw
// per-request sample, so any other statistic can be computed later), a
// markdown summary for people, and PNG charts: latency CDFs with one line
// per stage, and goodput, throughput and latency percentiles against the
// offered load.
package report
