package decode

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/duet-llm/duet/engine/kvcache"
)

// Errors.
var (
	ErrDraining    = errors.New("decode: node is draining")
	ErrNoCapacity  = errors.New("decode: not enough free KV blocks")
	ErrUnknown     = errors.New("decode: unknown reservation")
	ErrToken       = errors.New("decode: wrong reservation token")
	ErrAttached    = errors.New("decode: reservation already has a stream")
	ErrBadRequest  = errors.New("decode: invalid request")
	ErrBadCommit   = errors.New("decode: commit does not match the reservation")
	ErrNotAttached = errors.New("decode: no stream attached in time")
	ErrCanceled    = errors.New("decode: canceled")
)

// toStatus maps an error to the gRPC status the caller sees: the one place
// where this package's errors meet the wire.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	code := codes.Internal
	switch {
	case errors.Is(err, ErrDraining):
		code = codes.Unavailable
	case errors.Is(err, ErrNoCapacity), errors.Is(err, kvcache.ErrNoBlocks):
		code = codes.ResourceExhausted
	case errors.Is(err, ErrUnknown):
		code = codes.NotFound
	case errors.Is(err, ErrToken):
		code = codes.PermissionDenied
	case errors.Is(err, ErrAttached):
		code = codes.FailedPrecondition
	case errors.Is(err, ErrBadRequest):
		code = codes.InvalidArgument
	case errors.Is(err, context.Canceled), errors.Is(err, ErrCanceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	return status.Error(code, err.Error())
}
