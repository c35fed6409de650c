package cluster

import "errors"

// ErrUnavailable is returned when the shared state (a KV bucket) cannot be
// reached: the request is answered 503 and retried.
var ErrUnavailable = errors.New("cluster: shared state unavailable")

// ErrBusy is returned when another node is storing a record with the same
// messageId: the request is answered 503 and its retry is a duplicate.
var ErrBusy = errors.New("cluster: the same messageId is being stored by another request")
