package basic

import (
	"embed"
	"io/fs"
)

// The explicit list keeps test files out of chaincode packages;
// TestSourceEmbedsEveryFile fails when a new source file is not listed.
//
//go:embed contract.go run.go source.go cmd/basic/main.go
var source embed.FS

// Source returns the package's Go source (and its standalone main under
// cmd/basic), laid out relative to chaincode/basic, for building Fabric
// chaincode packages. It does not include a go.mod: the packager decides the
// module the code is built in.
func Source() fs.FS { return source }
