// Package kvtransfertest has helpers for tests that move KV bytes with
// kvtransfer: a canary-guarded pool of scattered slots and a loopback pair
// (a Receiver served over real TCP, and a sender Transport) started and
// stopped with the test. It is a non-test package so other modules' tests
// (the engine's end-to-end KV test) can use it.
package kvtransfertest
