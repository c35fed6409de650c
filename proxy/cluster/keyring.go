package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigie-dev/vigie/internal/streams"
)

// keyringKey is the one key of KV VIGIE_KEYRING.
const keyringKey = "keyring"

// SharedKeyring is the cluster's keyring in KV VIGIE_KEYRING: the keyring
// sealed under the master key every node shares (ciphertext only; the KV
// never holds a key in clear), written once by the first node (Publish:
// the first writer wins) and then only by a compare-and-set on its
// revision (Update), as `vigie keys rotate` and `retire` and, in cluster
// mode, every change of the API tokens do (`vigie tokens`, `vigie admin
// token reset`); every running node follows it (Watch).
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
		// ErrKeyExists is the server's "wrong last sequence" (the
		// errors match by API error code), so it is also a lost Update.
		if errors.Is(err, jetstream.ErrKeyExists) {
			return ErrKeyringChanged
		}
		return fmt.Errorf("%w: keyring: %w", ErrUnavailable, err)
	}
	return nil
}

// Watch hands fn the sealed keyring and its revision: the current one,
// then each new one, in revision order, until ctx ends. A watch that fails
// (NATS away, fn's error) is started again a second later, from the
// current keyring: fn may see a revision twice and must apply the whole
// keyring it is given, never a difference.
func (s SharedKeyring) Watch(ctx context.Context, log *slog.Logger, fn func(ctx context.Context, sealed []byte, rev uint64) error) {
	keepWatching(ctx, time.Second, log, "shared keyring", func(ctx context.Context) error {
		kv, err := bucket(ctx, s.JS, streams.BucketKeyring)
		if err != nil {
			return err
		}
		return follow(ctx, kv, keyringKey, watchMark{}, "shared keyring", log, func(ctx context.Context, e jetstream.KeyValueEntry) error {
			return fn(ctx, e.Value(), e.Revision())
		})
	})
}
