// Command cairn is the single binary of Cairn: every node role and every admin
// command is a subcommand (see the cli package).
package main

import (
	"os"
	"runtime/debug"

	"github.com/cairn-ledger/cairn/cli"
)

// gcPercent replaces Go's default GOGC of 100 when the environment does not
// set GOGC. Cairn's nodes keep a small live heap (tens of MiB) and allocate
// per message, so at 100 the collector ran for 4–16 % of each process's CPU
// under load (peer, chaincode, load generator); at 400 a node trades a few
// more MiB of heap for ~14 % less CPU per transaction end to end
// (docs/benchmarks.md, "Gateway end to end"). GOGC=100 restores Go's default.
const gcPercent = 400

func main() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(gcPercent)
	}
	os.Exit(cli.Main(os.Args[1:]))
}
