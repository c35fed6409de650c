package sdk

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// toStatus turns an error returned by Go code into a gRPC status error whose
// code carries the sentinel across the process boundary.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Unknown
	switch {
	case errors.Is(err, ErrCapability):
		code = codes.PermissionDenied
	case errors.Is(err, ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, ErrNotImplemented):
		code = codes.Unimplemented
	case errors.Is(err, ErrNoHost):
		code = codes.FailedPrecondition
	case errors.Is(err, ErrInvalidPlugin):
		code = codes.InvalidArgument
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	return status.Error(code, err.Error())
}

// fromStatus turns a gRPC status error back into an error wrapping the
// matching sentinel; the remote message is kept.
func fromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	var sentinel error
	switch st.Code() {
	case codes.PermissionDenied:
		sentinel = ErrCapability
	case codes.NotFound:
		sentinel = ErrNotFound
	case codes.Unimplemented:
		sentinel = ErrNotImplemented
	case codes.Canceled:
		sentinel = context.Canceled
	case codes.DeadlineExceeded:
		sentinel = context.DeadlineExceeded
	case codes.FailedPrecondition:
		sentinel = ErrNoHost
	case codes.InvalidArgument:
		sentinel = ErrInvalidPlugin
	default:
		return fmt.Errorf("sdk: remote: %s", st.Message())
	}
	return fmt.Errorf("%w (remote: %s)", sentinel, st.Message())
}
