// Package app is duet-bench: it turns the command line into workloads,
// runs one stage per request rate (or concurrency) against an
// OpenAI-compatible server and writes the results.
//
// Stages run one after another with the same seed, so every stage sends
// the same prompts and lengths and only the load differs; a sweep over
// rates shows where TTFT and goodput turn. Warm-up requests (sent one at
// a time with another seed) keep first-request costs such as connection
// setup and page faults out of the first stage.
package app
