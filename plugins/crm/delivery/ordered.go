package delivery

import (
	"context"
	"sync"
)

// ForEachOrdered calls fn(ctx, i) for i in [0, n): calls whose key(i) is
// the same run one after the other in index order, calls of different
// keys run on up to workers goroutines. It returns when all calls are
// done, or when ctx ends (calls not yet started are skipped). Connectors
// use it with the contact as key so that one contact's changes stay in
// order while different contacts are sent in parallel.
func ForEachOrdered(ctx context.Context, n, workers int, key func(i int) string, fn func(ctx context.Context, i int)) {
	groups := make([][]int, 0, n)
	index := make(map[string]int, n)
	for i := range n {
		k := key(i)
		g, ok := index[k]
		if !ok {
			g = len(groups)
			index[k] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	run := func(g []int) {
		for _, i := range g {
			if ctx.Err() != nil {
				return
			}
			fn(ctx, i)
		}
	}
	workers = max(1, min(workers, len(groups)))
	if workers == 1 {
		for _, g := range groups {
			run(g)
		}
		return
	}
	next := make(chan []int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for g := range next {
				run(g)
			}
		})
	}
	for _, g := range groups {
		if ctx.Err() != nil {
			break
		}
		next <- g
	}
	close(next)
	wg.Wait()
}
