package collect

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func TestDecodeMessageFields(t *testing.T) {
	body := `{
	  "type": "Track", "messageId": "m-1", "anonymousId": "a-1", "userId": "u-1",
	  "event": "Order Completed", "writeKey": "wk",
	  "timestamp": "2026-11-26T10:00:00.123Z", "sentAt": "2026-11-26T10:00:05Z",
	  "originalTimestamp": "2026-11-26T11:00:00+01:00",
	  "integrations": {"All": false}, "options": [1,2], "unknown": null,
	  "context": {
	    "ip": "203.0.113.7", "userAgent": "Mozilla/5.0", "locale": "fr-FR", "timezone": "Europe/Paris",
	    "page": {"path": "/p", "url": "https://ex.test/p?q=1", "referrer": "https://ref.test/", "title": "T\u00e9st", "search": "?q=1", "extra": 1},
	    "campaign": {"name": "c", "source": "s", "medium": "m", "term": "t", "content": "ct"},
	    "library": {"name": "analytics.js", "version": "next-1.70.0"},
	    "consent": {"categoryPreferences": {"Advertising": true}},
	    "traits": {"plan": "pro"}
	  },
	  "properties": {"revenue": 12.5, "items": [1, 2]}
	}`
	m, err := DecodeMessage([]byte(body), "")
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct{ name, got, want string }{
		{"type", m.Type, "track"},
		{"messageId", m.MessageID, "m-1"},
		{"anonymousId", m.AnonymousID, "a-1"},
		{"userId", m.UserID, "u-1"},
		{"event", m.Event, "Order Completed"},
		{"writeKey", m.WriteKey, "wk"},
		{"ip", m.Context.IP, "203.0.113.7"},
		{"userAgent", m.Context.UserAgent, "Mozilla/5.0"},
		{"locale", m.Context.Locale, "fr-FR"},
		{"timezone", m.Context.Timezone, "Europe/Paris"},
		{"page.path", m.Context.Page.Path, "/p"},
		{"page.url", m.Context.Page.URL, "https://ex.test/p?q=1"},
		{"page.referrer", m.Context.Page.Referrer, "https://ref.test/"},
		{"page.title (escaped)", m.Context.Page.Title, "Tést"},
		{"page.search", m.Context.Page.Search, "?q=1"},
		{"campaign.name", m.Context.Campaign.Name, "c"},
		{"campaign.source", m.Context.Campaign.Source, "s"},
		{"campaign.medium", m.Context.Campaign.Medium, "m"},
		{"campaign.term", m.Context.Campaign.Term, "t"},
		{"campaign.content", m.Context.Campaign.Content, "ct"},
		{"library.name", m.Context.Library.Name, "analytics.js"},
		{"library.version", m.Context.Library.Version, "next-1.70.0"},
		{"consent", string(m.Context.Consent), `{"categoryPreferences": {"Advertising": true}}`},
		{"properties", string(m.Properties), `{"revenue": 12.5, "items": [1, 2]}`},
		{"traits from context", string(m.Traits), `{"plan": "pro"}`},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if want := mustTime(t, "2026-11-26T10:00:00.123Z"); !m.Timestamp.Equal(want) {
		t.Errorf("timestamp = %v, want %v", m.Timestamp, want)
	}
	if want := mustTime(t, "2026-11-26T10:00:05Z"); !m.SentAt.Equal(want) {
		t.Errorf("sentAt = %v", m.SentAt)
	}
	if want := mustTime(t, "2026-11-26T10:00:00Z"); !m.OriginalTimestamp.Equal(want) {
		t.Errorf("originalTimestamp = %v", m.OriginalTimestamp)
	}
}

func TestDecodeMessageDoesNotAliasBody(t *testing.T) {
	body := []byte(`{"type":"track","userId":"user-1","event":"E","properties":{"a":"b"}}`)
	m, err := DecodeMessage(body, "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range body {
		body[i] = 'x'
	}
	if m.UserID != "user-1" || m.Event != "E" || string(m.Properties) != `{"a":"b"}` {
		t.Fatalf("message changed with the body: %+v", m)
	}
	// Appending to a raw value must not overwrite other decoded data.
	_ = append(m.Properties, "garbage"...)
	if m.UserID != "user-1" {
		t.Fatalf("append to Properties corrupted UserID")
	}
}

func TestDecodeMessageIDsAndTypes(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		route     string
		wantType  string
		wantUser  string
		wantAnon  string
		wantTrait string
	}{
		{"numeric userId", `{"type":"identify","userId":12345}`, "", "identify", "12345", "", ""},
		{"negative numeric anonymousId", `{"type":"page","anonymousId":-7}`, "", "page", "", "-7", ""},
		{"huge integer keeps all digits", `{"type":"page","userId":123456789012345678901234567890}`, "", "page", "123456789012345678901234567890", "", ""},
		{"float id in decimal text", `{"type":"page","userId":1.5e3}`, "", "page", "1500", "", ""},
		{"route type wins over body", `{"type":"page","userId":"u","event":"E"}`, "track", "track", "u", "", ""},
		{"route type when body has none", `{"userId":"u","name":"Home"}`, "page", "page", "u", "", ""},
		{"uppercase body type", `{"type":"IDENTIFY","userId":"u"}`, "", "identify", "u", "", ""},
		{"null values are absent", `{"type":"identify","userId":"u","anonymousId":null,"traits":null,"context":null}`, "", "identify", "u", "", ""},
		{"top-level traits win", `{"type":"identify","userId":"u","traits":{"a":1},"context":{"traits":{"b":2}}}`, "", "identify", "u", "", `{"a":1}`},
		{"escaped member names", `{"\u0074ype":"identify","user\u0049d":"u"}`, "", "identify", "u", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := DecodeMessage([]byte(tt.body), tt.route)
			if err != nil {
				t.Fatal(err)
			}
			if m.Type != tt.wantType || m.UserID != tt.wantUser || m.AnonymousID != tt.wantAnon || string(m.Traits) != tt.wantTrait {
				t.Fatalf("got type=%q user=%q anon=%q traits=%q", m.Type, m.UserID, m.AnonymousID, m.Traits)
			}
		})
	}
}

func TestDecodeMessageTimes(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"2026-11-26T10:00:00.123Z", "2026-11-26T10:00:00.123Z"},
		{"2026-11-26T10:00:00Z", "2026-11-26T10:00:00Z"},
		{"2026-11-26T10:00:00.123456789+02:00", "2026-11-26T08:00:00.123456789Z"},
		{"2026-11-26T10:00:00.5", "2026-11-26T10:00:00.5Z"},
		{"2026-11-26T10:00:00", "2026-11-26T10:00:00Z"},
		{"2026-11-26T10:00:00+0100", "2026-11-26T09:00:00Z"},
		{"2026-11-26T10:00:00.250-0130", "2026-11-26T11:30:00.25Z"},
		{"2026-11-26 10:00:00Z", "2026-11-26T10:00:00Z"},
		{"2026-11-26", "2026-11-26T00:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			m, err := DecodeMessage([]byte(`{"type":"page","userId":"u","timestamp":"`+tt.in+`"}`), "")
			if err != nil {
				t.Fatal(err)
			}
			if want := mustTime(t, tt.want); !m.Timestamp.Equal(want) {
				t.Fatalf("got %v, want %v", m.Timestamp, want)
			}
		})
	}
}

func TestDecodeMessageErrors(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		route     string
		sentinel  error
		wantField string // "" when no *FieldError is expected
		wantMsg   string
	}{
		{"not JSON", `hello`, "", ErrMalformedJSON, "", ""},
		{"truncated", `{"type":"track"`, "", ErrMalformedJSON, "", ""},
		{"empty body", ``, "", ErrMalformedJSON, "", ""},
		{"trailing data", `{"type":"identify","userId":"u"} {}`, "", ErrMalformedJSON, "", ""},
		{"duplicate member", `{"type":"identify","userId":"u","userId":"v"}`, "", ErrMalformedJSON, "", ""},
		{"invalid UTF-8", "{\"type\":\"identify\",\"userId\":\"\xff\"}", "", ErrMalformedJSON, "", ""},
		{"array body", `[1]`, "", ErrInvalidEvent, "body", "body: must be a JSON object"},
		{"too large", `{"userId":"` + strings.Repeat("a", MaxEventBytes) + `"}`, "track", ErrTooLarge, "", ""},
		{"missing type", `{"userId":"u"}`, "", ErrInvalidEvent, "type", "type: is required"},
		{"unknown type", `{"type":"bogus","userId":"u"}`, "", ErrInvalidEvent, "type", "type: unknown event type"},
		{"no ids", `{"type":"page"}`, "", ErrInvalidEvent, "userId", ""},
		{"empty ids", `{"type":"page","userId":"","anonymousId":""}`, "", ErrInvalidEvent, "userId", ""},
		{"track without event", `{"type":"track","userId":"u"}`, "", ErrInvalidEvent, "event", "event: is required for track"},
		{"group without groupId", `{"type":"group","userId":"u"}`, "", ErrInvalidEvent, "groupId", ""},
		{"alias without userId", `{"type":"alias","anonymousId":"a","previousId":"p"}`, "", ErrInvalidEvent, "userId", "userId: is required for alias"},
		{"alias without previousId", `{"type":"alias","userId":"u"}`, "", ErrInvalidEvent, "previousId", ""},
		{"identify without ids", `{"traits":{"a":1}}`, "identify", ErrInvalidEvent, "userId", ""},
		{"properties not object", `{"type":"track","userId":"u","event":"E","properties":[1]}`, "", ErrInvalidEvent, "properties", "properties: must be an object"},
		{"traits not object", `{"type":"identify","userId":"u","traits":"x"}`, "", ErrInvalidEvent, "traits", "traits: must be an object"},
		{"timestamp not ISO", `{"type":"identify","userId":"u","timestamp":"yesterday"}`, "", ErrInvalidEvent, "timestamp", "timestamp: not a valid ISO-8601 time"},
		{"timestamp number", `{"type":"identify","userId":"u","timestamp":1764151200}`, "", ErrInvalidEvent, "timestamp", ""},
		{"sentAt bad", `{"type":"identify","userId":"u","sentAt":"2026-13-01T00:00:00Z"}`, "", ErrInvalidEvent, "sentAt", ""},
		{"originalTimestamp bad", `{"type":"identify","userId":"u","originalTimestamp":true}`, "", ErrInvalidEvent, "originalTimestamp", ""},
		{"userId object", `{"type":"identify","userId":{"a":1}}`, "", ErrInvalidEvent, "userId", "userId: must be a string or number"},
		{"anonymousId bool", `{"type":"identify","anonymousId":true}`, "", ErrInvalidEvent, "anonymousId", ""},
		{"userId out of range", `{"type":"identify","userId":1e999}`, "", ErrInvalidEvent, "userId", ""},
		{"event number", `{"type":"track","userId":"u","event":5}`, "", ErrInvalidEvent, "event", "event: must be a string"},
		{"type number", `{"type":1,"userId":"u"}`, "", ErrInvalidEvent, "type", "type: must be a string"},
		{"context string", `{"type":"identify","userId":"u","context":"x"}`, "", ErrInvalidEvent, "context", "context: must be an object"},
		{"context.page array", `{"type":"identify","userId":"u","context":{"page":[]}}`, "", ErrInvalidEvent, "context.page", ""},
		{"context.page.url number", `{"type":"identify","userId":"u","context":{"page":{"url":1}}}`, "", ErrInvalidEvent, "context.page.url", ""},
		{"context.campaign.name bool", `{"type":"identify","userId":"u","context":{"campaign":{"name":false}}}`, "", ErrInvalidEvent, "context.campaign.name", ""},
		{"context.library.version number", `{"type":"identify","userId":"u","context":{"library":{"version":2}}}`, "", ErrInvalidEvent, "context.library.version", ""},
		{"context.consent string", `{"type":"identify","userId":"u","context":{"consent":"yes"}}`, "", ErrInvalidEvent, "context.consent", ""},
		{"context.traits array", `{"type":"identify","userId":"u","context":{"traits":[]}}`, "", ErrInvalidEvent, "context.traits", ""},
		{"context.ip number", `{"type":"identify","userId":"u","context":{"ip":1}}`, "", ErrInvalidEvent, "context.ip", ""},
		{"first problem reported", `{"type":"identify","userId":"u","event":1,"name":2}`, "", ErrInvalidEvent, "event", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeMessage([]byte(tt.body), tt.route)
			if !errors.Is(err, tt.sentinel) {
				t.Fatalf("err = %v, want %v", err, tt.sentinel)
			}
			var fe *FieldError
			if got := errors.As(err, &fe); got != (tt.wantField != "") {
				t.Fatalf("FieldError presence = %v (err %v)", got, err)
			}
			if fe != nil && fe.Field != tt.wantField {
				t.Fatalf("field = %q, want %q", fe.Field, tt.wantField)
			}
			if tt.wantMsg != "" && err.Error() != tt.wantMsg {
				t.Fatalf("message = %q, want %q", err.Error(), tt.wantMsg)
			}
		})
	}
}

func TestMalformedErrorHidesInput(t *testing.T) {
	_, err := DecodeMessage([]byte(`{"secret@example.com":"a","secret@example.com":"b"}`), "track")
	if !errors.Is(err, ErrMalformedJSON) {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Fatalf("error quotes the input: %v", err)
	}
}

func TestEventTime(t *testing.T) {
	recv := mustTime(t, "2026-11-26T12:00:00Z")
	ts := mustTime(t, "2026-11-26T10:00:00Z")
	sent := mustTime(t, "2026-11-26T10:00:30Z")
	tests := []struct {
		name string
		m    Message
		want time.Time
	}{
		{"timestamp and sentAt: skew corrected", Message{Timestamp: ts, SentAt: sent}, recv.Add(-30 * time.Second)},
		{"only timestamp", Message{Timestamp: ts}, ts},
		{"originalTimestamp and sentAt", Message{OriginalTimestamp: ts, SentAt: sent}, recv.Add(-30 * time.Second)},
		{"timestamp preferred over originalTimestamp", Message{Timestamp: ts, OriginalTimestamp: ts.Add(-time.Hour), SentAt: sent}, recv.Add(-30 * time.Second)},
		{"only originalTimestamp", Message{OriginalTimestamp: ts}, recv},
		{"only sentAt", Message{SentAt: sent}, recv},
		{"nothing", Message{}, recv},
		{"future timestamp clamped", Message{Timestamp: recv.Add(72 * time.Hour)}, recv.Add(24 * time.Hour)},
		{"future within 24h kept", Message{Timestamp: recv.Add(23 * time.Hour)}, recv.Add(23 * time.Hour)},
		{"sentAt before timestamp clamped", Message{Timestamp: sent.Add(48 * time.Hour), SentAt: sent}, recv.Add(24 * time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.m.EventTime(recv); !got.Equal(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDecodeBatch(t *testing.T) {
	body := `{
	  "writeKey": "batch-wk",
	  "batch": [
	    {"type":"track","userId":"u1","event":"E1","messageId":"m0","context":{"ip":"198.51.100.1","page":{"url":"https://own.test/"}}},
	    {"type":"track","userId":"u2","messageId":"m1"},
	    {"type":"identify","anonymousId":42,"messageId":"m2","writeKey":"own-wk","sentAt":"2026-01-01T00:00:00Z"},
	    "not an object",
	    {"type":"page","userId":"u4","messageId":"m4","properties":5},
	    {"type":"page","userId":"u5","messageId":"m5","properties":{"big":"` + strings.Repeat("x", 200) + `"}},
	    {"type":"screen","userId":"u6","messageId":"m6"}
	  ],
	  "sentAt": "2026-11-26T10:00:05Z",
	  "context": {"ip":"203.0.113.9","userAgent":"batch-ua","page":{"path":"/batch"},"library":{"name":"lib"},"consent":{"c":1},"traits":{"t":1}},
	  "integrations": {}
	}`
	b, err := DecodeBatch([]byte(body), 0, 200)
	if err != nil {
		t.Fatal(err)
	}
	sent := mustTime(t, "2026-11-26T10:00:05Z")
	if b.WriteKey != "batch-wk" || !b.SentAt.Equal(sent) || b.Context.UserAgent != "batch-ua" {
		t.Fatalf("batch-level fields: %+v", b)
	}
	var ids []string
	for _, m := range b.Messages {
		ids = append(ids, m.MessageID)
	}
	if got := strings.Join(ids, ","); got != "m0,m2,m6" {
		t.Fatalf("kept %s, want m0,m2,m6", got)
	}
	for i, want := range []int{0, 2, 6} {
		if b.Messages[i].Index != want {
			t.Errorf("%s: Index %d, want its batch position %d", b.Messages[i].MessageID, b.Messages[i].Index, want)
		}
	}
	m0, m2 := b.Messages[0], b.Messages[1]
	mergeChecks := []struct{ name, got, want string }{
		{"own ip kept", m0.Context.IP, "198.51.100.1"},
		{"own page url kept", m0.Context.Page.URL, "https://own.test/"},
		{"batch page path filled", m0.Context.Page.Path, "/batch"},
		{"batch ua filled", m0.Context.UserAgent, "batch-ua"},
		{"batch library filled", m0.Context.Library.Name, "lib"},
		{"batch consent filled", string(m0.Context.Consent), `{"c":1}`},
		{"batch traits filled", string(m0.Traits), `{"t":1}`},
		{"batch writeKey filled", m0.WriteKey, "batch-wk"},
		{"own writeKey kept", m2.WriteKey, "own-wk"},
		{"numeric anonymousId", m2.AnonymousID, "42"},
		{"batch ip filled", m2.Context.IP, "203.0.113.9"},
	}
	for _, c := range mergeChecks {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}
	if !m0.SentAt.Equal(sent) {
		t.Errorf("batch sentAt not filled: %v", m0.SentAt)
	}
	if want := mustTime(t, "2026-01-01T00:00:00Z"); !m2.SentAt.Equal(want) {
		t.Errorf("own sentAt replaced: %v", m2.SentAt)
	}

	wantErrs := []struct {
		index    int
		id       string
		sentinel error
		field    string
	}{
		{1, "m1", ErrInvalidEvent, "batch[1].event"},
		{3, "", ErrInvalidEvent, "batch[3]"},
		{4, "m4", ErrInvalidEvent, "batch[4].properties"},
		{5, "m5", ErrTooLarge, ""},
	}
	if len(b.Errors) != len(wantErrs) {
		t.Fatalf("errors = %v, want %d", b.Errors, len(wantErrs))
	}
	for i, w := range wantErrs {
		got := b.Errors[i]
		if got.Index != w.index || got.MessageID != w.id || !errors.Is(got.Err, w.sentinel) {
			t.Errorf("error %d = %+v (%v), want %+v", i, got, got.Err, w)
		}
		var fe *FieldError
		if w.field != "" && (!errors.As(got.Err, &fe) || fe.Field != w.field) {
			t.Errorf("error %d field = %v, want %q", i, got.Err, w.field)
		}
	}
}

func TestDecodeBatchErrors(t *testing.T) {
	many := `{"batch":[` + strings.Repeat(`{"type":"page","userId":"u"},`, 3) + `{"type":"page","userId":"u"}]}`
	tests := []struct {
		name      string
		body      string
		maxEvents int
		sentinel  error
		field     string
	}{
		{"not JSON", `nope`, 0, ErrMalformedJSON, ""},
		{"syntax error inside an item", `{"batch":[{"type":"page",}]}`, 0, ErrMalformedJSON, ""},
		{"unterminated", `{"batch":[{"type":"page"}`, 0, ErrMalformedJSON, ""},
		{"batch missing", `{"writeKey":"w"}`, 0, ErrInvalidEvent, "batch"},
		{"batch not array", `{"batch":{"type":"page"}}`, 0, ErrInvalidEvent, "batch"},
		{"batch null", `{"batch":null}`, 0, ErrInvalidEvent, "batch"},
		{"body not object", `[]`, 0, ErrInvalidEvent, "body"},
		{"batch sentAt bad", `{"batch":[],"sentAt":"x"}`, 0, ErrInvalidEvent, "sentAt"},
		{"batch context bad", `{"context":[],"batch":[]}`, 0, ErrInvalidEvent, "context"},
		{"batch writeKey bad", `{"batch":[],"writeKey":1}`, 0, ErrInvalidEvent, "writeKey"},
		{"too many events", many, 3, ErrTooManyEvents, ""},
		{"too many non-object events", `{"batch":[1,2,3]}`, 2, ErrTooManyEvents, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeBatch([]byte(tt.body), tt.maxEvents, 0)
			if !errors.Is(err, tt.sentinel) {
				t.Fatalf("err = %v, want %v", err, tt.sentinel)
			}
			var fe *FieldError
			if errors.As(err, &fe) != (tt.field != "") || (fe != nil && fe.Field != tt.field) {
				t.Fatalf("field error = %v, want field %q", err, tt.field)
			}
		})
	}
	// Exactly maxEvents is fine; an empty batch is fine.
	for _, tt := range []struct {
		body string
		max  int
		n    int
	}{{many, 4, 4}, {`{"batch":[]}`, 1, 0}} {
		b, err := DecodeBatch([]byte(tt.body), tt.max, 0)
		if err != nil || len(b.Messages) != tt.n {
			t.Fatalf("got %d messages, err %v; want %d", len(b.Messages), err, tt.n)
		}
	}
}

func TestItemErrorFormatting(t *testing.T) {
	e := ItemError{Index: 2, Err: &FieldError{Field: "batch[2].event", Problem: "is required for track"}}
	if !errors.Is(e, ErrInvalidEvent) {
		t.Fatal("ItemError does not unwrap to ErrInvalidEvent")
	}
	if got := fmt.Sprint(e); !strings.Contains(got, "batch[2].event: is required for track") {
		t.Fatalf("Error() = %q", got)
	}
}

func TestDecodeReusesNothingVisible(t *testing.T) {
	// Pooled decoder state must not leak between calls, sequential or
	// concurrent.
	first, err := DecodeBatch(sampleBatch(3), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 4)
	for g := range 4 {
		go func() {
			for i := range 50 {
				body := fmt.Sprintf(`{"type":"identify","userId":"g%d-%d","traits":{"n":%d}}`, g, i, i)
				m, err := DecodeMessage([]byte(body), "")
				if err == nil && (m.UserID != fmt.Sprintf("g%d-%d", g, i) || string(m.Traits) != fmt.Sprintf(`{"n":%d}`, i)) {
					err = fmt.Errorf("got %q %s", m.UserID, m.Traits)
				}
				if err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	for i, m := range first.Messages {
		if want := fmt.Sprintf("user-%d", i); m.UserID != want || m.WriteKey != "wk_live_123" {
			t.Fatalf("earlier result changed: %q %q", m.UserID, m.WriteKey)
		}
	}
}
