// Package decodev1 is the generated code of duet.decode.v1: the decode
// node's reservations and token streams (see decode.proto).
package decodev1
