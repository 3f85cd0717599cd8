#!/bin/sh
# Regenerates the Go code of Cairn's own protocol buffers. The generated files
# are committed: CI does not run protoc. This script installs what it needs,
# idempotently: protoc from Debian's protobuf-compiler package, and the Go
# plugins (pinned versions) built from a small tools module in a cache folder.
set -eu
cd "$(dirname "$0")/.."
TOOLS="${CAIRN_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/cairn-tools}"
if ! command -v protoc >/dev/null 2>&1; then
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler
fi
if [ ! -x "$TOOLS/bin/protoc-gen-go" ] || [ ! -x "$TOOLS/bin/protoc-gen-go-grpc" ]; then
	mkdir -p "$TOOLS"
	(
		cd "$TOOLS"
		[ -f go.mod ] || go mod init tools >/dev/null 2>&1
		go get google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12 google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
		go build -o bin/protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go
		go build -o bin/protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc
	)
fi
PATH="$TOOLS/bin:$PATH"
protoc \
	--go_out=. --go_opt=module=github.com/cairn-ledger/cairn \
	--go-grpc_out=. --go-grpc_opt=module=github.com/cairn-ledger/cairn \
	protos/cluster.proto protos/leadership.proto protos/membership.proto
