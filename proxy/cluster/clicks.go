package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigie-dev/vigie/internal/streams"
)

// ClickHistory is the e-mail click history of every node (email.
// ClickHistory), in KV VIGIE_CLICKS: a load balancer spreads one scanner's
// clicks on a message's links over the nodes, and each node alone would
// see too few of them to call it a burst. A message's key is a hash of the
// message (site, campaign and recipient pseudonym); its value the hashes
// and times of its last clicks, updated with compare-and-set. The bucket
// keeps a key ClicksTTL after its last click. Every click is also recorded
// in Local, which answers when the bucket does not within clickTimeout
// (NATS away, a server lost): scanner detection then falls back to the
// node's own clicks, and the click is never held up for long.
type ClickHistory struct {
	// JS gives the JetStream context.
	JS JetStreamer
	// Local is the node's own history (an email.MemoryHistory), used
	// while the bucket is unreachable; required.
	Local interface {
		ObserveClick(message, link string, t time.Time, window time.Duration) int
	}
	// Logger receives a warning when the bucket stops or starts answering
	// (never a message or link).
	Logger *slog.Logger

	down atomic.Bool // the last call fell back to Local (logging only)
}

// clickTimeout bounds the bucket's round trips for one click.
const clickTimeout = 300 * time.Millisecond

// clickRing is how many clicks a message's entry keeps.
const clickRing = 8

// ObserveClick records a click on link of message at t and returns how
// many other distinct links of that message were clicked, on any node, in
// the window before t.
func (h *ClickHistory) ObserveClick(message, link string, t time.Time, window time.Duration) int {
	local := h.Local.ObserveClick(message, link, t, window)
	ctx, cancel := context.WithTimeout(context.Background(), clickTimeout)
	defer cancel()
	n, err := h.observe(ctx, message, link, t, window)
	if err != nil {
		if !h.down.Swap(true) && h.Logger != nil {
			h.Logger.Warn("cluster: shared e-mail click history unavailable; judging bursts on this node's clicks", "err", err)
		}
		return local
	}
	if h.down.Swap(false) && h.Logger != nil {
		h.Logger.Info("cluster: shared e-mail click history available again")
	}
	return max(n, local)
}

// observe is ObserveClick against the bucket.
func (h *ClickHistory) observe(ctx context.Context, message, link string, t time.Time, window time.Duration) (int, error) {
	kv, err := bucket(ctx, h.JS, streams.BucketClicks)
	if err != nil {
		return 0, err
	}
	sum := sha256.Sum256([]byte(message))
	key := hex.EncodeToString(sum[:16])
	lh := xxhash.Sum64String(link)
	for attempt := 0; attempt < 10; attempt++ {
		var clicks []click
		var rev uint64
		e, err := kv.Get(ctx, key)
		switch {
		case err == nil:
			clicks, rev = decodeClicks(e.Value()), e.Revision()
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return 0, err
		}
		others := countOthers(clicks, lh, t, window)
		clicks = append(clicks, click{link: lh, atMs: t.UnixMilli()})
		if len(clicks) > clickRing {
			clicks = clicks[len(clicks)-clickRing:]
		}
		v := encodeClicks(clicks)
		if rev == 0 {
			_, err = kv.Create(ctx, key, v)
		} else {
			_, err = kv.Update(ctx, key, v, rev)
		}
		if err == nil {
			return others, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) { // also a lost Update (same API error code)
			return 0, err
		}
		// Another node's click landed meanwhile: read it and try again.
	}
	return 0, errors.New("cluster: click history kept changing")
}

// click is one click of a message's entry.
type click struct {
	link uint64
	atMs int64
}

// countOthers counts the distinct links other than lh clicked in the window
// before t (a click "after" t, from a node whose clock is ahead, counts if
// within the window too).
func countOthers(clicks []click, lh uint64, t time.Time, window time.Duration) int {
	var seen []uint64
	now := t.UnixMilli()
	for _, c := range clicks {
		d := now - c.atMs
		if c.link == lh || d > window.Milliseconds() || -d > window.Milliseconds() {
			continue
		}
		if !slices.Contains(seen, c.link) {
			seen = append(seen, c.link)
		}
	}
	return len(seen)
}

// encodeClicks is 16 bytes per click: link hash, Unix ms.
func encodeClicks(cs []click) []byte {
	b := make([]byte, 0, 16*len(cs))
	for _, c := range cs {
		b = binary.BigEndian.AppendUint64(b, c.link)
		b = binary.BigEndian.AppendUint64(b, uint64(c.atMs))
	}
	return b
}

// decodeClicks reads encodeClicks' format (a torn tail is ignored).
func decodeClicks(b []byte) []click {
	var out []click
	for ; len(b) >= 16; b = b[16:] {
		out = append(out, click{link: binary.BigEndian.Uint64(b), atMs: int64(binary.BigEndian.Uint64(b[8:]))})
	}
	return out
}
