package response

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/go-json-experiment/json"

	"github.com/vigie-dev/vigie/plugins/response/model"
	"github.com/vigie-dev/vigie/sdk"
)

// The state of a site's model, in the plugin's key-value space:
//
//	v1/<site>/meta          JSON meta: format version, generation, shards
//	v1/<site>/g<gen>/<i>    shard i of generation gen (model.MarshalShard)
//	v1/<site>/cells         the cells without the subjects
//	                        (model.MarshalSummary), for readers in another
//	                        process; written with every flush
//	v1/<site>/objected/<j>  JSON list of the subjects of objected shard j
//	                        (of objectedShards) whose objection stops
//	                        their modelling; absent when there is none
//
// Subjects are spread over shards by a hash of their pseudonym; a shard
// is written when it changed, at most every flush_events changes or
// flush_interval, and at once after a Forget. When a shard grows past
// maxShardBytes the shard count doubles under a new generation: every
// shard of the new generation is written, then the meta pointing to it,
// then the old generation is deleted (a crash in between leaves the old
// generation in force, or the new one with the old still listed as stale
// and deleted at the next load).
const stateVersion = 1

// maxShardBytes keeps shards well under the host's 1 MiB value limit (a
// variable for tests).
var maxShardBytes = 512 << 10

// meta is a site's state index.
type meta struct {
	Version    int        `json:"version"`
	Generation uint64     `json:"generation"`
	Shards     int        `json:"shards"`
	Stale      *staleMeta `json:"stale,omitempty"`
}

// staleMeta is a generation left to delete.
type staleMeta struct {
	Generation uint64 `json:"generation"`
	Shards     int    `json:"shards"`
}

// objectedShards is how many keys the objected subjects of a site are
// spread over (by model.ShardOf): 16 values of at most 1 MiB hold the
// pseudonyms of about 600 000 objections.
const objectedShards = 16

// site is one site's model and the bookkeeping of its stored state.
type site struct {
	name      string
	m         *model.Model
	meta      meta
	stored    bool // meta is in the store
	unflushed int
	flushed   time.Time
	pruned    time.Time
	// summaryStale: the cells changed since the summary was written.
	summaryStale bool
	// objected are the subjects whose objection stops their modelling.
	objected map[string]bool
}

// metaKey and shardKey name a site's keys.
func metaKey(site string) string { return "v1/" + site + "/meta" }
func shardKey(site string, gen uint64, i int) string {
	return "v1/" + site + "/g" + strconv.FormatUint(gen, 10) + "/" + strconv.Itoa(i)
}

// SummaryKey is the key, in the plugin's key-value space, of site's model
// summary (model.MarshalSummary, cells without subjects), written with
// every flush of the state: a reader in another process decodes it with
// model.NewSummary under the configuration's View.
func SummaryKey(site string) string { return "v1/" + site + "/cells" }

// objectedKey names shard j of a site's objected subjects.
func objectedKey(site string, j int) string { return "v1/" + site + "/objected/" + strconv.Itoa(j) }

// site returns the model of name, loading its state on first use.
// Called with p.mu held.
func (p *Modeler) site(ctx context.Context, st *settings, name string) (*site, error) {
	if s, ok := p.sites[name]; ok {
		return s, nil
	}
	s, err := p.load(ctx, st, name)
	if err != nil {
		return nil, err
	}
	p.sites[name] = s
	return s, nil
}

// load reads a site's state from the store. A shard that does not decode
// is logged and dropped (its subjects start afresh; it is written again);
// state of a newer format fails, so that it is never overwritten.
func (p *Modeler) load(ctx context.Context, st *settings, name string) (*site, error) {
	host := sdk.HostFrom(ctx)
	now := p.now()
	s := &site{name: name, meta: meta{Version: stateVersion, Shards: 1}, flushed: now, pruned: now, summaryStale: true}
	if err := p.loadObjected(ctx, s); err != nil {
		return nil, err
	}
	raw, err := host.KVGet(ctx, metaKey(name))
	switch {
	case errors.Is(err, sdk.ErrNotFound):
		s.m, err = model.New(st.model)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("%w: read %s meta: %w", ErrState, name, err)
	}
	var mt meta
	if err := json.Unmarshal(raw, &mt); err != nil || mt.Shards < 1 || mt.Shards > model.MaxShards {
		return nil, fmt.Errorf("%w: %s meta is damaged", ErrState, name)
	}
	if mt.Version > stateVersion {
		return nil, fmt.Errorf("%w: %s state has version %d, this plugin reads %d", ErrState, name, mt.Version, stateVersion)
	}
	cfg := st.model
	cfg.Shards = mt.Shards
	if s.m, err = model.New(cfg); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	s.meta, s.stored = mt, true
	for i := range mt.Shards {
		data, err := host.KVGet(ctx, shardKey(name, mt.Generation, i))
		if errors.Is(err, sdk.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%w: read %s shard %d: %w", ErrState, name, i, err)
		}
		if err := s.m.Load(data); err != nil {
			if errors.Is(err, model.ErrVersion) {
				return nil, fmt.Errorf("%w: %s shard %d: %w", ErrState, name, i, err)
			}
			host.Log(ctx, slog.LevelError, "response model shard unreadable, its subjects start afresh",
				slog.String("site", name), slog.Int("shard", i), slog.String("err", err.Error()))
			s.m.MarkDirty(i)
		}
	}
	if mt.Stale != nil {
		if err := p.dropGeneration(ctx, s, *mt.Stale); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// flush writes the changed shards of s (and its meta when new), pruning
// the model first when an hour has passed. Called with p.mu held.
func (p *Modeler) flush(ctx context.Context, s *site) error {
	host := sdk.HostFrom(ctx)
	now := p.now()
	if now.Sub(s.pruned) >= pruneEvery {
		s.m.Prune(now)
		s.pruned = now
	}
	dirty := s.m.Dirty()
	for _, i := range dirty {
		data, err := s.m.MarshalShard(i)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrState, err)
		}
		if len(data) > maxShardBytes {
			return p.reshard(ctx, s)
		}
		if err := host.KVPut(ctx, shardKey(s.name, s.meta.Generation, i), data, 0); err != nil {
			return fmt.Errorf("%w: write %s shard %d: %w", ErrState, s.name, i, err)
		}
		s.m.MarkClean(i)
	}
	if !s.stored {
		if err := p.putMeta(ctx, s); err != nil {
			return err
		}
		s.stored = true
	}
	if len(dirty) > 0 || s.summaryStale {
		if err := p.putSummary(ctx, s); err != nil {
			return err
		}
	}
	s.unflushed, s.flushed = 0, now
	return nil
}

// putSummary writes the cells of s for readers in another process.
func (p *Modeler) putSummary(ctx context.Context, s *site) error {
	data, err := s.m.MarshalSummary()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrState, err)
	}
	if err := sdk.HostFrom(ctx).KVPut(ctx, SummaryKey(s.name), data, 0); err != nil {
		return fmt.Errorf("%w: write %s summary: %w", ErrState, s.name, err)
	}
	s.summaryStale = false
	return nil
}

// loadObjected reads the objected subjects of s. A shard that does not
// decode fails the load: dropping it would model people who objected.
func (p *Modeler) loadObjected(ctx context.Context, s *site) error {
	host := sdk.HostFrom(ctx)
	s.objected = map[string]bool{}
	for j := range objectedShards {
		raw, err := host.KVGet(ctx, objectedKey(s.name, j))
		if errors.Is(err, sdk.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%w: read %s objections %d: %w", ErrState, s.name, j, err)
		}
		var list []string
		if err := json.Unmarshal(raw, &list); err != nil {
			return fmt.Errorf("%w: %s objections %d are damaged", ErrState, s.name, j)
		}
		for _, subj := range list {
			s.objected[subj] = true
		}
	}
	return nil
}

// putObjected writes the objected shards that hold one of subjects.
func (p *Modeler) putObjected(ctx context.Context, s *site, subjects []string) error {
	host := sdk.HostFrom(ctx)
	shards := map[int]bool{}
	for _, subj := range subjects {
		shards[model.ShardOf(subj, objectedShards)] = true
	}
	for j := range shards {
		var list []string
		for subj := range s.objected {
			if model.ShardOf(subj, objectedShards) == j {
				list = append(list, subj)
			}
		}
		var err error
		if len(list) == 0 {
			err = host.KVDelete(ctx, objectedKey(s.name, j))
		} else {
			slices.Sort(list)
			var raw []byte
			if raw, err = json.Marshal(list); err == nil {
				err = host.KVPut(ctx, objectedKey(s.name, j), raw, 0)
			}
		}
		if err != nil {
			return fmt.Errorf("%w: write %s objections %d: %w", ErrState, s.name, j, err)
		}
	}
	return nil
}

// reshard doubles the shard count of s until every shard fits, writes
// the new generation, switches the meta to it and deletes the old one.
func (p *Modeler) reshard(ctx context.Context, s *site) error {
	host := sdk.HostFrom(ctx)
	old := staleMeta{Generation: s.meta.Generation, Shards: s.meta.Shards}
	n := s.m.Shards()
	var shards [][]byte
	for {
		n *= 2
		if n > model.MaxShards {
			return fmt.Errorf("%w: %s: more than %d shards", ErrState, s.name, model.MaxShards)
		}
		if err := s.m.SetShards(n); err != nil {
			return fmt.Errorf("%w: %w", ErrState, err)
		}
		shards = shards[:0]
		fits := true
		for i := range n {
			data, _ := s.m.MarshalShard(i)
			if len(data) > maxShardBytes {
				fits = false
				break
			}
			shards = append(shards, data)
		}
		if fits {
			break
		}
	}
	gen := s.meta.Generation + 1
	for i, data := range shards {
		if err := host.KVPut(ctx, shardKey(s.name, gen, i), data, 0); err != nil {
			return fmt.Errorf("%w: write %s shard %d: %w", ErrState, s.name, i, err)
		}
	}
	s.meta = meta{Version: stateVersion, Generation: gen, Shards: n, Stale: &old}
	if err := p.putMeta(ctx, s); err != nil {
		return err
	}
	s.stored = true
	for i := range n {
		s.m.MarkClean(i)
	}
	if err := p.dropGeneration(ctx, s, old); err != nil {
		return err
	}
	if err := p.putSummary(ctx, s); err != nil {
		return err
	}
	s.unflushed, s.flushed = 0, p.now()
	return nil
}

// dropGeneration deletes the shards of a replaced generation, then
// records that nothing is stale any more.
func (p *Modeler) dropGeneration(ctx context.Context, s *site, old staleMeta) error {
	host := sdk.HostFrom(ctx)
	for i := range old.Shards {
		if err := host.KVDelete(ctx, shardKey(s.name, old.Generation, i)); err != nil {
			return fmt.Errorf("%w: delete %s old shard %d: %w", ErrState, s.name, i, err)
		}
	}
	s.meta.Stale = nil
	return p.putMeta(ctx, s)
}

// putMeta writes the meta of s.
func (p *Modeler) putMeta(ctx context.Context, s *site) error {
	raw, err := json.Marshal(s.meta)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrState, err)
	}
	if err := sdk.HostFrom(ctx).KVPut(ctx, metaKey(s.name), raw, 0); err != nil {
		return fmt.Errorf("%w: write %s meta: %w", ErrState, s.name, err)
	}
	return nil
}

// ObjectedKey is the key, in the plugin's key-value space, of the shard
// of site's objected subjects that would hold subject: a JSON list of
// pseudonyms, absent when empty. A subject in it is kept out of the model
// until its objection is lifted.
func ObjectedKey(site, subject string) string {
	return objectedKey(site, model.ShardOf(subject, objectedShards))
}
