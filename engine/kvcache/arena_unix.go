//go:build unix

package kvcache

import "syscall"

// allocArena maps anonymous memory: page-aligned (what RDMA registration
// wants), zeroed, and outside the Go heap so a large pool costs the garbage
// collector nothing.
func allocArena(size int) ([]byte, func() error, error) {
	b, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil, nil, err
	}
	return b, func() error { return syscall.Munmap(b) }, nil
}
