// Package cluster is duet's membership layer: which nodes exist, how to reach them, whether
// they are alive, and how loaded they are. Nodes (prefill, decode, both) and routers use it; it
// imports nothing of the engine or the KV transfer.
//
// The parts:
//
//   - Registrar (every process): registers its member in etcd under a lease, keeps the lease
//     alive, writes the member's load on change (rate-limited) and its draining flag at once,
//     and runs the member's gossip (hashicorp/memberlist).
//   - Directory (routers, and any node that wants to see its peers): lists and watches the
//     members in etcd, merges what gossip says, and serves a local snapshot: Snapshot,
//     Routable(role), Get(id), and Changed() to wait for the next change.
//   - embedetcd: a single-member etcd inside the process, for `--embedded-etcd` and the tests.
//
// Package cluster/member runs a node process on top of them (gRPC serving, registration,
// the drain order on SIGTERM); the router wires a Registrar and a Directory itself.
//
// The parts can also be wired by hand; a Registrar or Directory given a nil client makes its
// own from the Config:
//
//	cli, err := cfg.NewEtcdClient(lg)
//	reg := cluster.NewRegistrar(cfg, cli, node, lg)
//	dir := cluster.NewDirectory(cfg, cli, reg, lg) // reg: merge this process's gossip view
//	g.Go(func() error { return reg.Run(ctx) })
//	g.Go(func() error { return dir.Run(ctx) })
//
// # Key layout
//
// Every member has one key, /<cluster>/nodes/<role>/<id> (role is prefill, decode, both or
// router; id is 1 to 128 characters of [A-Za-z0-9._-], unique in the cluster, e.g. the pod
// name). `etcdctl get --prefix /duet/nodes/` lists a cluster. The value is JSON:
//
//	{
//	  "schema": 1,                      format version; readers accept >= 1 and ignore unknown fields
//	  "id": "decode-7f9c",              member id, equal to the key's last segment
//	  "role": "decode",                 prefill | decode | both | router, equal to the key's role
//	  "grpc_addr": "10.0.3.7:7000",     host:port of the node's gRPC API
//	  "kv_addr": "10.0.3.7:7001",       host:port of its KV transfer (TCP) listener
//	  "gossip_addr": "10.0.3.7:7946",   host:port of its gossip member (UDP and TCP)
//	  "http_addr": "10.0.3.7:8080",     optional HTTP (metrics, health, the router's API)
//	  "model_id": "llama-3-8b-q8",      the model it serves; pairs must agree
//	  "kv_layout": {                    how its paged KV cache is laid out (pairs must agree):
//	    "dtype": "f16",                 KV element type: f32, f16, int8
//	    "block_tokens": 16,             tokens per KV block
//	    "layers": 32, "kv_heads": 8, "head_dim": 128,
//	    "kernel": "avx2"                the attention kernel (exactness needs the same one)
//	  },
//	  "total_blocks": 8192,             KV blocks in its pool (0 for prefill-only and routers)
//	  "host": "gpu-node-3",             machine it runs on
//	  "zone": "eu-west-1a",             failure/network zone, for placement
//	  "rdma_devices": ["mlx5_0"],       RDMA devices it can move KV over; none: TCP only
//	  "version": "v0.3.1",              duet build version
//	  "started_at": "2026-11-27T02:40:58.123Z",  process start (UTC)
//	  "draining": false,                true: finishing in-flight work, takes no new work
//	  "load": {                         the latest load the node reported:
//	    "free_blocks": 5120,            free KV blocks
//	    "running_seqs": 12,             sequences in its running batch
//	    "queued_prefill_tokens": 3400,  prompt tokens waiting for prefill
//	    "seq": 1795228858123456         orders load and draining updates (see Load.Seq)
//	  }
//	}
//
// Static facts (Node) and dynamic state (Load, Draining) are distinct types in the Go API;
// they share one key so that one watch event carries a member whole.
//
// # Lease and keepalive
//
// A Registrar grants a lease of Config.LeaseTTL (default 5 s), writes the key under it, and
// keeps it alive (etcd's client renews at a third of the TTL). If the member dies, etcd deletes
// the key when the lease expires: at most one TTL later. If etcd is unreachable for longer than
// the TTL the client gives the lease up; the Registrar then grants a new one and writes the key
// again as soon as etcd answers, retrying with capped, jittered backoff for as long as it runs.
// On shutdown it revokes the lease (bounded by Config.RevokeTimeout, 1 s), so the key
// disappears at once instead of a TTL later.
//
// Load goes to etcd on change, at most once per Config.LoadWriteInterval (250 ms: 4 writes/s
// per member); the last value is always written, never dropped. Draining goes at once.
// Registrar.Drain waits until etcd has the flag, so a node that then finishes its in-flight
// work knows every router has been told.
//
// # Why gossip on top of etcd
//
// etcd is the membership of record, but it is slow to notice a death: a killed node's key
// lives until its lease expires (5 s), and shortening the TTL multiplies keepalive traffic on
// etcd and makes every etcd hiccup look like a mass failure. Load figures are also wanted
// faster and more often than one should write to a consensus store. So members also run
// memberlist (SWIM): they probe one another directly, which finds a dead member in about a
// second, and they spread load figures sub-second without touching etcd.
//
// Members join gossip through the gossip addresses they find in etcd (routers first), plus
// optional static seeds; every Config.Gossip.RejoinInterval (2 s) each member joins any member
// etcd lists that gossip does not show alive at its registered address, which heals partitions
// and restarts. Gossip is labelled with the cluster name (and optionally encrypted with
// Config.Gossip.Key), so two clusters never merge.
//
// Each member broadcasts its state (load, draining, seq) when it changes and every
// LoadInterval (200 ms) regardless; every member relays news, so a change reaches everyone in
// a few gossip rounds (GossipInterval, 100 ms): about 90 ms measured between two members
// (BenchmarkLoadPropagation). A Directory folds bursts of gossip news into at most one rebuild
// per 20 ms, so hundreds of members reporting load several times a second stay cheap.
// Push/pull state exchange (every 10 s, and on join) carries every known state, so a member
// that joins late learns all loads at once. Whether a load came by etcd or by gossip, the
// higher Load.Seq wins: a stale update never overwrites a newer one.
//
// A Directory merges the two: a member is routable when its key exists under a lease, gossip
// does not call it dead, and it is not draining. Gossip can only take a member away, never
// add one: a member gossip has not seen (gossip off, UDP blocked, just started) is judged by
// its lease alone, so a gossip problem degrades to lease-speed detection, not an outage.
// A death gossip recorded before the Directory first saw a registration belongs to an earlier
// life of that id and is ignored.
//
// # Failure timings
//
// memberlist's LAN defaults (1 s probes, suspicion 4 × log10(N) × 1 s, up to 6× that until
// others confirm) detect a death in 5-30 s: too slow. This package sets:
//
//	ProbeInterval 200 ms            each member probes one member per interval, round-robin
//	ProbeTimeout  100 ms            direct UDP ack deadline (LAN RTT is well under 1 ms)
//	                                then indirect pings via 3 members and a TCP ping, until
//	                                the end of the probe interval
//	SuspicionMult 3                 suspicion timeout = 3 × max(1, log10 N) × 200 ms:
//	                                600 ms up to 10 members, 1.2 s at 100
//	SuspicionMaxTimeoutMult 1       the timeout starts at that minimum instead of 6× it
//	GossipInterval 100 ms           the "dead" news reaches others within a round or two
//	AwarenessMaxMultiplier 4        a struggling member slows its own probes at most 4×
//	DeadNodeReclaimTime 1 ms        a restarted member may take its name back at once
//
// A dead member is probed within about one probe interval (its N-1 peers each cycle through
// N-1 targets), fails that probe 200 ms later, is suspected, declared dead 600 ms after that,
// and the news reaches the routers within a gossip round: about 1-1.5 s for a small cluster,
// 2 s at 100 members. Measured: 1.0 s from SIGKILL to unroutable with three members
// (TestKilledNodeUnroutable, BenchmarkFailureDetection). Then the lease removes the key
// LeaseTTL after the last renewal.
//
// memberlist does not expose its "suspect" state (Members() reports every non-dead member as
// alive), so rather than treating suspects as unroutable this package shortens the suspicion
// timeout itself. The cost is false positives: a live member that cannot answer for 800 ms
// (a long stop-the-world pause, a saturated link) is declared dead. It refutes as soon as it
// hears (a higher incarnation), gossip marks it alive again, and it is routable again within
// a gossip round. Its lease is never touched, so nothing is lost but a second of routing.
//
// # etcd unavailable
//
// A Directory keeps serving its last snapshot (gossip keeps updating liveness and load), and
// retries: the etcd client resumes its watch from the last revision when etcd comes back; if
// that revision was compacted meanwhile, or the member lost its leader, the Directory lists
// again and continues watching from the list's revision. A Registrar keeps gossiping its load
// and re-registers when etcd answers again (a new lease if the old one was lost).
package cluster
