package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Import jobs (package proxy/imports) are stored as their owner encodes
// them, with their per-row errors and the record of their Idempotency-Key:
// the store keeps them ImportJobTTL after their last write and names no
// subject in them.

// ImportJobTTL is how long an import job, its per-row errors and its
// idempotency record are kept after the job's last write: 30 days.
const ImportJobTTL = 30 * 24 * time.Hour

// maxImportJobBytes bounds one stored import job.
const maxImportJobBytes = 1 << 20

// maxImportErrorBytes bounds one stored per-row error.
const maxImportErrorBytes = 4 << 10

// ImportRowError is one per-row error of an import job, as its owner
// encoded it (never a value of the row).
type ImportRowError struct {
	// Row is the row number (1 for the first data row).
	Row uint64
	// Value is the encoded error, at most 4 KiB.
	Value []byte
}

// ImportWrite is what PutImportJob writes in one transaction.
type ImportWrite struct {
	// Job is the job record (required, at most 1 MiB).
	Job []byte
	// Errors are per-row errors to store; an error for a row that already
	// has one replaces it, so writing a batch again after a restart adds
	// nothing.
	Errors []ImportRowError
	// IdemKey, when set, is the SHA-256 of the request's Idempotency-Key,
	// stored with IdemValue.
	IdemKey, IdemValue []byte
	// Msgs are committed to the outbox in the same transaction (in
	// cluster mode, the job's view for the other nodes).
	Msgs []Message
}

// validImportID checks a job id.
func validImportID(id string) error {
	if id == "" || len(id) > maxNameLen || strings.IndexByte(id, 0) >= 0 {
		return fmt.Errorf("%w: import job id empty, too long or with NUL", ErrInvalidKey)
	}
	return nil
}

// PutImportJob stores job id with w's errors and idempotency record, all
// kept ImportJobTTL from now, and commits w.Msgs, in one transaction.
func (s *Store) PutImportJob(ctx context.Context, id string, w ImportWrite) error {
	if err := validImportID(id); err != nil {
		return err
	}
	if len(w.Job) == 0 || len(w.Job) > maxImportJobBytes {
		return fmt.Errorf("%w: import job empty or larger than %d bytes", ErrInvalidRecord, maxImportJobBytes)
	}
	if len(w.IdemKey) > maxDedupLen {
		return fmt.Errorf("%w: idempotency key too long", ErrInvalidKey)
	}
	size := len(w.Job) + len(id) + entryOverhead
	for _, e := range w.Errors {
		if e.Row == 0 || len(e.Value) > maxImportErrorBytes {
			return fmt.Errorf("%w: import error: row 0 or larger than %d bytes", ErrInvalidRecord, maxImportErrorBytes)
		}
		size += len(id) + 12 + len(e.Value) + entryOverhead
	}
	exp := expiry(ImportJobTTL)
	return s.update(ctx, "put import job", w.Msgs, size, func(txn *badger.Txn) error {
		set := func(k, v []byte) error {
			e := badger.NewEntry(k, v)
			e.ExpiresAt = exp
			return txn.SetEntry(e)
		}
		if err := set(importJobKey(id), w.Job); err != nil {
			return err
		}
		for _, e := range w.Errors {
			if err := set(importErrorKey(id, e.Row), e.Value); err != nil {
				return err
			}
		}
		if len(w.IdemKey) > 0 {
			return set(importIdemKey(w.IdemKey), w.IdemValue)
		}
		return nil
	})
}

// ImportJob returns job id, or ErrNotFound.
func (s *Store) ImportJob(ctx context.Context, id string) ([]byte, error) {
	if err := validImportID(id); err != nil {
		return nil, err
	}
	return s.getValue(ctx, "import job", importJobKey(id))
}

// ImportJobs calls fn with every stored import job, in id order.
func (s *Store) ImportJobs(ctx context.Context, fn func(id string, v []byte) error) error {
	return s.scanPrefix(ctx, "import jobs", []byte(prefixImportJob), func(k, v []byte) error {
		return fn(string(k[len(prefixImportJob):]), v)
	})
}

// ImportErrors returns up to limit per-row errors of job id whose row is
// after after, in row order.
func (s *Store) ImportErrors(ctx context.Context, id string, after uint64, limit int) ([]ImportRowError, error) {
	if err := validImportID(id); err != nil {
		return nil, err
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	prefix := importErrorPrefix(id)
	var out []ImportRowError
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: min(limit, 100)})
		defer it.Close()
		for it.Seek(binary.BigEndian.AppendUint64(bytes.Clone(prefix), after+1)); it.ValidForPrefix(prefix) && len(out) < limit; it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			k := it.Item().Key()
			if len(k) != len(prefix)+8 {
				continue
			}
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out = append(out, ImportRowError{Row: binary.BigEndian.Uint64(k[len(prefix):]), Value: v})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: import errors: %w", err)
	}
	return out, nil
}

// ImportIdempotency returns the idempotency record stored under key (the
// SHA-256 of an Idempotency-Key), or ErrNotFound.
func (s *Store) ImportIdempotency(ctx context.Context, key []byte) ([]byte, error) {
	if len(key) == 0 || len(key) > maxDedupLen {
		return nil, fmt.Errorf("%w: idempotency key empty or too long", ErrInvalidKey)
	}
	return s.getValue(ctx, "import idempotency", importIdemKey(key))
}
