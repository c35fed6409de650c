// Package webhooktest is a fake webhook receiver for tests and
// benchmarks of the webhook connector: a local HTTP server that verifies
// Standard Webhooks signatures with examples/crm-receiver's code, records
// each message once per webhook-id (counting every delivery), and can be
// scripted to answer errors, throttle or be slow.
package webhooktest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/vigie-dev/vigie/examples/crm-receiver/receiver"
)

// Received is a verified message.
type Received struct {
	// ID is the webhook-id.
	ID string
	// Header holds the request's headers.
	Header http.Header
	// Body is the raw body.
	Body []byte
	// Message is the decoded body.
	Message receiver.Message
}

// Reply is a scripted answer.
type Reply struct {
	// Status is the HTTP status to answer.
	Status int
	// RetryAfter, when set, is sent as the Retry-After header.
	RetryAfter string
	// Location, when set, is sent as the Location header (redirects).
	Location string
}

// Receiver is the fake. Its zero value is not usable; call New.
type Receiver struct {
	*httptest.Server
	verifier *receiver.Verifier

	mu         sync.Mutex
	messages   []Received
	deliveries map[string]int
	recorded   map[string]bool
	rejected   int
	script     []Reply
	always     *Reply
	delay      time.Duration
	requests   int
}

// New starts a receiver that accepts signatures by any of secrets. Close
// it when done.
func New(secrets ...string) (*Receiver, error) {
	v, err := receiver.NewVerifier(secrets...)
	if err != nil {
		return nil, err
	}
	r := &Receiver{verifier: v, deliveries: map[string]int{}, recorded: map[string]bool{}}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	return r, nil
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	r.mu.Lock()
	r.requests++
	delay := r.delay
	r.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-req.Context().Done():
			return
		}
	}
	if err != nil {
		http.Error(w, "unreadable body", http.StatusBadRequest)
		return
	}
	if err := r.verifier.VerifyRequest(req.Header, body); err != nil {
		r.mu.Lock()
		r.rejected++
		r.mu.Unlock()
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	id := req.Header.Get(receiver.HeaderID)
	r.mu.Lock()
	r.deliveries[id]++
	var reply *Reply
	if len(r.script) > 0 {
		reply, r.script = &r.script[0], r.script[1:]
	} else if r.always != nil {
		reply = r.always
	}
	if reply != nil {
		r.mu.Unlock()
		if reply.RetryAfter != "" {
			w.Header().Set("Retry-After", reply.RetryAfter)
		}
		if reply.Location != "" {
			w.Header().Set("Location", reply.Location)
		}
		w.WriteHeader(reply.Status)
		return
	}
	defer r.mu.Unlock()
	if r.recorded[id] {
		w.WriteHeader(http.StatusOK)
		return
	}
	var m receiver.Message
	if err := json.Unmarshal(body, &m); err != nil {
		http.Error(w, "not a message", http.StatusBadRequest)
		return
	}
	r.recorded[id] = true
	r.messages = append(r.messages, Received{ID: id, Header: req.Header.Clone(), Body: body, Message: m})
	w.WriteHeader(http.StatusNoContent)
}

// Script queues replies given to the next verified requests, in order,
// before they are recorded.
func (r *Receiver) Script(replies ...Reply) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.script = append(r.script, replies...)
}

// Always answers every verified request with reply (nil: back to normal).
func (r *Receiver) Always(reply *Reply) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.always = reply
}

// SetDelay makes every answer wait d.
func (r *Receiver) SetDelay(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delay = d
}

// Messages returns the recorded messages, one per webhook-id, in arrival
// order.
func (r *Receiver) Messages() []Received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Received(nil), r.messages...)
}

// Deliveries is how many verified requests carried id.
func (r *Receiver) Deliveries(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.deliveries[id]
}

// Requests is how many requests arrived, verified or not.
func (r *Receiver) Requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

// Rejected is how many requests failed verification.
func (r *Receiver) Rejected() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rejected
}

// Wipe forgets everything received and every scripted reply.
func (r *Receiver) Wipe() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.messages, r.deliveries, r.recorded, r.script, r.always = nil, map[string]int{}, map[string]bool{}, nil, nil
	r.rejected, r.requests = 0, 0
}
