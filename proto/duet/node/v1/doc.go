// Package nodev1 is the generated code of duet.node.v1: what a node is and
// how loaded it is (see node.proto).
package nodev1
