package collect

import (
	"bytes"
	"fmt"
	"net/http/httptest"
	"testing"
)

// sampleEvent is a typical analytics.js track call (~600 bytes).
func sampleEvent(i int) string {
	return fmt.Sprintf(`{"type":"track","event":"Product Viewed","messageId":"ajs-next-1764151200123-%04d-4f8e-9a7c",`+
		`"anonymousId":"6f1c2b7a-0d3e-4c55-8a9b-2e1f0c3d4b5a","userId":"user-%d","timestamp":"2026-11-26T10:00:00.123Z",`+
		`"sentAt":"2026-11-26T10:00:01.456Z","context":{"ip":"203.0.113.7","locale":"fr-FR","timezone":"Europe/Paris",`+
		`"userAgent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",`+
		`"page":{"path":"/products/42","referrer":"https://www.google.com/","search":"?utm_source=news","title":"Blue shoes","url":"https://shop.example/products/42?utm_source=news"},`+
		`"campaign":{"name":"winter","source":"news","medium":"email"},"library":{"name":"analytics.js","version":"next-1.70.0"}},`+
		`"properties":{"product_id":"42","price":59.9,"currency":"EUR","category":"shoes"},"integrations":{}}`, i, i)
}

func sampleBatch(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"writeKey":"wk_live_123","sentAt":"2026-11-26T10:00:01.456Z","batch":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(sampleEvent(i))
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

func BenchmarkDecodeBatch(b *testing.B) {
	body := sampleBatch(15)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		batch, err := DecodeBatch(body, 0, 0)
		if err != nil || len(batch.Messages) != 15 {
			b.Fatal(err, len(batch.Messages))
		}
	}
}

func BenchmarkDecodeMessage(b *testing.B) {
	body := []byte(sampleEvent(1))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeMessage(body, "track"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadBodyGzip(b *testing.B) {
	body := sampleBatch(15)
	compressed := gz(b, body)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest("POST", "/v1/batch", bytes.NewReader(compressed))
		r.Header.Set("Content-Encoding", "gzip")
		got, release, err := ReadBody(r, 0)
		if err != nil || len(got) != len(body) {
			b.Fatal(err)
		}
		release()
	}
}

// BenchmarkWithinLimits is the added cost of the nesting and number check
// on a typical properties object (the check runs on every object, array
// and number value of an event).
func BenchmarkWithinLimits(b *testing.B) {
	v := []byte(`{"product_id":"42","price":59.9,"currency":"EUR","category":"shoes","tags":["a","b"],"dims":{"w":1.5e2,"h":20}}`)
	b.SetBytes(int64(len(v)))
	for b.Loop() {
		if !withinLimits(v) {
			b.Fatal("refused")
		}
	}
}
