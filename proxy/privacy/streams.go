package privacy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/storage"
)

// hdrOrigSubject is the header in which dead letters carry their original
// subject (set by the plugin runtime).
const hdrOrigSubject = "Vigie-Subject"

// scanBatch is how many messages one fetch of the stream scan reads.
const scanBatch = 512

// scanResets bounds the scan's ordered consumer's attempts to create
// itself within one Fetch (1 s apart, each up to 10 s): past them the
// step fails and the runner runs it again.
const scanResets = 2

// stepStream deletes every message of the subjects from one stream, with
// SecureDeleteMsg (the message's bytes are overwritten, not only marked
// deleted). It runs once every plugin has acknowledged the erasure, so
// that no consumer still needs them; the scan covers the stream up to its
// last message when the step starts (streams keep messages MaxAge at most).
func (s *Service) stepStream(ctx context.Context, r *Request, name string) error {
	step := "stream:" + name
	if s.cfg.JetStream == nil {
		_, err := s.update(ctx, r.ID, func(r *Request) (bool, []storage.Message, error) {
			r.step(step).set(StatusFailed, "no bus configured")
			return true, nil, nil
		})
		return err
	}
	if err := s.markRunning(ctx, r.ID, step); err != nil {
		return err
	}
	_, subjects, err := s.eventSubjects(ctx, r)
	if err != nil {
		return err
	}
	deleted, scanned, err := s.cleanStream(ctx, name, subjects)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return s.stepDone(ctx, r.ID, step, "stream absent: nothing to delete", nil)
	}
	if err != nil {
		return fmt.Errorf("stream %s: %w", name, err)
	}
	return s.stepDone(ctx, r.ID, step, fmt.Sprintf("%d of %d message(s) securely deleted", deleted, scanned), map[string]int{"stream_messages": deleted})
}

// cleanStream scans stream and securely deletes the messages about any of
// subjects.
func (s *Service) cleanStream(ctx context.Context, name string, subjects []string) (deleted, scanned int, err error) {
	want := make(map[string]bool, len(subjects))
	for _, subj := range subjects {
		want[subj] = true
	}
	if len(want) == 0 {
		return 0, 0, nil
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	st, err := s.cfg.JetStream.Stream(cctx, name)
	if err != nil {
		return 0, 0, err
	}
	info, err := st.Info(cctx)
	if err != nil {
		return 0, 0, err
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 {
		return 0, 0, nil
	}
	// A bounded reset: Fetch retries a lost consumer without a context, so
	// unbounded it would hold the step, and a stop, for as long as NATS
	// is away.
	cons, err := st.OrderedConsumer(cctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy, MaxResetAttempts: scanResets})
	if err != nil {
		return 0, 0, err
	}
	var seqs []uint64
	for done := false; !done; {
		if err := cctx.Err(); err != nil {
			return 0, scanned, err
		}
		batch, err := cons.Fetch(scanBatch, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return 0, scanned, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			scanned++
			if about(m, want) {
				seqs = append(seqs, md.Sequence.Stream)
			}
			if md.Sequence.Stream >= last {
				done = true
			}
		}
		if n == 0 {
			// Nothing more within the wait: the last messages expired or
			// were deleted meanwhile.
			if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) &&
				!errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) {
				return 0, scanned, err
			}
			break
		}
	}
	for _, seq := range seqs {
		if err := st.SecureDeleteMsg(cctx, seq); err != nil && !alreadyDeleted(err) {
			return deleted, scanned, err
		}
		deleted++
	}
	return deleted, scanned, nil
}

// about reports whether a stream message names one of the subjects.
func about(m jetstream.Msg, want map[string]bool) bool {
	subject := m.Subject()
	if orig := m.Headers().Get(hdrOrigSubject); orig != "" {
		subject = orig
	}
	return aboutData(streams.StreamOf(subject), m.Data(), want)
}

// aboutData decodes a message of stream and reports whether it names one of
// the subjects.
func aboutData(stream string, data []byte, want map[string]bool) bool {
	switch stream {
	case streams.Events, streams.Enriched:
		ev := &vigiev1.Event{}
		if proto.Unmarshal(data, ev) != nil {
			return false
		}
		return want[ev.GetSubject()] || want[ev.GetAnonymousId()] || want[ev.GetUserId()] || want[ev.GetPreviousId()]
	case streams.Segments:
		c := &vigiev1.SegmentChange{}
		return proto.Unmarshal(data, c) == nil && want[c.GetSubject()]
	case streams.Privacy:
		pe := &vigiev1.PrivacyEvent{}
		if proto.Unmarshal(data, pe) != nil {
			return false
		}
		if want[pe.GetSubject()] {
			return true
		}
		for _, x := range pe.GetSubjects() {
			if want[x] {
				return true
			}
		}
	}
	return false
}

// alreadyDeleted reports whether a SecureDeleteMsg error says the message
// is gone already (deleted meanwhile, e.g. by another node's step for the
// same subjects, or aged out): the deletion's goal is met. nats.go keeps
// only the text of the server's answer (code 10057,
// JSStreamMsgDeleteFailedF, whose description is the store's "no message
// found"); TestAlreadyDeleted checks it against a real server.
func alreadyDeleted(err error) bool {
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return true
	}
	msg := err.Error()
	return errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) && strings.Contains(msg, "err_code=10057") && strings.Contains(msg, "no message found")
}
