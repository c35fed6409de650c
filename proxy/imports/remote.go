package imports

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
)

// Remote passes a request for an import job of another node (its
// cancellation, a page of its per-row errors), which only that node can
// serve, to that node: behind a load balancer the marketer cannot choose
// the node a request reaches.
type Remote interface {
	// Call has node answer req; a node that does not answer is an error.
	Call(ctx context.Context, node string, req RemoteRequest) (RemoteReply, error)
}

// RemoteRequest is a request for a job of the node it is passed to.
type RemoteRequest struct {
	// Method is DELETE (cancel the job) or GET (a page of its errors).
	Method string `json:"method"`
	// ID is the job's id.
	ID string `json:"id"`
	// Query is the request's URL query (the errors page's cursor, limit).
	Query string `json:"query,omitempty"`
}

// RemoteReply is the answer of the node running the job, as its admin
// API gave it.
type RemoteReply struct {
	// Status is the HTTP status.
	Status int `json:"status"`
	// Body is the JSON body.
	Body json.RawMessage `json:"body"`
}

// remoteKey marks the context of a request passed on by another node:
// it is answered here, never passed on again.
type remoteKey struct{}

// ServeRemote answers req, passed on by another node whose admin API
// authenticated it, as this node's admin API answers it.
func (s *Service) ServeRemote(ctx context.Context, req RemoteRequest) RemoteReply {
	path := "/admin/v1/imports/" + url.PathEscape(req.ID)
	var handle http.HandlerFunc
	switch req.Method {
	case http.MethodDelete:
		handle = s.handleCancel
	case http.MethodGet:
		path += "/errors"
		handle = s.handleErrors
	default:
		handle = func(w http.ResponseWriter, _ *http.Request) {
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "", "not a request another node passes on")
		}
	}
	var rec recorder
	r, err := http.NewRequestWithContext(context.WithValue(ctx, remoteKey{}, true), req.Method, path+"?"+req.Query, nil)
	if err != nil {
		writeError(&rec, http.StatusBadRequest, "invalid_request", "", "the request passed on does not parse")
	} else {
		r.SetPathValue("id", req.ID)
		handle(&rec, r)
	}
	return RemoteReply{Status: rec.status, Body: bytes.TrimSpace(rec.body.Bytes())}
}

// passOn answers, in cluster mode, a request only node can serve with that
// node's answer (or 503 while it does not answer).
func (s *Service) passOn(w http.ResponseWriter, r *http.Request, node, id string) {
	rep, err := s.cfg.Remote.Call(r.Context(), node, RemoteRequest{Method: r.Method, ID: id, Query: r.URL.RawQuery})
	if err != nil {
		s.log.Warn("a request for another node's import job was not answered", "node", node, "job", id, "err", err)
		writeError(w, http.StatusServiceUnavailable, "node_unavailable", "id",
			"the import job runs on node "+node+", which does not answer now; retry later")
		return
	}
	writeJSON(w, rep.Status, rep.Body)
}

// recorder is the http.ResponseWriter ServeRemote runs a handler with.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header {
	if r.header == nil {
		r.header = http.Header{}
	}
	return r.header
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}
