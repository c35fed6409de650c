package plugins_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/proto"

	"github.com/vigie-dev/vigie/internal/streams"
	"github.com/vigie-dev/vigie/internal/testplugins"
	"github.com/vigie-dev/vigie/plugins"
	"github.com/vigie-dev/vigie/plugins/builtin"
	"github.com/vigie-dev/vigie/proxy/config"
	"github.com/vigie-dev/vigie/proxy/proxytest"
	"github.com/vigie-dev/vigie/sdk"
	"github.com/vigie-dev/vigie/sdk/proto/vigiev1"
)

// init registers the noop test plugin, and noop-enricher (the same without
// its segmenter, so that the enrich stage is measured alone); TestMain
// (which runs after init) serves them when the runtime re-executes this
// binary as "plugin <name>".
func init() {
	builtin.Register("noop", func() { sdk.Serve(testplugins.Noop()) })
	builtin.Register("noop-enricher", func() {
		p := testplugins.Noop()
		p.Manifest.Name, p.Segmenter = "noop-enricher", nil
		sdk.Serve(p)
	})
}

const (
	benchBatch    = 100 // PluginRuntime.BatchSize and the baseline's fetch size
	benchSubjects = 50  // distinct pseudonymous subjects
	benchPoll     = 20 * time.Millisecond
	benchTimeout  = 10 * time.Minute // per run; a run that does not finish fails
	pubWindow     = 1024             // async publishes in flight
)

// BenchmarkPluginThroughput measures events per second through the plugin
// runtime, publishing included: b.N pseudonymous events are published to
// VIGIE_EVENTS (async, Nats-Msg-Id = event id) once the plugins are
// running, and the clock stops when the stage under test has handled all
// of them. Each plugin is a separate process reached over gRPC with mutual
// TLS; events go to it in batches of benchBatch. baseline is the bus alone:
// a plain durable pull consumer in this process fetching and acking the
// same events, with no plugin. Run with a fixed count, e.g.
//
//	go test ./plugins/ -run '^$' -bench BenchmarkPluginThroughput -benchtime=20000x
func BenchmarkPluginThroughput(b *testing.B) {
	b.Run("baseline", benchBaseline)
	b.Run("noop-enrich", func(b *testing.B) {
		in := benchServer(b, "enrich", config.Plugin{Name: "noop-enricher"})
		benchRun(b, in, func(ctx context.Context) (int64, error) { return enrichedCount(ctx, in) }, int64(b.N))
	})
	b.Run("noop-segment", func(b *testing.B) {
		in := benchServer(b, "segment-noop", config.Plugin{Name: "noop"})
		// noop is enricher and segmenter: its Processed counts each event
		// once in the enrich stage and once in its segment consumer.
		benchRun(b, in, func(ctx context.Context) (int64, error) { return processed(ctx, in, "noop") }, 2*int64(b.N))
	})
	b.Run("geoip", func(b *testing.B) {
		in := benchServer(b, "enrich", config.Plugin{Name: "geoip", Config: map[string]any{"database": benchGeoDB(b)}})
		benchRun(b, in, func(ctx context.Context) (int64, error) { return enrichedCount(ctx, in) }, int64(b.N))
		checkEnriched(b, in)
	})
	b.Run("geoip-no-database", func(b *testing.B) {
		// The default configuration's enrich stage: GeoIP without a
		// database, which passes every event through.
		in := benchServer(b, "enrich", config.Plugin{Name: "geoip", Config: map[string]any{"database": ""}})
		benchRun(b, in, func(ctx context.Context) (int64, error) { return enrichedCount(ctx, in) }, int64(b.N))
	})
	b.Run("segments", func(b *testing.B) {
		in := benchServer(b, "segment-segments", config.Plugin{Name: "segments", Config: benchSegmentsConfig()})
		benchRun(b, in, func(ctx context.Context) (int64, error) { return processed(ctx, in, "segments") }, int64(b.N))
	})
	b.Run("segments-mixed-consent", func(b *testing.B) {
		in := benchServer(b, "segment-segments", config.Plugin{Name: "segments", Config: benchSegmentsConfig()})
		msgs, profiled := benchMixedMsgs(b.N)
		benchTimed(b, in.Server.Bus().JetStream(), msgs, func(ctx context.Context) (int64, error) { return processed(ctx, in, "segments") }, profiled)
		checkNoPluginFailure(b, in)
	})
}

// benchMixedMsgs is benchMsgs where half the subjects grant analytics only
// (their events delete an absent profile instead of being profiled), as on
// a site where half the visitors refuse personalization. It also returns
// how many events are profiled.
func benchMixedMsgs(n int) ([]*nats.Msg, int64) {
	msgs := benchMsgs(n)
	var profiled int64
	for _, m := range msgs {
		var ev vigiev1.Event
		if err := proto.Unmarshal(m.Data, &ev); err != nil {
			panic(err)
		}
		if ev.GetSubject()[len(ev.GetSubject())-1]%2 == 0 {
			profiled++
			continue
		}
		ev.Purposes = []string{"analytics"}
		data, err := proto.Marshal(&ev)
		if err != nil {
			panic(err)
		}
		m.Data = data
	}
	return msgs, profiled
}

// benchBaseline consumes and acks b.N events from VIGIE_EVENTS with a plain
// durable pull consumer configured and fetched like the runtime's.
func benchBaseline(b *testing.B) {
	in := proxytest.Start(b, func(c *config.Config) { c.Plugins = []config.Plugin{} })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := in.Server.Bus().EnsureStreams(ctx); err != nil {
		b.Fatal(err)
	}
	js := in.Server.Bus().JetStream()
	cons, err := js.CreateOrUpdateConsumer(ctx, streams.Events, jetstream.ConsumerConfig{
		Durable:       "bench-baseline",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       time.Minute,
		MaxAckPending: 4 * benchBatch,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		FilterSubject: streams.EventsPrefix + ">",
	})
	if err != nil {
		b.Fatal(err)
	}
	msgs := benchMsgs(b.N)
	var acked atomic.Int64
	errc := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			batch, err := fetchBatch(ctx, cons)
			if err != nil {
				if ctx.Err() == nil {
					errc <- err
				}
				return
			}
			for _, m := range batch {
				if err := m.Ack(); err != nil {
					errc <- err
					return
				}
				acked.Add(1)
			}
		}
	}()
	benchTimed(b, js, msgs, func(context.Context) (int64, error) {
		select {
		case err := <-errc:
			return 0, err
		default:
			return acked.Load(), nil
		}
	}, int64(b.N))
}

// fetchBatch waits for at least one message and returns up to benchBatch,
// the way the runtime's consumers fetch: no wait when messages are
// pending, so a short last batch does not wait for a timeout.
func fetchBatch(ctx context.Context, cons jetstream.Consumer) ([]jetstream.Msg, error) {
	batch, err := cons.FetchNoWait(benchBatch)
	if err != nil {
		return nil, err
	}
	msgs := drain(batch)
	if len(msgs) > 0 {
		return msgs, batch.Error()
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	batch, err = cons.Fetch(1, jetstream.FetchContext(wctx))
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, nil
		}
		return nil, err
	}
	msgs = drain(batch)
	if len(msgs) == 1 {
		if more, err := cons.FetchNoWait(benchBatch - 1); err == nil {
			msgs = append(msgs, drain(more)...)
		}
	}
	return msgs, nil
}

// drain collects a fetched batch.
func drain(batch jetstream.MessageBatch) []jetstream.Msg {
	var out []jetstream.Msg
	for m := range batch.Messages() {
		out = append(out, m)
	}
	return out
}

// benchServer starts Vigie with plugins and a fast runtime (batches of
// benchBatch) and waits until every plugin runs and the consumer named
// ready exists, so that start-up is not measured.
func benchServer(b *testing.B, ready string, ps ...config.Plugin) *proxytest.Instance {
	b.Helper()
	in := proxytest.Start(b, withPlugins(ps...), func(c *config.Config) { c.PluginRuntime.BatchSize = benchBatch })
	ctx := context.Background()
	deadline := time.Now().Add(time.Minute)
	for {
		ok := true
		found := false
		for _, st := range in.Server.Plugins().Status(ctx) {
			ok = ok && st.State == plugins.StateRunning
			for _, c := range st.Consumers {
				found = found || c.Name == ready
			}
		}
		if ok && found {
			return in
		}
		if time.Now().After(deadline) {
			b.Fatalf("plugins not ready (consumer %s): %+v", ready, in.Server.Plugins().Status(ctx))
		}
		time.Sleep(benchPoll)
	}
}

// benchRun publishes b.N events to in and measures until done reports
// target, then checks that no plugin failed on the way.
func benchRun(b *testing.B, in *proxytest.Instance, done func(context.Context) (int64, error), target int64) {
	b.Helper()
	msgs := benchMsgs(b.N)
	benchTimed(b, in.Server.Bus().JetStream(), msgs, done, target)
	checkNoPluginFailure(b, in)
}

// checkNoPluginFailure fails unless every plugin ran without an error, a
// dead letter or a restart.
func checkNoPluginFailure(b *testing.B, in *proxytest.Instance) {
	b.Helper()
	for _, st := range in.Server.Plugins().Status(context.Background()) {
		if st.Errors != 0 || st.DeadLetters != 0 || st.Restarts != 0 {
			b.Fatalf("plugin %s: %d errors, %d dead letters, %d restarts (last error %q)",
				st.Name, st.Errors, st.DeadLetters, st.Restarts, st.LastError)
		}
	}
}

// benchTimed resets the timer, publishes msgs with at most pubWindow
// unacknowledged publishes, polls done every benchPoll until it reaches
// target and reports events/s.
func benchTimed(b *testing.B, js jetstream.JetStream, msgs []*nats.Msg, done func(context.Context) (int64, error), target int64) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), benchTimeout)
	defer cancel()
	b.ResetTimer()
	start := time.Now()
	futs := make([]jetstream.PubAckFuture, len(msgs))
	for i, m := range msgs {
		if i >= pubWindow {
			waitPub(ctx, b, futs[i-pubWindow])
		}
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			b.Fatalf("publish %d: %v", i, err)
		}
		futs[i] = f
	}
	for _, f := range futs[max(0, len(futs)-pubWindow):] {
		waitPub(ctx, b, f)
	}
	var n int64
	for {
		var err error
		if n, err = done(ctx); err != nil {
			b.Fatal(err)
		}
		if n >= target {
			break
		}
		select {
		case <-ctx.Done():
			b.Fatalf("%d of %d handled after %s", n, target, benchTimeout)
		case <-time.After(benchPoll):
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if n != target {
		b.Fatalf("handled %d, want %d", n, target)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
}

// waitPub waits for one publish acknowledgement.
func waitPub(ctx context.Context, b *testing.B, f jetstream.PubAckFuture) {
	select {
	case <-f.Ok():
	case err := <-f.Err():
		b.Fatalf("publish: %v", err)
	case <-ctx.Done():
		b.Fatal("publish: timed out")
	}
}

// enrichedCount is the number of events on VIGIE_ENRICHED.
func enrichedCount(ctx context.Context, in *proxytest.Instance) (int64, error) {
	st, err := in.Server.Bus().JetStream().Stream(ctx, streams.Enriched)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	return int64(info.State.Msgs), nil
}

// processed is plugin name's Processed counter.
func processed(ctx context.Context, in *proxytest.Instance, name string) (int64, error) {
	for _, st := range in.Server.Plugins().Status(ctx) {
		if st.Name == name {
			return st.Processed, nil
		}
	}
	return 0, fmt.Errorf("plugin %s not listed", name)
}

// checkEnriched fails unless the GeoIP plugin really enriched: events from
// a prefix in the database carry its country.
func checkEnriched(b *testing.B, in *proxytest.Instance) {
	b.Helper()
	ctx := context.Background()
	st, err := in.Server.Bus().JetStream().Stream(ctx, streams.Enriched)
	if err != nil {
		b.Fatal(err)
	}
	m, err := st.GetMsg(ctx, 1)
	if err != nil {
		b.Fatal(err)
	}
	var ev vigiev1.Event
	if err := proto.Unmarshal(m.Data, &ev); err != nil {
		b.Fatal(err)
	}
	if want := benchNetworks[ev.GetIpPrefix()]; ev.GetGeo().GetCountry() != want {
		b.Fatalf("enriched event from %s has country %q, want %q", ev.GetIpPrefix(), ev.GetGeo().GetCountry(), want)
	}
}

// benchNetworks are the /24 prefixes of the benchmark events and their
// country in the benchmark database ("" for the one left out of it).
var benchNetworks = map[string]string{
	"81.2.69.0/24":    "FR",
	"2.125.160.0/24":  "GB",
	"89.160.20.0/24":  "SE",
	"216.160.83.0/24": "US",
	"203.0.113.0/24":  "",
}

// benchGeoDB writes a GeoIP2-City database with the located networks of
// benchNetworks.
func benchGeoDB(b *testing.B) string {
	b.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoIP2-City", RecordSize: 24, IncludeReservedNetworks: true})
	if err != nil {
		b.Fatal(err)
	}
	for prefix, country := range benchNetworks {
		if country == "" {
			continue
		}
		_, n, _ := net.ParseCIDR(prefix)
		rec := mmdbtype.Map{
			"continent": mmdbtype.Map{"code": mmdbtype.String("EU")},
			"country":   mmdbtype.Map{"iso_code": mmdbtype.String(country), "names": mmdbtype.Map{"en": mmdbtype.String(country)}},
			"city":      mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String("City " + country)}},
			"location":  mmdbtype.Map{"time_zone": mmdbtype.String("Europe/Paris"), "latitude": mmdbtype.Float64(48.85)},
		}
		if err := tree.Insert(n, rec); err != nil {
			b.Fatal(err)
		}
	}
	path := filepath.Join(b.TempDir(), "city.mmdb")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := tree.WriteTo(f); err != nil {
		b.Fatal(err)
	}
	return path
}

// benchSegmentsConfig is a lead-scoring configuration: 5 scoring rules and
// 5 segments (counters, score, first seen, campaign, country).
func benchSegmentsConfig() map[string]any {
	rule := func(name string, points int, when string) any {
		return map[string]any{"name": name, "points": points, "when": when}
	}
	seg := func(name, when string) any { return map[string]any{"name": name, "when": when} }
	return map[string]any{
		"scoring": []any{
			rule("demo-requested", 10, `event.type == "track" && event.name == "Demo Requested"`),
			rule("pricing-view", 3, `event.type == "page" && event.page.path.startsWith("/pricing")`),
			rule("big-team", 5, `event.name == "Signup" && has(event.props().seats) && event.props().seats >= 50`),
			rule("from-paid", 1, `event.campaign.medium == "cpc"`),
			rule("unsubscribed", -5, `event.type == "track" && event.name == "Unsubscribed"`),
		},
		"segments": []any{
			seg("sales-ready", `profile.score >= 30`),
			seg("engaged", `profile.count("page", "7d") >= 10`),
			seg("new-visitor", `profile.days_since_first_seen() < 7`),
			seg("cart-abandoner", `profile.count("track", "Product Added", "7d") > 0 && profile.count("track", "Order Completed", "7d") == 0`),
			seg("fr-pricing", `profile.count("page", "/pricing*", "7d") >= 3 && profile.country == "FR"`),
		},
	}
}

// benchMsgs builds n publishable events (deterministic content, unique
// ids): pseudonymous, site demo, analytics and personalization granted,
// benchSubjects subjects, mostly page views with some track events.
func benchMsgs(n int) []*nats.Msg {
	rng := rand.New(rand.NewPCG(1, 2))
	subjects := make([]string, benchSubjects)
	for i := range subjects {
		h := sha256.Sum256([]byte(fmt.Sprint("visitor-", i)))
		subjects[i] = hex.EncodeToString(h[:16])
	}
	prefixes := slices.Sorted(maps.Keys(benchNetworks))
	paths := []string{"/", "/pricing", "/pricing/teams", "/features", "/docs/getting-started", "/blog/privacy-first-analytics"}
	tracks := []struct {
		name  string
		props string
	}{
		{"Product Added", `{"sku":"pro-annual","price":490,"currency":"EUR"}`},
		{"Signup", `{"plan":"pro","seats":60}`},
		{"Demo Requested", `{"source":"pricing"}`},
		{"Order Completed", `{"total":490,"currency":"EUR"}`},
	}
	now := time.Now()
	out := make([]*nats.Msg, n)
	for i := range out {
		k := rng.IntN(benchSubjects)
		ev := &vigiev1.Event{
			Id: ulid.Make().String(), Site: "demo",
			TimestampMs: now.Add(-time.Duration(rng.IntN(3600)) * time.Second).UnixMilli(), ReceivedAtMs: now.UnixMilli(),
			Mode: vigiev1.Mode_MODE_PSEUDONYMOUS, Purposes: []string{"analytics", "personalization"},
			Subject: subjects[k], AnonymousId: subjects[k], KeyId: "k1", Source: "snippet",
			Device:   &vigiev1.Device{Browser: "Chrome", BrowserMajor: "131", Os: "Windows", Class: "desktop"},
			IpPrefix: prefixes[k%len(prefixes)], Locale: "fr-FR", Library: "analytics.js 1.0",
		}
		path := paths[rng.IntN(len(paths))]
		ev.Page = &vigiev1.Page{Path: path, Url: "https://demo.example" + path, Title: "Demo " + strings.Trim(path, "/"),
			Referrer: "https://www.google.com/", ReferrerHost: "www.google.com"}
		if rng.IntN(4) == 0 {
			ev.Campaign = &vigiev1.Campaign{Name: "spring-2026", Source: "google", Medium: "cpc"}
		}
		if rng.IntN(10) < 7 {
			ev.Type = "page"
			ev.Properties = []byte(fmt.Sprintf(`{"path":%q}`, path))
		} else {
			t := tracks[rng.IntN(len(tracks))]
			ev.Type, ev.Name, ev.Properties = "track", t.name, []byte(t.props)
		}
		data, err := proto.Marshal(ev)
		if err != nil {
			panic(err)
		}
		m := nats.NewMsg(streams.EventSubject(ev.Site, ev.Type))
		m.Data = data
		m.Header.Set(nats.MsgIdHdr, ev.GetId())
		out[i] = m
	}
	return out
}
