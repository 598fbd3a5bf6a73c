package kvtransfer

import (
	"errors"
	"fmt"
)

// Errors. Transports wrap them (TransferError) so callers can test with
// errors.Is whatever path the bytes took.
var (
	ErrClosed        = errors.New("kvtransfer: closed")
	ErrNotRunning    = errors.New("kvtransfer: transport not running")
	ErrBadToken      = errors.New("kvtransfer: unknown reservation or wrong token")
	ErrExpired       = errors.New("kvtransfer: reservation expired")
	ErrCanceled      = errors.New("kvtransfer: reservation canceled by the receiver")
	ErrAborted       = errors.New("kvtransfer: reservation aborted by the sender")
	ErrCommitted     = errors.New("kvtransfer: reservation already committed")
	ErrFailed        = errors.New("kvtransfer: reservation failed")
	ErrOutOfBounds   = errors.New("kvtransfer: write outside the reserved slots")
	ErrSizeMismatch  = errors.New("kvtransfer: sizes do not add up")
	ErrChecksum      = errors.New("kvtransfer: payload checksum mismatch")
	ErrProtocol      = errors.New("kvtransfer: protocol violation")
	ErrPeerGone      = errors.New("kvtransfer: peer connection lost")
	ErrTimeout       = errors.New("kvtransfer: peer did not keep up before the deadline")
	ErrBadDescriptor = errors.New("kvtransfer: malformed descriptor")
	ErrBadSlots      = errors.New("kvtransfer: invalid slots")
	ErrBadRegion     = errors.New("kvtransfer: invalid region")
	ErrNoEndpoint    = errors.New("kvtransfer: no usable endpoint")
	ErrRDMA          = errors.New("kvtransfer: rdma unavailable")
	ErrSessionDone   = errors.New("kvtransfer: session already committed or aborted")
)

// TransferError says which operation against which peer failed, for which
// reservation.
type TransferError struct {
	Op   string // "dial", "open", "write", "flush", "commit", "abort"
	Peer string // the receiver's address
	ID   uint64 // the reservation, 0 for connection-level errors
	Err  error
}

func (e *TransferError) Error() string {
	if e.ID != 0 {
		return fmt.Sprintf("kv %s %s reservation %d: %v", e.Op, e.Peer, e.ID, e.Err)
	}
	return fmt.Sprintf("kv %s %s: %v", e.Op, e.Peer, e.Err)
}

func (e *TransferError) Unwrap() error { return e.Err }
