//go:build !amd64 || purego

package kernel

// archImpls is empty where there is no assembly: the pure-Go
// implementation is the only one.
func archImpls() []*impl { return nil }
