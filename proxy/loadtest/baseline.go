package loadtest

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/vigie-dev/vigie/proxy/collect"
	"github.com/vigie-dev/vigie/proxy/config"
)

var okBody = []byte(`{"success":true}` + "\n")

// bareHandler reads the body and answers 204: the ceiling of net/http on
// this machine.
func bareHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	})
}

// decodeHandler reads the body as Vigie does and decodes the batch with
// collect.DecodeBatch, then answers 200: the ceiling of the full path.
func decodeHandler(lim config.Limits) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, release, err := collect.ReadBody(r, int64(lim.MaxBatchBytes))
		if err != nil {
			http.Error(w, "unreadable body", http.StatusBadRequest)
			return
		}
		defer release()
		if _, err := collect.DecodeBatch(body, lim.MaxBatchEvents, lim.MaxEventBytes); err != nil {
			http.Error(w, "invalid batch", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(okBody)
	})
}

// jsonBatch is a Segment batch as a plain encoding/json collector would
// decode it: the common fields typed, context, properties and traits as
// generic maps (what any collector can do without its own decoder).
type jsonBatch struct {
	Batch   []jsonMessage  `json:"batch"`
	SentAt  string         `json:"sentAt"`
	Context map[string]any `json:"context"`
}

type jsonMessage struct {
	Type        string         `json:"type"`
	Event       string         `json:"event"`
	Name        string         `json:"name"`
	MessageID   string         `json:"messageId"`
	AnonymousID string         `json:"anonymousId"`
	UserID      string         `json:"userId"`
	GroupID     string         `json:"groupId"`
	PreviousID  string         `json:"previousId"`
	Timestamp   string         `json:"timestamp"`
	SentAt      string         `json:"sentAt"`
	Context     map[string]any `json:"context"`
	Properties  map[string]any `json:"properties"`
	Traits      map[string]any `json:"traits"`
}

// jsonDecodeHandler reads the body as Vigie does and decodes the batch
// with encoding/json into jsonBatch, then answers 200: what a collector
// built on the standard library reaches, the reference for the
// batch target.
func jsonDecodeHandler(lim config.Limits) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, release, err := collect.ReadBody(r, int64(lim.MaxBatchBytes))
		if err != nil {
			http.Error(w, "unreadable body", http.StatusBadRequest)
			return
		}
		defer release()
		var b jsonBatch
		if err := json.Unmarshal(body, &b); err != nil || len(b.Batch) == 0 || len(b.Batch) > lim.MaxBatchEvents {
			http.Error(w, "invalid batch", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(okBody)
	})
}

// baseline is a loopback server for one baseline handler.
type baseline struct {
	srv *http.Server
	url string
}

func startBaseline(h http.Handler) (*baseline, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &baseline{
		srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second},
		url: "http://" + ln.Addr().String(),
	}
	// Serve's error after Shutdown is http.ErrServerClosed; any other
	// failure shows up as failed requests in the phase.
	go func() { _ = b.srv.Serve(ln) }()
	return b, nil
}

func (b *baseline) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = b.srv.Shutdown(ctx)
}
