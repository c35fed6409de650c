package cluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigie-dev/vigie/internal/streams"
)

// keyringKey is the one key of KV VIGIE_KEYRING.
const keyringKey = "keyring"

// SharedKeyring is the cluster's keyring in KV VIGIE_KEYRING: the keyring
// sealed under the master key every node shares (ciphertext only; the KV
// never holds a key in clear), written once by the first node (Publish:
// the first writer wins) and then only by a compare-and-set on its
// revision (Update), as `vigie keys rotate` and `retire` do.
type SharedKeyring struct {
	// JS gives the JetStream context.
	JS JetStreamer
}

// Get returns the sealed keyring and its revision; ErrNoSharedKeyring if
// the bucket holds none, an error wrapping ErrUnavailable if it cannot be
// read.
func (s SharedKeyring) Get(ctx context.Context) ([]byte, uint64, error) {
	kv, err := bucket(ctx, s.JS, streams.BucketKeyring)
	if err != nil {
		return nil, 0, err
	}
	e, err := kv.Get(ctx, keyringKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, ErrNoSharedKeyring
	}
	if err != nil {
		return nil, 0, fmt.Errorf("%w: keyring: %w", ErrUnavailable, err)
	}
	return e.Value(), e.Revision(), nil
}

// Publish stores sealed as the cluster's keyring if there is none yet; if
// another node published one first it returns ErrKeyringTaken and the
// caller uses that one (Get), never its own.
func (s SharedKeyring) Publish(ctx context.Context, sealed []byte) error {
	kv, err := bucket(ctx, s.JS, streams.BucketKeyring)
	if err != nil {
		return err
	}
	if _, err := kv.Create(ctx, keyringKey, sealed); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return ErrKeyringTaken
		}
		return fmt.Errorf("%w: keyring: %w", ErrUnavailable, err)
	}
	return nil
}

// Update replaces the cluster's keyring with sealed if its revision is
// still rev; ErrKeyringChanged if another writer changed it meanwhile.
func (s SharedKeyring) Update(ctx context.Context, sealed []byte, rev uint64) error {
	kv, err := bucket(ctx, s.JS, streams.BucketKeyring)
	if err != nil {
		return err
	}
	if _, err := kv.Update(ctx, keyringKey, sealed, rev); err != nil {
		var apiErr *jetstream.APIError
		if errors.Is(err, jetstream.ErrKeyExists) || (errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence) {
			return ErrKeyringChanged
		}
		return fmt.Errorf("%w: keyring: %w", ErrUnavailable, err)
	}
	return nil
}
