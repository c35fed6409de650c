package response

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vigie-dev/vigie/plugins/response/model"
	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
	"github.com/vigie-dev/vigie/sdk/sdktest"
)

// objection is an objection (or its lifting) of subj and its linked
// pseudonym on site demo.
func objection(subj string, lifted bool, purposes ...string) *vigiev1.PrivacyEvent {
	return &vigiev1.PrivacyEvent{
		Site: "demo", Subject: subj, Subjects: []string{subj, subj + "-anon"},
		Action: vigiev1.PrivacyAction_PRIVACY_ACTION_OBJECT, Objected: purposes, Lifted: lifted,
	}
}

// TestObjectionKeepsTheSubjectOut: an objection to marketing (given
// through the PrivacyListener hook over gRPC, as the host does) removes
// the subject's contribution, and its later events stay out of the model
// — they still grant personalization, since an objection only removes
// marketing from them — across a restart, until the objection is lifted.
// An erasure drops the objection with everything else.
func TestObjectionKeepsTheSubjectOut(t *testing.T) {
	host := sdktest.NewHost()
	h, m := start(t, host, testConfig)
	ctx := hostCtx(t, host)
	personalization := func(ev *sdk.Event) *sdk.Event { ev.Purposes = []string{"personalization"}; return ev }
	feed(t, h,
		in(sent("a", 0, ""), profile("a", "vip")),
		in(emailHit(EventEmailClicked, "a", time.Hour, "human"), profile("a", "vip")),
		in(sent("b", 0, ""), profile("b", "vip")))
	if e := cell(t, m, ctx, "vip", "promo"); e.Exposures != 2 || e.Responses != 1 {
		t.Fatalf("before: %v/%v", e.Exposures, e.Responses)
	}
	// An objection to analytics only changes nothing.
	if err := h.Forget(t.Context(), []*sdk.PrivacyEvent{objection("a", false, "analytics")}); err != nil {
		t.Fatal(err)
	}
	if e := cell(t, m, ctx, "vip", "promo"); e.Exposures != 2 {
		t.Fatalf("an objection to analytics removed a subject: %v", e.Exposures)
	}
	if err := h.Forget(t.Context(), []*sdk.PrivacyEvent{objection("a", false, "marketing")}); err != nil {
		t.Fatal(err)
	}
	if e := cell(t, m, ctx, "vip", "promo"); e.Exposures != 1 || e.Responses != 0 {
		t.Fatalf("after the objection: %v/%v, want b's exposure only", e.Exposures, e.Responses)
	}
	feed(t, h, in(personalization(sent("a", 2*time.Hour, "")), profile("a", "vip")),
		in(personalization(sent("a-anon", 2*time.Hour, "")), profile("a-anon", "vip")))
	if e := cell(t, m, ctx, "vip", "promo"); e.Exposures != 1 {
		t.Fatalf("objected subjects' later events counted: %v exposures", e.Exposures)
	}
	if st := m.Stats(); st.Objected != 2 {
		t.Errorf("Stats.Objected = %d, want 2", st.Objected)
	}
	// A new plugin process over the same store keeps them out.
	h2, m2 := start(t, host, testConfig)
	feed(t, h2, in(personalization(sent("a", 3*time.Hour, "")), profile("a", "vip")))
	if e := cell(t, m2, ctx, "vip", "promo"); e.Exposures != 1 {
		t.Fatalf("after a restart the objected subject counted: %v exposures", e.Exposures)
	}
	if ok, _ := m2.Objected(ctx, "demo", "a-anon"); !ok {
		t.Fatal("the linked pseudonym's objection was not restored")
	}
	// Lifted: modelled again from the next event.
	if err := h2.Forget(t.Context(), []*sdk.PrivacyEvent{objection("a", true)}); err != nil {
		t.Fatal(err)
	}
	feed(t, h2, in(personalization(sent("a", 4*time.Hour, "")), profile("a", "vip")))
	if e := cell(t, m2, ctx, "vip", "promo"); e.Exposures != 2 {
		t.Fatalf("after the lifting: %v exposures, want 2", e.Exposures)
	}
	// Objected again, then erased: the erasure takes the objection too.
	if err := m2.HandlePrivacy(ctx, objection("b", false, "marketing", "personalization")); err != nil {
		t.Fatal(err)
	}
	if err := m2.HandlePrivacy(ctx, &vigiev1.PrivacyEvent{Site: "demo", Subject: "b", Action: vigiev1.PrivacyAction_PRIVACY_ACTION_ERASURE}); err != nil {
		t.Fatal(err)
	}
	for k := range host.KV() {
		if strings.Contains(k, "/objected/") && strings.Contains(string(host.KV()[k]), `"b"`) {
			t.Fatalf("the erased subject is still in %s", k)
		}
	}
}

// TestNextMessageTypeAttribute: a counted event sets the subject's next
// message type in its profile (a candidate), not again while it is the
// same; profile_attribute "" writes none.
func TestNextMessageTypeAttribute(t *testing.T) {
	host := sdktest.NewHost()
	h, _ := start(t, host, strings.Replace(testConfig, `"flush_events": 1`, `"flush_events": 1, "candidates": ["promo"]`, 1))
	res, err := h.Segment(t.Context(), sent("a", 0, ""), profile("a", "vip"))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(res.Update.GetAttributes()); got != `{"next_message_type":"promo"}` {
		t.Fatalf("update %q", got)
	}
	p := profile("a", "vip")
	p.Attributes = []byte(`{"plan":"pro","next_message_type":"promo"}`)
	if res, _ := h.Segment(t.Context(), sent("a", time.Hour, ""), p); res.Update != nil {
		t.Fatalf("unchanged recommendation written again: %+v", res.Update)
	}
	// Not counted (no message type): no recommendation either.
	if res, _ := h.Segment(t.Context(), event(EventEmailSent, "c", 0, `{"campaign":"x"}`), profile("c")); res.Update != nil {
		t.Fatalf("an ignored event wrote %+v", res.Update)
	}
	h2, _ := start(t, sdktest.NewHost(), strings.Replace(testConfig, `"flush_events": 1`, `"flush_events": 1, "profile_attribute": ""`, 1))
	if res, _ := h2.Segment(t.Context(), sent("a", 0, ""), profile("a", "vip")); res.Update != nil {
		t.Fatalf("profile_attribute \"\" wrote %+v", res.Update)
	}
}

// TestSummaryForReaders: the stored summary, read under the
// configuration's View, gives the plugin's own table; the background
// flusher writes it when no further event comes.
func TestSummaryForReaders(t *testing.T) {
	host := sdktest.NewHost()
	cfg := strings.Replace(testConfig, `"flush_events": 1`, `"flush_events": 1000, "flush_interval": "50ms"`, 1)
	h, m := start(t, host, cfg)
	feed(t, h, in(sent("a", 0, ""), profile("a", "vip")), in(emailHit(EventEmailOpened, "a", time.Hour, "human"), profile("a", "vip")),
		in(sent("b", 0, ""), profile("b", "vip", "fr")))
	deadline := time.Now().Add(10 * time.Second)
	for host.KV()[SummaryKey("demo")] == nil {
		if time.Now().After(deadline) {
			t.Fatal("the flusher did not write the summary")
		}
		time.Sleep(20 * time.Millisecond)
	}
	view, err := ParseView([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(view.Candidates, []string{"promo", "banner"}) || view.ProfileAttribute != DefaultProfileAttribute {
		t.Fatalf("view %+v", view)
	}
	sum, err := model.NewSummary(view.Model, host.KV()[SummaryKey("demo")])
	if err != nil {
		t.Fatal(err)
	}
	want, _ := m.Table(hostCtx(t, host), "demo")
	if got := sum.Table(t0.Add(24 * time.Hour)); !reflect.DeepEqual(got, want) {
		t.Fatalf("summary table\n%+v\nplugin table\n%+v", got, want)
	}
	if _, err := ParseView([]byte(`{"candidates":["nope"]}`)); err == nil {
		t.Fatal("an unknown candidate was accepted")
	}
	raw, _ := json.Marshal(map[string]any{"profile_attribute": "Bad-Name"})
	if _, err := ParseView(raw); err == nil {
		t.Fatal("a bad profile attribute was accepted")
	}
}
