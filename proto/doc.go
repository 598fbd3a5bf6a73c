// Package proto holds duet's gRPC and protobuf definitions and the Go code
// generated from them.
//
// Each service lives in a versioned package under duet/<area>/v1:
//
//   - duet/decode/v1:  DecodeService — reserve KV slots, attach to the token
//     stream, release.
//   - duet/prefill/v1: PrefillService — prefill a prompt into a reservation,
//     streaming progress and the first token.
//   - duet/node/v1:    NodeService — what a node is and how loaded it is.
//   - duet/common/v1:  messages they share (sampling parameters, KV layout,
//     tokens).
//
// Health checks use the standard grpc.health.v1 service. The generated
// *.pb.go files are checked in; `make proto` regenerates them with Debian's
// protoc and the protoc-gen-go / protoc-gen-go-grpc versions pinned as tool
// dependencies in go.mod, and `make verify-proto` fails when they drift.
package proto
