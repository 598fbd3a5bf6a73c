// Package commonv1 holds the messages duet's services share (generated
// from common.proto), and PromptHash, which the router and the nodes use
// to tie a KV commit to the prompt it was computed for.
package commonv1
