// Package dashboard serves the router's live page: GET /dashboard is a
// self-contained HTML page (embedded in the binary; no CDN, since clusters
// often have no internet) that polls GET /dashboard/state once a second
// and shows the nodes by role with their capacity and load, the requests
// and tokens per second, TTFT, ITL, TPOT and end-to-end percentiles, and
// the KV cache in use across the decode pool.
//
// The state is JSON built at each request from what the router already
// keeps: its Directory's snapshot (every member as etcd and gossip see it)
// and the metrics Recorder's recent traffic. Nothing is stored for the
// page; any number of open pages cost one small JSON answer a second each.
//
// Like /metrics, the page needs no API key: it shows load, not content.
// Put the router behind a network policy if that matters.
package dashboard
