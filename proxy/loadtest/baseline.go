package loadtest

import (
	"context"
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
