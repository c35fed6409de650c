// Package rollup maintains the aggregates behind the console's overview:
// per site, hourly and daily buckets of the enriched event stream (counts
// by mode, page views, visits, top lists with an "other" count, granted
// purposes, and a HyperLogLog sketch of the identified visitors), kept in
// the store (storage.PutRollups), and the per-hour decision counters of
// ingestion (kept pseudonymous, anonymous or dropped, and why), which
// include the hits that never reach NATS.
//
// An Aggregator counts decoded events and answers Overview; a Consumer
// feeds it from a durable JetStream consumer with exactly-once counting
// (rollups and stream position committed together, acknowledged after);
// a DecisionCounter is called by the HTTP edge for every hit. Overview
// never scans events. Definitions, accuracy and retention are in
// README.md.
package rollup
