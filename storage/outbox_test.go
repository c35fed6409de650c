package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/vigie-dev/vigie/storage"
	"github.com/vigie-dev/vigie/storage/storagetest"
)

// consentMsg is the outbox message of a consent choice numbered n.
func consentMsg(n int) storage.Message {
	return storage.Message{Topic: "vigie.privacy.demo.consent", ID: fmt.Sprintf("privacy:demo:1:%d", n), Data: fmt.Appendf(nil, "choice %d", n)}
}

var choice = storage.ConsentEntry{Granted: []string{"analytics"}, Denied: []string{"marketing"}, Source: "explicit", AtMs: 7}

func TestPutConsentCommitsItsMessageOrNothing(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		maxOutbox int64
		before    int // events appended first
		msgs      []storage.Message
		wantErr   error
		wantLen   int64 // outbox length afterwards
	}{
		{name: "with its message", maxOutbox: 10, msgs: []storage.Message{consentMsg(1)}, wantLen: 1},
		{name: "two messages", maxOutbox: 10, before: 1, msgs: []storage.Message{consentMsg(1), consentMsg(2)}, wantLen: 3},
		{name: "no message", maxOutbox: 10, before: 1, wantLen: 1},
		{name: "last free place", maxOutbox: 3, before: 2, msgs: []storage.Message{consentMsg(1)}, wantLen: 3},
		{name: "outbox full", maxOutbox: 2, before: 2, msgs: []storage.Message{consentMsg(1)}, wantErr: storage.ErrOutboxFull, wantLen: 2},
		{name: "message without id", maxOutbox: 10, msgs: []storage.Message{{Topic: "vigie.privacy.demo.consent", Data: []byte("x")}}, wantErr: storage.ErrInvalidRecord},
		{name: "message without topic", maxOutbox: 10, msgs: []storage.Message{{ID: "x", Data: []byte("x")}}, wantErr: storage.ErrInvalidRecord},
		{name: "message too large", maxOutbox: 10, msgs: []storage.Message{{Topic: "t", ID: "x", Data: make([]byte, 1<<20+1)}}, wantErr: storage.ErrInvalidRecord},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := storagetest.OpenConfig(t, storage.Config{MaxOutbox: tc.maxOutbox})
			for i := 0; i < tc.before; i++ {
				mustAppend(t, s, rec("demo", fmt.Sprintf("e%d", i), base, "", ""))
			}
			err := s.PutConsent(ctx, "demo", "p1", choice, tc.msgs...)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("PutConsent: %v, want %v", err, tc.wantErr)
			}
			_, cerr := s.Consent(ctx, "demo", "p1")
			if tc.wantErr != nil && !errors.Is(cerr, storage.ErrNotFound) {
				t.Fatalf("refused choice was recorded anyway: %v", cerr)
			}
			if tc.wantErr == nil && cerr != nil {
				t.Fatalf("choice not recorded: %v", cerr)
			}
			if s.OutboxLen() != tc.wantLen {
				t.Fatalf("outbox length %d, want %d", s.OutboxLen(), tc.wantLen)
			}
			items, err := s.Outbox(ctx, 100)
			if err != nil || int64(len(items)) != tc.wantLen {
				t.Fatalf("outbox: %d items (%v), want %d", len(items), err, tc.wantLen)
			}
			if tc.wantErr != nil {
				return
			}
			for i, m := range tc.msgs {
				it := items[tc.before+i]
				if it.Topic != m.Topic || it.MsgID != m.ID || !bytes.Equal(it.Data, m.Data) {
					t.Errorf("message %d read back as %q %q %q", i, it.Topic, it.MsgID, it.Data)
				}
			}
		})
	}
}

func TestOutboxMessagesKeepCommitOrderAcrossReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	key := newKey()
	s := openDir(t, storage.Config{Dir: dir, VaultKey: key})
	// Events and consent messages interleaved: e0 m0 e1 m1 e2 m2.
	var want []string
	for i := 0; i < 3; i++ {
		mustAppend(t, s, rec("demo", fmt.Sprintf("e%d", i), base, "", ""))
		if err := s.PutConsent(ctx, "demo", fmt.Sprintf("p%d", i), choice, consentMsg(i)); err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprintf("e%d", i), consentMsg(i).ID)
	}
	ids := func(items []storage.OutboxItem) []string {
		var out []string
		for _, it := range items {
			out = append(out, it.MsgID)
		}
		return out
	}
	items, err := s.Outbox(ctx, 100)
	if err != nil || fmt.Sprint(ids(items)) != fmt.Sprint(want) {
		t.Fatalf("outbox order %v (%v), want %v", ids(items), err, want)
	}
	// Acknowledging messages and events alike keeps the counter exact.
	if err := s.AckOutbox([][]byte{items[0].Key, items[1].Key}); err != nil {
		t.Fatal(err)
	}
	if err := s.AckOutbox([][]byte{items[1].Key}); err != nil { // again: ignored
		t.Fatal(err)
	}
	if s.OutboxLen() != 4 {
		t.Fatalf("outbox length %d after acking 2 of 6, want 4", s.OutboxLen())
	}
	// Reopened: same entries, same order, counter recovered, and new
	// entries numbered after them.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDir(t, storage.Config{Dir: dir, VaultKey: key})
	if err := s.PutConsent(ctx, "demo", "p9", choice, consentMsg(9)); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, rec("demo", "e9", base, "", ""))
	want = append(want[2:], consentMsg(9).ID, "e9")
	items, err = s.Outbox(ctx, 100)
	if err != nil || fmt.Sprint(ids(items)) != fmt.Sprint(want) {
		t.Fatalf("after reopen: order %v (%v), want %v", ids(items), err, want)
	}
	if s.OutboxLen() != int64(len(want)) {
		t.Fatalf("after reopen: outbox length %d, want %d", s.OutboxLen(), len(want))
	}
	// Entries recovered at Open are acknowledged like new ones, once.
	for range 2 {
		if err := s.AckOutbox([][]byte{items[0].Key, items[len(items)-1].Key}); err != nil {
			t.Fatal(err)
		}
	}
	if s.OutboxLen() != int64(len(want)-2) {
		t.Fatalf("after acking 2 entries after reopen: outbox length %d, want %d", s.OutboxLen(), len(want)-2)
	}
	if rest, err := s.Outbox(ctx, 100); err != nil || len(rest) != len(want)-2 {
		t.Fatalf("after acking 2 entries after reopen: %d entries (%v), want %d", len(rest), err, len(want)-2)
	}
	if got, err := s.Consent(ctx, "demo", "p2"); err != nil || got.AtMs != choice.AtMs {
		t.Fatalf("ledger after reopen: %+v %v", got, err)
	}
}

// TestOutboxDrainerWithCursorSeesEveryEntry writes events and consent
// messages concurrently while a drainer reads from its cursor (as the
// publisher does) and acknowledges: entries must become visible in sequence
// order, or the drainer would step past one and never see it.
func TestOutboxDrainerWithCursorSeesEveryEntry(t *testing.T) {
	ctx := context.Background()
	s := storagetest.Open(t)
	const writers, per = 4, 60
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				if w%2 == 0 {
					if _, err := s.Append(ctx, []storage.Record{rec("demo", fmt.Sprintf("w%d-%03d", w, i), base, "", "")}); err != nil {
						t.Error(err)
						return
					}
					continue
				}
				m := storage.Message{Topic: "vigie.privacy.demo.consent", ID: fmt.Sprintf("w%d-%03d", w, i), Data: []byte("x")}
				if err := s.PutConsent(ctx, "demo", fmt.Sprintf("p%d", w), choice, m); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	seen := map[string]int{}
	var cursor []byte
	drain := func() int {
		items, err := s.OutboxAfter(ctx, cursor, 7)
		if err != nil {
			t.Fatal(err)
		}
		var keys [][]byte
		for _, it := range items {
			seen[it.MsgID]++
			keys = append(keys, it.Key)
		}
		if len(items) > 0 {
			if err := s.AckOutbox(keys); err != nil {
				t.Fatal(err)
			}
			cursor = items[len(items)-1].Key
		}
		return len(items)
	}
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		drain()
	}
	// The writers are done: drain what is ahead of the cursor.
	for drain() > 0 {
	}
	// Nothing is left behind the cursor.
	if rest, err := s.Outbox(ctx, 10); err != nil || len(rest) != 0 {
		t.Fatalf("%d entries appeared behind the cursor (%v)", len(rest), err)
	}
	if len(seen) != writers*per || s.OutboxLen() != 0 {
		t.Fatalf("drained %d distinct entries, want %d; outbox length %d", len(seen), writers*per, s.OutboxLen())
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s read %d times", id, n)
		}
	}
}

// TestRecordMessagesCommitWithTheirEvent: a record's Messages follow it in
// the outbox, counted in its length, and a duplicate record adds none.
func TestRecordMessagesCommitWithTheirEvent(t *testing.T) {
	ctx := context.Background()
	s := openDir(t, storage.Config{Dir: t.TempDir(), VaultKey: newKey()})
	withMsg := func(id, dedup string) storage.Record {
		r := rec("demo", id, base, "", dedup)
		r.Messages = []storage.Message{{Topic: "$KV.VIGIE_DEDUP." + id, ID: "mark-" + id, Data: []byte("stored")}}
		return r
	}
	mustAppend(t, s, withMsg("e0", "d0"), withMsg("e1", "d1"))
	if dups := mustAppend(t, s, withMsg("e2", "d0")); !dups[0] {
		t.Fatal("e2 repeats d0 but is not a duplicate")
	}
	items, err := s.Outbox(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, it := range items {
		got = append(got, it.MsgID)
	}
	if want := "[e0 mark-e0 e1 mark-e1]"; fmt.Sprint(got) != want {
		t.Fatalf("outbox %v, want %s", got, want)
	}
	if n := s.OutboxLen(); n != 4 {
		t.Fatalf("OutboxLen %d, want 4", n)
	}
}

// TestEnqueuedKVDeleteKeepsItsFlag: a KV delete committed to the outbox
// (with the marker's data, or none) is read back as a KV delete, after a
// reopen too; a plain message stays plain.
func TestEnqueuedKVDeleteKeepsItsFlag(t *testing.T) {
	ctx := context.Background()
	msgs := []storage.Message{
		{Topic: "$KV.VIGIE_PROFILES.0.demo.p1", ID: "profile-del:0.demo.p1:3", KVDelete: true, Data: []byte("1700000000000")},
		{Topic: "$KV.VIGIE_PROFILES.0.demo.p2", ID: "profile-del:0.demo.p2:4", KVDelete: true},
		consentMsg(1),
	}
	dir := t.TempDir()
	cfg := storage.Config{Dir: dir, VaultKey: newKey()}
	s, err := storage.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Enqueue(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = storage.Open(cfg); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	items, err := s.Outbox(ctx, 10)
	if err != nil || len(items) != len(msgs) {
		t.Fatalf("outbox: %d items (%v), want %d", len(items), err, len(msgs))
	}
	for i, m := range msgs {
		it := items[i]
		if it.Topic != m.Topic || it.MsgID != m.ID || !bytes.Equal(it.Data, m.Data) || it.KVDelete != m.KVDelete {
			t.Errorf("message %d read back as %q %q %q delete=%v", i, it.Topic, it.MsgID, it.Data, it.KVDelete)
		}
	}
}
