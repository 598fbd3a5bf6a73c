// Package rdma is kvtransfer's RDMA data path: the receiver registers its
// KV pool once, the sender issues one-sided RDMA WRITEs into the reserved
// slots over an RC queue pair and fences them with a WRITE_WITH_IMM, while
// open, flush, commit and abort stay on the TCP connection of package tcp,
// which also carries the queue-pair exchange (RDMAConnect/RDMAAccept
// frames, see ConnParams). NewTransport returns a kvtransfer.Transport;
// Acceptor plugs into tcp.ServerConfig.RDMA.
//
// # Why purego and not cgo
//
// libibverbs is loaded at run time with github.com/ebitengine/purego
// (dlopen of libibverbs.so.1), not linked with cgo behind a build tag:
//
//   - One binary serves both kinds of node. A prefill node without an RDMA
//     NIC or without rdma-core installed runs the same image and falls back
//     to TCP (Load returns ErrNoLibrary; kvtransfer.Selector logs why).
//   - The default build compiles and vets this code on every CI run and
//     needs no libibverbs headers; a cgo build tag would leave it
//     uncompiled in CI, which is how dead code rots.
//   - Static, CGO_ENABLED=0 images (the nonroot Dockerfiles) keep working.
//
// The price is that the C struct layouts are written down here
// (layout.go) instead of taken from verbs.h. They are the stable
// libibverbs ABI (unchanged since rdma-core v13 for the fields used), the
// same on amd64 and arm64 (LP64), and TestLayoutMatchesHeaders checks every
// offset against the real header with the C compiler whenever
// libibverbs-dev is installed (it is skipped, saying so, otherwise). The
// hot verbs (ibv_post_send, ibv_post_recv, ibv_poll_cq) are inline in C:
// they call through the context's ops table, and so does this package.
//
// # What runs without hardware
//
// There is no RDMA device on the development machines. Device discovery
// (peer address → local netdev → RDMA device, port and GID index, through
// github.com/Mellanox/rdmamap) is tested against a fake sysfs tree in
// testdata/sysfs; the queue-pair state machine (RESET → INIT → RTR → RTS)
// and the attribute bytes and masks each transition writes, the
// connection-parameter codec (fuzzed), and loading the library (which
// handles ibv_get_device_list returning NULL with ENOSYS on kernels
// without InfiniBand) are tested without a device. TestHardwareLoopback
// moves bytes through a real device when /sys/class/infiniband has one and
// is skipped with the reason printed otherwise.
//
// # Trust model
//
// A one-sided RDMA WRITE is checked by the receiver's NIC against the
// memory registration (the whole pool), not against the reservation. The
// sender's session checks every write against the reservation's slots
// before posting it, exactly as the TCP path's receiver does, so a correct
// duet sender never writes outside its slots; a hostile host on the RDMA
// fabric that learned the pool's rkey could. Deployments put RDMA NICs on
// a trusted backend fabric; per-reservation memory windows (type 2) would
// close this and are not done yet.
package rdma
