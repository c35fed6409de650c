// Package collect decodes Segment HTTP Tracking API payloads.
//
// It understands the single-event routes (/v1/track, /v1/page, /v1/screen,
// /v1/identify, /v1/group, /v1/alias and their analytics-next short forms
// such as /v1/t) and the batch routes (/v1/batch, /v1/import, /v1/b), as
// sent by Segment, RudderStack and analytics-next clients. It is pure code
// over a []byte; [ReadBody] turns an HTTP request body (plain, gzip or
// deflate) into that []byte with hard size limits.
//
// Decoding streams over the JSON with a jsontext.Decoder: no reflection, no
// maps and no per-event interface values. Every string of a decoded
// [Message] and its raw properties, traits and consent share one
// append-only allocation per call, so a decoded message never aliases the
// request body and the body buffer can be released as soon as decoding
// returns.
//
// Unknown fields (integrations, options, receivedAt, …) are ignored. Wrong
// types produce a [*FieldError] naming the JSON field.
package collect
