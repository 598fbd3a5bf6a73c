//go:build !(linux && (amd64 || arm64))

package rdma

import "errors"

// Errors.
var (
	ErrNoLibrary   = errors.New("rdma: libibverbs.so.1 not loadable")
	ErrNoDevice    = errors.New("rdma: no rdma device")
	ErrUnsupported = errors.New("rdma: not supported on this platform")
)
