package proxy_test

import (
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestAdminEventJSON: the admin API shows times as JSON numbers (a client
// compares received_at_ms without parsing a string) and modes as lower-case
// names, not protobuf's int64 strings and MODE_ enum names.
func TestAdminEventJSON(t *testing.T) {
	in := startLean(t)
	if status, body := in.Post("/v1/track", "demo", `{"event":"Signed Up","userId":"u-1","timestamp":"2026-02-03T04:05:06.789Z",
"properties":{"plan":"pro"},"context":{"consent":{"analytics":true}}}`); status != 200 {
		t.Fatalf("track: %d %s", status, body)
	}
	_, body := in.Admin("/admin/v1/events?site=demo")
	var out struct {
		Events []map[string]json.RawMessage
	}
	if err := json.Unmarshal(body, &out); err != nil || len(out.Events) != 1 {
		t.Fatalf("events: %v %s", err, body)
	}
	ev := out.Events[0]
	for field, want := range map[string]string{
		"timestamp_ms": "1770091506789",
		"mode":         `"pseudonymous"`,
		"properties":   `{"plan":"pro"}`,
		"type":         `"track"`,
	} {
		if got := string(ev[field]); got != want {
			t.Errorf("%s = %s, want %s", field, got, want)
		}
	}
	var received float64
	if err := json.Unmarshal(ev["received_at_ms"], &received); err != nil || time.Since(time.UnixMilli(int64(received))) > time.Minute {
		t.Errorf("received_at_ms = %s, want a recent time in milliseconds as a number", ev["received_at_ms"])
	}
}

// TestAdminEventFilters: GET /admin/v1/events filters on type, name and
// the event time (from inclusive, to exclusive, RFC 3339 or milliseconds).
func TestAdminEventFilters(t *testing.T) {
	in := startLean(t)
	base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	// Consented events keep their exact times (anonymous ones are floored
	// to the hour).
	send := []struct{ typ, body string }{
		{"page", `{"name":"Home","anonymousId":"a","context":{"consent":{"analytics":true}},"timestamp":"2026-03-01T10:00:00Z"}`},
		{"track", `{"event":"Cart Viewed","anonymousId":"a","context":{"consent":{"analytics":true}},"timestamp":"2026-03-01T10:01:00Z"}`},
		{"track", `{"event":"Signed Up","anonymousId":"a","context":{"consent":{"analytics":true}},"timestamp":"2026-03-01T10:02:00Z"}`},
		{"page", `{"name":"Pricing","anonymousId":"a","context":{"consent":{"analytics":true}},"timestamp":"2026-03-01T10:03:00Z"}`},
		{"track", `{"event":"Cart Viewed","anonymousId":"b","context":{"consent":{"analytics":true}},"timestamp":"2026-03-01T10:04:00Z"}`},
		{"identify", `{"userId":"u","context":{"consent":{"analytics":true}},"timestamp":"2026-03-01T10:05:00Z"}`},
	}
	for _, s := range send {
		if status, body := in.Post("/v1/"+s.typ, "demo", s.body); status != 200 {
			t.Fatalf("%s: %d %s", s.typ, status, body)
		}
	}
	ms := func(min int) string {
		return strconv.FormatInt(base.Add(time.Duration(min)*time.Minute).UnixMilli(), 10)
	}
	for _, c := range []struct {
		name, query, want string
	}{
		{"no filter", "", "identify,Cart Viewed,Pricing,Signed Up,Cart Viewed,Home"},
		{"type", "type=track", "Cart Viewed,Signed Up,Cart Viewed"},
		{"types", "type=page,identify", "identify,Pricing,Home"},
		{"name", "name=" + url.QueryEscape("Cart Viewed"), "Cart Viewed,Cart Viewed"},
		{"type and name", "type=page&name=Home", "Home"},
		{"from RFC 3339", "from=2026-03-01T10:03:00Z", "identify,Cart Viewed,Pricing"},
		{"to is exclusive", "to=2026-03-01T10:02:00Z", "Cart Viewed,Home"},
		{"from and to in ms", "from=" + ms(1) + "&to=" + ms(4), "Pricing,Signed Up,Cart Viewed"},
		{"everything", "type=track&name=Cart+Viewed&from=2026-03-01T10:00:30%2B00:00", "Cart Viewed,Cart Viewed"},
		{"nothing matches", "type=screen", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			var names []string
			for _, ev := range adminEvents(t, in, "site=demo&"+c.query) {
				n, _ := ev["name"].(string)
				if n == "" {
					n = ev["type"].(string)
				}
				names = append(names, n)
			}
			if got := strings.Join(names, ","); got != c.want {
				t.Fatalf("got %s, want %s", got, c.want)
			}
		})
	}
	for _, bad := range []string{"from=yesterday", "to=-5", "from=2026-03-01"} {
		status, body := in.Admin("/admin/v1/events?site=demo&" + bad)
		if m := decodeErr(t, body); status != 400 || m["code"] != "invalid_time" {
			t.Errorf("%s: %d %s", bad, status, body)
		}
	}
}
