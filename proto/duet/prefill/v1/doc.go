// Package prefillv1 is the generated code of duet.prefill.v1: prefill into
// a decode node's reservation (see prefill.proto).
package prefillv1
