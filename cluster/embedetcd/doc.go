// Package embedetcd runs a single-member etcd server inside the current process.
//
// It exists for local use and tests: `--embedded-etcd` on a duet binary starts one so that a
// laptop needs no separate etcd, and the cluster tests run against a real etcd rather than a
// fake. A production deployment points the binaries at a real etcd cluster instead (the Helm
// chart runs one).
//
// The server listens on loopback by default, keeps its data in a directory that survives a
// restart (so a restart with the same Dir and ports resumes the same keys, revisions and leases),
// and logs through the injected zap logger at warn level and above: etcd's info logs are many
// and say nothing an operator of duet needs.
//
// A port of 0 in ClientAddr or PeerAddr lets the kernel pick one; Server.ClientAddr reports the
// port actually bound, and a test that restarts the server passes that address back in.
//
// Start blocks until the member is ready to serve (it has elected itself leader) or
// Config.StartTimeout passes; Close stops it and waits for its goroutines. Stopping is
// bounded: etcd itself gives in-flight requests at most its request timeout.
package embedetcd
