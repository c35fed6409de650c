package ledger_test

import (
	"context"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/consent"
	"github.com/vigie-dev/vigie/proxy/ledger"
	"github.com/vigie-dev/vigie/storage"
	"github.com/vigie-dev/vigie/storage/storagetest"
)

func TestRecordGetAndDrop(t *testing.T) {
	ctx := context.Background()
	st := storagetest.Open(t)
	var dropped []string
	l := ledger.New(ledger.Config{
		Backend:         st,
		Purposes:        []consent.Purpose{consent.Necessary, consent.Analytics, consent.Personalization, consent.Marketing},
		ProfilePurposes: []consent.Purpose{consent.Personalization, consent.Marketing},
		OnDrop:          func(_ context.Context, site, subject string) { dropped = append(dropped, site+"/"+subject) },
	})
	if e := l.Get(ctx, "demo", "s1"); e.Found {
		t.Fatalf("entry before any choice: %+v", e)
	}
	grant := consent.Decision{Outcome: consent.Pseudonymous, Granted: consent.NewSet(consent.Analytics, consent.Marketing)}
	withdraw := consent.Decision{Outcome: consent.Anonymous}
	steps := []struct {
		name      string
		d         consent.Decision
		granted   consent.Set
		outbox    int64 // privacy events waiting after the step
		droppedOK int
	}{
		{"grant", grant, consent.NewSet(consent.Analytics, consent.Marketing), 1, 0},
		{"same choice again records nothing", grant, consent.NewSet(consent.Analytics, consent.Marketing), 1, 0},
		{"withdrawal of every profile purpose", withdraw, consent.Set{}, 2, 1},
		{"withdrawn again records nothing", withdraw, consent.Set{}, 2, 1},
	}
	for _, s := range steps {
		if err := l.Record(ctx, "demo", "s1", s.d); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		e := l.Get(ctx, "demo", "s1")
		if !e.Found || e.Granted != s.granted || e.Denied.Has(consent.Necessary) {
			t.Fatalf("%s: entry %+v", s.name, e)
		}
		for _, p := range []consent.Purpose{consent.Analytics, consent.Personalization, consent.Marketing} {
			if e.Granted.Has(p) == e.Denied.Has(p) {
				t.Fatalf("%s: %s neither granted nor denied: %+v", s.name, p, e)
			}
		}
		if n := st.OutboxLen(); n != s.outbox {
			t.Fatalf("%s: outbox %d, want %d", s.name, n, s.outbox)
		}
		if len(dropped) != s.droppedOK {
			t.Fatalf("%s: OnDrop calls %v", s.name, dropped)
		}
	}
	// A new Ledger on the same store (a restart) reads the entry back.
	l2 := ledger.New(ledger.Config{Backend: st})
	sig, ok := l2.Reader(ctx).Consent("demo", "s1")
	if !ok || sig.Source != consent.SourceLedger || !sig.Denied.Has(consent.Marketing) {
		t.Fatalf("after restart: %+v %v", sig, ok)
	}
	if _, ok := l2.Reader(ctx).Consent("demo", "other"); ok {
		t.Fatal("a subject without a choice has a ledger signal")
	}
}

// TestChoiceLifetime: a choice applies for the site's lifetime from when
// it was recorded, whatever happens meanwhile; then it reads as expired
// (and as no signal to the pipeline), the same choice made again is
// recorded anew, and a withdrawal after expiry still drops the profile.
func TestChoiceLifetime(t *testing.T) {
	ctx := context.Background()
	st := storagetest.Open(t)
	now := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	var dropped int
	l := ledger.New(ledger.Config{
		Backend:         st,
		Purposes:        []consent.Purpose{consent.Necessary, consent.Analytics, consent.Marketing},
		ProfilePurposes: []consent.Purpose{consent.Marketing},
		Lifetime:        map[string]time.Duration{"demo": 30 * 24 * time.Hour},
		Now:             func() time.Time { return now },
		OnDrop:          func(context.Context, string, string) { dropped++ },
	})
	grant := consent.Decision{Outcome: consent.Pseudonymous, Granted: consent.NewSet(consent.Analytics, consent.Marketing)}
	if err := l.Record(ctx, "demo", "s1", grant); err != nil {
		t.Fatal(err)
	}
	at := now
	now = now.Add(29 * 24 * time.Hour)
	if err := l.Record(ctx, "demo", "s1", grant); err != nil { // the same choice: not recorded again
		t.Fatal(err)
	}
	e := l.Get(ctx, "demo", "s1")
	if !e.Found || !e.At.Equal(at) || !e.Expires.Equal(at.Add(30*24*time.Hour)) || st.OutboxLen() != 1 {
		t.Fatalf("within the lifetime: %+v, outbox %d", e, st.OutboxLen())
	}
	now = at.Add(30 * 24 * time.Hour)
	if e := l.Get(ctx, "demo", "s1"); e.Found || !e.Expired {
		t.Fatalf("after the lifetime: %+v, want expired", e)
	}
	if _, ok := l.Reader(ctx).Consent("demo", "s1"); ok {
		t.Fatal("an expired choice still decides events")
	}
	if err := l.Record(ctx, "demo", "s1", grant); err != nil {
		t.Fatal(err)
	}
	if e := l.Get(ctx, "demo", "s1"); !e.Found || !e.At.Equal(now) || st.OutboxLen() != 2 {
		t.Fatalf("the same choice after expiry: %+v, outbox %d; want it recorded anew", e, st.OutboxLen())
	}
	now = now.Add(31 * 24 * time.Hour)
	if err := l.Record(ctx, "demo", "s1", consent.Decision{Outcome: consent.Anonymous}); err != nil {
		t.Fatal(err)
	}
	if dropped != 1 {
		t.Fatalf("withdrawal after expiry: OnDrop called %d times, want 1", dropped)
	}
	// Other sites keep the default lifetime (13 months).
	if err := l.Record(ctx, "other", "s1", grant); err != nil {
		t.Fatal(err)
	}
	if e := l.Get(ctx, "other", "s1"); !e.Expires.Equal(now.Add(storage.ConsentTTL)) {
		t.Fatalf("default lifetime: expires %v", e.Expires)
	}
}

// TestRecordWithProofAt: a proof's date (an imported consent) is the
// entry's time, read back by Entry.At and kept in the history with its
// source; a date in the future is now.
func TestRecordWithProofAt(t *testing.T) {
	ctx := context.Background()
	st := storagetest.Open(t)
	l := ledger.New(ledger.Config{Backend: st, Purposes: []consent.Purpose{consent.Necessary, consent.Marketing}})
	if !l.Get(ctx, "demo", "s1").At.IsZero() {
		t.Fatal("At of no entry is not zero")
	}
	at := time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)
	d := consent.Decision{Outcome: consent.Pseudonymous, Granted: consent.NewSet(consent.Marketing)}
	if err := l.RecordWithProof(ctx, "demo", "s1", d, ledger.Proof{Source: "import:j1", At: at}); err != nil {
		t.Fatal(err)
	}
	if got := l.Get(ctx, "demo", "s1").At; !got.Equal(at) {
		t.Fatalf("At %v, want %v", got, at)
	}
	h, err := st.ConsentHistory(ctx, "demo", "s1")
	if err != nil || len(h) != 1 || h[0].AtMs != at.UnixMilli() || h[0].Source != "import:j1" {
		t.Fatalf("history %+v %v", h, err)
	}
	if err := l.RecordWithProof(ctx, "demo", "s2", d, ledger.Proof{At: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if got := l.Get(ctx, "demo", "s2").At; got.After(time.Now()) {
		t.Fatalf("future proof date kept: %v", got)
	}
}

// TestAppliedRunsOnDrop: an entry applied from outside (another node's)
// drops the cache entry and calls OnDrop only when it withdrew every
// profile purpose from a subject that had one.
func TestAppliedRunsOnDrop(t *testing.T) {
	ctx := context.Background()
	st := storagetest.Open(t)
	var dropped int
	l := ledger.New(ledger.Config{
		Backend:         st,
		Purposes:        []consent.Purpose{consent.Necessary, consent.Analytics, consent.Personalization, consent.Marketing},
		ProfilePurposes: []consent.Purpose{consent.Personalization, consent.Marketing},
		OnDrop:          func(context.Context, string, string) { dropped++ },
	})
	now := time.Now().UnixMilli()
	profiled := storage.ConsentEntry{Granted: []string{"analytics", "marketing"}, AtMs: now}
	analytics := storage.ConsentEntry{Granted: []string{"analytics"}, Denied: []string{"marketing", "personalization"}, AtMs: now}
	for _, c := range []struct {
		name       string
		prev, next storage.ConsentEntry
		drops      int
	}{
		{"first choice", storage.ConsentEntry{}, analytics, 0},
		{"grant", analytics, profiled, 0},
		{"profile purposes withdrawn", profiled, analytics, 1},
		{"still none", analytics, analytics, 0},
	} {
		dropped = 0
		if err := st.PutConsent(ctx, "demo", "s1", c.next); err != nil {
			t.Fatal(err)
		}
		l.Applied(ctx, "demo", "s1", c.prev, c.next)
		if dropped != c.drops {
			t.Errorf("%s: OnDrop called %d times, want %d", c.name, dropped, c.drops)
		}
		if got := l.Get(ctx, "demo", "s1"); got.Granted.Has(consent.Marketing) != (len(c.next.Granted) > 1) {
			t.Errorf("%s: the cache kept the previous entry: %+v", c.name, got)
		}
	}
}

// slowBackend is a store whose next Consent read, once armed, reads the
// entry and then waits for release before returning it: the read a cache
// miss makes while another node's withdrawal is applied.
type slowBackend struct {
	*storage.Store
	armed        chan struct{} // closed by the test: the next read waits
	read, resume chan struct{}
}

func (b *slowBackend) Consent(ctx context.Context, site, subject string) (storage.ConsentEntry, error) {
	e, err := b.Store.Consent(ctx, site, subject)
	select {
	case <-b.armed:
		b.armed = make(chan struct{}) // once
		close(b.read)
		<-b.resume
	default:
	}
	return e, err
}

// TestForgetDuringACacheMissWins: a cache miss reads the old entry; the
// cluster's watch then stores another node's withdrawal and drops the
// subject from the cache; the miss must not put the old entry back in the
// cache, where it would answer every later event. On the code before, the
// grant stayed cached after the withdrawal.
func TestForgetDuringACacheMissWins(t *testing.T) {
	ctx := context.Background()
	st := storagetest.Open(t)
	b := &slowBackend{Store: st, armed: make(chan struct{}), read: make(chan struct{}), resume: make(chan struct{})}
	l := ledger.New(ledger.Config{Backend: b, Purposes: []consent.Purpose{consent.Necessary, consent.Analytics, consent.Marketing}})
	now := time.Now().UnixMilli()
	grant := storage.ConsentEntry{Granted: []string{"analytics", "marketing"}, AtMs: now - 10}
	if err := st.PutConsent(ctx, "demo", "s1", grant); err != nil {
		t.Fatal(err)
	}
	close(b.armed)
	done := make(chan ledger.Entry)
	go func() { done <- l.Get(ctx, "demo", "s1") }()
	<-b.read // the miss holds the grant
	withdrawal := storage.ConsentEntry{Granted: []string{"analytics"}, Denied: []string{"marketing"}, AtMs: now}
	if err := st.PutConsent(ctx, "demo", "s1", withdrawal); err != nil {
		t.Fatal(err)
	}
	l.Applied(ctx, "demo", "s1", grant, withdrawal)
	close(b.resume)
	// It may answer the grant it read: it started before the withdrawal.
	if e := <-done; !e.Granted.Has(consent.Marketing) {
		t.Fatalf("the miss read %+v, want the grant", e)
	}
	if e := l.Get(ctx, "demo", "s1"); e.Granted.Has(consent.Marketing) {
		t.Fatalf("after the withdrawal was applied, the ledger answers %+v: the miss cached the old grant", e)
	}
}
