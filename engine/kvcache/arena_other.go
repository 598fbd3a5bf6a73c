//go:build !unix

package kvcache

func allocArena(size int) ([]byte, func() error, error) {
	return make([]byte, size), func() error { return nil }, nil
}
