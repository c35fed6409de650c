package rollup

import (
	"context"
	"sync"
)

// PeerDecisions holds the decision counters of the other nodes of a
// cluster: one cumulative set per site, hour and node, as each node's
// DecisionCounter published it (DecisionConfig.Publish). An Aggregator
// with Config.Peers adds them to its own store's, so that every node's
// overview sums the decisions of every node. It is safe for concurrent
// use.
type PeerDecisions struct {
	mu sync.RWMutex
	m  map[string]map[uint32]map[string]*decisionSet // site → hour → node
}

// NewPeerDecisions returns an empty PeerDecisions.
func NewPeerDecisions() *PeerDecisions {
	return &PeerDecisions{m: map[string]map[uint32]map[string]*decisionSet{}}
}

// Put records node's counters of site and hour: value is what
// DecisionConfig.Publish received (it replaces the node's previous set of
// that hour: sets are cumulative).
func (p *PeerDecisions) Put(site string, hour uint32, node string, value []byte) error {
	s, err := decodeDecisions(value)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	hours := p.m[site]
	if hours == nil {
		hours = map[uint32]map[string]*decisionSet{}
		p.m[site] = hours
	}
	nodes := hours[hour]
	if nodes == nil {
		nodes = map[string]*decisionSet{}
		hours[hour] = nodes
	}
	nodes[node] = s
	return nil
}

// sum adds the peers' counters of site for hours [from, to) to total.
func (p *PeerDecisions) sum(site string, from, to uint32, total *decisionSet) {
	if p == nil {
		return
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	hours := p.m[site]
	if len(hours) < int(to-from) {
		for h, nodes := range hours {
			if h >= from && h < to {
				for _, s := range nodes {
					total.merge(s)
				}
			}
		}
		return
	}
	for h := from; h < to; h++ {
		for _, s := range hours[h] {
			total.merge(s)
		}
	}
}

// Publisher receives, after each flush, the cumulative counters of every
// hour the flush changed (value for PeerDecisions.Put); an error keeps the
// hour for the next flush.
type Publisher func(ctx context.Context, site string, hour uint32, value []byte) error
