package model

import "math"

// counts are decayed pseudo-counts of one arm of one cell (or one
// subject's contribution to it): exposures n, responses r, conversions c,
// each Σ w·2^(−(t−tᵢ)/h) over the exposures i, as of time t (Unix ms).
// Every response and conversion is weighted from its exposure's time, so
// r ≤ n and c ≤ n hold whatever the order of updates.
type counts struct {
	n, r, c float64
	t       int64
}

// empty reports whether the counts hold nothing.
func (k *counts) empty() bool { return k.n == 0 && k.r == 0 && k.c == 0 }

// add adds (dn, dr, dc) observed at time at, decaying with rate lambda
// (per ms; 0 for none). It is O(1): the counts are moved forward to at if
// it is later, else the increments are decayed back to the counts' time.
func (k *counts) add(at int64, dn, dr, dc, lambda float64) {
	switch {
	case k.empty():
		k.t = at
	case at > k.t:
		f := decay(lambda, at-k.t)
		k.n, k.r, k.c, k.t = k.n*f, k.r*f, k.c*f, at
	case at < k.t:
		w := decay(lambda, k.t-at)
		dn, dr, dc = dn*w, dr*w, dc*w
	}
	k.n += dn
	k.r += dr
	k.c += dc
}

// sub subtracts o (whose time is not after k's) from k, clamping at zero
// and snapping values within float rounding of zero to zero.
func (k *counts) sub(o counts, lambda float64) {
	v := o.at(k.t, lambda)
	k.n = snap(k.n - v.n)
	k.r = snap(k.r - v.r)
	k.c = snap(k.c - v.c)
	if k.n == 0 {
		k.r, k.c = 0, 0
	}
	k.r, k.c = min(k.r, k.n), min(k.c, k.n)
}

// at returns the counts as of time t (never moved backwards).
func (k counts) at(t int64, lambda float64) counts {
	if t <= k.t || lambda == 0 {
		return k
	}
	f := decay(lambda, t-k.t)
	return counts{n: k.n * f, r: k.r * f, c: k.c * f, t: t}
}

// decay is the weight after dt ms at rate lambda.
func decay(lambda float64, dt int64) float64 {
	if lambda == 0 || dt <= 0 {
		return 1
	}
	return math.Exp(-lambda * float64(dt))
}

// snapBelow: a count under this after a subtraction is rounding error.
const snapBelow = 1e-9

// snap returns v, or 0 when v is negative or within rounding of zero.
func snap(v float64) float64 {
	if v < snapBelow {
		return 0
	}
	return v
}
