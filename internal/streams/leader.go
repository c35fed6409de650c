package streams

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// LeaderLastMsg returns the last message on subject in stream as the
// stream's leader has it: JetStream's STREAM.MSG.GET, not the direct get
// that jetstream.Stream.GetLastMsgForSubject and KeyValue.Get use on a KV
// bucket. Any replica answers a direct get, a follower possibly before it
// applied the latest writes: a read a compare-and-set then relies on
// would fail that write and make its work be done again. The error is
// jetstream.ErrMsgNotFound when the subject has no message.
func LeaderLastMsg(ctx context.Context, js jetstream.JetStream, stream, subject string) (*jetstream.RawStreamMsg, error) {
	if js == nil {
		return nil, ErrNoJetStream
	}
	req, err := json.Marshal(struct {
		LastFor string `json:"last_by_subj"`
	}{subject})
	if err != nil {
		return nil, fmt.Errorf("streams: last message of %s: %w", stream, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	resp, err := js.Conn().RequestWithContext(ctx, jetstream.DefaultAPIPrefix+"STREAM.MSG.GET."+stream, req)
	if err != nil {
		return nil, fmt.Errorf("streams: last message of %s: %w", stream, err)
	}
	var r struct {
		Error *jetstream.APIError `json:"error"`
		Msg   *struct {
			Subject  string    `json:"subject"`
			Sequence uint64    `json:"seq"`
			Header   []byte    `json:"hdrs"`
			Data     []byte    `json:"data"`
			Time     time.Time `json:"time"`
		} `json:"message"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return nil, fmt.Errorf("streams: last message of %s: %w", stream, err)
	}
	switch {
	case r.Error != nil && r.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return nil, jetstream.ErrMsgNotFound
	case r.Error != nil:
		return nil, fmt.Errorf("streams: last message of %s: %w", stream, r.Error)
	case r.Msg == nil:
		return nil, fmt.Errorf("streams: last message of %s: %w", stream, jetstream.ErrInvalidJetStreamResponse)
	}
	var hdr nats.Header
	if len(r.Msg.Header) > 0 {
		if hdr, err = nats.DecodeHeadersMsg(r.Msg.Header); err != nil {
			return nil, fmt.Errorf("streams: last message of %s: %w", stream, err)
		}
	}
	return &jetstream.RawStreamMsg{Subject: r.Msg.Subject, Sequence: r.Msg.Sequence, Header: hdr, Data: r.Msg.Data, Time: r.Msg.Time}, nil
}
