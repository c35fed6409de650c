package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// bucketCheckInterval is how often a running watch checks that its bucket
// is still the one it started on.
const bucketCheckInterval = 2 * time.Second

// watchMark is where a watch keeps its position in a MarkStore (key under
// markSpace): the revision it handled last and the creation time of the
// bucket's stream that revision belongs to.
type watchMark struct {
	marks MarkStore // nil: no position is kept
	key   string
}

func (m watchMark) load(ctx context.Context) (rev uint64, created int64) {
	if m.marks == nil {
		return 0, 0
	}
	b, err := m.marks.KVGet(ctx, markSpace, m.key)
	if err != nil {
		return 0, 0
	}
	r, c, _ := strings.Cut(string(b), " ")
	rev, _ = strconv.ParseUint(r, 10, 64)
	created, _ = strconv.ParseInt(c, 10, 64)
	return rev, created
}

func (m watchMark) save(ctx context.Context, rev uint64, created time.Time) error {
	if m.marks == nil {
		return nil
	}
	v := strconv.FormatUint(rev, 10) + " " + strconv.FormatInt(created.UnixNano(), 10)
	return m.marks.KVPut(ctx, markSpace, m.key, []byte(v), 0)
}

// follow watches bucket kv (the keys matching filter; "" for every key)
// and hands fn each entry: from after mark's revision (every entry when
// there is none, or when the bucket was lost and declared again since:
// its revisions start again at 1), then each new one. The position is
// saved past each entry fn accepted, even if ctx ended meanwhile. It
// returns nil when ctx ends, and an error when fn fails, the watch ends or
// the bucket is recreated under it (the caller watches again).
func follow(ctx context.Context, kv jetstream.KeyValue, filter string, mark watchMark, what string, log *slog.Logger,
	fn func(ctx context.Context, e jetstream.KeyValueEntry) error) error {
	created, last, err := bucketState(ctx, kv)
	if err != nil {
		return fmt.Errorf("cluster: %s bucket status: %w", what, err)
	}
	opts := []jetstream.WatchOpt{jetstream.IgnoreDeletes()}
	rev, markCreated := mark.load(ctx)
	if rev > 0 && (rev > last || (markCreated != 0 && markCreated != created.UnixNano())) {
		if log != nil {
			log.Warn("cluster: the " + what + " bucket was recreated; reading every entry again")
		}
		rev = 0
	}
	if rev > 0 {
		opts = append(opts, jetstream.ResumeFromRevision(rev+1))
	}
	var kw jetstream.KeyWatcher
	if filter == "" {
		kw, err = kv.WatchAll(ctx, opts...)
	} else {
		kw, err = kv.Watch(ctx, filter, opts...)
	}
	if err != nil {
		return fmt.Errorf("cluster: watch %s: %w", what, err)
	}
	defer func() { _ = kw.Stop() }()
	check := time.NewTicker(bucketCheckInterval)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-check.C:
			if recreated(ctx, kv, created) {
				return fmt.Errorf("cluster: the %s bucket was recreated", what)
			}
		case e, ok := <-kw.Updates():
			if !ok {
				return fmt.Errorf("cluster: %s watch ended", what)
			}
			if e == nil { // initial values done
				continue
			}
			if err := fn(ctx, e); err != nil {
				return fmt.Errorf("cluster: %s at revision %d: %w", what, e.Revision(), err)
			}
			if err := mark.save(context.WithoutCancel(ctx), e.Revision(), created); err != nil && log != nil {
				log.Warn("cluster: "+what+" watch position not saved", "err", err)
			}
		}
	}
}

// recreated reports whether kv's stream is gone or is another one than
// the stream created at created (lost and declared again: revisions from 1).
func recreated(ctx context.Context, kv jetstream.KeyValue, created time.Time) bool {
	now, _, err := bucketState(ctx, kv)
	return errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound) ||
		(err == nil && !now.Equal(created))
}

// bucketState returns the creation time and last sequence of kv's stream.
func bucketState(ctx context.Context, kv jetstream.KeyValue) (time.Time, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	st, err := kv.Status(ctx)
	if err != nil {
		return time.Time{}, 0, err
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok || bs.StreamInfo() == nil {
		return time.Time{}, 0, errors.New("cluster: bucket status without stream info")
	}
	info := bs.StreamInfo()
	return info.Created, info.State.LastSeq, nil
}

// keepWatching runs watch until ctx ends, again after retry (1 s when 0)
// whenever it returns, logging its error as what's watch.
func keepWatching(ctx context.Context, retry time.Duration, log *slog.Logger, what string, watch func(context.Context) error) {
	if retry <= 0 {
		retry = time.Second
	}
	for ctx.Err() == nil {
		if err := watch(ctx); err != nil && ctx.Err() == nil && log != nil {
			log.Warn("cluster: "+what+" watch failed; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(retry):
		}
	}
}
