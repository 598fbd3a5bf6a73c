package tcp

import (
	"errors"
	"fmt"

	"github.com/duet-llm/duet/kvtransfer"
	"github.com/duet-llm/duet/kvtransfer/internal/wire"
)

// codeOf maps an error to the code an Error or Canceled frame carries.
func codeOf(err error) uint32 {
	switch {
	case errors.Is(err, kvtransfer.ErrBadToken):
		return wire.CodeBadToken
	case errors.Is(err, kvtransfer.ErrExpired):
		return wire.CodeExpired
	case errors.Is(err, kvtransfer.ErrCanceled):
		return wire.CodeCanceled
	case errors.Is(err, kvtransfer.ErrAborted):
		return wire.CodeAborted
	case errors.Is(err, kvtransfer.ErrCommitted):
		return wire.CodeCommitted
	case errors.Is(err, kvtransfer.ErrOutOfBounds):
		return wire.CodeBounds
	case errors.Is(err, kvtransfer.ErrSizeMismatch):
		return wire.CodeSize
	case errors.Is(err, kvtransfer.ErrChecksum):
		return wire.CodeCRC
	case errors.Is(err, kvtransfer.ErrProtocol):
		return wire.CodeProtocol
	case errors.Is(err, kvtransfer.ErrClosed):
		return wire.CodeShutdown
	case errors.Is(err, kvtransfer.ErrFailed):
		return wire.CodeFailed
	case errors.Is(err, kvtransfer.ErrRDMA):
		return wire.CodeRDMA
	}
	return wire.CodeUnknown
}

// errOf is the inverse of codeOf, with the peer's message attached.
func errOf(code uint32, msg string) error {
	var base error
	switch code {
	case wire.CodeBadToken:
		base = kvtransfer.ErrBadToken
	case wire.CodeExpired:
		base = kvtransfer.ErrExpired
	case wire.CodeCanceled:
		base = kvtransfer.ErrCanceled
	case wire.CodeAborted:
		base = kvtransfer.ErrAborted
	case wire.CodeCommitted:
		base = kvtransfer.ErrCommitted
	case wire.CodeBounds:
		base = kvtransfer.ErrOutOfBounds
	case wire.CodeSize:
		base = kvtransfer.ErrSizeMismatch
	case wire.CodeCRC:
		base = kvtransfer.ErrChecksum
	case wire.CodeProtocol, wire.CodeNotOpen:
		base = kvtransfer.ErrProtocol
	case wire.CodeShutdown:
		base = kvtransfer.ErrClosed
	case wire.CodeFailed:
		base = kvtransfer.ErrFailed
	case wire.CodeRDMA:
		base = kvtransfer.ErrRDMA
	default:
		base = kvtransfer.ErrFailed
	}
	if msg == "" {
		return base
	}
	return fmt.Errorf("%w (receiver: %s)", base, msg)
}

// benign reports whether a refusal is a race a correct sender can hit (the
// reservation ended under it) rather than a protocol violation.
func benign(err error) bool {
	return errors.Is(err, kvtransfer.ErrExpired) || errors.Is(err, kvtransfer.ErrCanceled) ||
		errors.Is(err, kvtransfer.ErrAborted) || errors.Is(err, kvtransfer.ErrFailed)
}
