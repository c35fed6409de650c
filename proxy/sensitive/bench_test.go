package sensitive

import "testing"

// benchInput is what the pipeline scans of `vigie bench`'s track call
// (proxy/pipeline's benchTrack): nothing sensitive in it.
var benchInput = Input{
	Properties: []byte(`{"product_id":"42","price":59.9,"currency":"EUR","category":"shoes"}`),
	Path:       "/products/42",
	Title:      "Blue running shoes",
}

// benchIdentifyInput is the identify call's traits (proxy/pipeline's
// benchIdentify), with a phone number the national-id filter must not
// send to the scrubber.
var benchIdentifyInput = Input{
	Traits: []byte(`{"email":"jeanne.martin@example.fr","name":"Jeanne Martin","phone":"+33 6 12 34 56 78","plan":"pro","company_size":42}`),
	Path:   "/account",
}

func benchScan(b *testing.B, in Input, want bool) {
	d, err := New(DefaultPolicy())
	if err != nil {
		b.Fatal(err)
	}
	var f Findings
	d.Scan(&in, &f)
	if f.Any() != want {
		b.Fatalf("findings %s, want any = %v", f.String(), want)
	}
	b.SetBytes(int64(len(in.Properties) + len(in.Traits) + len(in.Path) + len(in.Title)))
	b.ReportAllocs()
	for b.Loop() {
		var f Findings
		d.Scan(&in, &f)
	}
}

// BenchmarkScan is the hot path: a neutral track call.
func BenchmarkScan(b *testing.B) { benchScan(b, benchInput, false) }

// BenchmarkScanIdentify is a neutral identify call.
func BenchmarkScanIdentify(b *testing.B) { benchScan(b, benchIdentifyInput, false) }

// BenchmarkScanHit is a hit in every layer (the rare path: it allocates
// the hits and their examples).
func BenchmarkScanHit(b *testing.B) {
	benchScan(b, Input{
		Properties: []byte(`{"medical_condition":"x","notes":"diagnosed with diabetes last year"}`),
		Path:       "/conditions/diabetes-type-2", Title: "Living with diabetes",
	}, true)
}
