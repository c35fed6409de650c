package cluster

import (
	"context"
	"fmt"

	"github.com/vigie-dev/vigie/internal/streams"
)

// ResponseSummaries shares the response model between the nodes, in KV
// VIGIE_RESPONSE: each node models the subjects of the partitions it owns
// and puts its summary of each site (the cells, naming no one) under
// <site>.<node>; a reader adds every node's summary up (proxy/reaction).
type ResponseSummaries struct {
	// JS gives the JetStream context.
	JS JetStreamer
	// Node is this node's id.
	Node string
}

// Put sets this node's summary of site.
func (r *ResponseSummaries) Put(ctx context.Context, site string, summary []byte) error {
	ctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	kv, err := bucket(ctx, r.JS, streams.BucketResponse)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, streams.KeyToken(site)+"."+streams.KeyToken(r.Node), summary); err != nil {
		return fmt.Errorf("%w: response summary: %w", ErrUnavailable, err)
	}
	return nil
}

// Others returns the other nodes' summaries of site.
func (r *ResponseSummaries) Others(ctx context.Context, site string) ([][]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	kv, err := bucket(ctx, r.JS, streams.BucketResponse)
	if err != nil {
		return nil, err
	}
	prefix := streams.KeyToken(site) + "."
	lister, err := kv.ListKeysFiltered(ctx, prefix+"*")
	if err != nil {
		return nil, fmt.Errorf("%w: response summaries: %w", ErrUnavailable, err)
	}
	var out [][]byte
	for k := range lister.Keys() {
		if k == prefix+streams.KeyToken(r.Node) {
			continue
		}
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue // expired since
		}
		out = append(out, e.Value())
	}
	return out, nil
}
