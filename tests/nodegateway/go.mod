module github.com/cairn-ledger/cairn/tests/nodegateway

go 1.26.0
