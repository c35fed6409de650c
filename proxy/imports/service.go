// Package imports brings a company's own records (orders, subscriptions,
// loyalty cards, scores) into Vigie from CSV or NDJSON files, through the
// same pipeline as every hit: consent gate, pseudonymization, scrubbing,
// vault.
//
// A file is posted to the admin API with its mapping (POST
// /admin/v1/imports, multipart: mapping, file); the answer is 202 with a
// job, which one background worker runs. The upload is streamed to a file
// under the data directory, which the worker reads in batches (encoding/csv
// with a reused record, or one JSON object per line), so memory stays
// bounded whatever the size. After each batch the job records its offset,
// counts and per-row errors in Badger: a restart resumes at the last
// committed row. Each row's event carries a keyed MAC of its natural key
// as its dedup key, kept as long as the record, so importing a file again
// adds nothing.
//
// Each row is about a person named by a user id or an e-mail address; an
// address is looked up in the blind index, and one never seen becomes the
// subject its address would be as a user id, indexed by the address. Its
// lawful basis is a contract or a consent column with a date (and source):
// a consent newer than the ledger's choice is recorded in the ledger as a
// proof with its source; an older one yields to the ledger. A row is
// imported only when its basis grants every purpose of the mapping, after
// the person's objection and restriction. Attributes (scores,
// enrichments) are set on the profile; events reach the plugins through
// the outbox like any other, so profiles and segments grow by themselves.
package imports

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vigie-dev/vigie/proxy/blind"
	"github.com/vigie-dev/vigie/proxy/collect"
	"github.com/vigie-dev/vigie/proxy/ledger"
	"github.com/vigie-dev/vigie/proxy/pipeline"
	"github.com/vigie-dev/vigie/storage"
)

// Suppressor tells whether a message names a person erased with
// suppression (package privacy's Service).
type Suppressor interface {
	Suppressed(site string, m *collect.Message) bool
}

// Config configures a Service.
type Config struct {
	// Store keeps the jobs and receives the events (required).
	Store *storage.Store
	// Pipeline and Sites process the rows (required).
	Pipeline *pipeline.Pipeline
	Sites    map[string]*pipeline.Site
	// Ledger is the consent ledger (required).
	Ledger *ledger.Ledger
	// Blind is the blind index (required): e-mail identities, natural keys.
	Blind *blind.Index
	// Suppressor, when set, keeps suppressed people out.
	Suppressor Suppressor
	// Dir holds the uploaded files until their job ends (required; made
	// if missing, on the data directory's disk).
	Dir string
	// Purposes are the configured purposes.
	Purposes []string
	// ProfilePurposes allow a profile. Default personalization, marketing.
	ProfilePurposes []string
	// Retention is retention.imported (0: forever).
	Retention time.Duration
	// MaxFileBytes bounds an uploaded file. Default DefaultMaxFileBytes.
	MaxFileBytes int64
	// BatchSize is how many rows are committed together. Default 1000.
	BatchSize int
	// OutboxHighWater: while the outbox holds more events, the import
	// waits, so that live traffic never meets a full outbox. Default
	// 100 000.
	OutboxHighWater int64
	// StallTimeout is how long an upload may send nothing. Default 30s.
	StallTimeout time.Duration
	// FreeSpace measures the free bytes of Dir's filesystem. Default
	// storage.StatfsFree.
	FreeSpace func(dir string) (uint64, error)
	// Shared, in cluster mode, shows every node's jobs on every node (nil:
	// this node's only).
	Shared SharedJobs
	// Node is this node's id in cluster mode, named in its jobs' views.
	Node string
	// Remote, in cluster mode, passes a request for another node's job
	// (its cancellation, its errors) to that node (nil: 409
	// job_on_other_node, naming it).
	Remote Remote
	// Logger receives the job events (never a value of a file). Default
	// slog.Default().
	Logger *slog.Logger
}

// SharedJobs shares the jobs' views between the nodes of a cluster. A
// view holds what GET /admin/v1/imports/{id} shows (counts, status,
// mapping), never a value of the file; the file, the per-row errors and the
// job's run stay on the node that received it.
type SharedJobs interface {
	// Message is the outbox message putting job's view, committed with
	// each write of the job.
	Message(job Job) (storage.Message, error)
	// Job returns the view of a job of another node, or ErrNotFound.
	Job(ctx context.Context, id string) (Job, error)
	// Jobs returns the views of every node's jobs.
	Jobs(ctx context.Context) ([]Job, error)
}

// Defaults of Config.
const (
	DefaultMaxFileBytes    = 8 << 30
	defaultBatchSize       = 1000
	defaultOutboxHighWater = 100_000
	defaultStallTimeout    = 30 * time.Second
)

// Service runs import jobs. Its methods are safe for concurrent use.
type Service struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	queue    []string                      // job ids waiting, in order
	running  map[string]context.CancelFunc // the job being run
	cancels  map[string]bool               // running jobs Cancel asked to stop
	inflight map[string]bool               // Idempotency-Keys being uploaded
	closed   bool
	wake     chan struct{}
	stop     context.CancelFunc
	done     chan struct{}
}

// New checks cfg and returns a service that has not started.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Pipeline == nil || cfg.Ledger == nil || cfg.Blind == nil || cfg.Dir == "" || len(cfg.Sites) == 0 {
		return nil, errors.New("imports: Store, Pipeline, Sites, Ledger, Blind and Dir are required")
	}
	if cfg.MaxFileBytes <= 0 {
		cfg.MaxFileBytes = DefaultMaxFileBytes
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = defaultBatchSize
	}
	if cfg.OutboxHighWater <= 0 {
		cfg.OutboxHighWater = defaultOutboxHighWater
	}
	if cfg.StallTimeout <= 0 {
		cfg.StallTimeout = defaultStallTimeout
	}
	if cfg.FreeSpace == nil {
		cfg.FreeSpace = storage.StatfsFree
	}
	if len(cfg.ProfilePurposes) == 0 {
		cfg.ProfilePurposes = []string{"personalization", "marketing"}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Service{cfg: cfg, log: cfg.Logger, running: map[string]context.CancelFunc{}, cancels: map[string]bool{},
		inflight: map[string]bool{}, wake: make(chan struct{}, 1)}, nil
}

// Start makes Dir, removes what an earlier run left (partial uploads,
// files of ended jobs), queues the jobs that did not end (running first,
// then queued, in creation order) and starts the worker.
func (s *Service) Start(ctx context.Context) error {
	if err := os.MkdirAll(s.cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("imports: %w", err)
	}
	var running, queued []string
	live := map[string]bool{}
	err := s.cfg.Store.ImportJobs(ctx, func(id string, v []byte) error {
		rec, err := decodeRecord(v)
		if err != nil {
			s.log.Warn("import job unreadable; skipped", "job", id)
			return nil
		}
		switch rec.Status {
		case StatusRunning:
			running = append(running, id)
		case StatusQueued:
			queued = append(queued, id)
		default:
			return nil
		}
		live[id] = true
		return nil
	})
	if err != nil {
		return fmt.Errorf("imports: %w", err)
	}
	entries, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return fmt.Errorf("imports: %w", err)
	}
	for _, e := range entries {
		id, isData := strings.CutSuffix(e.Name(), dataSuffix)
		if isData && live[id] {
			continue
		}
		_ = os.Remove(filepath.Join(s.cfg.Dir, e.Name()))
	}
	wctx, cancel := context.WithCancel(context.Background())
	s.mu.Lock()
	s.queue = append(running, queued...)
	s.stop, s.done = cancel, make(chan struct{})
	s.mu.Unlock()
	go s.work(wctx)
	if n := len(running) + len(queued); n > 0 {
		s.log.Info("import jobs resumed", "jobs", n)
	}
	return nil
}

// Stop stops the worker: the job being run stops where it is and resumes
// at the next start from its last committed batch. It waits for the
// worker until ctx is done.
func (s *Service) Stop(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	stop, done := s.stop, s.done
	s.mu.Unlock()
	if stop == nil {
		return nil
	}
	stop()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("imports: stop: %w", ctx.Err())
	}
}

// dataSuffix ends the name of a job's file in Dir; partSuffix an upload in
// progress.
const (
	dataSuffix = ".data"
	partSuffix = ".part"
)

// dataPath is the file of job id.
func (s *Service) dataPath(id string) string { return filepath.Join(s.cfg.Dir, id+dataSuffix) }

// enqueue adds job id to the queue and wakes the worker.
func (s *Service) enqueue(id string) {
	s.mu.Lock()
	s.queue = append(s.queue, id)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// work runs the queued jobs one at a time until ctx is done.
func (s *Service) work(ctx context.Context) {
	defer close(s.done)
	for {
		s.mu.Lock()
		var id string
		if len(s.queue) > 0 {
			id, s.queue = s.queue[0], s.queue[1:]
		}
		var jctx context.Context
		var cancel context.CancelFunc
		if id != "" {
			jctx, cancel = context.WithCancel(ctx)
			s.running[id] = cancel
		}
		s.mu.Unlock()
		if id == "" {
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
				continue
			}
		}
		s.runJob(jctx, ctx, id)
		cancel()
		s.mu.Lock()
		delete(s.running, id)
		delete(s.cancels, id)
		s.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
	}
}

// Cancel cancels job id: a queued job ends at once, a running one after
// its current batch. An ended job gives ErrFinished.
func (s *Service) Cancel(ctx context.Context, id string) (Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, err := s.load(ctx, id)
	if err != nil {
		return Job{}, err
	}
	if rec.finished() {
		return rec.view(), ErrFinished
	}
	if cancel, ok := s.running[id]; ok {
		// The worker stops after its current batch and ends the job.
		s.cancels[id] = true
		rec.Status = StatusCanceled
		cancel()
		return rec.view(), nil
	}
	s.queue = slices.DeleteFunc(s.queue, func(q string) bool { return q == id })
	now := time.Now().UTC()
	rec.Status, rec.FinishedAt = StatusCanceled, &now
	if err := s.put(ctx, rec, nil, nil); err != nil {
		return Job{}, err
	}
	_ = os.Remove(s.dataPath(id))
	return rec.view(), nil
}

// cancelRequested reports whether Cancel asked running job id to stop
// (rather than Stop).
func (s *Service) cancelRequested(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cancels[id]
}
