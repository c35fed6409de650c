package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Plugin key-value limits.
const (
	maxKVKeyLen   = 1024
	maxKVValueLen = 1 << 20
)

// validKV checks a plugin name and a key of the plugin KV space.
func validKV(plugin, key string) error {
	if plugin == "" {
		return fmt.Errorf("%w: empty plugin", ErrInvalidKey)
	}
	if err := validName("plugin", plugin); err != nil {
		return err
	}
	if key == "" || len(key) > maxKVKeyLen || strings.IndexByte(key, 0) >= 0 {
		return fmt.Errorf("%w: kv key empty, longer than %d bytes or contains NUL", ErrInvalidKey, maxKVKeyLen)
	}
	return nil
}

// KVGet returns the value stored under key in plugin's own key-value space,
// or ErrNotFound when it is absent or expired.
func (s *Store) KVGet(ctx context.Context, plugin, key string) ([]byte, error) {
	if err := validKV(plugin, key); err != nil {
		return nil, err
	}
	v, err := s.getValue(ctx, "kv get", kvKey(plugin, key))
	if err != nil {
		return nil, err
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// KVPut stores value (at most 1 MiB) under key (at most 1024 bytes, no
// \x00) in plugin's own key-value space, replacing any earlier value. ttl 0
// keeps it until deleted; otherwise it expires after ttl, rounded up to a
// whole second (Badger's TTL granularity). With Retention.PluginKV set, ttl
// 0 or a longer ttl is that bound instead: nothing a plugin keeps outlives
// the configuration's retention.
func (s *Store) KVPut(ctx context.Context, plugin, key string, value []byte, ttl time.Duration) error {
	if err := validKV(plugin, key); err != nil {
		return err
	}
	if len(value) > maxKVValueLen {
		return fmt.Errorf("%w: kv value larger than %d bytes", ErrInvalidRecord, maxKVValueLen)
	}
	if ttl < 0 {
		return fmt.Errorf("%w: negative ttl", ErrInvalidRecord)
	}
	if b := s.cfg.Retention.PluginKV; b > 0 && (ttl == 0 || ttl > b) {
		ttl = b
	}
	return s.setValue(ctx, "kv put", kvKey(plugin, key), value, ttl)
}

// KVDelete deletes key from plugin's own key-value space; a missing key is
// not an error.
func (s *Store) KVDelete(ctx context.Context, plugin, key string) error {
	if err := validKV(plugin, key); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	s.writeGate.RLock()
	defer s.writeGate.RUnlock()
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete(kvKey(plugin, key)) }); err != nil {
		return fmt.Errorf("storage: kv delete: %w", err)
	}
	return nil
}

// getValue returns a copy of the value stored under key, or ErrNotFound;
// op names the operation in errors.
func (s *Store) getValue(ctx context.Context, op string, key []byte) ([]byte, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var v []byte
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		v, err = item.ValueCopy(nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: %s: %w", op, err)
	}
	return v, nil
}

// setValue writes one key, expiring after ttl when ttl > 0; op names the
// operation in errors.
func (s *Store) setValue(ctx context.Context, op string, key, value []byte, ttl time.Duration) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.disk.room(); err != nil {
		return fmt.Errorf("storage: %s: %w", op, err)
	}
	e := badger.NewEntry(key, value)
	if ttl > 0 {
		e.ExpiresAt = expiry(ttl)
	}
	s.writeGate.RLock()
	defer s.writeGate.RUnlock()
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.SetEntry(e) }); err != nil {
		return fmt.Errorf("storage: %s: %w", op, err)
	}
	s.disk.wrote(int64(len(key) + len(value) + entryOverhead))
	return nil
}
