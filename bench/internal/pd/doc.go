// Package pd is `make bench-pd`: it compares a colocated deployment with
// a disaggregated one on the same machine share and the same model, and
// explains where each wins.
//
// # Deployments
//
// On C cores (2 on the development machine): colocated is one "both"
// node with C compute threads; pd is a prefill node with C/2 threads and
// a decode node with the rest, each pinned to its own CPUs (taskset), so
// the two deployments use the same cores in total. A third, pd-prefill-
// all, gives its prefill node all C threads (the decode node shares the
// CPUs) to match the colocated node's prefill compute: it is used only for
// the low-load TTFT comparison, where the question is what disaggregation
// itself costs, not how the cores are split. Each deployment is a
// localcluster of real processes: embedded etcd, router, nodes. A pinned
// node runs with GOMAXPROCS of at least 2 so that its gossip and lease
// goroutines are not starved behind a compute kernel on a single P.
//
// # Phases
//
//   - overhead: small requests one at a time, each sent through the
//     router and straight to the nodes over gRPC (package direct),
//     alternating which goes first; the paired difference is what the
//     router adds.
//   - lowload: long prompts (1K–4K tokens) one at a time; TTFT of PD
//     against colocated at equal prefill compute. Layer-wise KV streaming
//     should keep the difference to the last layer's transfer and a
//     commit: a few percent.
//   - mixed: an open-loop Poisson mix of chat requests (short prompts,
//     long outputs) and long prompts (short outputs), the same requests
//     at the same times for each deployment. Colocated, a long prompt's
//     prefill chunks run between decode steps and every running stream
//     stalls (ITL spikes); PD keeps decode on its own cores. The price is
//     that a PD prefill node has only part of the cores.
//
// The results go to OutDir: per phase and deployment what duet-bench
// writes (result.json with every sample, summary.md, plots), the cluster
// logs, and the comparison (bench-pd.md, bench-pd.json, CDF charts).
package pd
