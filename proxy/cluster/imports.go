package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/proxy/imports"
	"github.com/vigie-dev/vigie/storage"
)

// ImportJobs shares the import jobs' views between the nodes
// (imports.SharedJobs), in KV VIGIE_IMPORTS: key the job id, value the job
// as GET /admin/v1/imports/{id} shows it (counts, status, mapping; never a
// value of the file), put through the outbox of the node running the job
// with each write of the job, kept storage.ImportJobTTL.
type ImportJobs struct {
	// JS gives the JetStream context.
	JS JetStreamer
}

var _ imports.SharedJobs = (*ImportJobs)(nil)

// Message implements imports.SharedJobs. Its id is derived from the view,
// so a republish of the same view is deduplicated.
func (s *ImportJobs) Message(job imports.Job) (storage.Message, error) {
	v, err := json.Marshal(job)
	if err != nil {
		return storage.Message{}, fmt.Errorf("cluster: import job view: %w", err)
	}
	sum := sha256.Sum256(v)
	return storage.Message{Topic: streams.KVSubject(streams.BucketImports, streams.KeyToken(job.ID)),
		ID: "import-" + hex.EncodeToString(sum[:16]), Data: v}, nil
}

// Job implements imports.SharedJobs.
func (s *ImportJobs) Job(ctx context.Context, id string) (imports.Job, error) {
	ctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	kv, err := bucket(ctx, s.JS, streams.BucketImports)
	if err != nil {
		return imports.Job{}, err
	}
	e, err := kv.Get(ctx, streams.KeyToken(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return imports.Job{}, imports.ErrNotFound
	}
	if err != nil {
		return imports.Job{}, fmt.Errorf("cluster: import job view: %w", err)
	}
	var j imports.Job
	if err := json.Unmarshal(e.Value(), &j); err != nil {
		return imports.Job{}, fmt.Errorf("cluster: import job view: %w", err)
	}
	return j, nil
}

// Jobs implements imports.SharedJobs.
func (s *ImportJobs) Jobs(ctx context.Context) ([]imports.Job, error) {
	ctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	kv, err := bucket(ctx, s.JS, streams.BucketImports)
	if err != nil {
		return nil, err
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("cluster: import job views: %w", err)
	}
	var out []imports.Job
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue // expired or deleted since
		}
		var j imports.Job
		if json.Unmarshal(e.Value(), &j) == nil {
			out = append(out, j)
		}
	}
	return out, nil
}

// ImportCalls passes requests for import jobs between the nodes
// (imports.Remote) by core NATS request-reply on
// streams.ImportCallSubject(node): a request, in no stream, answered by the
// node running the job, or by none while it is down (then an error: the
// client retries). The cluster's NATS credentials are what a node trusts
// a passed-on request by: it was authenticated by the node that passed it.
type ImportCalls struct {
	// JS gives the JetStream context (its connection).
	JS JetStreamer
}

var _ imports.Remote = (*ImportCalls)(nil)

// callTimeout bounds a call to another node.
const callTimeout = 5 * time.Second

// Call implements imports.Remote.
func (c *ImportCalls) Call(ctx context.Context, node string, req imports.RemoteRequest) (imports.RemoteReply, error) {
	js := c.JS.JetStream()
	if js == nil {
		return imports.RemoteReply{}, ErrUnavailable
	}
	data, err := json.Marshal(req)
	if err != nil {
		return imports.RemoteReply{}, fmt.Errorf("cluster: import call: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	m, err := js.Conn().RequestWithContext(ctx, streams.ImportCallSubject(node), data)
	if err != nil {
		return imports.RemoteReply{}, fmt.Errorf("%w: import call to node %s: %w", ErrUnavailable, node, err)
	}
	var rep imports.RemoteReply
	if err := json.Unmarshal(m.Data, &rep); err != nil || rep.Status == 0 {
		return imports.RemoteReply{}, fmt.Errorf("%w: import call to node %s: a reply that does not parse", ErrUnavailable, node)
	}
	return rep, nil
}

// Serve answers the calls for node with serve, from now until the
// returned stop, which waits for a call being answered.
func (c *ImportCalls) Serve(ctx context.Context, node string, serve func(context.Context, imports.RemoteRequest) imports.RemoteReply) (stop func(), err error) {
	js := c.JS.JetStream()
	if js == nil {
		return nil, ErrUnavailable
	}
	var (
		mu      sync.Mutex
		stopped bool
		calls   sync.WaitGroup
	)
	sub, err := js.Conn().Subscribe(streams.ImportCallSubject(node), func(m *nats.Msg) {
		mu.Lock()
		if stopped {
			mu.Unlock()
			return
		}
		calls.Add(1)
		mu.Unlock()
		defer calls.Done()
		var req imports.RemoteRequest
		rep := imports.RemoteReply{Status: 400, Body: json.RawMessage(`{"code":"invalid_request","error":"the request passed on does not parse"}`)}
		if json.Unmarshal(m.Data, &req) == nil {
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			rep = serve(cctx, req)
			cancel()
		}
		if data, err := json.Marshal(rep); err == nil {
			_ = m.Respond(data)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("%w: serve import calls: %w", ErrUnavailable, err)
	}
	return func() {
		mu.Lock()
		stopped = true
		mu.Unlock()
		_ = sub.Unsubscribe()
		calls.Wait()
	}, nil
}
