package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/storage"
)

// VaultBucket is, in cluster mode, the store's shared vault
// (storage.Config.SharedVault) over KV VIGIE_VAULT: every node's sealed
// vault entries (the wrapped data key and the ciphertext, never clear
// traits), put and deleted through the writing node's outbox, read by any
// node whose own vault lacks a subject's traits (contact resolution). The
// bucket keeps one version per key (history 1): a delete leaves only its
// empty marker.
type VaultBucket struct {
	// JS gives the JetStream context (nil while there is none).
	JS JetStreamer
}

// VaultKey is the VIGIE_VAULT key of subject on site.
func VaultKey(site, subject string) string {
	return streams.KeyToken(site) + "." + streams.KeyToken(subject)
}

// PutMessage is the outbox message that puts entry under subject's key;
// its id is derived from the entry (whose ciphertext has a random nonce),
// so a republish is deduplicated.
func (VaultBucket) PutMessage(site, subject string, entry []byte) storage.Message {
	k := VaultKey(site, subject)
	sum := sha256.Sum256(append([]byte(k+"\x00"), entry...))
	return storage.Message{Topic: streams.KVSubject(streams.BucketVault, k), ID: "vault-" + hex.EncodeToString(sum[:16]), Data: entry}
}

// DeleteMessage is the outbox message that deletes subject's key (a KV
// delete: with history 1 the entry goes, its empty marker stays); its id
// holds the time it was made, so that an erasure after the duplicate
// window of an earlier one is not deduplicated away.
func (VaultBucket) DeleteMessage(site, subject string) storage.Message {
	k := VaultKey(site, subject)
	at := binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano()))
	sum := sha256.Sum256(append([]byte(k+"\x00deleted\x00"), at...))
	return storage.Message{Topic: streams.KVSubject(streams.BucketVault, k), ID: "vault-del-" + hex.EncodeToString(sum[:16]), KVDelete: true}
}

// Get returns the entry of subject on site, storage.ErrNotFound when
// there is none (or it was deleted), ErrUnavailable when the bucket cannot
// be read.
func (b VaultBucket) Get(ctx context.Context, site, subject string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	kv, err := bucket(ctx, b.JS, streams.BucketVault)
	if err != nil {
		return nil, err
	}
	e, err := kv.Get(ctx, VaultKey(site, subject))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, storage.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("%w: vault: %w", ErrUnavailable, err)
	}
	return e.Value(), nil
}
