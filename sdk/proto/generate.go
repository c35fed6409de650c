// Package proto holds Vigie's protobuf contract; the generated Go code lives
// in package vigiev1.
//
// Regenerate with `go generate ./sdk/proto` (needs protoc, protoc-gen-go
// v1.36.12 and protoc-gen-go-grpc v1.6.2 on PATH:
// `go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12` and
// `go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2`).
package proto

//go:generate protoc --go_out=. --go_opt=module=github.com/vigie-dev/vigie/sdk/proto --go-grpc_out=. --go-grpc_opt=module=github.com/vigie-dev/vigie/sdk/proto vigie/v1/event.proto vigie/v1/plugin.proto
