# Cairn build entry points. `make run` and `make test` are the two commands a
# fresh machine needs (see README.md).
GO      ?= go
BIN     := bin/cairn
GOFILES := $(shell find . -name '*.go' -not -path './.git/*' -not -path './bin/*')

.PHONY: build run test lint proto clean

build:
	$(GO) build -o $(BIN) ./cmd/cairn

run: build
	$(BIN) network up

# Process-level tests (internal/localnet: real networks, SIGKILL, chaos) run on
# their own after the rest, so elections are not starved of CPU by parallel
# race-instrumented packages.
test: lint
	$(GO) test -race -count=1 -timeout 30m $$($(GO) list ./... | grep -v /internal/localnet$$)
	$(GO) test -race -count=1 -timeout 30m ./internal/localnet

lint:
	@out=$$(gofmt -l $(GOFILES)); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

proto:
	sh protos/gen.sh

clean:
	rm -rf bin .cairn
