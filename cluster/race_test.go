//go:build race

package cluster

// The race detector slows everything 5-10x; deadlines that stand for a product requirement
// stretch by this much under it.
func init() { slowdown = 3 }
