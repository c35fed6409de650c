package proxy

import (
	"context"
	"net/http"

	"github.com/vigie-dev/vigie/storage"
)

// diskFullRetryAfter is the Retry-After of a disk_full answer, in seconds:
// space comes back when an operator frees it, not in a few seconds.
const diskFullRetryAfter = "60"

// diskGuard answers 503 disk_full, before reading the request, while the
// store refuses writes for lack of disk space: nothing of the request is
// processed (no consent ledger write, no cookie), so the client's retry
// later is the whole request again. It is one atomic load per request.
func (s *Server) diskGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.store.Disk().Full {
			s.refuseDiskFull(w)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// refuseDiskFull answers that the events were not stored for lack of disk
// space. The store logs entering and leaving that state, once each.
func (s *Server) refuseDiskFull(w http.ResponseWriter) {
	s.metrics.rejected.WithLabelValues("disk_full").Inc()
	w.Header().Set("Retry-After", diskFullRetryAfter)
	writeError(w, http.StatusServiceUnavailable, "disk_full",
		"the server is out of disk space; the events were not stored, retry later", nil)
}

// registerDiskMetrics exports the free-space monitor's state.
func (s *Server) registerDiskMetrics() {
	s.metrics.gaugeFunc("vigie_disk_full", "1 while ingestion is refused because free disk space is below storage.min_free_bytes.",
		func() float64 {
			if s.store.Disk().Full {
				return 1
			}
			return 0
		})
	s.metrics.gaugeFunc("vigie_disk_free_bytes", "Free bytes of the data dir's filesystem (the smallest of the watched ones) at the last measurement.",
		func() float64 { return float64(s.store.Disk().FreeBytes) })
	s.metrics.gaugeFunc("vigie_disk_min_free_bytes", "storage.min_free_bytes: the free-space reserve below which ingestion is refused.",
		func() float64 { return float64(s.store.Disk().MinFreeBytes) })
}

// diskGatedOutbox is the publisher's view of the outbox when JetStream is
// embedded: while the disk is full it shows an empty outbox, so nothing
// more is written to the JetStream store, which shares the disk (its file
// store stops writing for good at its first ENOSPC, until a restart). The
// entries stay in Badger and are published when space is back; the
// publisher looks again every second.
type diskGatedOutbox struct{ *storage.Store }

// OutboxAfter implements bus.Outbox.
func (o diskGatedOutbox) OutboxAfter(ctx context.Context, after []byte, max int) ([]storage.OutboxItem, error) {
	if o.Disk().Full {
		return nil, nil
	}
	return o.Store.OutboxAfter(ctx, after, max)
}

// OutboxLen implements bus.Outbox: 0 while the disk is full, so that the
// publisher neither waits for nor rescans entries it must not publish yet.
func (o diskGatedOutbox) OutboxLen() int64 {
	if o.Disk().Full {
		return 0
	}
	return o.Store.OutboxLen()
}
