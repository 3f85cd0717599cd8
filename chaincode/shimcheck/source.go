package shimcheck

import (
	"embed"
	"io/fs"
)

// The explicit list keeps test files out of the chaincode package;
// TestSourceEmbedsEveryFile fails when a new source file is not listed.
//
//go:embed contract.go run.go source.go cmd/shimcheck/main.go
var source embed.FS

// Source returns the package's Go source (and its standalone main under
// cmd/shimcheck), laid out relative to chaincode/shimcheck, for building
// Fabric chaincode packages, e.g. ccpackage.Golang(label,
// "github.com/cairn-ledger/cairn/chaincode/shimcheck/cmd/shimcheck",
// shimcheck.Source()). It holds no go.mod: the packager picks the module.
func Source() fs.FS { return source }
