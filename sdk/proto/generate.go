// Package proto holds Vigie's protobuf contract; the generated Go code lives
// in package vigiev1.
//
// Regenerate with `go generate ./sdk/proto` (needs protoc and protoc-gen-go
// v1.36.12 on PATH: `go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12`).
package proto

//go:generate protoc --go_out=. --go_opt=module=github.com/vigie-dev/vigie/sdk/proto vigie/v1/event.proto
