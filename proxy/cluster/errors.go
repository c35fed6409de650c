package cluster

import "errors"

// ErrUnavailable is returned when the shared state (a KV bucket) cannot be
// reached: the request is answered 503 and retried.
var ErrUnavailable = errors.New("cluster: shared state unavailable")

// ErrBusy is returned when another node is storing a record with the same
// messageId: the request is answered 503 and its retry is a duplicate.
var ErrBusy = errors.New("cluster: the same messageId is being stored by another request")

// ErrNoSharedKeyring: KV VIGIE_KEYRING holds no keyring yet.
var ErrNoSharedKeyring = errors.New("cluster: no shared keyring yet")

// ErrKeyringTaken: another node published the cluster's keyring first.
var ErrKeyringTaken = errors.New("cluster: another node published the shared keyring first")

// ErrKeyringChanged: the shared keyring changed since it was read.
var ErrKeyringChanged = errors.New("cluster: the shared keyring changed meanwhile")
