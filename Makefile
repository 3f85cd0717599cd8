# Cairn build entry points. `make run` and `make test` are the two commands a
# fresh machine needs (see README.md).
GO      ?= go
BIN     := bin/cairn
GOFILES := $(shell find . -name '*.go' -not -path './.git/*' -not -path './bin/*' -not -path '*/node_modules/*')

.PHONY: build run test lint proto clean

build:
	$(GO) build -o $(BIN) ./cmd/cairn

run: build
	$(BIN) network up

# Process-level tests (internal/localnet: real networks, SIGKILL, chaos) run on
# their own after the rest, so elections are not starved of CPU by parallel
# race-instrumented packages. tests/adminsdk is a nested module (it needs
# fabric-gateway v1.11.0 for fabric-admin-sdk; Cairn itself is checked with the
# v1.10.0 client) that drives a network with fabric-admin-sdk v0.2.0.
# tests/nodegateway drives one with the official Node SDK
# (@hyperledger/fabric-gateway, installed by its test with `npm ci`).
test: lint
	$(GO) test -race -count=1 -timeout 30m $$($(GO) list ./... | grep -v /internal/localnet$$)
	$(GO) test -race -count=1 -timeout 30m ./internal/localnet
	cd tests/adminsdk && $(GO) test -race -count=1 -timeout 5m ./...
	cd tests/nodegateway && $(GO) test -race -count=1 -timeout 10m ./...

lint:
	@out=$$(gofmt -l $(GOFILES)); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd tests/adminsdk && $(GO) vet ./...
	cd tests/nodegateway && $(GO) vet ./...
	@if command -v node >/dev/null; then node --check tests/nodegateway/gateway.mjs; fi

proto:
	sh protos/gen.sh

clean:
	rm -rf bin .cairn
