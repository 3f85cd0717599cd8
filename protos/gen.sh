#!/bin/sh
# Regenerates the Go code of Cairn's own protocol buffers. Run from anywhere;
# needs protoc (3.21+), protoc-gen-go and protoc-gen-go-grpc on PATH (the
# project's tool cache puts them in /root/.cache/cairn-tools/bin). The
# generated files are committed: CI does not run protoc.
set -eu
cd "$(dirname "$0")/.."
PATH="${CAIRN_TOOLS:-/root/.cache/cairn-tools/bin}:$PATH"
protoc \
	--go_out=. --go_opt=module=github.com/cairn-ledger/cairn \
	--go-grpc_out=. --go-grpc_opt=module=github.com/cairn-ledger/cairn \
	protos/cluster.proto
