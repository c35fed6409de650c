// Package js embeds Vigie's browser snippet, the script a site loads from its
// first-party path (by default /s.js) to send page, track, identify and
// consent events to the proxy's Segment-compatible batch route (v1/b).
//
// The script is built from src/vigie.js by esbuild (see build.mjs and
// README.md) and committed as dist/s.js, so the Go build needs no Node. The
// package tests check that the committed build matches the source, that it
// stays under 3 KB gzipped and that it never touches cookies or storage.
package js

import _ "embed"

// Version is the snippet's version, sent by every event as
// context.library.version (with context.library.name "vigie.js"). It matches
// the version in package.json.
const Version = "0.1.0"

// Script is the minified snippet (dist/s.js). Serve it as
// "text/javascript; charset=utf-8"; it is plain ASCII.
//
//go:embed dist/s.js
var Script []byte
